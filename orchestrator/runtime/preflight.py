"""What a worker does before it joins the consumer group: make sure its topics and its Redis are right.

Co-partitioning of the customer topic and the table changelogs is what keeps one
writer per customer. Faust reacts to a mismatch by crashing the agent over and
over, so the worker creates its topics itself with ``ORCH_PARTITIONS`` partitions
and refuses to start, with a message that says what to do, when existing ones differ.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from redis.exceptions import NoPermissionError, RedisClusterException, RedisError

from orchestrator.pressure.connect import RedisSetupError, check_redis, redacted_url, redis_client
from orchestrator.pressure.policy import PressurePolicy, load_policy
from orchestrator.pressure.redis_basket import RedisBasket
from orchestrator.pressure.restore import horizon
from orchestrator.settings import Settings


class PreflightError(RuntimeError):
    """The worker must not start; the message says why and how to fix it."""


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, Mapping[str, str]] | Sequence[str],
    partitions: int,
    replication_factor: int = 1,
    **client_kw: Any,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the ones created.

    ``topics`` is a list of names or a mapping name -> topic config (e.g. compaction).
    Existence is checked with ``list_topics``, which names no topic and so never makes a
    broker with ``auto.create.topics.enable`` create one with its default partition count
    (a metadata request for a missing topic by name does).
    """
    configs: Mapping[str, Mapping[str, str]] = topics if isinstance(topics, Mapping) else {n: {} for n in topics}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kw)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in configs if n not in existing]
        if missing:
            # TopicAlreadyExists: a concurrent creator (another worker of the group) got there first
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions, replication_factor=replication_factor, topic_configs=dict(configs[n]))
                        for n in missing
                    ]
                )
        return missing
    finally:
        await admin.close()


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """The security settings as aiokafka client keyword arguments."""
    kw: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = settings.kafka_ssl_context()
    if settings.kafka_security_protocol.startswith("SASL"):
        kw["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kw["sasl_plain_username"] = settings.kafka_sasl_username
        kw["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
    return kw


def decisions_retention_ms(policy: PressurePolicy) -> int:
    """The least retention of the decisions topic: a basket rebuild reads the longest period back (``pressure/restore.py``)."""
    return int(horizon(policy).total_seconds() * 1000)


def owned_topics(settings: Settings, policy: PressurePolicy | None = None) -> dict[str, dict[str, str]]:
    """Every topic the worker relies on -> the topic config it is created with.

    The table changelogs and the facts registry are compacted (only the latest record per key matters).
    The decisions topic keeps the longest basket period of ``policy`` and a day more (a basket rebuild reads it).
    """
    topics: dict[str, dict[str, str]] = {name: {} for name in settings.inbound_topics()}
    for name in ("customer-events", "sends", "decisions", "journey-log", "dead-letter"):
        topics[settings.topic(name)] = {}
    if policy is not None:
        topics[settings.topic("decisions")] = {"retention.ms": str(decisions_retention_ms(policy) + 86_400_000)}
    for table in ("customer-state",):
        topics[f"{settings.app_id}-{table}-changelog"] = {"cleanup.policy": "compact"}
    topics[settings.topic("profile-facts")] = {"cleanup.policy": "compact"}  # the facts registry (runtime/facts_registry.py)
    topics[settings.topic("consent")] = {"cleanup.policy": "compact"}  # suppressions, read by a basket rebuild (runtime/basket_guard.py)
    return topics


async def prepare_topics(settings: Settings) -> list[str]:
    """Create missing topics with ``ORCH_PARTITIONS`` partitions; refuse mismatched co-partitioned ones.

    Creating them here, before Faust starts, matters: a broker with
    ``auto.create.topics.enable`` would otherwise create a changelog with its default
    partition count the first time a client asks for its metadata, and Faust's
    agent then crash-loops on ``PartitionsMismatch``. Returns the topics created.
    """
    policy = load_policy(settings.resolved_policy_file())
    wanted = owned_topics(settings, policy)
    copartitioned = {settings.topic("customer-events")} | {n for n in wanted if n.endswith("-changelog")}
    kw = aiokafka_kwargs(settings)
    created = await ensure_topics(settings.kafka_bootstrap_servers, wanted, settings.partitions, settings.replication_factor, **kw)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **kw)
    await admin.start()
    try:
        counts: dict[str, int] = {}
        for _ in range(50):  # a topic created a moment ago may describe with no partitions yet
            counts = {t["topic"]: len(t.get("partitions") or []) for t in await admin.describe_topics(sorted(copartitioned))}
            if all(counts.values()):
                break
            await asyncio.sleep(0.2)
        problems = [f"topic {name} has {count} partitions" for name, count in sorted(counts.items()) if count != settings.partitions]
        if problems:
            raise PreflightError(
                "; ".join(problems) + f", but ORCH_PARTITIONS={settings.partitions}. The customer topic and the state tables must be "
                "co-partitioned: set ORCH_PARTITIONS to the existing count, or use a new ORCH_TOPIC_PREFIX/ORCH_APP_ID "
                "(Kafka cannot shrink a topic, and growing it would move customers between partitions)."
            )
        await _check_retention(admin, settings.topic("decisions"), decisions_retention_ms(policy))
        return created
    finally:
        await admin.close()


async def check_redis_settings(settings: Settings) -> str | None:
    """Refuse (:class:`PreflightError`) a Redis that runs in the other mode or refuses the credentials.

    An unreachable Redis is no reason to refuse: the worker starts, is not ready, and its
    batches wait for Redis. Returns a warning for that case, else None.
    """
    client = redis_client(settings.redis_url, settings.redis_mode, ca_file=settings.redis_ca_file)
    try:
        await check_redis(client, settings.redis_mode, settings.redis_url)
        await RedisBasket(client, load_policy(settings.resolved_policy_file())).check_permissions(settings.app_id)
    except RedisSetupError as exc:
        raise PreflightError(str(exc)) from exc
    except NoPermissionError as exc:
        raise PreflightError(
            f"Redis at {redacted_url(settings.redis_url)}: the user may not do what the basket needs ({exc}); "
            "give it the README's ACL SETUSER rules"
        ) from exc
    except (RedisError, RedisClusterException, OSError) as exc:
        return f"Redis at {redacted_url(settings.redis_url)} not reachable ({type(exc).__name__}); batches wait for it"
    finally:
        await client.aclose()
    return None


async def _check_retention(admin: AIOKafkaAdminClient, topic: str, least_ms: int) -> None:
    """Refuse a decisions topic that forgets sooner than a basket rebuild reads back."""
    answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=None)])
    entries = {
        e["config_names"]: e["config_value"]
        for answer in answers
        for resource in answer.to_object()["resources"]
        for e in resource["config_entries"]
    }
    retention = int(entries.get("retention.ms") or -1)
    if 0 <= retention < least_ms:
        days = least_ms / 86_400_000
        raise PreflightError(
            f"topic {topic} keeps records for {retention / 86_400_000:.1f} days (retention.ms={retention}), but a basket rebuild "
            f"after Redis lost its data reads {days:.1f} days back (the longest basket period plus key_margin). Raise it: "
            f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config retention.ms={least_ms + 86_400_000}"
        )

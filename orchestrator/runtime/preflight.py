"""Checks a worker makes before it joins the consumer group.

Faust reacts to a customer topic whose partition count differs from the state
tables' (``ORCH_PARTITIONS``) by crashing the agent over and over; co-partitioning
is what keeps one writer per customer, so we refuse to start instead, with a
message that says what to do.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from orchestrator.settings import Settings


class PreflightError(RuntimeError):
    """The worker must not start; the message says why and how to fix it."""


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """The security settings as aiokafka client keyword arguments."""
    kw: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if settings.kafka_security_protocol.startswith("SASL"):
        kw["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kw["sasl_plain_username"] = settings.kafka_sasl_username
        kw["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return kw


async def check_partitions(settings: Settings) -> None:
    """Raise :class:`PreflightError` if the customer topic or a table changelog has the wrong partition count."""
    names = [settings.topic("customer-events")] + [
        f"{settings.app_id}-{table}-changelog" for table in ("customer-state", "timers")
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **aiokafka_kwargs(settings))
    await admin.start()
    try:
        problems = []
        for topic in await admin.describe_topics(names):
            count = len(topic.get("partitions") or [])
            if topic.get("error_code") == 0 and count != settings.partitions:  # error 3: does not exist yet
                problems.append(f"topic {topic['topic']} has {count} partitions")
    finally:
        await admin.close()
    if problems:
        raise PreflightError(
            "; ".join(problems)
            + f", but ORCH_PARTITIONS={settings.partitions}. The customer topic and the state tables must be "
            "co-partitioned: set ORCH_PARTITIONS to the existing count, or use a new ORCH_TOPIC_PREFIX/ORCH_APP_ID "
            "(Kafka cannot shrink a topic, and growing it would move customers between partitions)."
        )

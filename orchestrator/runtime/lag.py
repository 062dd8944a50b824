"""Consumer lag as the broker sees it: the group's committed offsets against the end offsets.

This is what ``orchestrator_consumer_lag{topic,partition}`` and ``orchestrator lag``
report. It asks Kafka, not the worker's in-process view, so the numbers are the same
whichever worker (or tool) asks, and they stay true when workers come and go:

* only the topics asked for (the inbound topics and the customer topic), never the
  table changelogs;
* every partition of those topics, whether some worker owns it right now or not,
  including the partitions of a worker that died: its committed offsets still count;
* right after a rebalance, because nothing depends on which worker holds what;
* under overload, because a worker that is too busy to report still has a committed
  offset that stops moving while the end offset grows.

Lag of a partition = records still retained in the log that the group has not
committed yet = ``end - max(committed, log start)``. When the group never committed
the partition (``committed`` is None) that is ``end - log start``: everything retained
is unprocessed. A committed offset below the log start (retention deleted records
before the group read them) counts only what is still retained; the deleted records
are lost to the group, not waiting for it.

Use :class:`LagProbe` in a long-lived process (one admin client and one group-less
consumer kept open, a few small requests per :meth:`LagProbe.read`), or
:func:`group_lag` for a one-shot look. Neither joins the consumer group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

if TYPE_CHECKING:
    from orchestrator.settings import Settings

__all__ = ["DEFAULT_TIMEOUT", "LagProbe", "LagUnavailable", "PartitionLag", "group_lag", "lag_topics"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""Seconds a start or a read may take before it gives up (a broker outage must not hang the caller)."""


@dataclass(frozen=True)
class PartitionLag:
    """One row of ``orchestrator lag``: where the consumer group stands on one partition.

    ``committed``: the group's committed offset (the next record it will process), or
    None when the group never committed this partition.
    ``end``: the partition's end offset (the offset the next produced record gets).
    ``lag``: records retained and not yet processed by the group (see the module docstring).
    ``owner``: ``client_id/host`` of the group member the partition is assigned to, when
    the group is Stable; None while it rebalances, when it has no members (every worker
    stopped or died and its session expired), or when no member has the partition.
    """

    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    owner: str | None


class LagUnavailable(RuntimeError):
    """The lag could not be read (broker unreachable, timed out, refused); the message says why in one line."""


def lag_topics(settings: Settings) -> list[str]:
    """The topics whose lag matters for a deployment: the inbound topics and the customer topic (no changelogs)."""
    return [*settings.inbound_topics(), settings.topic("customer-events")]


class LagProbe:
    """Reads the lag of one consumer group on a fixed set of topics, as often as needed.

    Keeps one admin client (group description, committed offsets, topic metadata) and
    one consumer that joins no group (log start and end offsets) open between reads.
    ``client_kw`` are extra aiokafka client arguments, e.g.
    ``orchestrator.runtime.preflight.aiokafka_kwargs(settings)`` for SASL/SSL.

    Every :meth:`start` and :meth:`read` gives up after ``timeout`` seconds and raises
    :class:`LagUnavailable`; the probe stays usable, and the next :meth:`read` tries
    again (starting the clients first if they never came up)::

        probe = LagProbe(bootstrap, group, topics, **kw)
        try:
            while True:
                try:
                    rows = await probe.read()
                except LagUnavailable as exc:
                    ...  # broker unreachable: report "unknown", not zero
                await asyncio.sleep(5)
        finally:
            await probe.close()

    After each successful read, :attr:`group_state` is the group's state as the
    coordinator reports it (``Stable``, ``PreparingRebalance``, ``CompletingRebalance``,
    ``Empty``, ``Dead`` for a group that does not exist) and :attr:`missing_topics` the
    topics asked for that do not exist (they contribute no rows).
    """

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        **client_kw: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.topics: tuple[str, ...] = tuple(dict.fromkeys(topics))
        self.timeout = timeout
        self.group_state: str | None = None
        self.missing_topics: tuple[str, ...] = ()
        self._client_kw = {"client_id": "orchestrator-lag", **client_kw}
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Connect both clients; raises :class:`LagUnavailable` within ``timeout`` seconds if the broker does not answer."""
        async with self._starting:
            if self._admin is None:
                await self._start()

    async def _start(self) -> None:
        request_timeout_ms = max(1000, int(self.timeout * 1000))
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=request_timeout_ms, **self._client_kw)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=request_timeout_ms,
            **self._client_kw,
        )
        try:
            async with asyncio.timeout(self.timeout):
                await admin.start()
                await consumer.start()
        except BaseException as exc:
            await _quietly(admin.close(), consumer.stop())
            if isinstance(exc, (KafkaError, OSError, TimeoutError)):
                raise self._unavailable(exc) from exc
            raise
        self._admin, self._consumer = admin, consumer

    async def close(self) -> None:
        """Close both clients (idempotent)."""
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if admin is not None and consumer is not None:
            await _quietly(admin.close(), consumer.stop())

    async def __aenter__(self) -> LagProbe:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def read(self) -> list[PartitionLag]:
        """One row per partition of every existing topic asked for, in topic order then partition order.

        Raises :class:`LagUnavailable` within ``timeout`` seconds when the broker is
        unreachable or refuses (e.g. missing ACLs to describe the group).
        """
        await self.start()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._read()
        except (KafkaError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc

    async def _read(self) -> list[PartitionLag]:
        admin, consumer = self._admin, self._consumer
        assert admin is not None and consumer is not None
        # All-topics metadata: asking for a topic by name would make a broker with
        # auto.create.topics.enable create it (with the wrong partition count) on a typo.
        # Topics this client may not describe are left out of it by the broker, too.
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics() if t["partitions"]}
        self.missing_topics = tuple(t for t in self.topics if t not in counts)
        if self.missing_topics:
            log.warning("consumer lag: topic(s) %s do not exist or are not visible", ", ".join(self.missing_topics))
        parts = [TopicPartition(t, p) for t in self.topics if t in counts for p in range(counts[t])]
        if not parts:
            self.group_state = await self._owners_and_state(admin, None, {})
            return []

        coordinator = await admin.find_coordinator(self.group)
        owners: dict[TopicPartition, str] = {}
        self.group_state = await self._owners_and_state(admin, coordinator, owners)
        # Committed first, then the log offsets: a commit racing with this read can only make
        # the lag look larger for a moment, never negative.
        committed = await admin.list_consumer_group_offsets(self.group, coordinator, parts)
        if any(tp not in committed for tp in parts):
            raise LagUnavailable(f"the group coordinator of {self.group!r} did not return every committed offset")
        start = await consumer.beginning_offsets(parts)
        end = await consumer.end_offsets(parts)

        rows = []
        for tp in parts:
            offset = committed[tp].offset
            commit = offset if offset >= 0 else None
            lag = max(0, end[tp] - max(start[tp], commit if commit is not None else 0))
            rows.append(PartitionLag(tp.topic, tp.partition, commit, end[tp], lag, owners.get(tp)))
        return rows

    async def _owners_and_state(self, admin: AIOKafkaAdminClient, coordinator: int | None, owners: dict[TopicPartition, str]) -> str:
        """Fill ``owners`` from the members' assignments when the group is Stable; return the group state."""
        responses = await admin.describe_consumer_groups([self.group], group_coordinator_id=coordinator)
        groups = [g for r in responses for g in r.to_object()["groups"] if g["group"] == self.group]
        if not groups:
            return "Unknown"
        group = groups[0]
        if group["error_code"]:
            log.debug("describe group %s: error code %s", self.group, group["error_code"])
            return "Unknown"
        if group["state"] == "Stable" and group["protocol_type"] == "consumer":
            for member in group["members"]:
                owner = f"{member['client_id']}/{member['client_host'].lstrip('/')}"
                try:
                    assigned = ConsumerProtocolMemberAssignment.decode(member["member_assignment"]).partitions()
                except Exception:  # noqa: BLE001 - a foreign assignment format: no owner rather than no lag
                    log.debug("group %s: cannot decode the assignment of %s", self.group, member["member_id"])
                    continue
                for tp in assigned:
                    owners[TopicPartition(tp.topic, tp.partition)] = owner
        return str(group["state"])

    def _unavailable(self, exc: BaseException) -> LagUnavailable:
        if isinstance(exc, LagUnavailable):
            return exc
        if isinstance(exc, TimeoutError):
            why = f"no answer within {self.timeout:g} s"
        else:
            why = str(exc).strip() or type(exc).__name__
            if not why.startswith(type(exc).__name__):
                why = f"{type(exc).__name__}: {why}"
        return LagUnavailable(f"cannot read the lag of consumer group {self.group!r} from Kafka at {self.bootstrap}: {why}")


async def group_lag(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    **client_kw: Any,
) -> list[PartitionLag]:
    """One look at the lag of consumer ``group`` on ``topics`` (see :class:`LagProbe`, which this opens and closes).

    Every partition of every existing topic in ``topics`` appears, owned or not.
    ``committed`` is None for a partition the group never committed; its lag is then
    ``end - log start``: everything still retained is unprocessed. Raises
    :class:`LagUnavailable` when Kafka does not answer within ``timeout`` seconds.
    """
    probe = LagProbe(bootstrap, group, topics, timeout=timeout, **client_kw)
    try:
        return await probe.read()
    finally:
        await probe.close()


async def _quietly(*closers: Any) -> None:
    """Await each closing coroutine, bounded in time, ignoring its errors (closing must not hide the real error)."""
    for closer in closers:
        try:
            async with asyncio.timeout(DEFAULT_TIMEOUT):
                await closer
        except Exception:
            log.debug("closing a lag client failed", exc_info=True)

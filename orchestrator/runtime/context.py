"""What every loop of the worker shares: settings, clock, health, the live definitions, one publisher.

The worker (``pipeline.py``) builds one :class:`WorkerContext` and hands it to each of its
loops (``batches.py``, ``timer_loop.py``, ``campaign_loop.py``, ``lag_loop.py``,
``reload.py``); no loop imports another. What they share, and who writes it:

- :class:`Health` (``/ready``): the batch loop (assignment, Kafka reachable), the lag loop
  (lag rows, Kafka reachable);
- :class:`Live` (journeys, policy, the basket over them): replaced whole by the reload loop,
  read by the others at the start of each round;
- the state store and the timer heap: written by the batch loop only (after its outputs are
  acknowledged), read by the timer and campaign loops;
- :class:`Publisher`: the only place that hands records to the Kafka producer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import redis.exceptions as rex
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata

from orchestrator.journey.loader import JourneySet
from orchestrator.metrics import Metrics
from orchestrator.pressure.connect import RedisClient
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.redis_basket import RedisBasket
from orchestrator.runtime.lag import PartitionLag
from orchestrator.runtime.out_topics import OutTopics
from orchestrator.runtime.outputs import OutRecord, Topics
from orchestrator.runtime.store import StateStore
from orchestrator.runtime.timers import TimerHeap
from orchestrator.settings import Settings

log = logging.getLogger("orchestrator")
retry_log = logging.getLogger("orchestrator.dependency")
"""Warnings that repeat while Redis or Kafka is down: rate-limited (runtime/logs.py)."""

TRANSIENT_REPLIES = ("OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF")
"""Redis error replies that say "not now" rather than "never": the batch waits and retries."""


REDIS_CLUSTER_TRANSIENT = (rex.ClusterError, rex.AskError, rex.TryAgainError, rex.SlotNotCoveredError)
"""A cluster in failover or resharding: ``CLUSTERDOWN`` (redis-py strips that word from the text, so it is matched by
class), ``MASTERDOWN``, ``MOVED``/``ASK`` the client could not follow, a slot without a node. ``MOVED`` to a client in
single mode is a wrong ``ORCH_REDIS_MODE``: retried too (not ready, nothing dead-lettered), with a hint in the warning."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failure will likely go away by itself (retry the batch) rather than repeat for this input."""
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, (rex.ReadOnlyError, rex.OutOfMemoryError, rex.BusyLoadingError, *REDIS_CLUSTER_TRANSIENT)):
        return True
    if isinstance(exc, rex.NoPermissionError):  # NOPERM: the Redis user's ACL, a set-up error; wait (not ready), never dead-letter
        return True
    if isinstance(exc, rex.RedisClusterException):  # "cannot be connected", no node for a slot; not a cross-slot bug of ours
        return not isinstance(exc, (rex.CrossSlotTransactionError, rex.InvalidPipelineStack))
    if isinstance(exc, rex.ResponseError):
        return str(exc).split(" ", 1)[0].upper() in TRANSIENT_REPLIES
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


def is_suspect(exc: BaseException) -> bool:
    """An unknown error reply from a dependency: retried ``ORCH_RETRY_TRIES`` times, then dead-lettered."""
    return isinstance(exc, (rex.RedisError, rex.RedisClusterException, KafkaError)) and not is_transient(exc)


def dependency_of(exc: BaseException) -> str:
    """``redis`` or ``kafka``: the label of the retry counter and of the readiness check."""
    return "redis" if isinstance(exc, (rex.RedisError, rex.RedisClusterException)) else "kafka"


STALL_GRACE = 2.0
"""Seconds a dependency may fail without an answer in between before ``/ready`` says "not ready"."""


class Transient(Exception):
    """A dependency said "not now": the loop tries again after a backoff (a batch: the whole batch)."""

    def __init__(self, cause: BaseException, dependency: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.dependency = dependency


@dataclass
class Health:
    """What ``/ready`` reports, written by the loops as they go."""

    assigned: bool = False
    kafka_ok_at: float = 0.0
    """``time.monotonic()`` of the last broker answer (a fetch with records, a lag read)."""
    partitions: tuple[int, ...] = ()
    lag: list[PartitionLag] = field(default_factory=list)
    lag_seconds: dict[tuple[str, int], float | None] = field(default_factory=dict)
    """(topic, partition) → the time lag at the last read (``time_lag.py``)."""
    lag_read_at: float = 0.0
    """Unix time of the last successful lag read (0: none yet): exported, so a frozen lag gauge is visible."""
    failing_since: dict[str, float] = field(default_factory=dict)
    """Dependency (``redis`` | ``kafka``) → ``time.monotonic()`` of its first failure since it last answered."""

    def failed(self, dependency: str) -> None:
        """A loop met a failure of ``dependency`` (a retry follows): it stalls from the first such failure on."""
        self.failing_since.setdefault(dependency, time.monotonic())

    def answered(self, dependency: str) -> None:
        """``dependency`` did what was asked: its stall, if any, is over."""
        self.failing_since.pop(dependency, None)
        if dependency == "kafka":
            self.kafka_ok_at = time.monotonic()

    def stalled(self, longer_than: float) -> list[str]:
        """The dependencies failing for longer than ``longer_than`` seconds without an answer in between."""
        now = time.monotonic()
        return sorted(dep for dep, since in self.failing_since.items() if now - since > longer_than)


@dataclass
class Live:
    """The definitions the worker runs now; the reload loop replaces the whole object."""

    journeys: JourneySet
    policy: PressurePolicy
    basket: RedisBasket


class Publisher:
    """The worker's one Kafka producer: records handed over without awaiting each, acknowledgements awaited together."""

    def __init__(self, settings: Settings, out_topics: OutTopics, **client_kw: Any) -> None:
        self.s = settings
        self.out_topics = out_topics
        self.client_kw = client_kw
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.s.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
            **self.client_kw,
        )
        await self.producer.start()

    async def send_all(self, records: Sequence[OutRecord]) -> list[RecordMetadata | BaseException]:
        """Hand every record to the producer, then await them together: one answer per record (a failure is an exception).

        A record the producer refused to take (its buffer, a closed client) fails with
        that error, and so does every record after it.
        """
        assert self.producer is not None, "Publisher.start() first"
        send = self.producer.send
        futures = []
        refused: BaseException | None = None
        try:
            for n, r in enumerate(records):
                futures.append(
                    await send(r.topic, r.value, key=r.key, partition=r.partition, headers=r.headers, timestamp_ms=r.timestamp_ms)
                )
                if n % 512 == 511:
                    await asyncio.sleep(0)  # a large batch's records: let the timer loop in between
        except KafkaError as exc:
            refused = exc
        answers: list[RecordMetadata | BaseException] = []
        for future in futures:  # one await each, not asyncio.gather: ~1.5 µs less per record (no done-callback per future)
            try:
                answers.append(await future)
            except KafkaError as exc:
                answers.append(exc)
        if refused is not None:
            answers += [refused] * (len(records) - len(futures))
        return answers

    async def publish(self, records: Sequence[OutRecord]) -> list[RecordMetadata]:
        """All or nothing: the records' metadata, or :class:`Transient` (Kafka "not now") / the KafkaError itself."""
        answers = await self.send_all(records)
        for a in answers:
            if isinstance(a, BaseException):
                if isinstance(a, KafkaError) and is_transient(a):
                    raise Transient(a, "kafka") from a
                raise a
        return cast(list[RecordMetadata], answers)  # no exception among them

    async def flush(self, timeout: float) -> None:
        if self.producer is not None:
            await asyncio.wait_for(self.producer.flush(), timeout=timeout)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


@dataclass
class WorkerContext:
    """Shared by the worker's loops (see the module doc for who writes what)."""

    settings: Settings
    metrics: Metrics
    live: Live
    store: StateStore
    heap: TimerHeap
    publisher: Publisher
    redis: RedisClient
    topics: Topics
    pseudo_key: bytes
    kafka_kw: dict[str, Any]
    health: Health = field(default_factory=Health)
    started_at: float = field(default_factory=time.time)
    stopping: bool = False
    """Set once at shutdown: every loop ends its round and returns."""

    def now(self) -> datetime:
        """Engine time (the demo's fast clock included)."""
        return self.settings.engine_now(datetime.now(UTC), self.started_at)

    def kafka_ok(self) -> bool:
        """The broker answered within two lag intervals (the lag loop asks it every interval) and no loop is stalled on it."""
        quiet = time.monotonic() - self.health.kafka_ok_at
        return quiet < 2 * self.settings.lag_interval + 2 and "kafka" not in self.health.stalled(STALL_GRACE)

    async def redis_ok(self) -> bool:
        """Redis answers a PING and no batch has been stalled on it (retrying OOM, timeouts ...) for long."""
        if "redis" in self.health.stalled(STALL_GRACE):
            return False
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=2))
        except (TimeoutError, rex.RedisError, OSError):
            return False

    def overdue(self) -> tuple[int, float]:
        """Pending timers and how late (real seconds) the oldest due one is."""
        oldest = self.heap.oldest_due()
        if oldest is None:
            return len(self.heap), 0.0
        late_engine_seconds = self.now().timestamp() - oldest
        return len(self.heap), max(0.0, late_engine_seconds / self.settings.clock_speed)

    async def backoff(self, delay: float) -> float:
        """Sleep ``delay`` and return the next, doubled up to ``ORCH_RETRY_BACKOFF_MAX``."""
        await asyncio.sleep(delay)
        return min(delay * 2, self.settings.retry_backoff_max)

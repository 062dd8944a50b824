"""The worker's data plane: one consumer-group loop, the only writer of its customers.

Follow one batch (:meth:`Pipeline._handle`):

1. ``getmany`` returns up to ``ORCH_BATCH_MAX_RECORDS`` records of the inbound topics
   and of ``<prefix>.customer-events`` (one consumer, one group: ``ORCH_APP_ID``).
2. Inbound records are validated (``events.parse_inbound``, bounded in size, depth and
   number length): valid → the canonical envelope for ``customer-events``, keyed by
   customer; invalid → the dead-letter topic with the reason.
3. Customer-events records are grouped by customer, in arrival order; each touched
   state is loaded once; ``processor.process_batch`` runs the engine for all of them
   and gates all their sends at the basket in pipelined rounds (one Redis round trip
   per round, not per send).
4. Every output (send requests, decisions, journey log, emit records on
   ``<prefix>.out.<topic>``, canonical envelopes, dead letters) is handed to the producer without awaiting each, and the acknowledgements
   awaited together; then, the same way, one state record per touched customer on the
   changelog (states after outputs: see :meth:`Pipeline._publish`).
5. Only then: the new states go into memory, the timer heap follows them, and the
   batch's offsets are committed.

Failures (never skip, never lose):

- transient (Redis unreachable or replying OOM/READONLY/LOADING/BUSY..., Kafka
  unreachable or timing out): the whole batch is run again from the same states after
  a backoff, while its partitions wait. Nothing of a failed attempt is in memory or
  committed; what it did publish is published again with the same ids (the engine is
  deterministic, send ids are deterministic and the basket answers a known send id
  with its recorded decision), and the engine ignores redelivered event ids.
- deterministic, tied to one message (undecodable, an engine error, a state that would
  grow past ``ORCH_MAX_STATE_BYTES``, or an unknown Redis error reply seen
  ``ORCH_RETRY_TRIES`` times): that message goes to the dead-letter topic with the
  reason, the exception type, the customer and its source; the customer's state stays
  as it was before that message; the rest of the batch goes on.
- anything else is a bug in this file: the worker exits (code 70) without committing
  the batch, so a restart replays it.

Why not Faust agents and tables here: Faust's per-message path (measured ~1,000
messages/s with a table write; ~4,500/s in ``take_events`` batches without one) is the
bottleneck, a crashed agent is restarted past the message it failed on, and its commits
follow its own acks rather than "every output of this message is with Kafka". So the
data plane is a plain aiokafka consumer/producer pair; Faust runs the process (CLI,
signals, the web server, the Prometheus sensor). See the README, "Where we go around Faust".
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rex
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaConnectionError, KafkaError, KafkaTimeoutError
from mode import Service
from prometheus_client import Counter

from orchestrator.actions import Emit
from orchestrator.dedupe import EngineLimits
from orchestrator.definitions import load_definitions
from orchestrator.engine.audience import AUDIENCE_EVENT_TYPE
from orchestrator.errors import DefinitionError
from orchestrator.events import (
    InboundLimits,
    InvalidEvent,
    TimerFired,
    decode_internal,
    encode_internal,
    parse_inbound,
)
from orchestrator.journey.facts import FACTS_FILE
from orchestrator.journey.loader import JourneySet, history_notes, journey_files
from orchestrator.journey.scores import SCORES_FILE
from orchestrator.metrics import Metrics
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.redis_basket import RedisBasket
from orchestrator.processor import CustomerWork, Failure, Result, process_batch
from orchestrator.records import DecisionRecord, EmitRecord, JourneyLogRecord, SendRequest
from orchestrator.runtime.campaigns import CampaignScheduler, Work, run_of_event, run_of_instance
from orchestrator.runtime.facts_registry import sync_registry
from orchestrator.runtime.lag import LagProbe, LagUnavailable, PartitionLag
from orchestrator.runtime.logs import pseudonym, redact
from orchestrator.runtime.out_topics import OutTopics, journey_out_topics
from orchestrator.runtime.preflight import aiokafka_kwargs
from orchestrator.runtime.store import StateStore
from orchestrator.runtime.timers import TimerHeap, encode_timers
from orchestrator.settings import Settings
from orchestrator.state import CustomerState

log = logging.getLogger("orchestrator")
retry_log = logging.getLogger("orchestrator.dependency")
"""Warnings that repeat while Redis or Kafka is down: rate-limited (runtime/logs.py)."""

TRANSIENT_REPLIES = ("OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF")
"""Redis error replies that say "not now" rather than "never": the batch waits and retries."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failure will likely go away by itself (retry the batch) rather than repeat for this input."""
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, (rex.ReadOnlyError, rex.OutOfMemoryError, rex.BusyLoadingError, rex.TryAgainError, rex.MasterDownError)):
        return True
    if isinstance(exc, rex.ResponseError):
        return str(exc).split(" ", 1)[0].upper() in TRANSIENT_REPLIES
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


def is_suspect(exc: BaseException) -> bool:
    """An unknown error reply from a dependency: retried ``ORCH_RETRY_TRIES`` times, then dead-lettered."""
    return isinstance(exc, (rex.RedisError, KafkaError)) and not is_transient(exc)


def _count(counter: Counter, *labels: str) -> Callable[[], None]:
    """Count one in ``counter`` (with ``labels``) later: once the batch's outputs are published."""
    return lambda: counter.labels(*labels).inc()


class _Transient(Exception):
    """Raised inside a batch attempt to have the whole batch tried again."""

    def __init__(self, cause: BaseException, dependency: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.dependency = dependency


@dataclass
class _Source:
    """Where a message came from (for commits and dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def id(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


@dataclass
class _Out:
    """Everything one batch attempt wants to publish, and what to count once it is published."""

    records: list[tuple[str, int | None, bytes | None, bytes, list[tuple[str, bytes]] | None]] = field(default_factory=list)
    states: list[tuple[int, str, bytes, list[tuple[str, float]]]] = field(default_factory=list)
    parsed: dict[str, CustomerState] = field(default_factory=dict)
    counts: list[Callable[[], None]] = field(default_factory=list)
    emit_topics: set[str] = field(default_factory=set)
    """The outbound topics of this batch's emit records (made sure to exist before they are published)."""


@dataclass
class Health:
    """What ``/ready`` reports."""

    assigned: bool = False
    kafka_ok_at: float = 0.0
    partitions: tuple[int, ...] = ()
    lag: list[PartitionLag] = field(default_factory=list)


class Pipeline(Service):
    """The worker's consumer loop, timer loop and lag probe (a ``mode`` service Faust starts and stops)."""

    def __init__(self, settings: Settings, journeys: JourneySet, policy: PressurePolicy, metrics: Metrics, **kw: Any) -> None:
        super().__init__(**kw)
        self.s = settings
        self.journeys = journeys
        self.policy = policy
        self.metrics = metrics
        self.heap = TimerHeap()
        self.health = Health()
        self.started_at = time.time()
        self.inbound = settings.inbound_topics()
        self.customer_topic = settings.topic("customer-events")
        self.dlq_topic = settings.topic("dead-letter")
        self.store = StateStore(f"{settings.app_id}-customer-state-changelog", settings.state_cache_customers)
        self.limits = InboundLimits(settings.max_event_bytes, settings.max_json_depth, settings.max_number_digits)
        self.engine_limits = EngineLimits(dedupe_window=timedelta(days=settings.dedupe_window_days), dedupe_max_ids=settings.dedupe_max_ids)
        self.redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=15)
        self.basket = RedisBasket(self.redis, policy)
        self._kw = aiokafka_kwargs(settings)
        self.out_topics = OutTopics(settings, **self._kw)
        self._pseudo_key = settings.log_pseudonym_key()
        self.campaigns = CampaignScheduler(
            self.store,
            metrics,
            reach_limit=self.engine_limits.dedupe_window / 2,
            slice_size=settings.campaign_slice,
            progress_every=settings.campaign_progress_every,
            pseudo_key=self._pseudo_key,
        )
        self._lock = asyncio.Lock()
        self._revoking = False
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []  # not `_tasks`: mode.Service uses that name
        self._fingerprint = self._scan()
        self._facts_synced = False
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.lag_probe: LagProbe | None = None

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        s = self.s
        # Fewer, larger young-generation collections: a batch allocates many short-lived
        # objects, and the default threshold (700) ran a collection every few messages.
        gc.set_threshold(50_000, 20, 100)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
            **self._kw,
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.app_id,
            client_id=f"{s.app_id}-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max_records,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval * 1000),
            max_poll_interval_ms=int(s.max_poll_interval * 1000),
            partition_assignment_strategy=(RangePartitionAssignor,),
            rebalance_timeout_ms=int(max(s.session_timeout, s.shutdown_timeout) * 1000),
            **self._kw,
        )
        await self.producer.start()
        await self.record_facts()
        await self.prepare_out_topics()
        await self.consumer.start()
        self.consumer.subscribe([*self.inbound, self.customer_topic], listener=_Rebalance(self))
        self.lag_probe = LagProbe(s.kafka_bootstrap_servers, s.app_id, [*self.inbound, self.customer_topic], **self._kw)
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._consume(), name="consume"),
            loop.create_task(self._fire_timers(), name="timers"),
            loop.create_task(self._run_campaigns(), name="campaigns"),
            loop.create_task(self._watch_lag(), name="lag"),
            loop.create_task(self._reload_journeys(), name="reload"),
        ]

    async def on_stop(self) -> None:
        """Finish (or abandon) the running batch, then close every client, each within a bound."""
        self._stopping = True
        budget = self.s.shutdown_timeout
        consume, *others = self._loops
        for task in others:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(consume), timeout=budget / 2)
        except Exception:  # noqa: BLE001 - shutting down whatever happened (a timeout included)
            consume.cancel()
        for closing in (
            self.consumer.stop() if self.consumer else None,
            self.producer.stop() if self.producer else None,
            self.lag_probe.close() if self.lag_probe else None,
            self.redis.aclose(),
        ):
            if closing is None:
                continue
            try:
                await asyncio.wait_for(closing, timeout=budget / 8)
            except Exception as exc:  # noqa: BLE001 - closing must go on with the next client
                log.warning("shutdown: a client did not close cleanly (%s); leaving it", type(exc).__name__)

    # ------------------------------------------------------------------ clock, readiness

    def now(self) -> datetime:
        return self.s.engine_now(datetime.now(UTC), self.started_at)

    def kafka_ok(self) -> bool:
        return time.monotonic() - self.health.kafka_ok_at < 3 * self.s.lag_interval + 5

    async def redis_ok(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=2))
        except (TimeoutError, rex.RedisError, OSError):
            return False

    def overdue(self) -> tuple[int, float]:
        oldest = self.heap.oldest_due()
        if oldest is None:
            return len(self.heap), 0.0
        late_engine_seconds = self.now().timestamp() - oldest
        return len(self.heap), max(0.0, late_engine_seconds / self.s.clock_speed)

    # ------------------------------------------------------------------ rebalance

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the running batch (a batch stuck in retries gives up: nothing of it is committed)."""
        self._revoking = True
        try:
            async with self._lock:
                self.health.assigned = False
        finally:
            self._revoking = False

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restore the states of our customer partitions and rebuild the timer heap from them."""
        owned = {tp.partition for tp in assigned if tp.topic == self.customer_topic}
        async with self._lock:  # no batch runs before its partitions are restored
            self.store.drop(set(self.store.partitions) - owned)
            delay = 0.5
            while True:
                try:
                    await self.store.restore(owned, self.s.kafka_bootstrap_servers, **self._kw)
                    break
                except KafkaError as exc:
                    self.metrics.retries.labels("kafka").inc()
                    retry_log.warning("restoring state failed (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.s.retry_backoff_max)
            self.heap.rebuild(self.store.due_timers(owned))
            gc.collect()
            gc.freeze()  # the restored states are long-lived: keep them out of every later collection
            self.health.partitions = tuple(sorted(owned))
            self.health.assigned = True
        log.info(
            "assigned customer partitions %s: %d customers, %d pending timers",
            sorted(owned),
            self.store.customers(),
            len(self.heap),
        )

    # ------------------------------------------------------------------ the batch loop

    async def _consume(self) -> None:
        assert self.consumer is not None
        while not self._stopping:
            try:
                batch = await self.consumer.getmany(timeout_ms=200, max_records=self.s.batch_max_records)
            except KafkaError as exc:
                self.metrics.retries.labels("kafka").inc()
                retry_log.warning("fetch failed: %s", exc)
                await asyncio.sleep(1)
                continue
            if not batch:
                continue
            self.health.kafka_ok_at = time.monotonic()
            async with self._lock:
                # A rebalance may have run between the fetch and the lock: records of partitions
                # that are no longer ours belong to their new owner, who replays them.
                mine = self.consumer.assignment()
                records = [r for tp, rs in batch.items() if tp in mine for r in rs]
                if not records:
                    continue
                try:
                    await self._handle(records)
                except Exception as exc:  # noqa: BLE001 - anything that gets here is a bug: exit without committing
                    await self._die(exc)

    async def _die(self, exc: BaseException) -> None:
        """A bug in the shell: exit at once without committing, so the restarted worker replays the batch."""
        log.critical("worker bug: a batch failed with %r; exiting without committing it (exit 70)", exc, exc_info=exc)
        if self.producer is not None:
            with contextlib.suppress(Exception):  # exiting anyway
                await asyncio.wait_for(self.producer.flush(), timeout=5)
        os._exit(70)

    async def _handle(self, records: list[Any]) -> None:
        """One batch: run, publish, then remember and commit; transient failures retry the whole batch."""
        started = time.perf_counter()
        tries: dict[tuple[str, int, int], int] = {}
        delay = 0.2
        while True:
            if self._stopping or self._revoking:
                return  # abandoned: nothing committed, the next owner (or restart) replays it
            try:
                out, apply = await self._attempt(records, tries)
                acks = await self._publish(out)
                break
            except _Transient as exc:
                self.metrics.retries.labels(exc.dependency).inc()
                retry_log.warning(
                    "%s unavailable (%s: %s); retrying the batch of %d records in %.1fs",
                    exc.dependency,
                    type(exc.cause).__name__,
                    exc.cause,
                    len(records),
                    delay,
                    extra={"event": "dependency_retry", "dependency": exc.dependency},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.s.retry_backoff_max)
        for (partition, customer_id, raw, timers), meta in zip(out.states, acks, strict=True):
            self.store.put(partition, customer_id, raw, timers, meta.offset, out.parsed.get(customer_id))
            self.heap.set_customer(customer_id, partition, timers)
        for count in out.counts:
            count()
        apply()
        await self._commit(records)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_records.observe(len(records))

    async def _attempt(self, records: list[Any], tries: dict[tuple[str, int, int], int]) -> tuple[_Out, Callable[[], None]]:
        """Run one attempt of a batch in memory: nothing is published or remembered here."""
        out = _Out()
        now = self.now()
        work, where, sources = self._group(records, out)
        try:
            outcomes = await process_batch(
                list(work.values()),
                self.journeys,
                now,
                self.basket,
                max_state_bytes=self.s.max_state_bytes,
                limits=self.engine_limits,
            )
        except Exception as exc:
            if is_transient(exc):
                raise _Transient(exc, "redis") from exc
            raise
        processed: dict[str, int] = {}
        parsed = out.parsed
        for (cid, w), outcome in zip(work.items(), outcomes, strict=True):
            for message, res in zip(w.messages, outcome.results, strict=True):
                src = sources[id(message)]
                if isinstance(res, Failure):
                    self._failed(out, src, res, tries)
                    continue
                self._outputs(out, res, now)
                processed[message.kind] = processed.get(message.kind, 0) + 1
            if outcome.encoded is not None:
                timers = [(t.timer_id, t.due_at.timestamp()) for t in outcome.state.pending_timers()]
                out.states.append((where[cid], cid, outcome.encoded, timers))
                parsed[cid] = outcome.state

        def apply() -> None:
            for kind, n in processed.items():
                self.metrics.processed.labels(kind).inc(n)

        return out, apply

    def _group(self, records: list[Any], out: _Out) -> tuple[dict[str, CustomerWork], dict[str, int], dict[int, _Source]]:
        """Sort a batch's records: inbound ones are validated into ``out`` (envelope or dead letter); the
        customer-events ones are grouped by customer, in arrival order, each customer's state loaded once.

        Returns the work by customer, each customer's partition, and each message's source (by ``id(message)``).
        """
        work: dict[str, CustomerWork] = {}
        where: dict[str, int] = {}
        sources: dict[int, _Source] = {}
        for r in records:
            src = _Source(r.topic, r.partition, r.offset, r.key, r.value)
            family = self.inbound.get(r.topic)
            if family is not None:
                self._ingest(src, family, out)
                continue
            try:
                message = decode_internal(r.value)
            except ValueError as exc:
                self._dead(out, src, "undecodable", f"not a customer-events message: {exc}", type(exc).__name__, None)
                continue
            cid = message.customer_id
            if cid not in work:
                try:
                    state = self.store.load(r.partition, cid)
                except ValueError as exc:
                    self._dead(out, src, "state_unreadable", f"the stored state does not load: {exc}", type(exc).__name__, cid)
                    continue
                work[cid] = CustomerWork(state=state, messages=[])
                where[cid] = r.partition
            work[cid].messages.append(message)
            sources[id(message)] = src
        return work, where, sources

    def _ingest(self, src: _Source, family: str, out: _Out) -> None:
        try:
            event = parse_inbound(family, src.value or b"", key=src.key, limits=self.limits)
        except InvalidEvent as exc:
            out.counts.append(_count(self.metrics.events, family, "dead_lettered"))
            self._dead(out, src, exc.code, exc.reason, "InvalidEvent", exc.customer_id, family=family)
            return
        out.counts.append(_count(self.metrics.events, family, "accepted"))
        out.records.append((self.customer_topic, None, event.customer_id.encode(), encode_internal(event), None))

    def _failed(self, out: _Out, src: _Source, failure: Failure, tries: dict[tuple[str, int, int], int]) -> None:
        exc = failure.error
        if is_transient(exc):
            raise _Transient(exc, "redis" if isinstance(exc, rex.RedisError) else "kafka")
        if is_suspect(exc):
            tries[src.id] = tries.get(src.id, 0) + 1
            if tries[src.id] < self.s.retry_tries:
                raise _Transient(exc, "redis" if isinstance(exc, rex.RedisError) else "kafka")
            reason = f"failed {tries[src.id]} times with the same error: {failure.reason}"
        else:
            reason = failure.reason
        self._dead(out, src, "processing_failed", reason, type(exc).__name__, failure.message.customer_id)

    def _dead(self, out: _Out, src: _Source, code: str, reason: str, exc_type: str, customer_id: str | None, family: str = "") -> None:
        """A dead-letter record: the original bytes (cut to ORCH_DLQ_MAX_BYTES) and why, in headers."""
        value = src.value or b""
        headers = [
            ("dlq.reason", reason.encode()),
            ("dlq.code", code.encode()),
            ("dlq.exception", exc_type.encode()),
            ("dlq.family", family.encode()),
            ("dlq.customer", (customer_id or "").encode()),
            ("dlq.source.topic", src.topic.encode()),
            ("dlq.source.partition", str(src.partition).encode()),
            ("dlq.source.offset", str(src.offset).encode()),
            ("dlq.at", datetime.now(UTC).isoformat().encode()),
        ]
        if len(value) > self.s.dlq_max_bytes:
            headers.append(("dlq.truncated", str(len(value)).encode()))
            value = value[: self.s.dlq_max_bytes]
        out.records.append((self.dlq_topic, None, (src.key or b"")[:1024] or None, value, headers))

        def count() -> None:
            self.metrics.dead_letters.labels(code).inc()
            log.warning(
                "dead-lettered %s[%d]@%d (%s): %s",
                src.topic,
                src.partition,
                src.offset,
                code,
                redact(reason, (customer_id, (src.key or b"").decode("utf-8", "replace")), self._pseudo_key)[:500],
                extra={
                    "event": "dead_letter",
                    "code": code,
                    "topic": src.topic,
                    "partition": src.partition,
                    "offset": src.offset,
                    "customer": pseudonym(customer_id, self._pseudo_key) if customer_id else None,
                },
            )

        out.counts.append(count)

    def _outputs(self, out: _Out, res: Result, at: datetime) -> None:
        topic, m = self.s.topic, self.metrics
        for d in res.dispositions:
            value = DecisionRecord.of(d, at).model_dump_json().encode()
            out.records.append((topic("decisions"), None, d.send.customer_id.encode(), value, None))
            out.counts.append(_count(m.decisions, d.result, d.send.comm_type, d.send.channel))
        for d in res.sends:
            value = SendRequest.of(d, at).model_dump_json().encode()
            out.records.append((topic("sends"), None, d.send.customer_id.encode(), value, None))
            out.counts.append(_count(m.sends, d.send.channel, d.send.comm_type))
        for t in res.traces:
            value = JourneyLogRecord.of(t).model_dump_json().encode()
            out.records.append((topic("journey-log"), None, t.customer_id.encode(), value, None))
            out.counts.append(_count(m.journey_steps, t.journey_id or "(none)", t.what))
        if res.emits:
            self._emits(out, res.emits)
        self._campaign_counts(out, res)

    def _emits(self, out: _Out, emits: list[Emit]) -> None:
        """Emit records go to <prefix>.out.<topic>, keyed by customer, with the batch's other outputs (never gated)."""
        for e in emits:
            topic = self.out_topics.name(e.topic)
            out.emit_topics.add(topic)
            out.records.append((topic, None, e.customer_id.encode(), EmitRecord.of(e).model_dump_json().encode(), None))

    def _campaign_counts(self, out: _Out, res: Result) -> None:
        """Campaign metrics of one message: customers a run entered, and the decisions on sends of run-started instances."""
        m = self.metrics
        for t in res.traces:
            if t.what == "entered" and t.detail.get("event_type") == AUDIENCE_EVENT_TYPE:
                run = run_of_event(t.journey_id, t.detail.get("event_id"))
                if run is not None:
                    out.counts.append(_count(m.campaign_entered, t.journey_id, self.campaigns.run_label(t.journey_id, run)))
        for d in res.dispositions:
            run = run_of_instance(d.send.journey_id, d.send.instance_id)
            if run is not None:
                out.counts.append(
                    _count(m.campaign_decisions, d.send.journey_id, self.campaigns.run_label(d.send.journey_id, run), d.result)
                )

    async def _publish(self, out: _Out) -> list[Any]:
        """Hand the batch's records to the producer, then its states; returns the state records' metadata.

        Two phases, each handed over whole and then awaited together: first every output
        (sends, decisions, journey log, envelopes, dead letters), then the states. A state
        must never be durable before what it caused: after a crash between the two, the
        replay runs from the old state and publishes the same outputs again (same ids),
        where the other order would let the engine see the events as duplicates and
        publish nothing.
        """
        assert self.producer is not None
        send = self.producer.send
        try:
            if out.emit_topics:  # a reload may have brought a topic the reload loop has not created yet
                await self.out_topics.ensure(out.emit_topics)
            await asyncio.gather(*[await send(t, v, key=k, partition=p, headers=h) for t, p, k, v, h in out.records])
            state_futures = [
                await send(self.store.topic, raw, key=cid.encode(), partition=p, headers=[("timers", encode_timers(timers))])
                for p, cid, raw, timers in out.states
            ]
            return list(await asyncio.gather(*state_futures))
        except KafkaError as exc:
            if is_transient(exc):
                raise _Transient(exc, "kafka") from exc
            raise

    async def _commit(self, records: list[Any]) -> None:
        assert self.consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        delay = 0.2
        while True:
            try:
                await self.consumer.commit(offsets)
                return
            except CommitFailedError as exc:
                log.warning("commit refused after a rebalance (%s); the new owner replays this batch (idempotent)", exc)
                return
            except KafkaError as exc:
                if self._stopping or not is_transient(exc):
                    log.warning("commit failed (%s); the batch will be replayed (idempotent)", exc)
                    return
                self.metrics.retries.labels("kafka").inc()
                retry_log.warning("commit failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.s.retry_backoff_max)

    # ------------------------------------------------------------------ timers, lag, reload

    async def _fire_timers(self) -> None:
        """Due timers become TimerFired messages on the customer's own partition."""
        while not self._stopping:
            await asyncio.sleep(self.s.timer_tick)
            if not self.health.assigned or self.producer is None:
                continue
            due = self.heap.pop_due(self.now().timestamp(), set(self.health.partitions))
            if not due:
                continue
            futures = []
            try:
                for t in due:
                    fired = TimerFired(customer_id=t.customer_id, timer_id=t.timer_id, due_at=datetime.fromtimestamp(t.due, UTC))
                    futures.append(
                        await self.producer.send(
                            self.customer_topic, encode_internal(fired), key=t.customer_id.encode(), partition=t.partition
                        )
                    )
                results = await asyncio.gather(*futures, return_exceptions=True)
            except KafkaError as exc:
                retry_log.warning("publishing %d due timers failed (%s); they fire again", len(due), exc)
                self.heap.refire(due)
                continue
            failed = [t for t, r in zip(due, results, strict=True) if isinstance(r, BaseException)]
            self.heap.refire(failed)
            self.metrics.timers_fired.inc(len(due) - len(failed))

    async def _run_campaigns(self) -> None:
        """Campaign runs: scan the owned customers, publish AudienceChecks onto their partitions (runtime/campaigns.py)."""
        backoff = self.s.campaign_tick
        while not self._stopping:
            try:
                wait = await self._campaign_round()
                backoff = self.s.campaign_tick
            except Exception as exc:  # a bug in the campaign scan must not stop the batches: log it, back off, go on
                log.exception("campaign loop failed (%s); its passes start again in %.0fs", type(exc).__name__, backoff)
                self.campaigns.restart()  # nothing half-counted survives: the passes start again from the states
                wait, backoff = backoff, min(backoff * 2, 60.0)
            await asyncio.sleep(wait)

    async def _campaign_round(self) -> float:
        """One round: follow the open runs, scan one slice, publish; returns how long to wait before the next."""
        tick = self.s.campaign_tick
        if not self.health.assigned or self.producer is None:
            return tick
        owned = set(self.health.partitions)
        now = self.now()
        self.campaigns.refresh(self.journeys, now, owned, self.s.partitions)
        if not self.campaigns.campaigns or self._campaign_lagging(owned):
            return tick
        work = self.campaigns.work(now)
        if work.checks or work.records:
            await self._publish_campaign(work, owned)
        return 0.0 if work.busy else min(work.wait, tick)

    def _campaign_lagging(self, owned: set[int]) -> bool:
        limit = self.s.campaign_max_lag
        if limit <= 0:
            return False
        lag = sum(row.lag for row in self.health.lag if row.topic == self.customer_topic and row.partition in owned)
        return lag > limit

    async def _publish_campaign(self, work: Work, owned: set[int]) -> None:
        """Hand the checks and progress records to the producer and await them; failed checks are looked at again."""
        assert self.producer is not None
        log_topic = self.s.topic("journey-log")
        futures: list[Any] = []
        try:
            for item in work.checks:
                if item.partition not in owned:  # the partition moved meanwhile: its new owner passes it
                    continue
                value = encode_internal(item.check)
                futures.append(
                    await self.producer.send(self.customer_topic, value, key=item.check.customer_id.encode(), partition=item.partition)
                )
            for r in work.records:
                futures.append(await self.producer.send(log_topic, r.value, key=r.key.encode()))
        except KafkaError as exc:
            retry_log.warning("publishing campaign checks failed (%s); those customers are looked at again", exc)
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked = iter([not isinstance(r, BaseException) for r in results])
        checks_ok = [item.partition in owned and next(acked, False) for item in work.checks]
        records_ok = [next(acked, False) for _ in work.records]
        self.campaigns.published(work.checks, checks_ok)
        self.campaigns.unreported([r for r, ok in zip(work.records, records_ok, strict=True) if not ok])

    async def _watch_lag(self) -> None:
        assert self.lag_probe is not None
        while not self._stopping:
            try:
                self.health.lag = await self.lag_probe.read()
                self.health.kafka_ok_at = time.monotonic()
            except LagUnavailable as exc:
                retry_log.warning("consumer lag unavailable: %s", exc)
            await asyncio.sleep(self.s.lag_interval)

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        files = journey_files([self.s.journeys_dir])  # *.yaml and *.yml, as load_journeys reads them
        beside = (self.s.resolved_policy_file(), self.s.journeys_dir / FACTS_FILE, self.s.journeys_dir / SCORES_FILE)
        files += [p for p in beside if p not in files]
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())

    async def _reload_journeys(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.s.reload_interval)
            before = self.journeys
            self.maybe_reload()
            if self.journeys is not before or not self._facts_synced:
                await self.record_facts()
            if self.journeys is not before:
                await self.prepare_out_topics()

    async def prepare_out_topics(self) -> None:
        """Create the outbound topics of the loaded journeys' emit steps; a failure waits for the first batch that needs one."""
        try:
            created = await self.out_topics.ensure(journey_out_topics(self.journeys, self.s))
        except (KafkaError, OSError) as exc:
            retry_log.warning("creating the emit steps' outbound topics failed (%s); retried before their first record", exc)
            return
        if created:
            log.info("created outbound topics %s", ", ".join(created))

    async def record_facts(self) -> None:
        """Bring the facts registry in line with the loaded facts and say where a journey looks back before its history.

        Advisory (the engine records what ``profile.yaml`` declares whatever happens here): a
        failure is logged and tried again at the next reload round.
        """
        assert self.producer is not None
        topic = self.s.topic("profile-facts")
        try:
            started = await sync_registry(
                self.producer, self.s.kafka_bootstrap_servers, topic, self.s.partitions, self.journeys.facts, self.now(), **self._kw
            )
        except (KafkaError, OSError) as exc:
            self._facts_synced = False
            retry_log.warning("facts registry %s unavailable (%s): history notes wait for the next reload", topic, exc)
            return
        self._facts_synced = True
        for note in history_notes(self.journeys, started, self.now()):
            log.warning("%s", note, extra={"event": "history_incomplete"})

    def maybe_reload(self) -> None:
        """Reload journeys, policy and facts when a file changed; a broken file is refused and the old set keeps running."""
        fingerprint = self._scan()
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        try:
            definitions = load_definitions(self.s.journeys_dir, self.s.policy_file)
            journeys, policy = definitions.journeys, definitions.policy
        except (DefinitionError, OSError) as exc:  # each refusal is logged with its file:line, every file's problems together
            errors = exc.problems if isinstance(exc, DefinitionError) else [str(exc)]
            self.metrics.journey_reloads.labels("refused").inc()
            self.metrics.invalid_definition_files.set(len({err.split(":", 1)[0] for err in errors}))
            for err in errors:
                log.error("journey reload refused: %s", err, extra={"event": "journey_reload_refused", "error": err})
            log.error("keeping the running journeys (%d versions)", len(self.journeys))
            return
        self.journeys, self.policy = journeys, policy
        self.basket = RedisBasket(self.redis, policy)
        self.metrics.journey_reloads.labels("ok").inc()
        self.metrics.invalid_definition_files.set(0)
        self.metrics.journeys_loaded.set(len(journeys))
        log.info("journeys reloaded: %d versions live", len(journeys))


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.pipeline.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.pipeline.on_assigned(assigned)


__all__ = ["Pipeline", "is_suspect", "is_transient"]

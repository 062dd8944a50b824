"""The batch loop: one consumer-group loop, the only writer of its customers.

Follow one batch (:meth:`BatchLoop.handle`):

1. ``getmany`` returns up to ``ORCH_BATCH_MAX_RECORDS`` records of the inbound topics
   and of ``<prefix>.customer-events`` (one consumer, one group: ``ORCH_APP_ID``).
2. Inbound records are validated (``events.parse_inbound``, bounded in size, depth and
   number length): invalid → the dead-letter topic with the reason; valid and already on
   the customer's own partition (see "One hop" below) → processed in this batch; other
   valid ones → the canonical envelope for ``customer-events``, keyed by customer (the
   second hop: the batch that consumes it there processes it).
3. Customer-events records and the inbound events on their own partition are grouped by
   customer, in arrival order; each touched state is loaded once; ``basket_guard.py`` checks that Redis still holds
   their partitions' baskets (and rebuilds them from the decisions topic first if not); ``processor.process_batch``
   runs the engine for all of them
   and gates all their sends at the basket in pipelined rounds (one Redis round trip
   per round, not per send).
4. ``outputs.py`` turns the results into records (send requests, decisions, journey
   log, emit records on ``<prefix>.out.<topic>``, canonical envelopes, dead letters);
   they are handed to the producer without awaiting each, and the acknowledgements
   awaited together; then, the same way, one state record per touched customer on the
   changelog (states after outputs: see :meth:`BatchLoop.publish`).
5. Only then: the new states go into memory, the timer heap follows them, the batch's
   tally goes to the metrics and its offsets are committed.

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

One hop: an upstream producer that keys by customer id with Kafka's default partitioner
(murmur2, as every Java and aiokafka producer does) on an inbound topic with as many
partitions as ``customer-events`` already put the event on the customer's partition: the
worker that owns customer partition *p* owns inbound partition *p* too (range assignor,
same partition counts). Such a record is processed where it is, checked per record (its
key is its customer id, the key hashes to its partition, the partition is ours), and never
republished: half the Kafka traffic and one decode less (``ORCH_DIRECT_INBOUND``, on by
default; ``orchestrator explain`` reads the inbound partitions for these events' times).
Everything else (an unkeyed record, another partition count) takes the second hop. A
customer's events on one inbound partition keep their order either way, unless the same
customer's records arrive both keyed and unkeyed.

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
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord

from orchestrator.dedupe import EngineLimits
from orchestrator.events import AudienceCheck, CustomerEvent, InboundLimits, InvalidEvent, TimerFired, decode_internal, parse_inbound
from orchestrator.pressure.connect import setup_hint
from orchestrator.processor import YIELD_EVERY, CustomerWork, Failure, process_batch
from orchestrator.runtime.basket_guard import BasketGuard
from orchestrator.runtime.context import Transient, WorkerContext, dependency_of, is_suspect, is_transient, log, retry_log
from orchestrator.runtime.logs import pseudonym, redact
from orchestrator.runtime.outputs import (
    BatchOutput,
    DeadLetter,
    Source,
    StateWrite,
    consent_record,
    dead_letter_record,
    envelope_record,
    result_records,
    state_record,
)

RunLabel = Callable[[str, str], str]


class BatchLoop:
    """Consume, run, publish, remember, commit: batch after batch, and the partitions' handover on a rebalance."""

    def __init__(self, ctx: WorkerContext, run_label: RunLabel) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.run_label = run_label
        self.guard = BasketGuard(ctx)
        self.inbound = s.inbound_topics()
        self.limits = InboundLimits(s.max_event_bytes, s.max_json_depth, s.max_number_digits)
        self.engine_limits = EngineLimits(dedupe_window=timedelta(days=s.dedupe_window_days), dedupe_max_ids=s.dedupe_max_ids)
        self.consumer: AIOKafkaConsumer | None = None
        self._committing: asyncio.Future[None] | None = None
        self._hashed: dict[bytes, int] = {}
        """murmur2 of recent keys (the Java client's partitioner hash), cleared when it grows past 100,000."""
        self._direct: dict[str, int] = {}
        """Inbound topic → partition count, for those co-partitioned with customer-events (``ORCH_DIRECT_INBOUND``)."""
        self._lock = asyncio.Lock()
        self._revoking = False

    async def start(self) -> None:
        s = self.ctx.settings
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
            **self.ctx.kafka_kw,
        )
        await self.consumer.start()
        self.consumer.subscribe([*self.inbound, self.ctx.topics.customer_events], listener=_Rebalance(self))

    async def stop(self) -> None:
        if self._committing is not None:
            with contextlib.suppress(Exception):  # closing anyway: an uncommitted batch is replayed
                await asyncio.wait_for(self.committed(), timeout=self.ctx.settings.shutdown_timeout / 8)
        if self.consumer is not None:
            await self.consumer.stop()

    # ------------------------------------------------------------------ rebalance

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the running batch (a batch stuck in retries gives up: nothing of it is committed)."""
        self._revoking = True
        self.ctx.metrics.rebalances.labels("revoked").inc()
        try:
            async with self._lock:
                self.ctx.health.assigned = False
                await self.committed()  # the last batch's offsets go in before its partitions go
        finally:
            self._revoking = False

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restore the states of our customer partitions and rebuild the timer heap from them."""
        ctx = self.ctx
        ctx.metrics.rebalances.labels("assigned").inc()
        owned = {tp.partition for tp in assigned if tp.topic == ctx.topics.customer_events}
        async with self._lock:  # no batch runs before its partitions are restored
            ctx.store.drop(set(ctx.store.partitions) - owned)
            delay = 0.5
            while True:
                try:
                    await ctx.store.restore(owned, ctx.settings.kafka_bootstrap_servers, **ctx.kafka_kw)
                    break
                except KafkaError as exc:
                    ctx.metrics.retries.labels("kafka").inc()
                    retry_log.warning("restoring state failed (%s); retrying in %.1fs", exc, delay)
                    delay = await ctx.backoff(delay)
            ctx.heap.rebuild(ctx.store.due_timers(owned))
            self._direct = self._copartitioned_inbound() if ctx.settings.direct_inbound else {}
            gc.collect()
            gc.freeze()  # the restored states are long-lived: keep them out of every later collection
            ctx.health.partitions = tuple(sorted(owned))
            ctx.health.assigned = True
        log.info("assigned customer partitions %s: %d customers, %d pending timers", sorted(owned), ctx.store.customers(), len(ctx.heap))

    def _copartitioned_inbound(self) -> dict[str, int]:
        """The inbound topics with as many partitions as customer-events (their records may skip the second hop)."""
        assert self.consumer is not None
        n = len(self.consumer.partitions_for_topic(self.ctx.topics.customer_events) or ())
        return {t: n for t in self.inbound if n and len(self.consumer.partitions_for_topic(t) or ()) == n}

    def _on_own_partition(self, src: Source, event: CustomerEvent, owned: set[int]) -> bool:
        """Whether an inbound event already is where customer-events would put it, on a partition we own."""
        n = self._direct.get(src.topic)
        if not n or src.partition not in owned or src.key is None:
            return False
        if src.key != event.customer_id.encode():
            return False
        hashed = self._hashed.get(src.key)
        if hashed is None:
            if len(self._hashed) >= 100_000:
                self._hashed.clear()
            hashed = self._hashed[src.key] = murmur2(src.key) & 0x7FFFFFFF
        return hashed % n == src.partition

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        assert self.consumer is not None
        ctx = self.ctx
        while not ctx.stopping:
            try:
                batch = await self.consumer.getmany(timeout_ms=200, max_records=ctx.settings.batch_max_records)
            except KafkaError as exc:
                ctx.metrics.retries.labels("kafka").inc()
                ctx.health.failed("kafka")
                retry_log.warning("fetch failed: %s", exc)
                await asyncio.sleep(1)
                continue
            if not batch:
                continue
            ctx.health.answered("kafka")
            async with self._lock:
                # A rebalance may have run between the fetch and the lock: records of partitions
                # that are no longer ours belong to their new owner, who replays them.
                mine = self.consumer.assignment()
                records = [r for tp, rs in batch.items() if tp in mine for r in rs]
                if not records:
                    continue
                try:
                    await self.handle(records)
                except Exception as exc:  # noqa: BLE001 - anything that gets here is a bug: exit without committing
                    await self._die(exc)

    async def _die(self, exc: BaseException) -> None:
        """A bug in the shell: exit at once without committing, so the restarted worker replays the batch."""
        log.critical("worker bug: a batch failed with %r; exiting without committing it (exit 70)", exc, exc_info=exc)
        with contextlib.suppress(Exception):  # exiting anyway
            await self.ctx.publisher.flush(timeout=5)
        os._exit(70)

    async def handle(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """One batch: run, publish, then remember and commit; transient failures retry the whole batch."""
        ctx = self.ctx
        started = time.perf_counter()
        tries: dict[tuple[str, int, int], int] = {}
        delay = 0.2
        while True:
            if ctx.stopping or self._revoking:
                return  # abandoned: nothing committed, the next owner (or restart) replays it
            try:
                out = await self.attempt(records, tries)
                acks = await self.publish(out)
                break
            except Transient as exc:
                ctx.metrics.retries.labels(exc.dependency).inc()
                ctx.health.failed(exc.dependency)
                retry_log.warning(
                    "%s unavailable (%s: %s)%s; retrying the batch of %d records in %.1fs",
                    exc.dependency,
                    type(exc.cause).__name__,
                    exc.cause,
                    setup_hint(exc.cause, ctx.settings.redis_mode),
                    len(records),
                    delay,
                    extra={"event": "dependency_retry", "dependency": exc.dependency},
                )
                delay = await ctx.backoff(delay)
        ctx.health.answered("redis")  # a batch went through: whatever stalled it answers again
        ctx.health.answered("kafka")
        for write, meta in zip(out.states, acks, strict=True):
            ctx.store.put(write.partition, write.customer_id, write.raw, write.timers, meta.offset, out.parsed.get(write.customer_id))
            ctx.heap.set_customer(write.customer_id, write.partition, write.timers)
        out.tally.apply()
        for dl in out.dead:
            self._log_dead_letter(dl)
        # The commit runs while the next batch is fetched and processed (one round trip less per batch);
        # commits stay in order, and a rebalance or stop waits for the one in flight.
        await self.committed()
        self._committing = asyncio.ensure_future(self._commit(_offsets(records)))
        ctx.metrics.batch_seconds.observe(time.perf_counter() - started)
        ctx.metrics.batch_records.observe(len(records))

    async def attempt(self, records: list[ConsumerRecord[bytes, bytes]], tries: dict[tuple[str, int, int], int]) -> BatchOutput:
        """Run one attempt of a batch in memory: nothing is published or remembered here."""
        ctx, live = self.ctx, self.ctx.live
        out = BatchOutput()
        now = ctx.now()
        work, where, sources = self._group(records, out)
        gate_seconds: list[float] = []
        try:
            await self.guard.ensure(where.values())  # Redis still holds these partitions' baskets, or gets them back first
            outcomes = await process_batch(
                list(work.values()),
                live.journeys,
                now,
                live.basket,
                max_state_bytes=ctx.settings.max_state_bytes,
                limits=self.engine_limits,
                gate_seconds=gate_seconds,
            )
        except Exception as exc:
            if is_transient(exc):
                raise Transient(exc, dependency_of(exc)) from exc
            raise
        m = ctx.metrics
        for seconds in gate_seconds:
            out.tally.observe(m.gate_seconds, seconds)
        wall_ms = time.time() * 1000
        for n, ((cid, w), outcome) in enumerate(zip(work.items(), outcomes, strict=True)):
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # due timers need not wait for the whole batch's records
            for message, res in zip(w.messages, outcome.results, strict=True):
                src = sources[id(message)]
                if isinstance(res, Failure):
                    self._failed(out, src, res, tries)
                    continue
                result_records(out, res, now, ctx.topics, m, self.run_label, where[cid])
                out.tally.add(m.processed, message.kind)
                if res.sends and src.timestamp_ms:
                    for _ in res.sends:
                        out.tally.observe(m.event_to_send, max(0.0, (wall_ms - src.timestamp_ms) / 1000), message.kind)
            if outcome.suppressions is not None and ctx.topics.consent:
                out.records.append(consent_record(cid, outcome.suppressions, now, ctx.topics, where[cid]))
            if outcome.encoded is not None:
                timers = [(t.timer_id, t.due_at.timestamp()) for t in outcome.state.pending_timers()]
                out.states.append(StateWrite(where[cid], cid, outcome.encoded, timers))
                out.parsed[cid] = outcome.state
        return out

    def _group(
        self, records: list[ConsumerRecord[bytes, bytes]], out: BatchOutput
    ) -> tuple[dict[str, CustomerWork], dict[str, int], dict[int, Source]]:
        """Sort a batch's records: inbound ones are validated into ``out`` (envelope or dead letter); the
        customer-events ones are grouped by customer, in arrival order, each customer's state loaded once.

        Returns the work by customer, each customer's partition, and each message's source (by ``id(message)``).
        """
        work: dict[str, CustomerWork] = {}
        where: dict[str, int] = {}
        sources: dict[int, Source] = {}
        store = self.ctx.store
        owned = set(self.ctx.health.partitions)
        message: CustomerEvent | TimerFired | AudienceCheck
        for r in records:
            src = Source(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            family = self.inbound.get(r.topic)
            if family is not None:
                event = self._ingest(src, family, out)
                if event is None:
                    continue
                if not self._on_own_partition(src, event, owned):
                    out.records.append(envelope_record(event, self.ctx.topics, src.timestamp_ms))  # the second hop
                    continue
                out.tally.add(self.ctx.metrics.inbound_direct, family)
                message = event
            else:
                try:
                    message = decode_internal(r.value)
                except ValueError as exc:
                    self._dead(out, DeadLetter(src, "undecodable", f"not a customer-events message: {exc}", type(exc).__name__))
                    continue
            cid = message.customer_id
            if cid not in work:
                try:
                    state = store.load(r.partition, cid)
                except ValueError as exc:
                    self._dead(out, DeadLetter(src, "state_unreadable", f"the stored state does not load: {exc}", type(exc).__name__, cid))
                    continue
                work[cid] = CustomerWork(state=state, messages=[])
                where[cid] = r.partition
            work[cid].messages.append(message)
            sources[id(message)] = src
        return work, where, sources

    def _ingest(self, src: Source, family: str, out: BatchOutput) -> CustomerEvent | None:
        """An inbound record validated into its canonical event, or dead-lettered (None)."""
        events = self.ctx.metrics.events
        try:
            event = parse_inbound(family, src.value or b"", key=src.key, limits=self.limits)
        except InvalidEvent as exc:
            out.tally.add(events, family, "dead_lettered")
            self._dead(out, DeadLetter(src, exc.code, exc.reason, "InvalidEvent", exc.customer_id, family))
            return None
        out.tally.add(events, family, "accepted")
        return event

    def _failed(self, out: BatchOutput, src: Source, failure: Failure, tries: dict[tuple[str, int, int], int]) -> None:
        exc = failure.error
        if is_transient(exc):
            raise Transient(exc, dependency_of(exc))
        if is_suspect(exc):
            at = (src.topic, src.partition, src.offset)
            tries[at] = tries.get(at, 0) + 1
            if tries[at] < self.ctx.settings.retry_tries:
                raise Transient(exc, dependency_of(exc))
            reason = f"failed {tries[at]} times with the same error: {failure.reason}"
        else:
            reason = failure.reason
        self._dead(out, DeadLetter(src, "processing_failed", reason, type(exc).__name__, failure.message.customer_id))

    def _dead(self, out: BatchOutput, dl: DeadLetter) -> None:
        s = self.ctx.settings
        out.records.append(dead_letter_record(dl, self.ctx.topics.dead_letter, s.dlq_max_bytes, datetime.now(UTC)))
        out.tally.add(self.ctx.metrics.dead_letters, dl.code)
        out.dead.append(dl)

    def _log_dead_letter(self, dl: DeadLetter) -> None:
        """One warning per dead letter, the customer id and key replaced by pseudonyms (reasons may hold them)."""
        src, key = dl.source, self.ctx.pseudo_key
        raw_ids = (dl.customer_id, (src.key or b"").decode("utf-8", "replace"))
        log.warning(
            "dead-lettered %s[%d]@%d (%s): %s",
            src.topic,
            src.partition,
            src.offset,
            dl.code,
            redact(dl.reason, raw_ids, key)[:500],
            extra={
                "event": "dead_letter",
                "code": dl.code,
                "topic": src.topic,
                "partition": src.partition,
                "offset": src.offset,
                "customer": pseudonym(dl.customer_id, key) if dl.customer_id else None,
            },
        )

    async def publish(self, out: BatchOutput) -> list[Any]:
        """Hand the batch's records to the producer, then its states; returns the state records' metadata.

        Two phases, each handed over whole and then awaited together: first every output
        (sends, decisions, journey log, envelopes, dead letters), then the states. A state
        must never be durable before what it caused: after a crash between the two, the
        replay runs from the old state and publishes the same outputs again (same ids),
        where the other order would let the engine see the events as duplicates and
        publish nothing.
        """
        ctx = self.ctx
        if out.emit_topics:  # a reload may have brought a topic the reload loop has not created yet
            try:
                await ctx.publisher.out_topics.ensure(out.emit_topics)
            except KafkaError as exc:
                if is_transient(exc):
                    raise Transient(exc, "kafka") from exc
                raise
        await ctx.publisher.publish(out.records)
        return await ctx.publisher.publish([state_record(w, ctx.store.topic) for w in out.states])

    async def committed(self) -> None:
        """Wait for the commit in flight, if any (it retries transient failures and never raises)."""
        if self._committing is not None:
            committing, self._committing = self._committing, None
            await committing

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        ctx = self.ctx
        delay = 0.2
        while True:
            try:
                await self.consumer.commit(offsets)
                return
            except CommitFailedError as exc:
                log.warning("commit refused after a rebalance (%s); the new owner replays this batch (idempotent)", exc)
                return
            except KafkaError as exc:
                if ctx.stopping or not is_transient(exc):
                    log.warning("commit failed (%s); the batch will be replayed (idempotent)", exc)
                    return
                ctx.metrics.retries.labels("kafka").inc()
                ctx.health.failed("kafka")
                retry_log.warning("commit failed (%s); retrying in %.1fs", exc, delay)
                delay = await ctx.backoff(delay)


def _offsets(records: list[ConsumerRecord[bytes, bytes]]) -> dict[TopicPartition, int]:
    """The offsets to commit after ``records``: the next offset of each partition."""
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loop: BatchLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.loop.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.loop.on_assigned(assigned)

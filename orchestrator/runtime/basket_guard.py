"""Redis as a cache of the decisions topic: before a batch gates, Redis still holds its partitions' baskets.

Every approved spend, and every other answer the gate gave, is on ``<prefix>.decisions``,
and every customer's suppressions after a consent change on ``<prefix>.consent`` (both keyed
and partitioned like the customers). Redis keeps one mark per customer partition
on each master (``RedisBasket.mark_keys``); a master that lost its data (restarted
without persistence, its files deleted, replaced empty) lost the marks too. Before each
batch gates, :meth:`BasketGuard.ensure` asks for the batch's partitions' marks (one round
trip, one per master); when one is missing the batch waits while the guard reads the
partition's latest suppression sets back from ``<prefix>.consent`` (compacted) and its
decisions of the longest basket period from ``<prefix>.decisions``
(``pressure/restore.py``), writes them into Redis (``restore.lua``, idempotent per send
id), then marks the partition and lets the batch go on. So no customer is offered a full basket again, and a replayed send id is
charged once. Counted (``orchestrator_basket_rebuilds_total`` ...) and logged once per rebuild.

The whole batch loop waits during a rebuild, not only the affected customers: a master
that lost its data holds customers of every partition anyway.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from orchestrator.pressure.restore import horizon, restore_calls
from orchestrator.records import ConsentRecord, DecisionRecord
from orchestrator.runtime.context import WorkerContext, log

__all__ = ["BasketGuard"]


class BasketGuard:
    """Checks the marks of a batch's partitions and rebuilds the baskets of those Redis no longer holds."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    async def ensure(self, partitions: Iterable[int]) -> None:
        """Return once Redis holds the baskets of ``partitions``; a Redis or Kafka error raises (the batch retries)."""
        ctx = self.ctx
        basket = ctx.live.basket
        scope = ctx.settings.app_id
        missing = await basket.unmarked(scope, sorted(set(partitions)))
        if not missing:
            return
        # one rebuild for every owned partition Redis lost, not one per batch that happens to touch one
        missing = await basket.unmarked(scope, sorted(set(missing) | set(ctx.health.partitions)))
        started = time.monotonic()
        ctx.health.failed("redis")  # not ready while the gate is held (after the stall grace)
        now = ctx.now()
        read, written, suppressions = await self._rebuild(missing)
        await basket.mark(scope, missing, now)
        seconds = time.monotonic() - started
        m = ctx.metrics
        for p in missing:
            m.basket_rebuilds.labels(str(p)).inc()
        m.basket_rebuilt_sends.inc(written)
        m.basket_rebuilt_suppressions.inc(suppressions)
        m.basket_rebuild_seconds.observe(seconds)
        log.log(
            30 if written else 20,
            "Redis did not hold the baskets of customer partitions %s (a master lost its data, or a new deployment): "
            "%d of %d decisions read back from %s were missing and are written back, and %d customers' suppressions, "
            "in %.2fs",
            missing,
            written,
            read,
            ctx.topics.decisions,
            suppressions,
            seconds,
            extra={
                "event": "basket_rebuilt",
                "partitions": missing,
                "written": written,
                "read": read,
                "suppressions": suppressions,
                "seconds": round(seconds, 3),
            },
        )

    async def _rebuild(self, partitions: list[int]) -> tuple[int, int, int]:
        """Give back the suppressions (``<prefix>.consent``) and the decisions within the longest period of ``partitions``.

        Returns (decisions read, decisions written back, customers whose suppressions were put back).
        """
        ctx = self.ctx
        basket = ctx.live.basket
        latest: dict[str, list[str]] = {}
        async for records in self._read(ctx.topics.consent, partitions, None):
            for r in records:
                try:
                    consent = ConsentRecord.model_validate_json(r)
                except ValidationError:
                    continue
                latest[consent.customer_id] = consent.suppressions
        suppressions = await basket.restore_suppressions(latest)
        engine_seconds = horizon(basket.policy).total_seconds()
        since_ms = int((time.time() - engine_seconds / ctx.settings.clock_speed) * 1000)
        read = written = 0
        async for records in self._read(ctx.topics.decisions, partitions, since_ms):
            decisions = []
            for r in records:
                try:
                    decisions.append(DecisionRecord.model_validate_json(r))
                except ValidationError:
                    continue  # unreadable: not ours to judge here
            read += len(decisions)
            written += await basket.restore(restore_calls(basket.policy, decisions, ctx.now()), ctx.now())
        return read, written, suppressions

    async def _read(self, topic: str, partitions: list[int], since_ms: int | None) -> AsyncIterator[list[bytes]]:
        """The values of ``topic`` records of customers on ``partitions``, from ``since_ms`` (None: the beginning) to the
        end offsets at the start, in chunks. A topic not co-partitioned with customer-events is read whole and filtered by key.

        One consumer per topic, assigned once: an aiokafka consumer assigned a second set of partitions took a minute
        to stop.
        """
        ctx = self.ctx
        consumer = AIOKafkaConsumer(
            bootstrap_servers=ctx.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            **ctx.kafka_kw,
        )
        await consumer.start()
        try:
            copartitioned = topic in ctx.topics.copartitioned
            await consumer.topics()  # the metadata of every topic, ours included
            every = sorted(consumer.partitions_for_topic(topic) or ())
            tps = [TopicPartition(topic, p) for p in (partitions if copartitioned else every)]
            if not tps:
                return
            ends = await consumer.end_offsets(tps)
            if since_ms is None:
                starts = await consumer.beginning_offsets(tps)
            else:
                found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
                starts = {tp: (at.offset if at is not None else ends[tp]) for tp, at in found.items()}
            remaining = {tp for tp in tps if starts[tp] < ends[tp]}
            if not remaining:
                return
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, starts[tp])
            wanted, n = set(partitions), ctx.settings.partitions
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
                values = [
                    r.value
                    for tp, records in batch.items()
                    for r in records
                    if r.offset < ends[tp]
                    and r.value is not None
                    and (copartitioned or (r.key is not None and (murmur2(r.key) & 0x7FFFFFFF) % n in wanted))
                ]
                if values:
                    yield values
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()

"""Redis as a cache of the decisions topic: before a batch gates, Redis still holds its partitions' baskets.

Every approved spend, and every other answer the gate gave, is on ``<prefix>.decisions``
(keyed and partitioned like the customers). Redis keeps one mark per customer partition
on each master (``RedisBasket.mark_keys``); a master that lost its data (restarted
without persistence, its files deleted, replaced empty) lost the marks too. Before each
batch gates, :meth:`BasketGuard.ensure` asks for the batch's partitions' marks (one round
trip, one per master); when one is missing the batch waits while the guard reads the
partition's decisions of the longest basket period back (``pressure/restore.py``) and
writes them into Redis (``restore.lua``, idempotent per send id), then marks it and lets
the batch go on. So no customer is offered a full basket again, and a replayed send id is
charged once. Counted (``orchestrator_basket_rebuilds_total`` ...) and logged once per rebuild.

The whole batch loop waits during a rebuild, not only the affected customers: a master
that lost its data holds customers of every partition anyway.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from pydantic import ValidationError

from orchestrator.pressure.restore import horizon, restore_calls
from orchestrator.records import DecisionRecord
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
        started = time.monotonic()
        ctx.health.failed("redis")  # not ready while the gate is held (after the stall grace)
        now = ctx.now()
        read, written = await self._rebuild(missing)
        await basket.mark(scope, missing, now)
        seconds = time.monotonic() - started
        m = ctx.metrics
        for p in missing:
            m.basket_rebuilds.labels(str(p)).inc()
        m.basket_rebuilt_sends.inc(written)
        m.basket_rebuild_seconds.observe(seconds)
        log.log(
            30 if written else 20,
            "Redis did not hold the baskets of customer partitions %s (a master lost its data, or a new deployment): "
            "%d of %d decisions read back from %s were missing and are written back, in %.2fs",
            missing,
            written,
            read,
            ctx.topics.decisions,
            seconds,
            extra={"event": "basket_rebuilt", "partitions": missing, "written": written, "read": read, "seconds": round(seconds, 3)},
        )

    async def _rebuild(self, partitions: list[int]) -> tuple[int, int]:
        """Read the decisions of ``partitions`` within the longest period and write them back; (read, written)."""
        ctx = self.ctx
        basket = ctx.live.basket
        topic = ctx.topics.decisions
        wanted = set(partitions)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=ctx.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            **ctx.kafka_kw,
        )
        await consumer.start()
        try:
            await consumer.topics()  # the metadata of every topic, ours included
            copartitioned = topic in ctx.topics.copartitioned
            every = sorted(consumer.partitions_for_topic(topic) or ())
            tps = [TopicPartition(topic, p) for p in (partitions if copartitioned else every)]
            engine_seconds = horizon(basket.policy).total_seconds()
            since_ms = int((time.time() - engine_seconds / ctx.settings.clock_speed) * 1000)
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            ends = await consumer.end_offsets(tps)
            consumer.assign(tps)
            remaining = set()
            for tp in tps:
                at = starts.get(tp)
                consumer.seek(tp, at.offset if at is not None else ends[tp])
                if (at.offset if at is not None else ends[tp]) < ends[tp]:
                    remaining.add(tp)
            read = written = 0
            n = ctx.settings.partitions
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
                decisions: list[DecisionRecord] = []
                for tp, records in batch.items():
                    for r in records:
                        if r.offset >= ends[tp] or r.value is None:
                            continue
                        if not copartitioned and (r.key is None or (murmur2(r.key) & 0x7FFFFFFF) % n not in wanted):
                            continue
                        try:
                            decisions.append(DecisionRecord.model_validate_json(r.value))
                        except ValidationError:
                            continue  # not ours to judge here: the record was written by a worker and is unreadable
                read += len(decisions)
                written += await basket.restore(restore_calls(basket.policy, decisions, ctx.now()), ctx.now())
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return read, written
        finally:
            await consumer.stop()

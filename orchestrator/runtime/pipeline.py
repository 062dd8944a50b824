"""The worker's data plane put together: one context, five loops, every client closed on the way out.

Each loop is a room of its own and imports none of the others:

============================  ======================================================
``batches.py``  BatchLoop      consume, run the engine and the basket, publish, commit
``timer_loop.py`` TimerLoop    due timers → ``TimerFired`` on the customer's partition
``campaign_loop.py``           campaign runs: scan the owned customers, publish checks
``lag_loop.py`` LagLoop        the group's lag per partition, for metrics and pauses
``reload.py`` ReloadLoop       definition files re-read when they change
============================  ======================================================

What they share is the :class:`~orchestrator.runtime.context.WorkerContext` (settings,
clock, health, the live definitions, the state store, the timer heap and the one
publisher); what they publish is built by the pure functions of ``outputs.py``.
Start with ``batches.py`` to follow one event.

:class:`Pipeline` is a ``mode`` service: Faust (``app.py``) starts and stops it with the process.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

from mode import Service
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from orchestrator.journey.loader import JourneySet
from orchestrator.metrics import Metrics
from orchestrator.pressure.connect import redis_client
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.redis_basket import RedisBasket
from orchestrator.runtime.batches import BatchLoop
from orchestrator.runtime.campaign_loop import CampaignLoop
from orchestrator.runtime.context import Health, Live, Publisher, WorkerContext, log
from orchestrator.runtime.gc_watch import GcWatch
from orchestrator.runtime.lag_loop import LagLoop
from orchestrator.runtime.out_topics import OutTopics
from orchestrator.runtime.outputs import Topics
from orchestrator.runtime.preflight import aiokafka_kwargs
from orchestrator.runtime.reload import ReloadLoop
from orchestrator.runtime.store import StateStore
from orchestrator.runtime.timer_loop import TimerLoop
from orchestrator.runtime.timers import TimerHeap
from orchestrator.settings import Settings


def worker_topics(settings: Settings) -> Topics:
    """The worker's output topics under ``ORCH_TOPIC_PREFIX``."""
    t = settings.topic
    return Topics(
        customer_events=t("customer-events"),
        sends=t("sends"),
        decisions=t("decisions"),
        journey_log=t("journey-log"),
        dead_letter=t("dead-letter"),
        emit_topic=lambda name: t(f"out.{name}"),
        consent=t("consent"),
    )


class Pipeline(Service):
    """The worker's loops over one shared context (a ``mode`` service Faust starts and stops)."""

    def __init__(self, settings: Settings, journeys: JourneySet, policy: PressurePolicy, metrics: Metrics, **kw: Any) -> None:
        super().__init__(**kw)
        kafka_kw = aiokafka_kwargs(settings)
        redis = redis_client(settings.redis_url, settings.redis_mode, ca_file=settings.redis_ca_file)
        self.ctx = WorkerContext(
            settings=settings,
            metrics=metrics,
            live=Live(journeys, policy, RedisBasket(redis, policy)),
            store=StateStore(f"{settings.app_id}-customer-state-changelog", settings.state_cache_customers),
            heap=TimerHeap(),
            publisher=Publisher(settings, OutTopics(settings, **kafka_kw), **kafka_kw),
            redis=redis,
            topics=worker_topics(settings),
            pseudo_key=settings.log_pseudonym_key(),
            kafka_kw=kafka_kw,
        )
        self.campaigns = CampaignLoop(self.ctx)
        self.batches = BatchLoop(self.ctx, self.campaigns.run_label)
        self.timers = TimerLoop(self.ctx)
        self.lag = LagLoop(self.ctx)
        self.reload = ReloadLoop(self.ctx)
        self.gc_watch = GcWatch(metrics.gc_pause)
        self._loops: list[asyncio.Task[None]] = []  # not `_tasks`: mode.Service uses that name

    # what app.py reads for /ready and /metrics
    @property
    def health(self) -> Health:
        return self.ctx.health

    @property
    def journeys(self) -> JourneySet:
        return self.ctx.live.journeys

    def kafka_ok(self) -> bool:
        return self.ctx.kafka_ok()

    async def redis_ok(self) -> bool:
        return await self.ctx.redis_ok()

    def overdue(self) -> tuple[int, float]:
        return self.ctx.overdue()

    async def on_start(self) -> None:
        # Fewer young-generation collections: a batch holds many short-lived objects at once; the default
        # threshold (700) ran a collection every few messages, and 50,000 (until 2026-12-02) still ran
        # one every ~0.4 s, each traversing ~50,000 of the batch's live objects (~48 ms): 15 % of the CPU.
        gc.set_threshold(self.ctx.settings.gc_young_objects, 20, 100)
        self.gc_watch.install()
        await self.ctx.publisher.start()
        await self._init_redis()
        self.ctx.topics.copartitioned = await self._copartitioned_outputs()
        await self.reload.record_facts()
        await self.reload.prepare_out_topics()
        await self.batches.start()
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self.batches.run(), name="batches"),
            loop.create_task(self.timers.run(), name="timers"),
            loop.create_task(self.campaigns.run(), name="campaigns"),
            loop.create_task(self.lag.run(), name="lag"),
            loop.create_task(self.reload.run(), name="reload"),
        ]

    async def _init_redis(self) -> None:
        """A cluster client learns the topology now, before the batch loop's first burst of calls (redis-py #3935).

        A Redis down at start is no reason to stop: the batch loop retries until it answers.
        """
        redis = self.ctx.redis
        if isinstance(redis, RedisCluster):
            try:
                await redis.initialize()
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("Redis Cluster not reachable at start (%s); batches wait for it", type(exc).__name__)

    async def _copartitioned_outputs(self) -> frozenset[str]:
        """The output topics with as many partitions as customer-events (preflight creates them so, an operator may not)."""
        t = self.ctx.topics
        producer = self.ctx.publisher.producer
        assert producer is not None
        n = len(await producer.partitions_for(t.customer_events))
        return frozenset([x for x in (t.sends, t.decisions, t.journey_log, t.consent) if len(await producer.partitions_for(x)) == n])

    async def on_stop(self) -> None:
        """Finish (or abandon) the running batch, then close every client, each within a bound."""
        ctx = self.ctx
        ctx.stopping = True
        self.gc_watch.uninstall()
        budget = ctx.settings.shutdown_timeout
        for task in self._loops[1:]:
            task.cancel()
        if self._loops:  # the batch loop: let it finish its batch
            batches = self._loops[0]
            try:
                await asyncio.wait_for(asyncio.shield(batches), timeout=budget / 2)
            except Exception:  # noqa: BLE001 - shutting down whatever happened (a timeout included)
                batches.cancel()
        closers: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("consumer", self.batches.stop),
            ("producer", ctx.publisher.stop),
            ("lag probe", self.lag.stop),
            ("redis", ctx.redis.aclose),
        ]
        for name, close in closers:
            try:
                await asyncio.wait_for(close(), timeout=budget / 8)
            except Exception as exc:  # noqa: BLE001 - closing must go on with the next client
                log.warning("shutdown: the %s did not close cleanly (%s); leaving it", name, type(exc).__name__)


__all__ = ["Pipeline", "worker_topics"]

"""The campaign loop: each round follows the open runs, scans one slice of the owned customers, publishes.

What a run is and how the scan proceeds is in ``campaigns.py`` (:class:`CampaignScheduler`,
no Kafka there); this loop gives it the clock, the owned partitions and the live journeys,
pauses while the customer partitions lag more than ``ORCH_CAMPAIGN_MAX_LAG``, and publishes
the :class:`~orchestrator.events.AudienceCheck` of each qualifying customer onto their own
partition (the batch loop then runs it through the engine, which decides).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from orchestrator.events import encode_internal
from orchestrator.runtime.campaigns import CampaignScheduler, Work
from orchestrator.runtime.context import WorkerContext, log, retry_log
from orchestrator.runtime.outputs import OutRecord


class CampaignLoop:
    """Campaign runs on this worker's partitions, round after round."""

    def __init__(self, ctx: WorkerContext) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.scheduler = CampaignScheduler(
            ctx.store,
            ctx.metrics,
            dedupe_window=timedelta(days=s.dedupe_window_days),
            slice_size=s.campaign_slice,
            progress_every=s.campaign_progress_every,
            pseudo_key=ctx.pseudo_key,
        )

    def run_label(self, journey_id: str, run_id: str) -> str:
        """A campaign run's metric label (see :meth:`CampaignScheduler.run_label`)."""
        return self.scheduler.run_label(journey_id, run_id)

    async def run(self) -> None:
        tick = self.ctx.settings.campaign_tick
        backoff = tick
        while not self.ctx.stopping:
            try:
                wait = await self.round()
                backoff = tick
            except Exception as exc:  # noqa: BLE001 - a bug in the campaign scan must not stop the batches: log it, back off, go on
                log.exception("campaign loop failed (%s); its passes start again in %.0fs", type(exc).__name__, backoff)
                self.scheduler.restart()  # nothing half-counted survives: the passes start again from the states
                wait, backoff = backoff, min(backoff * 2, 60.0)
            await asyncio.sleep(wait)

    async def round(self) -> float:
        """One round: follow the open runs, scan one slice, publish; returns how long to wait before the next."""
        ctx = self.ctx
        tick = ctx.settings.campaign_tick
        if not ctx.health.assigned:
            return tick
        owned = set(ctx.health.partitions)
        now = ctx.now()
        self.scheduler.refresh(ctx.live.journeys, now, owned, ctx.settings.partitions)
        if not self.scheduler.campaigns or self._lagging(owned):
            return tick
        work = self.scheduler.work(now)
        if work.checks or work.records:
            await self._publish(work, owned)
        return 0.0 if work.busy else min(work.wait, tick)

    def _lagging(self, owned: set[int]) -> bool:
        limit = self.ctx.settings.campaign_max_lag
        if limit <= 0:
            return False
        topic = self.ctx.topics.customer_events
        return sum(row.lag for row in self.ctx.health.lag if row.topic == topic and row.partition in owned) > limit

    async def _publish(self, work: Work, owned: set[int]) -> None:
        """Publish the checks and progress records; the customers of failed checks are looked at again."""
        ctx = self.ctx
        checks = [item for item in work.checks if item.partition in owned]  # a partition that moved: its new owner passes it
        records = [
            OutRecord(ctx.topics.customer_events, item.check.customer_id.encode(), encode_internal(item.check), item.partition)
            for item in checks
        ]
        records += [OutRecord(ctx.topics.journey_log, r.key.encode(), r.value) for r in work.records]
        answers = iter(await ctx.publisher.send_all(records))
        acked = {id(item): not isinstance(next(answers), BaseException) for item in checks}
        records_ok = [not isinstance(a, BaseException) for a in answers]
        if not all(acked.values()) or not all(records_ok):
            retry_log.warning("publishing campaign checks failed; those customers are looked at again")
        self.scheduler.published(work.checks, [acked.get(id(item), False) for item in work.checks])
        self.scheduler.unreported([r for r, ok in zip(work.records, records_ok, strict=True) if not ok])

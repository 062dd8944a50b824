"""The timer loop: due timers become ``TimerFired`` messages on the customer's own partition.

The heap (``timers.py``) holds every pending timer of the owned customers, rebuilt from
their states at assignment and kept in step by the batch loop after each state write.
Every ``ORCH_TIMER_TICK`` this loop takes the due ones and publishes them; the batch loop
then runs them through the engine like any other message. A timer whose record Kafka did
not acknowledge fires again; one fired twice is harmless (the engine ignores a timer its
state no longer holds).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from orchestrator.events import TimerFired, encode_internal
from orchestrator.runtime.context import WorkerContext, retry_log
from orchestrator.runtime.outputs import OutRecord


class TimerLoop:
    """Publish the due timers of the owned partitions, tick after tick."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        ctx = self.ctx
        while not ctx.stopping:
            await asyncio.sleep(ctx.settings.timer_tick)
            if ctx.health.assigned:
                await self.fire_due()

    async def fire_due(self) -> None:
        """One tick: publish every due timer; the ones Kafka did not take go back into the heap."""
        ctx = self.ctx
        due = ctx.heap.pop_due(ctx.now().timestamp(), set(ctx.health.partitions))
        if not due:
            return
        topic = ctx.topics.customer_events
        records = [
            OutRecord(
                topic,
                t.customer_id.encode(),
                encode_internal(TimerFired(customer_id=t.customer_id, timer_id=t.timer_id, due_at=datetime.fromtimestamp(t.due, UTC))),
                t.partition,
            )
            for t in due
        ]
        answers = await ctx.publisher.send_all(records)
        failed = [t for t, a in zip(due, answers, strict=True) if isinstance(a, BaseException)]
        if failed:
            retry_log.warning("publishing %d of %d due timers failed (%s); they fire again", len(failed), len(due), answers[-1])
            ctx.heap.refire(failed)
        now, speed = ctx.now().timestamp(), ctx.settings.clock_speed
        for t, a in zip(due, answers, strict=True):
            if not isinstance(a, BaseException):
                ctx.metrics.timer_lateness.observe(max(0.0, now - t.due) / speed)
        ctx.metrics.timers_fired.inc(len(due) - len(failed))

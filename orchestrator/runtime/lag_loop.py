"""The lag loop: the group's lag per partition, read from the broker every ``ORCH_LAG_INTERVAL`` seconds.

Its rows feed the ``orchestrator_consumer_lag`` gauge (with the time of the read beside it), the
time lag of ``orchestrator_consumer_lag_seconds`` (``time_lag.py``, from the end-offset history) and
the campaign loop's pause; a read tells ``/ready`` whether the broker answers, and a failed one
counts as a Kafka retry (so the counter moves during an outage even while no batch runs).
"""

from __future__ import annotations

import asyncio
import time

from orchestrator.runtime.context import WorkerContext, retry_log
from orchestrator.runtime.lag import LagProbe, LagUnavailable, lag_topics
from orchestrator.runtime.time_lag import TimeLag


class LagLoop:
    """Read the lag, keep it in ``health.lag``."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.probe = LagProbe(s.kafka_bootstrap_servers, s.app_id, lag_topics(s), **ctx.kafka_kw)
        self.time_lag = TimeLag()

    async def run(self) -> None:
        ctx = self.ctx
        while not ctx.stopping:
            try:
                rows = await self.probe.read()
                now = time.time()
                for row in rows:
                    self.time_lag.observe(row.topic, row.partition, row.end, now)
                ctx.health.lag_seconds = {
                    (r.topic, r.partition): self.time_lag.seconds(r.topic, r.partition, r.committed, r.end, now) for r in rows
                }
                ctx.health.lag, ctx.health.lag_read_at = rows, now
                ctx.health.answered("kafka")
            except LagUnavailable as exc:
                ctx.metrics.retries.labels("kafka").inc()
                ctx.health.failed("kafka")
                retry_log.warning("consumer lag unavailable: %s", exc)
            await asyncio.sleep(ctx.settings.lag_interval)

    async def stop(self) -> None:
        await self.probe.close()

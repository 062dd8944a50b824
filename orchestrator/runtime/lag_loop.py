"""The lag loop: the group's lag per partition, read from the broker every ``ORCH_LAG_INTERVAL`` seconds.

Its rows feed the ``orchestrator_consumer_lag`` gauge (with the time of the read beside it) and
the campaign loop's pause; a read tells ``/ready`` whether the broker answers, and a failed one
counts as a Kafka retry (so the counter moves during an outage even while no batch runs).
"""

from __future__ import annotations

import asyncio
import time

from orchestrator.runtime.context import WorkerContext, retry_log
from orchestrator.runtime.lag import LagProbe, LagUnavailable, lag_topics


class LagLoop:
    """Read the lag, keep it in ``health.lag``."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.probe = LagProbe(s.kafka_bootstrap_servers, s.app_id, lag_topics(s), **ctx.kafka_kw)

    async def run(self) -> None:
        ctx = self.ctx
        while not ctx.stopping:
            try:
                ctx.health.lag = await self.probe.read()
                ctx.health.lag_read_at = time.time()
                ctx.health.answered("kafka")
            except LagUnavailable as exc:
                ctx.metrics.retries.labels("kafka").inc()
                ctx.health.failed("kafka")
                retry_log.warning("consumer lag unavailable: %s", exc)
            await asyncio.sleep(ctx.settings.lag_interval)

    async def stop(self) -> None:
        await self.probe.close()

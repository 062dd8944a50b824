"""The reload loop: journeys, pressure.yaml, profile.yaml and scores.yaml re-read when a file changes.

Every ``ORCH_RELOAD_INTERVAL`` seconds the directory's files are fingerprinted (path, mtime,
size); on a change all definitions are loaded together (``definitions.load_definitions``) and
replace :class:`~orchestrator.runtime.context.Live` whole, or are refused with every problem
logged at its ``file:line`` while the old set keeps running (and the
``orchestrator_invalid_definition_files`` gauge says how many files are broken). After a load
the emit steps' outbound topics are created and the profile-facts registry brought in line.
"""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError

from orchestrator.definitions import load_definitions
from orchestrator.errors import DefinitionError
from orchestrator.journey.facts import FACTS_FILE
from orchestrator.journey.loader import history_notes, journey_files
from orchestrator.journey.scores import SCORES_FILE
from orchestrator.pressure.redis_basket import RedisBasket
from orchestrator.runtime.context import Live, WorkerContext, log, retry_log
from orchestrator.runtime.facts_registry import sync_registry
from orchestrator.runtime.out_topics import journey_out_topics

Fingerprint = tuple[tuple[str, int, int], ...]


class ReloadLoop:
    """Watch the definition files; swap in what loads, refuse what does not."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._fingerprint = self._scan()
        self._facts_synced = False

    async def run(self) -> None:
        ctx = self.ctx
        while not ctx.stopping:
            await asyncio.sleep(ctx.settings.reload_interval)
            before = ctx.live
            self.maybe_reload()
            if ctx.live is not before or not self._facts_synced:
                await self.record_facts()
            if ctx.live is not before:
                await self.prepare_out_topics()

    def _scan(self) -> Fingerprint:
        s = self.ctx.settings
        files = journey_files([s.journeys_dir])  # *.yaml and *.yml, as load_journeys reads them
        beside = (s.resolved_policy_file(), s.journeys_dir / FACTS_FILE, s.journeys_dir / SCORES_FILE)
        files += [p for p in beside if p not in files]
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())

    def maybe_reload(self) -> None:
        """Reload journeys, policy and facts when a file changed; a broken file is refused and the old set keeps running."""
        ctx, m = self.ctx, self.ctx.metrics
        fingerprint = self._scan()
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        try:
            definitions = load_definitions(ctx.settings.journeys_dir, ctx.settings.policy_file)
        except (DefinitionError, OSError) as exc:  # each refusal is logged with its file:line, every file's problems together
            errors = exc.problems if isinstance(exc, DefinitionError) else [str(exc)]
            m.journey_reloads.labels("refused").inc()
            m.invalid_definition_files.set(len({err.split(":", 1)[0] for err in errors}))
            for err in errors:
                log.error("journey reload refused: %s", err, extra={"event": "journey_reload_refused", "error": err})
            log.error("keeping the running journeys (%d versions)", len(ctx.live.journeys))
            return
        journeys, policy = definitions.journeys, definitions.policy
        ctx.live = Live(journeys, policy, RedisBasket(ctx.redis, policy))
        m.journey_reloads.labels("ok").inc()
        m.invalid_definition_files.set(0)
        m.journeys_loaded.set(len(journeys))
        log.info("journeys reloaded: %d versions live", len(journeys))

    async def prepare_out_topics(self) -> None:
        """Create the outbound topics of the loaded journeys' emit steps; a failure waits for the first batch that needs one."""
        ctx = self.ctx
        try:
            created = await ctx.publisher.out_topics.ensure(journey_out_topics(ctx.live.journeys, ctx.settings))
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
        ctx, s = self.ctx, self.ctx.settings
        assert ctx.publisher.producer is not None
        topic = s.topic("profile-facts")
        try:
            started = await sync_registry(
                ctx.publisher.producer, s.kafka_bootstrap_servers, topic, s.partitions, ctx.live.journeys.facts, ctx.now(), **ctx.kafka_kw
            )
        except (KafkaError, OSError) as exc:
            self._facts_synced = False
            retry_log.warning("facts registry %s unavailable (%s): history notes wait for the next reload", topic, exc)
            return
        self._facts_synced = True
        for note in history_notes(ctx.live.journeys, started, ctx.now()):
            log.warning("%s", note, extra={"event": "history_incomplete"})

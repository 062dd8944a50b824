"""What feeds the console's state: the topics, the lag, the journey files; and the customer lookup.

* :func:`read_topics`: ``<prefix>.journey-log``, ``.decisions`` and ``.dead-letter``, every
  partition from its beginning, then live; one consumer that joins no group and commits nothing
  (like ``orchestrator report``), so the console never disturbs the workers and sees every
  worker's records. The end offsets at the start say when the console has caught up. A topic
  that does not exist yet (no worker has run) is waited for.
* :func:`read_lag`: :class:`~orchestrator.runtime.lag.LagProbe` every ``ORCH_LAG_INTERVAL``
  seconds, with the seconds from :class:`~orchestrator.runtime.time_lag.TimeLag`.
* :func:`watch_journeys`: the journey files (``ORCH_JOURNEYS_DIR``), for the maps and the split
  variants' order and weights, read again every ``ORCH_RELOAD_INTERVAL`` seconds (a file that
  does not validate keeps the previous set, and the home page says so).
* :func:`customer_lookup`: ``explain.read_customer`` + ``build_story`` + ``format_story``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from orchestrator.console.app import Lookup, LookupFailed
from orchestrator.console.state import ConsoleState, LagRow, ReadProgress
from orchestrator.designer.explain import DecisionView, build_story, dead_letter_view, format_story, read_customer
from orchestrator.designer.report_kafka import KafkaReadError, _partition_counts  # the topic check read_to_end does
from orchestrator.records import JourneyLogRecord
from orchestrator.runtime.lag import LagProbe, LagUnavailable, lag_topics
from orchestrator.runtime.time_lag import TimeLag

if TYPE_CHECKING:
    from orchestrator.settings import Settings

log = logging.getLogger("orchestrator.console")

RETRY_SECONDS = 5.0


def _apply(state: ConsoleState, kind: str, r: Any) -> bool:
    """One Kafka record into the state; False when it is not what its topic holds."""
    try:
        if kind == "log":
            if r.value is None:
                return False
            state.apply_log(JourneyLogRecord.model_validate_json(r.value))
        elif kind == "decisions":
            if r.value is None:
                return False
            state.apply_decision(DecisionView.model_validate_json(r.value))
        else:
            view = dead_letter_view(r.key, r.value, r.headers, r.timestamp)
            if view is None:
                return False
            state.apply_dead_letter(view)
    except ValidationError:
        return False
    return True


async def read_topics(settings: Settings, state: ConsoleState, client_kw: dict[str, Any], stop: asyncio.Event) -> None:
    """Read the three topics into ``state`` until ``stop`` is set (reconnecting after a failure)."""
    topics = {settings.topic("journey-log"): "log", settings.topic("decisions"): "decisions", settings.topic("dead-letter"): "dead"}
    while not stop.is_set():
        try:
            await _read(settings.kafka_bootstrap_servers, topics, state, client_kw, stop)
        except (KafkaReadError, OSError) as exc:
            state.read_problem = str(exc)
        except Exception as exc:  # noqa: BLE001 - aiokafka's errors: say it on the page and try again
            state.read_problem = f"{type(exc).__name__}: {exc}"
            log.warning("console: reading the topics failed: %s", exc)
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_SECONDS)


async def _read(bootstrap: str, topics: dict[str, str], state: ConsoleState, client_kw: dict[str, Any], stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    counts = await _partition_counts(bootstrap, list(topics), client_kw)  # KafkaReadError while a topic is missing
    parts = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **client_kw
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            progress = state.reading.setdefault(tp.topic, ReadProgress())
            progress.target.setdefault(tp.partition, ends[tp])
            start = progress.position.get(tp.partition)
            if start is None:  # the first connection: from the beginning (a reconnect goes on where it stopped)
                start = (await consumer.beginning_offsets([tp]))[tp]
                progress.position[tp.partition] = start
            consumer.seek(tp, start)
        state.read_problem = None
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                progress = state.reading[tp.topic]
                kind = topics[tp.topic]
                for r in records:
                    if _apply(state, kind, r):
                        progress.records += 1
                    else:
                        progress.skipped += 1
                    progress.position[tp.partition] = r.offset + 1
            for tp in parts:  # while catching up: the consumer's own position (past control records, compacted gaps)
                progress = state.reading[tp.topic]
                if progress.position.get(tp.partition, 0) < progress.target.get(tp.partition, 0):
                    progress.position[tp.partition] = max(progress.position.get(tp.partition, 0), await consumer.position(tp))
            await asyncio.sleep(0)  # let the web server answer between batches while catching up
    finally:
        await consumer.stop()


async def read_lag(settings: Settings, state: ConsoleState, client_kw: dict[str, Any], stop: asyncio.Event) -> None:
    """The group's lag every ``lag_interval`` seconds, in records and seconds per partition."""
    probe = LagProbe(settings.kafka_bootstrap_servers, settings.app_id, lag_topics(settings), **client_kw)
    history = TimeLag()
    try:
        while not stop.is_set():
            try:
                rows = await probe.read()
                now = time.time()
                for row in rows:
                    history.observe(row.topic, row.partition, row.end, now)
                state.set_lag(
                    [
                        LagRow(
                            r.topic, r.partition, r.committed, r.end, r.lag, history.seconds(r.topic, r.partition, r.committed, r.end, now)
                        )
                        for r in rows
                    ],
                    datetime.fromtimestamp(now, UTC),
                    probe.group_state,
                )
            except LagUnavailable as exc:
                state.lag_problem = str(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.lag_interval)
    finally:
        await probe.close()


def load_journeys(settings: Settings, state: ConsoleState) -> None:
    """Load the journey files into ``state.journeys``; on a problem keep the previous set and say why."""
    from orchestrator.definitions import load_definitions
    from orchestrator.errors import DefinitionError

    try:
        state.journeys = load_definitions(settings.journeys_dir, settings.policy_file).journeys
        state.journeys_problem = None
    except DefinitionError as exc:
        state.journeys_problem = f"{settings.journeys_dir} does not load ({len(exc.problems)} problems: {exc.problems[0]})"
    except OSError as exc:
        state.journeys_problem = f"{settings.journeys_dir}: {exc}"


async def watch_journeys(settings: Settings, state: ConsoleState, stop: asyncio.Event, interval: float | None = None) -> None:
    every = interval if interval is not None else max(settings.reload_interval, 5.0)
    while not stop.is_set():
        await asyncio.to_thread(load_journeys, settings, state)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def customer_lookup(settings: Settings, client_kw: dict[str, Any], timeout: float = 30.0) -> Lookup:
    """The customer page's story: what ``orchestrator explain CUSTOMER`` prints (dead letters included)."""

    async def lookup(customer: str) -> str:
        try:
            got = await read_customer(
                settings.kafka_bootstrap_servers,
                settings.topic("journey-log"),
                settings.topic("decisions"),
                customer,
                timeout,
                events_topic=settings.topic("customer-events"),
                dead_letter_topic=settings.topic("dead-letter"),
                inbound_topics=list(settings.inbound_topics()),
                **client_kw,
            )
        except KafkaReadError as exc:
            raise LookupFailed(str(exc)) from None
        story = build_story(
            customer,
            got.log,
            got.decisions,
            dead_letters=got.dead_letters,
            events=got.events,
            partitions=got.partitions,
            dead_letters_scanned=got.dead_letters_scanned,
        )
        return format_story(story)

    return lookup


__all__ = ["customer_lookup", "load_journeys", "read_lag", "read_topics", "watch_journeys"]

"""The facts registry: since when each declared profile field has been recorded.

Every profile records the fields of ``journeys/profile.yaml`` from the moment a worker first
runs with them (``journey/facts.py``). What each customer's profile knows is exact and in
its own state (``TypeSeen.complete_after``); this registry adds the one system-wide fact a
designer asks for: *from when* a field's history exists, so that the worker can say, at start
and on every reload, which journeys look back further than that.

Topic ``<prefix>.profile-facts`` (compacted): key ``<event type> <field>`` (``web.feature_used
data.feature``), value ``{"event_type", "field", "since"}`` (engine time). A worker reads it to
its end, publishes a record for each declared field without one (``since`` = now), and a
tombstone for each recorded field the file no longer declares (its values are dropped from the
profiles from then on, so a field declared again starts a new history). Two workers racing on
a new field both publish; the later ``since`` wins the compaction, which only ever claims less
history than there is. The registry is advisory: the engine never reads it, and a worker that
cannot reach it goes on and tries again at the next reload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orchestrator.journey.facts import Facts
from orchestrator.timeutil import iso_utc

log = logging.getLogger("orchestrator.facts")

Started = dict[tuple[str, str], datetime]
"""(event type, ``data.X``) -> since when it has been recorded."""


def registry_key(event_type: str, field: str) -> bytes:
    return f"{event_type} {field}".encode()


async def read_registry(bootstrap: str, topic: str, partitions: int, **client_kw: Any) -> Started:
    """Every field recorded so far, read from the beginning of the registry topic (``partitions`` of them) to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **client_kw)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        todo = [tp for tp in tps if ends[tp] > 0]
        started: Started = {}
        if not todo:
            return started
        consumer.assign(todo)
        await consumer.seek_to_beginning(*todo)
        remaining = set(todo)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    _apply(started, r.key, r.value)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return started
    finally:
        await consumer.stop()


def _apply(started: Started, key: bytes | None, value: bytes | None) -> None:
    if key is None:
        return
    event_type, _, field = key.decode().partition(" ")
    if value is None:
        started.pop((event_type, field), None)
        return
    try:
        started[(event_type, field)] = datetime.fromisoformat(json.loads(value)["since"].replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        log.warning("facts registry: an unreadable record for %s %s is ignored", event_type, field)


def changes(facts: Facts, started: Mapping[tuple[str, str], datetime], now: datetime) -> tuple[Started, list[tuple[str, str]]]:
    """(the fields to record as started now, the fields to forget): what the file declares against the registry."""
    declared = {(etype, f"data.{f.path}") for etype, fields in facts.tracked.items() for f in fields}
    new = dict.fromkeys(sorted(declared - set(started)), now)
    gone = sorted(set(started) - declared)
    return new, gone


async def sync_registry(
    producer: AIOKafkaProducer, bootstrap: str, topic: str, partitions: int, facts: Facts, now: datetime, **client_kw: Any
) -> Started:
    """Bring the registry in line with ``facts``; returns since when each declared field is recorded."""
    started = await read_registry(bootstrap, topic, partitions, **client_kw)
    new, gone = changes(facts, started, now)
    for event_type, field in gone:
        await producer.send_and_wait(topic, key=registry_key(event_type, field), value=None)
        log.info("profile facts: %s %s is no longer recorded (its history ends)", event_type, field, extra={"event": "facts_dropped"})
        del started[(event_type, field)]
    for (event_type, field), since in new.items():
        value = json.dumps({"event_type": event_type, "field": field, "since": iso_utc(since)}).encode()
        await producer.send_and_wait(topic, key=registry_key(event_type, field), value=value)
        log.info("profile facts: recording %s %s from %s on", event_type, field, iso_utc(since), extra={"event": "facts_started"})
        started[(event_type, field)] = since
    return started


__all__ = ["Started", "changes", "read_registry", "registry_key", "sync_registry"]

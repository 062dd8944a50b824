"""Customer state of the partitions this worker owns: in memory, durable in a compacted changelog.

Why not a Faust table: Faust writes one changelog message per table assignment through
its per-message path (measured ~1,200 writes/s), and its offset commits are tied to its
own stream acks. Here the worker writes each touched customer's state once per batch
with the batch's other outputs, and commits input offsets only after all of them are
acknowledged (see ``runtime/batches.py``).

Layout: topic ``<app_id>-customer-state-changelog`` (compacted, co-partitioned with
``<prefix>.customer-events``: the state of a customer on customer-events partition *p*
is written to changelog partition *p*). Key: customer id. Value: the state JSON.
Header ``timers``: the customer's pending timers (:func:`~orchestrator.runtime.timers.encode_timers`),
so restoring rebuilds the timer heap without parsing states.

Restore: on assignment, a partition is read from the beginning of its changelog to its
end offset into memory. A partition that was ours before the rebalance and whose
changelog end is still the offset of our own last write is kept as it is (nobody else
wrote it meanwhile); a partition read again gets a new :class:`PartitionState` (so the
campaign scan, ``runtime/campaigns.py``, knows to pass it again).

What the campaign scan is told: while a campaign run has a pass over a partition, the scan
sets that partition's :attr:`PartitionState.arrivals` (and, for a local-time run,
:attr:`PartitionState.zones`); :meth:`StateStore.put` then notes each customer new to the
partition in ``arrivals`` and each customer the scan parked whose time zone changed in
``rezoned``, for the scan to pick up in its next round. Without an open pass both are off
and a put costs what it did (with one: one dict lookup more, for a customer already known).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orchestrator.runtime.timers import DueTimer, decode_timers
from orchestrator.state import CustomerState

log = logging.getLogger("orchestrator.store")


@dataclass
class PartitionState:
    """One changelog partition in memory."""

    states: dict[str, bytes] = field(default_factory=dict)
    timers: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    end_offset: int = 0
    """The changelog offset after our last write (or the restored end); -1 while a restore of it is under way."""
    arrivals: list[str] | None = None
    """Set by the campaign scan while a run has a pass here: customers first put since (new keys), oldest first."""
    zones: dict[str, str] | None = None
    """Set by the campaign scan while a local-time run has a pass here: each parked customer's time zone when parked."""
    rezoned: list[str] = field(default_factory=list)
    """Customers in :attr:`zones` put since with another time zone (or a state not given): parked at a stale due time."""


class StateStore:
    """States by customer for the owned partitions; the changelog is the durable copy.

    States are kept as their JSON bytes (compact: about what the changelog holds). The
    most recently written ones are also kept parsed, up to ``cache_size`` customers, so a
    customer active in consecutive batches is not parsed again each time (parsing was
    the largest single cost in the worker's profile). The engine never mutates a state
    it is given, so sharing the parsed object is safe.
    """

    def __init__(self, changelog_topic: str, cache_size: int = 50_000) -> None:
        self.topic = changelog_topic
        self.partitions: dict[int, PartitionState] = {}
        self.cache_size = cache_size
        self._parsed: dict[str, CustomerState] = {}

    def get(self, partition: int, customer_id: str) -> bytes | None:
        part = self.partitions.get(partition)
        return part.states.get(customer_id) if part is not None else None

    def cached(self, customer_id: str) -> CustomerState | None:
        """The customer's parsed state if it is in the cache (never parses)."""
        return self._parsed.get(customer_id)

    def customer_ids(self, partition: int) -> list[str]:
        """A snapshot of the partition's customer ids (empty if it is not held here); safe to walk across awaits."""
        part = self.partitions.get(partition)
        return list(part.states) if part is not None else []

    def load(self, partition: int, customer_id: str) -> CustomerState:
        """The customer's state (a new one if unknown); raises ``ValueError`` if the stored JSON does not load."""
        state = self._parsed.get(customer_id)
        if state is not None:
            return state
        raw = self.get(partition, customer_id)
        return CustomerState.model_validate_json(raw) if raw else CustomerState.new(customer_id)

    def put(
        self,
        partition: int,
        customer_id: str,
        raw: bytes,
        timers: list[tuple[str, float]],
        offset: int,
        state: CustomerState | None = None,
    ) -> None:
        """Remember a state whose changelog write (at ``offset``) Kafka has acknowledged.

        Only for a partition restored here: a partition we never restored would look
        complete to the next :meth:`restore` once our write is the changelog's last.

        While the campaign scan watches the partition, a customer new to it is noted in
        ``arrivals`` (told by the size of the map: no lookup), and a parked customer whose
        time zone is no longer the one they were parked with in ``rezoned`` (one lookup in
        ``zones``; without ``state`` the zone is not known here, so they are noted anyway).
        """
        part = self.partitions.get(partition)
        if part is None:
            raise KeyError(f"state partition {partition} was not restored on this worker")
        states = part.states
        known = len(states)
        states[customer_id] = raw
        if len(states) != known:
            if part.arrivals is not None:
                part.arrivals.append(customer_id)
        elif part.zones is not None:
            zone = part.zones.get(customer_id)
            if zone is not None and (state is None or state.profile.timezone != zone):
                part.rezoned.append(customer_id)
        if timers:
            part.timers[customer_id] = timers
        else:
            part.timers.pop(customer_id, None)
        part.end_offset = max(part.end_offset, offset + 1)
        if self.cache_size:
            self._parsed.pop(customer_id, None)  # without ``state``, a parsed copy of the old state would be stale
            if state is not None:
                self._parsed[customer_id] = state  # newest last
                if len(self._parsed) > self.cache_size:
                    del self._parsed[next(iter(self._parsed))]

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.partitions.pop(p, None)
        self._parsed.clear()

    def customers(self) -> int:
        return sum(len(p.states) for p in self.partitions.values())

    def due_timers(self, partitions: Iterable[int]) -> list[DueTimer]:
        """Every pending timer of the given partitions (to rebuild the heap)."""
        out: list[DueTimer] = []
        for p in partitions:
            part = self.partitions.get(p)
            if part is None:
                continue
            for customer_id, timers in part.timers.items():
                out.extend(DueTimer(due, customer_id, timer_id, p) for timer_id, due in timers)
        return out

    async def restore(self, partitions: set[int], bootstrap: str, **client_kw: Any) -> dict[int, int]:
        """Bring ``partitions`` up to their changelog end; returns records read per partition.

        A partition already in memory whose end offset equals the changelog's is kept.
        """
        if not partitions:
            return {}
        self._parsed.clear()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **client_kw,
        )
        await consumer.start()
        read: dict[int, int] = {}
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            ends = await consumer.end_offsets(tps)
            todo = self._reset_moved(tps, ends, read)
            if not todo:
                return read
            started = time.monotonic()
            consumer.assign(todo)
            await consumer.seek_to_beginning(*todo)
            remaining = set(todo)
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
                for tp, records in batch.items():
                    read[tp.partition] += _apply_records(self.partitions[tp.partition], records, ends[tp])
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                        self.partitions[tp.partition].end_offset = ends[tp]  # complete only now
            log.info(
                "restored %d state records of partitions %s in %.1fs",
                sum(read.values()),
                sorted(tp.partition for tp in todo),
                time.monotonic() - started,
            )
            return read
        finally:
            await consumer.stop()

    def _reset_moved(self, tps: list[TopicPartition], ends: dict[TopicPartition, int], read: dict[int, int]) -> list[TopicPartition]:
        """Empty every partition whose changelog is no longer at our last write; returns those with records to read.

        ``read`` gets a 0 for each partition reset. A reset partition counts as complete only once it is read to
        its end (:meth:`restore`): a restore that failed half-way is started again, never taken for our own state.
        """
        todo = []
        for tp in tps:
            mine = self.partitions.get(tp.partition)
            if mine is not None and mine.end_offset == ends[tp]:
                continue  # still exactly what we wrote
            self.partitions[tp.partition] = PartitionState(end_offset=ends[tp] if ends[tp] == 0 else -1)
            if ends[tp] > 0:
                todo.append(tp)
            read[tp.partition] = 0
        return todo


def _apply_records(part: PartitionState, records: Iterable[Any], end: int) -> int:
    """Fold changelog records (in offset order) below offset ``end`` into ``part``; returns how many were applied."""
    applied = 0
    for r in records:
        if r.offset >= end:
            break
        applied += 1
        key = r.key.decode() if r.key is not None else ""
        if r.value is None:  # a tombstone
            part.states.pop(key, None)
            part.timers.pop(key, None)
            continue
        part.states[key] = r.value
        timers = decode_timers(dict(r.headers or ()).get("timers"))
        if timers:
            part.timers[key] = timers
        else:
            part.timers.pop(key, None)
    return applied

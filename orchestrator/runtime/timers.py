"""The in-memory heap of this worker's due timers.

Timers are durable in the ``timers`` table (co-partitioned with customer state);
this heap is only an index over the partitions this worker owns, rebuilt from the
table after every rebalance/recovery. When a timer comes due the shell publishes a
:class:`~orchestrator.events.TimerFired` onto the customer's partition, and the
engine handles it like any other event (so the single writer per customer stays
the single writer). Firing twice is harmless: the engine ignores a timer id that
is no longer pending.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(order=True, frozen=True)
class DueTimer:
    due: float
    customer_id: str = field(compare=True)
    timer_id: str = field(compare=True)
    partition: int = field(compare=False, default=-1)


class TimerHeap:
    """Deadlines by due time, with lazy deletion for cancels and re-arms."""

    def __init__(self) -> None:
        self._heap: list[DueTimer] = []
        self._live: dict[tuple[str, str], DueTimer] = {}

    def __len__(self) -> int:
        return len(self._live)

    def arm(self, customer_id: str, timer_id: str, due: float, partition: int) -> None:
        entry = DueTimer(due, customer_id, timer_id, partition)
        self._live[(customer_id, timer_id)] = entry
        heapq.heappush(self._heap, entry)

    def cancel(self, customer_id: str, timer_id: str) -> None:
        self._live.pop((customer_id, timer_id), None)

    def pop_due(self, now: float, owned_partitions: set[int] | None = None) -> list[DueTimer]:
        """Remove and return the live timers due at or before ``now``, oldest first."""
        out: list[DueTimer] = []
        while self._heap and self._heap[0].due <= now:
            entry = heapq.heappop(self._heap)
            if self._live.get((entry.customer_id, entry.timer_id)) is not entry:
                continue  # cancelled or re-armed with another deadline
            del self._live[(entry.customer_id, entry.timer_id)]
            if owned_partitions is not None and entry.partition not in owned_partitions:
                continue  # partition moved to another worker; it rebuilds its own heap
            out.append(entry)
        return out

    def oldest_due(self) -> float | None:
        while self._heap and self._live.get((self._heap[0].customer_id, self._heap[0].timer_id)) is not self._heap[0]:
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def rebuild(self, entries: Iterable[DueTimer]) -> None:
        self.clear()
        for e in entries:
            self._live[(e.customer_id, e.timer_id)] = e
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)


def decode_timer_row(customer_id: str, raw: bytes | None) -> list[DueTimer]:
    """Timers table value -> entries. The value is JSON ``{timer_id: [due_epoch, partition]}``."""
    if not raw:
        return []
    doc = json.loads(raw)
    return [DueTimer(float(due), customer_id, timer_id, int(partition)) for timer_id, (due, partition) in doc.items()]


def encode_timer_row(timers: dict[str, tuple[float, int]]) -> bytes:
    return json.dumps({k: [due, p] for k, (due, p) in sorted(timers.items())}, separators=(",", ":")).encode()

"""The in-memory heap of this worker's due timers.

Timers are durable as part of the customer's state: every pending timer is a
``TimerRef`` of a live journey instance, written to the state changelog with the
state, so state and timers can never disagree. The changelog record carries the
customer's pending timers in a small header as well (:func:`encode_timers`), so a
worker rebuilds this heap on restore without parsing any state.

The heap is only an index over the partitions this worker owns. When a timer comes
due the worker publishes a :class:`~orchestrator.events.TimerFired` onto the
customer's partition and the engine handles it like any other event (so the single
writer per customer stays the single writer). Firing twice is harmless: the engine
ignores a timer id that is no longer pending.

Memory: one :class:`DueTimer` (a slotted dataclass) in the heap and entries in two dicts
per pending timer, about 360-430 bytes, plus the timer's row in the state store (about
400 bytes); measured in ``bench/bench_timers_state.py`` (``bench/results/timers_state.md``).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

TimerRow = list[tuple[str, float]]
"""A customer's pending timers: (timer_id, due as epoch seconds)."""


@dataclass(order=True, frozen=True, slots=True)
class DueTimer:
    due: float
    customer_id: str = field(compare=True)
    timer_id: str = field(compare=True)
    partition: int = field(compare=False, default=-1)


class TimerHeap:
    """Deadlines by due time, with lazy deletion for cancels and re-arms.

    ``_fired`` remembers timers already published and not yet consumed, so that a
    state write that still lists such a timer (the TimerFired is on its way) does
    not arm it again.
    """

    def __init__(self) -> None:
        self._heap: list[DueTimer] = []
        self._live: dict[tuple[str, str], DueTimer] = {}
        self._by_customer: dict[str, set[str]] = {}
        self._fired: dict[str, dict[str, float]] = {}  # customer -> timer id -> due

    def __len__(self) -> int:
        return len(self._live)

    def arm(self, customer_id: str, timer_id: str, due: float, partition: int) -> None:
        entry = DueTimer(due, customer_id, timer_id, partition)
        self._live[(customer_id, timer_id)] = entry
        self._by_customer.setdefault(customer_id, set()).add(timer_id)
        heapq.heappush(self._heap, entry)

    def cancel(self, customer_id: str, timer_id: str) -> None:
        self._live.pop((customer_id, timer_id), None)
        ids = self._by_customer.get(customer_id)
        if ids is not None:
            ids.discard(timer_id)
            if not ids:
                del self._by_customer[customer_id]

    def set_customer(self, customer_id: str, partition: int, timers: TimerRow) -> None:
        """Make the customer's timers exactly ``timers`` (the pending timers of its new state)."""
        wanted = dict(timers)
        for timer_id in list(self._by_customer.get(customer_id, ())):
            live = self._live.get((customer_id, timer_id))
            if timer_id not in wanted or live is None or live.due != wanted[timer_id]:
                self.cancel(customer_id, timer_id)
        fired = self._fired.get(customer_id)
        if fired is not None:
            for timer_id in [t for t in fired if t not in wanted]:
                del fired[timer_id]  # consumed: the state no longer lists it
            if not fired:
                del self._fired[customer_id]
        for timer_id, due in wanted.items():
            if (customer_id, timer_id) in self._live or (fired is not None and fired.get(timer_id) == due):
                continue
            self.arm(customer_id, timer_id, due, partition)

    def pop_due(self, now: float, owned_partitions: set[int] | None = None) -> list[DueTimer]:
        """Remove and return the live timers due at or before ``now``, oldest first.

        They count as fired (see the class doc) until :meth:`set_customer` shows them
        consumed or :meth:`refire` puts them back because publishing failed.
        """
        out: list[DueTimer] = []
        while self._heap and self._heap[0].due <= now:
            entry = heapq.heappop(self._heap)
            if self._live.get((entry.customer_id, entry.timer_id)) is not entry:
                continue  # cancelled or re-armed with another deadline
            self.cancel(entry.customer_id, entry.timer_id)
            if owned_partitions is not None and entry.partition not in owned_partitions:
                continue  # partition moved to another worker; it rebuilds its own heap
            self._fired.setdefault(entry.customer_id, {})[entry.timer_id] = entry.due
            out.append(entry)
        return out

    def refire(self, entries: Iterable[DueTimer]) -> None:
        """Arm again timers whose TimerFired could not be published."""
        for e in entries:
            self._fired.get(e.customer_id, {}).pop(e.timer_id, None)
            if (e.customer_id, e.timer_id) not in self._live:
                self.arm(e.customer_id, e.timer_id, e.due, e.partition)

    def oldest_due(self) -> float | None:
        while self._heap and self._live.get((self._heap[0].customer_id, self._heap[0].timer_id)) is not self._heap[0]:
            heapq.heappop(self._heap)
        return self._heap[0].due if self._heap else None

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the timers of partitions this worker no longer owns."""
        for key, entry in list(self._live.items()):
            if entry.partition in partitions:
                self.cancel(*key)
        self._fired.clear()
        self._heap = [e for e in self._heap if self._live.get((e.customer_id, e.timer_id)) is e]
        heapq.heapify(self._heap)

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()
        self._by_customer.clear()
        self._fired.clear()

    def rebuild(self, entries: Iterable[DueTimer]) -> None:
        self.clear()
        for e in entries:
            self._live[(e.customer_id, e.timer_id)] = e
            self._by_customer.setdefault(e.customer_id, set()).add(e.timer_id)
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)


def encode_timers(timers: TimerRow) -> bytes:
    """The ``timers`` header of a state changelog record: JSON ``[[timer_id, due_epoch], ...]``."""
    return json.dumps([[t, d] for t, d in timers], separators=(",", ":")).encode()


def decode_timers(raw: bytes | None) -> TimerRow:
    if not raw:
        return []
    return [(str(t), float(d)) for t, d in json.loads(raw)]

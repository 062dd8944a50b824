"""The due-timer heap: order, cancel, re-arm, ownership, rebuild."""

from __future__ import annotations

from orchestrator.runtime.timers import DueTimer, TimerHeap, decode_timer_row, encode_timer_row


def test_pops_due_timers_oldest_first_and_keeps_future_ones() -> None:
    h = TimerHeap()
    h.arm("c2", "b", 20.0, 0)
    h.arm("c1", "a", 10.0, 0)
    h.arm("c3", "c", 30.0, 1)
    assert [t.timer_id for t in h.pop_due(25.0)] == ["a", "b"]
    assert len(h) == 1 and h.oldest_due() == 30.0
    assert h.pop_due(25.0) == []


def test_cancel_and_rearm_are_respected() -> None:
    h = TimerHeap()
    h.arm("c1", "a", 10.0, 0)
    h.arm("c1", "b", 11.0, 0)
    h.cancel("c1", "a")
    h.arm("c1", "b", 50.0, 0)  # re-armed later: the old deadline must not fire
    assert h.pop_due(20.0) == []
    assert [t.due for t in h.pop_due(50.0)] == [50.0]
    assert len(h) == 0 and h.oldest_due() is None


def test_timers_of_partitions_we_no_longer_own_are_not_fired() -> None:
    h = TimerHeap()
    h.arm("c1", "a", 1.0, 0)
    h.arm("c2", "b", 1.0, 1)
    assert [t.customer_id for t in h.pop_due(5.0, owned_partitions={1})] == ["c2"]


def test_rebuild_from_table_rows() -> None:
    row = encode_timer_row({"x": (5.0, 3), "y": (1.0, 3)})
    entries = decode_timer_row("c9", row)
    assert sorted(entries) == [DueTimer(1.0, "c9", "y", 3), DueTimer(5.0, "c9", "x", 3)]
    h = TimerHeap()
    h.arm("old", "z", 0.0, 0)
    h.rebuild(entries)
    assert [(t.customer_id, t.timer_id) for t in h.pop_due(10.0)] == [("c9", "y"), ("c9", "x")]
    assert decode_timer_row("c9", None) == []

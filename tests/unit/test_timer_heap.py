"""The due-timer heap: order, cancel, re-arm, ownership, rebuild."""

from __future__ import annotations

from orchestrator.runtime.timers import DueTimer, TimerHeap, decode_timers, encode_timers


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


def test_rebuild_from_changelog_headers() -> None:
    row = decode_timers(encode_timers([("x", 5.0), ("y", 1.0)]))
    entries = [DueTimer(due, "c9", tid, 3) for tid, due in row]
    h = TimerHeap()
    h.arm("old", "z", 0.0, 0)
    h.rebuild(entries)
    assert [(t.customer_id, t.timer_id) for t in h.pop_due(10.0)] == [("c9", "y"), ("c9", "x")]
    assert decode_timers(None) == []


def test_set_customer_follows_the_state() -> None:
    h = TimerHeap()
    h.set_customer("c1", 0, [("a", 10.0), ("b", 20.0)])
    h.set_customer("c1", 0, [("b", 25.0), ("c", 30.0)])  # a cancelled, b re-armed later, c new
    assert [(t.timer_id, t.due) for t in h.pop_due(100.0)] == [("b", 25.0), ("c", 30.0)]
    h.set_customer("c1", 0, [])
    assert len(h) == 0


def test_a_fired_timer_is_not_armed_again_until_consumed_or_refired() -> None:
    h = TimerHeap()
    h.set_customer("c1", 0, [("a", 10.0)])
    [fired] = h.pop_due(15.0)
    # another event of c1 is processed before the TimerFired: its state still lists "a"
    h.set_customer("c1", 0, [("a", 10.0)])
    assert h.pop_due(15.0) == []
    # publishing it failed: it comes back
    h.refire([fired])
    assert [t.timer_id for t in h.pop_due(15.0)] == ["a"]
    # consumed: the state no longer lists it; re-armed with the same id later it fires again
    h.set_customer("c1", 0, [])
    h.set_customer("c1", 0, [("a", 10.0)])
    assert [t.timer_id for t in h.pop_due(15.0)] == ["a"]


def test_drop_partitions_forgets_their_timers() -> None:
    h = TimerHeap()
    h.set_customer("c1", 0, [("a", 1.0)])
    h.set_customer("c2", 1, [("b", 1.0)])
    h.drop_partitions({0})
    assert [t.customer_id for t in h.pop_due(5.0)] == ["c2"]

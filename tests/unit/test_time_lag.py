"""The time lag from end-offset samples (runtime/time_lag.py), against hand-computed answers."""

from __future__ import annotations

from orchestrator.runtime.time_lag import HISTORY, TimeLag


def lagging() -> TimeLag:
    t = TimeLag()
    # 100 records/s from t=1000: end offset 0 at 1000, 500 at 1005, 1000 at 1010, 1000 (idle) at 1015
    for at, end in ((1000.0, 0), (1005.0, 500), (1010.0, 1000), (1015.0, 1000)):
        t.observe("in", 0, end, at)
    return t


def test_the_committed_offset_is_dated_between_the_samples_around_it() -> None:
    t = lagging()
    assert t.produced_at("in", 0, 250) == 1002.5
    assert t.seconds("in", 0, 250, 1000, now=1015.0) == 12.5
    assert t.seconds("in", 0, 999, 1000, now=1015.0) == 1015.0 - (1005.0 + 5.0 * 499 / 500)


def test_caught_up_is_zero_and_never_committed_is_unknown() -> None:
    t = lagging()
    assert t.seconds("in", 0, 1000, 1000, now=1015.0) == 0.0
    assert t.seconds("in", 0, None, 1000, now=1015.0) is None
    assert t.seconds("other", 3, 5, 10, now=1015.0) == 0.0  # no history yet: nothing to date it by


def test_older_than_the_history_is_at_least_its_age() -> None:
    t = TimeLag()
    for i in range(HISTORY + 10):
        t.observe("in", 0, 100 + i, float(i))
    oldest = 10.0  # the first 10 samples fell out of the history
    assert t.produced_at("in", 0, 5) == oldest
    assert t.seconds("in", 0, 5, 100 + HISTORY + 9, now=2000.0) == 2000.0 - oldest


def test_a_topic_made_again_starts_a_new_history() -> None:
    t = lagging()
    t.observe("in", 0, 10, 1020.0)  # end offset went back: deleted and created again
    assert t.produced_at("in", 0, 5) == 1020.0

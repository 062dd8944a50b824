"""The recent-event-id dedupe: one string, duplicates detected, N most recent kept, JSON round trip."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from orchestrator.actions import Trace
from orchestrator.engine import step
from orchestrator.events import CustomerEvent
from orchestrator.journey.loader import load_text
from orchestrator.state import (
    RECENT_EVENT_IDS,
    CustomerState,
    recent_add,
    recent_contains,
    recent_decode,
    recent_encode,
    recent_from_list,
    recent_list,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)

NOTHING = """
id: nothing
version: 1
name: Nothing
entry:
  event: web.refund
start: done
steps:
  done: {type: end}
"""


def ev(eid: str, etype: str = "web.page_view", at: datetime = T0) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id="c1", type=etype, occurred_at=at, data={"url": "/"})


def feed(state: CustomerState, ids: list[str]) -> CustomerState:
    js = load_text(NOTHING)
    for i, eid in enumerate(ids):
        state, acts = step(state, ev(eid, at=T0 + timedelta(seconds=i)), js, T0)
        assert acts == []
    return state


def test_the_ids_are_one_string_and_duplicates_yield_only_a_trace():
    js = load_text(NOTHING)
    state = feed(CustomerState.new("c1"), ["a", "b", "ab", "b-2"])
    assert isinstance(state.recent_event_ids, str)
    assert state.recent_ids() == ["a", "b", "ab", "b-2"]
    for dup in ("a", "b", "ab", "b-2"):
        after, acts = step(state, ev(dup), js, T0)
        assert after is state
        assert len(acts) == 1 and isinstance(acts[0], Trace) and acts[0].what == "duplicate"
        assert acts[0].detail == {"event_id": dup, "type": "web.page_view"}
    # substrings, prefixes and concatenations of remembered ids are not duplicates
    for fresh in ("", "x", "a\x1fb", "a-", "-2", "2"):
        if fresh:
            assert not recent_contains(state.recent_event_ids, fresh)
    after, acts = step(state, ev("b-"), js, T0)
    assert acts == [] and after.recent_ids()[-1] == "b-"


def test_trimming_keeps_the_n_most_recent_ids():
    ids = [f"id-{i}" for i in range(RECENT_EVENT_IDS * 2 + 5)]
    state = feed(CustomerState.new("c1"), ids)
    kept = ids[-RECENT_EVENT_IDS:]
    assert state.recent_ids() == kept
    assert state.events_seen == len(ids)
    js = load_text(NOTHING)
    for old in ids[: -RECENT_EVENT_IDS]:  # forgotten: processed again
        assert step(state, ev(old), js, T0)[0] is not state
    for eid in kept:  # remembered: duplicate
        assert step(state, ev(eid), js, T0)[0] is state


def test_ids_holding_the_separator_or_escape_are_exact():
    odd = ["a\x1fb", "a", "b", "\x1e", "\x1e0", "\x1e1", "\x1f", "x\x1e1y", "é-ü-😀"]
    for eid in odd:
        assert "\x1f" not in recent_encode(eid) and recent_decode(recent_encode(eid)) == eid
    assert len({recent_encode(e) for e in odd}) == len(odd)
    state = feed(CustomerState.new("c1"), odd)
    assert state.recent_ids() == odd
    for eid in odd:
        assert recent_contains(state.recent_event_ids, eid)
    for fresh in ("a\x1e", "\x1e\x1e", "1", "0", "b\x1f", "x\x1fy", "\x1f\x1f"):
        assert not recent_contains(state.recent_event_ids, fresh)


def test_recent_add_and_list_helpers():
    s = ""
    for i in range(10):
        s = recent_add(s, str(i), keep=4)
        assert recent_list(s) == [str(j) for j in range(max(0, i - 3), i + 1)]
    assert recent_from_list([str(i) for i in range(10)], keep=4) == s
    assert recent_add(recent_from_list(list("abcdefg"), keep=10), "h", keep=3) == recent_from_list(list("fgh"))
    assert recent_list("") == [] and recent_from_list([]) == ""


def test_json_round_trip_and_legacy_list():
    ids = [f"e{i}" for i in range(RECENT_EVENT_IDS + 3)] + ["with\x1fsep", "with\x1eesc"]
    state = feed(CustomerState.new("c1"), ids)
    back = CustomerState.model_validate_json(state.model_dump_json())
    assert back == state and back.recent_event_ids == state.recent_event_ids
    assert back.recent_ids() == ids[-RECENT_EVENT_IDS:]
    assert CustomerState.model_validate(state.model_dump(mode="json")) == state
    # a state stored before the one-string form (a JSON list) still loads, keeping the last N
    legacy = CustomerState.model_validate({"customer_id": "c1", "recent_event_ids": ids})
    assert legacy.recent_ids() == ids[-RECENT_EVENT_IDS:]
    assert legacy.recent_event_ids == state.recent_event_ids

"""The event-id dedupe by time: an id seen within the window is a duplicate, whatever came in between;
expired ids are forgotten; the state is capped; older stored forms still load and dedupe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.actions import Trace
from orchestrator.dedupe import (
    DEDUPE_ENTRY_CHARS,
    DEFAULT_LIMITS,
    EngineLimits,
    dedupe_key,
    recent_decode,
    recent_encode,
    recent_from_list,
    recent_list,
    remember,
)
from orchestrator.engine import step
from orchestrator.events import CustomerEvent
from orchestrator.journey.loader import load_text
from orchestrator.state import CustomerState

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

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

# a journey that sends on every (non-duplicate) cart_abandoned: a redelivery that got through would resend
CART = """
id: cart
version: 1
name: Cart
entry:
  event: web.cart_abandoned
  reentry: {policy: always}
start: first
steps:
  first: {type: send, channel: email, template: t1, comm_type: commercial, next: done}
  done: {type: end}
"""

JS = load_text(NOTHING)


def ev(eid: str, etype: str = "web.page_view", at: datetime = T0) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id="c1", type=etype, occurred_at=at, data={"url": "/"})


def feed(
    state: CustomerState,
    ids: list[str],
    start: datetime = T0,
    every: timedelta = timedelta(seconds=1),
    limits: EngineLimits = DEFAULT_LIMITS,
) -> CustomerState:
    """Each id as a page view, the engine clock advancing by ``every`` per event."""
    for i, eid in enumerate(ids):
        now = start + every * i
        state, acts = step(state, ev(eid, at=now), JS, now, limits)
        assert acts == []
    return state


def is_duplicate(state: CustomerState, eid: str, now: datetime, limits: EngineLimits = DEFAULT_LIMITS) -> bool:
    after, acts = step(state, ev(eid, at=now), JS, now, limits)
    if after is state and len(acts) == 1 and isinstance(acts[0], Trace) and acts[0].what == "duplicate":
        assert acts[0].detail == {"event_id": eid, "type": "web.page_view"}
        return True
    assert acts == [] and after is not state and after.events_seen == state.events_seen + 1
    return False


def test_duplicates_yield_only_a_trace_and_near_misses_are_fresh():
    state = feed(CustomerState.new("c1"), ["a", "b", "ab", "b-2"])
    assert isinstance(state.recent_event_ids, str) and len(state.recent_event_ids) == 4 * DEDUPE_ENTRY_CHARS
    assert [k for k, _ in state.remembered()] == [dedupe_key(x) for x in ("a", "b", "ab", "b-2")]
    assert [t for _, t in state.remembered()] == [T0] * 4  # seen within the minute of T0
    for dup in ("a", "b", "ab", "b-2"):
        assert is_duplicate(state, dup, T0)
        assert state.remembers(dup) and state.remembers(dup, T0)
    # substrings, prefixes and concatenations of remembered ids are not duplicates
    for fresh in ("x", "a\x1fb", "a-", "-2", "2", "A", "a ", "ba"):
        assert not state.remembers(fresh)
        assert not is_duplicate(state, fresh, T0)


@pytest.mark.parametrize("between", [100, 5_000])
def test_a_redelivery_after_many_other_events_within_the_window_is_a_duplicate(between):
    # the measured defect: with the last-64-ids dedupe, an id came back in after 64 other events
    ids = ["first", *[f"other-{i}" for i in range(between)]]
    every = timedelta(days=6) / between  # all of them inside 6 days
    state = feed(CustomerState.new("c1"), ids, every=every)
    end = T0 + every * between
    assert is_duplicate(state, "first", end)
    assert is_duplicate(state, "first", T0 + timedelta(days=7))  # exactly the window after it was first seen
    assert is_duplicate(state, "other-0", end)
    assert is_duplicate(state, ids[-1], end)
    assert not is_duplicate(state, "never-seen", end)


def test_a_redelivered_entry_event_never_re_enters_nor_resends():
    js = load_text(CART)
    cart = CustomerEvent(event_id="cart-1", customer_id="c1", type="web.cart_abandoned", occurred_at=T0, data={})
    state, acts = step(CustomerState.new("c1"), cart, js, T0)
    assert [a.kind for a in acts].count("send") == 1
    for i in range(300):  # lots of other traffic in between
        now = T0 + timedelta(minutes=30 * i)
        state, _ = step(state, ev(f"pv-{i}", at=now), js, now)
    for later in (timedelta(hours=1), timedelta(days=6, hours=23)):
        after, acts = step(state, cart, js, T0 + later)
        assert after is state and [a.what for a in acts] == ["duplicate"]  # type: ignore[union-attr]
    # after the window it is a new event again (here: it re-enters and sends)
    after, acts = step(state, cart, js, T0 + timedelta(days=7, minutes=2))
    assert [a.kind for a in acts].count("send") == 1


def test_after_the_window_an_id_is_processed_again_and_forgotten_ids_are_pruned():
    state = feed(CustomerState.new("c1"), ["old-1", "old-2"])
    state = feed(state, ["mid"], start=T0 + timedelta(days=3))
    just_inside = T0 + timedelta(days=7)
    assert is_duplicate(state, "old-1", just_inside)
    assert state.remembers("old-1", just_inside) and not state.remembers("old-1", T0 + timedelta(days=7, minutes=2))
    later = T0 + timedelta(days=7, minutes=2)
    assert not is_duplicate(state, "old-1", later)
    after, _ = step(state, ev("new", at=later), JS, later)
    # the two expired entries are gone, "mid" (3 days old) and "new" remain
    assert [k for k, _ in after.remembered()] == [dedupe_key("mid"), dedupe_key("new")]
    assert not after.remembers("old-2")
    # long after everything expired, only the newest id is left
    far = later + timedelta(days=30)
    after2, _ = step(after, ev("far", at=far), JS, far)
    assert [k for k, _ in after2.remembered()] == [dedupe_key("far")]


def test_the_window_is_configurable():
    limits = EngineLimits(dedupe_window=timedelta(hours=1))
    state = feed(CustomerState.new("c1"), ["a"], limits=limits)
    assert is_duplicate(state, "a", T0 + timedelta(minutes=60), limits)
    assert not is_duplicate(state, "a", T0 + timedelta(minutes=62), limits)
    assert is_duplicate(state, "a", T0 + timedelta(minutes=62))  # the default window (7 days) still has it
    long = EngineLimits(dedupe_window=timedelta(days=30))
    assert is_duplicate(state, "a", T0 + timedelta(days=29), long)
    # minute resolution never forgets early: seen at 10:00:59, still a duplicate exactly one window later
    late = feed(CustomerState.new("c1"), ["b"], start=T0 + timedelta(seconds=59), limits=limits)
    assert is_duplicate(late, "b", T0 + timedelta(hours=1, seconds=59), EngineLimits(dedupe_window=timedelta(hours=1)))
    assert not is_duplicate(late, "b", T0 + timedelta(hours=1, minutes=1, seconds=1), limits)
    # a window that is not whole minutes is rounded up
    odd = EngineLimits(dedupe_window=timedelta(seconds=90))
    assert is_duplicate(late, "b", T0 + timedelta(minutes=2, seconds=59), odd)
    assert not is_duplicate(late, "b", T0 + timedelta(minutes=3), odd)
    with pytest.raises(ValueError):
        EngineLimits(dedupe_window=timedelta(0))
    with pytest.raises(ValueError):
        EngineLimits(dedupe_max_ids=0)
    assert EngineLimits() == DEFAULT_LIMITS and DEFAULT_LIMITS.dedupe_window >= timedelta(days=7)


def test_the_cap_bounds_the_state_and_drops_the_oldest():
    limits = EngineLimits(dedupe_max_ids=100)
    ids = [f"id-{i}" for i in range(250)]
    state = feed(CustomerState.new("c1"), ids, limits=limits)
    assert len(state.recent_event_ids) == 100 * DEDUPE_ENTRY_CHARS
    assert [k for k, _ in state.remembered()] == [dedupe_key(x) for x in ids[-100:]]
    assert state.events_seen == 250
    for eid in ids[-100:]:
        assert is_duplicate(state, eid, T0 + timedelta(minutes=10), limits)
    for eid in ids[:150:7]:  # beyond the cap: forgotten (count-based for the overflow)
        assert not is_duplicate(state, eid, T0 + timedelta(minutes=10), limits)


def test_the_default_cap_bounds_the_encoded_field():
    max_ids = DEFAULT_LIMITS.dedupe_max_ids
    assert max_ids >= 5001  # so that 5,000 other events in the window never push an id out
    recent = ""
    for i in range(max_ids + 500):  # built with the helper the engine uses (faster than full steps)
        recent = remember(recent, f"event-{i}-" + "x" * 100, T0 + timedelta(seconds=i))  # type: ignore[assignment]
        assert recent is not None
    assert len(recent) == max_ids * DEDUPE_ENTRY_CHARS == max_ids * 17
    assert recent.isascii()
    state = CustomerState(customer_id="c1", recent_event_ids=recent)
    # in the stored JSON it costs the same: no character needs escaping
    assert len(state.model_dump_json()) - len(CustomerState.new("c1").model_dump_json()) == len(recent)
    now = T0 + timedelta(seconds=max_ids + 500)
    assert is_duplicate(state, f"event-{max_ids + 499}-" + "x" * 100, now)
    assert is_duplicate(state, "event-500-" + "x" * 100, now)  # the oldest still held
    assert not is_duplicate(state, "event-499-" + "x" * 100, now)  # dropped by the cap


def test_ids_with_odd_characters_and_long_ids():
    odd = [
        "a\x1fb",
        "a",
        "b",
        "\x1e",
        "\x1e0",
        "\x1e1",
        "\x1f",
        "x\x1e1y",
        "é-ü-😀",
        ".",
        "..",
        "\x00",
        "a.b",
        '"quoted"',
        "back\\slash",
        "new\nline",
        "\ud800lone-surrogate",
        " ",
        "+/=",
        "x" * 128,
        "x" * 127 + "y",
        "y" + "x" * 127,
        "é" * 128,
    ]
    state = feed(CustomerState.new("c1"), odd)
    assert len(state.recent_event_ids) == len(odd) * DEDUPE_ENTRY_CHARS  # every id costs the same
    assert len({k for k, _ in state.remembered()}) == len(odd)
    back = CustomerState.model_validate_json(state.model_dump_json())
    assert back == state
    for eid in odd:
        assert is_duplicate(back, eid, T0 + timedelta(minutes=5))
    for fresh in ("a\x1e", "\x1e\x1e", "1", "0", "b\x1f", "x\x1fy", "\x1f\x1f", "x" * 126, "é" * 127, "...", "\ud801"):
        assert not is_duplicate(back, fresh, T0 + timedelta(minutes=5))


def test_json_round_trip():
    state = feed(CustomerState.new("c1"), [f"e{i}" for i in range(70)], every=timedelta(hours=1))
    back = CustomerState.model_validate_json(state.model_dump_json())
    assert back == state and back.recent_event_ids == state.recent_event_ids
    assert CustomerState.model_validate(state.model_dump(mode="json")) == state
    assert back.remembered()[0] == (dedupe_key("e0"), T0) and back.remembered()[-1] == (dedupe_key("e69"), T0 + timedelta(hours=69))
    with pytest.raises(ValueError):
        CustomerState.model_validate({"customer_id": "c1", "recent_event_ids": state.recent_event_ids[:-1]})
    with pytest.raises(ValueError):
        CustomerState.model_validate({"customer_id": "c1", "recent_event_ids": "garbage"})


LEGACY_IDS = [f"e{i}" for i in range(64)] + ["with\x1fsep", "with\x1eesc", "x" * 128]


@pytest.mark.parametrize(
    "stored",
    [
        LEGACY_IDS,  # the oldest form: a JSON list of raw ids
        recent_from_list(LEGACY_IDS),  # the previous form: raw ids joined by \x1f
    ],
    ids=["json-list", "x1f-string"],
)
def test_old_formats_load_and_still_dedupe(stored):
    raw = CustomerState(customer_id="c1", events_seen=67).model_dump(mode="json")
    raw["recent_event_ids"] = stored
    state = CustomerState.model_validate_json(CustomerState.model_validate(raw).model_dump_json())
    assert recent_list(state.recent_event_ids) == LEGACY_IDS
    assert all(state.remembers(x) for x in LEGACY_IDS) and not state.remembers("e64")
    assert [k for k, _ in state.remembered()] == [dedupe_key(x) for x in LEGACY_IDS]
    later = T0 + timedelta(days=1)
    for eid in LEGACY_IDS:
        assert is_duplicate(state, eid, later)
    # the first new event converts them: seen at that event's time (their real time is unknown)
    after, acts = step(state, ev("new", at=later), JS, later)
    assert acts == [] and after.recent_event_ids[11] == "="
    assert [k for k, _ in after.remembered()] == [dedupe_key(x) for x in [*LEGACY_IDS, "new"]]
    assert {t for _, t in after.remembered()} == {later}
    for eid in LEGACY_IDS:
        assert is_duplicate(after, eid, later + timedelta(days=6))
        assert not is_duplicate(after, eid, later + timedelta(days=7, minutes=2))


def test_a_clock_that_steps_back_keeps_the_order_and_forgets_nothing_early():
    state = feed(CustomerState.new("c1"), ["late"], start=T0 + timedelta(hours=5))
    state = feed(state, ["early"], start=T0)  # the engine clock went back 5 hours
    assert [t for _, t in state.remembered()] == [T0 + timedelta(hours=5)] * 2  # clamped to the newest time
    assert is_duplicate(state, "early", T0 + timedelta(days=7))
    assert not is_duplicate(state, "early", T0 + timedelta(days=7, hours=5, minutes=2))


def test_legacy_helpers_round_trip():
    odd = ["a\x1fb", "a", "\x1e", "\x1e0", "\x1e1", "\x1f", "x\x1e1y", "é-ü-😀"]
    for eid in odd:
        assert "\x1f" not in recent_encode(eid) and recent_decode(recent_encode(eid)) == eid
    assert recent_list(recent_from_list(odd)) == odd
    assert recent_list("") == [] and recent_from_list([]) == ""


@pytest.mark.parametrize("seed", range(4))
def test_random_streams_match_a_reference_model(seed):
    """Random ids (many repeats), random gaps (some beyond the window), a small cap: the engine
    agrees with a plain model: remember (id, minute first seen); forget what is older than the
    window; keep at most max_ids; an id still remembered is a duplicate."""
    import random

    rng = random.Random(seed)
    limits = EngineLimits(dedupe_window=timedelta(hours=6), dedupe_max_ids=40)
    window = 6 * 60
    model: list[tuple[str, int]] = []  # (id, minute first seen), oldest first
    state = CustomerState.new("c1")
    now = T0
    for _ in range(1500):
        now += rng.choice([timedelta(0), timedelta(seconds=20), timedelta(minutes=7), timedelta(hours=1), timedelta(hours=7)])
        eid = f"id-{rng.randrange(120)}"
        minute = int((now - T0).total_seconds() // 60)
        kept = [(i, m) for i, m in model if m >= minute - window]
        expect_dup = any(i == eid for i, _ in kept)
        assert is_duplicate(state, eid, now, limits) is expect_dup
        if not expect_dup:
            state, _ = step(state, ev(eid, at=now), JS, now, limits)
            model = [*kept, (eid, max(minute, kept[-1][1]) if kept else minute)][-limits.dedupe_max_ids :]
            assert [k for k, _ in state.remembered()] == [dedupe_key(i) for i, _ in model]
            assert len(state.recent_event_ids) <= limits.dedupe_max_ids * DEDUPE_ENTRY_CHARS

"""The engine's fast path for events no journey cares about behaves exactly like the full path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from orchestrator.actions import Trace
from orchestrator.dev.drive import drive
from orchestrator.engine import fold_profile, step
from orchestrator.events import CustomerEvent
from orchestrator.journey.loader import load_text
from orchestrator.state import CustomerState

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

CART = """
id: cart
version: 1
name: Cart
entry:
  event: web.cart_abandoned
goals: [{name: purchased, event: web.purchase}]
start: first
steps:
  first: {type: send, channel: email, template: t1, comm_type: commercial, next: wait}
  wait: {type: wait, for: {opened_of: first}, timeout: 24h, on_event: done, on_timeout: done}
  done: {type: end}
"""

OTHER = """
id: other
version: 1
name: Other
entry:
  event: web.refund
start: done
steps:
  done: {type: end}
"""


def ev(eid: str, etype: str, at: datetime = T0, **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id="c1", type=etype, occurred_at=at, data=data)


def test_unrelated_event_only_folds_the_profile_and_shares_the_rest():
    js = load_text(CART)
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned"), js, T0)
    after, acts = step(state, ev("v1", "web.page_view", T0 + timedelta(minutes=1), url="/"), js, T0)
    assert acts == []
    assert after.instances is state.instances and after.history is state.history
    assert after.remembered()[:-1] == state.remembered() and after.remembers("v1") and after.remembers("e1")
    assert after.events_seen == state.events_seen + 1
    assert after.profile.seen["web.page_view"].count == 1
    assert after.profile.last_seen_at == T0 + timedelta(minutes=1)
    # the input is untouched
    assert "web.page_view" not in state.profile.seen and len(state.remembered()) == 1 and not state.remembers("v1")


def test_unrelated_event_ends_an_instance_of_an_unloaded_version():
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned"), load_text(CART), T0)
    assert len(state.instances) == 1
    # no loaded journey listens to page views, but the instance's journey is gone: it exits
    after, acts = step(state, ev("v1", "web.page_view", url="/"), load_text(OTHER), T0)
    (tr,) = [a for a in acts if isinstance(a, Trace) and a.what == "exited"]
    assert tr.detail["outcome"] == "version_removed" and after.instances == []
    assert [a.kind for a in acts if a.kind == "cancel_timer"] == ["cancel_timer"]


def test_fast_path_result_round_trips_and_matches_the_restored_state():
    js = load_text(CART)
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned"), js, T0)
    back = CustomerState.model_validate_json(state.model_dump_json())
    msg = ev("v1", "web.page_view", T0 + timedelta(seconds=5), url="/")
    a, _ = step(state, msg, js, T0)
    b, _ = step(back, msg, js, T0)
    assert a == b and a.model_dump_json() == b.model_dump_json()
    assert CustomerState.model_validate_json(a.model_dump_json()) == a


def test_fold_profile_keeps_first_and_last_times_on_ties_and_out_of_order_events():
    js = load_text(CART)
    p0 = CustomerState.new("c1").profile
    p1 = fold_profile(p0, ev("a", "web.page_view", T0), js.tracked.get("web.page_view", ()))
    tie = T0.astimezone(timezone(timedelta(hours=2)))  # the same instant in another zone
    p2 = fold_profile(p1, ev("b", "web.page_view", tie), ())
    seen = p2.seen["web.page_view"]
    assert seen.count == 2 and seen.first_at is p1.seen["web.page_view"].first_at and seen.last_at is p1.seen["web.page_view"].last_at
    early = T0 - timedelta(hours=1)
    p3 = fold_profile(p2, ev("c", "web.page_view", early), ())
    assert p3.seen["web.page_view"].first_at == early and p3.seen["web.page_view"].last_at == T0
    assert p3.first_seen_at == early and p3.last_seen_at == T0
    assert p0.seen == {} and p1.seen["web.page_view"].count == 1

"""Idle detection (a wait that ends when the customer is quiet) and named calendars (issue 15, item 5)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from orchestrator.actions import ArmTimer, CancelTimer
from orchestrator.dev.drive import drive
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.journey.loader import JourneyError, load_text
from orchestrator.journey.model import Window
from orchestrator.journey.windows import in_window, next_opening
from orchestrator.state import CustomerState
from tests.unit.test_engine_constructs import T0, ev, sends, traces

IDLE = """
id: idle_cart
version: 1
name: Idle full cart
entry: {event: web.cart_abandoned}
calendars:
  service_hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00", timezone: Europe/Berlin, closed: [2026-03-03]}
start: idle
steps:
  idle:
    type: wait
    for: {event: web.purchase}
    quiet_for: 10m
    activity: [web.page_view, web.form_submitted]
    timeout: 2h
    on_event: done
    on_quiet: route
    on_timeout: done
  route:
    type: branch
    cases:
      - {name: open, when: [{in_calendar: service_hours}], next: chat}
    default: bot
  chat: {type: send, channel: web_message, template: live_chat_offer, comm_type: service, next: done}
  bot: {type: send, channel: web_message, template: chat_bot_offer, comm_type: service, next: done}
  done: {type: end}
"""


def page(n: int, at: datetime) -> CustomerEvent:
    return ev(f"pv{n}", "web.page_view", at, url="/")


def fire_due(state: CustomerState, js, at: datetime):
    """Fire the instance's one pending timer at ``at`` (it must be due)."""
    (inst,) = state.instances
    (ref,) = inst.timers
    assert ref.due_at <= at
    return drive(state, TimerFired(customer_id=state.customer_id, timer_id=ref.timer_id, due_at=ref.due_at), js, at)


def start(js, at: datetime = T0) -> CustomerState:
    state, acts = drive(CustomerState.new("c1"), ev("cart", "web.cart_abandoned", at, cart_id="k", cart_value=80.0), js, at)
    assert [a.due_at for a in acts if isinstance(a, ArmTimer)] == [at + timedelta(minutes=10)]
    return state


def test_quiet_for_ten_minutes_ends_the_wait_and_service_hours_pick_the_live_chat() -> None:
    js = load_text(IDLE)
    state = start(js)  # Monday 10:00 UTC = 11:00 Berlin: service hours
    state, acts = fire_due(state, js, T0 + timedelta(minutes=10))
    assert [t.edge for t in traces(acts, "quiet")] == ["route"]
    assert [s.template for s in sends(acts)] == ["live_chat_offer"]


def test_activity_moves_the_quiet_period_without_touching_timers() -> None:
    js = load_text(IDLE)
    state = start(js)
    for i, minute in enumerate((3, 5, 8)):
        at = T0 + timedelta(minutes=minute)
        state, acts = drive(state, page(i, at), js, at)
        assert not [a for a in acts if isinstance(a, (ArmTimer, CancelTimer))], acts  # one timer, never re-armed per page view
        assert len(state.instances[0].timers) == 1
    # the timer comes due at 10:10, the customer was active at 10:08: armed once more, for 10:18
    state, acts = fire_due(state, js, T0 + timedelta(minutes=10))
    assert traces(acts, "quiet") == [] and [a.due_at for a in acts if isinstance(a, ArmTimer)] == [T0 + timedelta(minutes=18)]
    assert len(state.instances[0].timers) == 1
    state, acts = fire_due(state, js, T0 + timedelta(minutes=18))
    assert [s.template for s in sends(acts)] == ["live_chat_offer"]


def test_the_awaited_event_ends_a_quiet_wait_and_cancels_its_timer() -> None:
    js = load_text(IDLE)
    state = start(js)
    at = T0 + timedelta(minutes=4)
    state, acts = drive(state, ev("buy", "web.purchase", at, order_id="o", value=80.0), js, at)
    assert len([a for a in acts if isinstance(a, CancelTimer)]) == 1 and state.instances == [] and sends(acts) == []


def test_a_customer_never_quiet_times_out() -> None:
    js = load_text(IDLE)
    state = start(js)
    for i in range(1, 14):  # a page view every 9 minutes for 2 hours
        at = T0 + timedelta(minutes=9 * i)
        state, _ = drive(state, page(i, at), js, at)
        ref = state.instances[0].timers[0]
        if ref.due_at <= at:
            state, _ = fire_due(state, js, at)
    state, acts = fire_due(state, js, T0 + timedelta(hours=2))
    assert [t.edge for t in traces(acts, "timeout")] == ["done"] and sends(acts) == []


def test_replays_of_activity_and_timers_change_nothing() -> None:
    js = load_text(IDLE)
    state = start(js)
    at = T0 + timedelta(minutes=5)
    once, _ = drive(state, page(1, at), js, at)
    twice, acts = drive(once, page(1, at), js, at)  # the same event id again: a duplicate
    assert twice.instances == once.instances and [getattr(t, "what", None) for t in acts] == ["duplicate"]
    fired = TimerFired(customer_id="c1", timer_id=once.instances[0].timers[0].timer_id, due_at=T0 + timedelta(minutes=10))
    after, _ = drive(once, fired, js, T0 + timedelta(minutes=10))
    again, acts = drive(after, fired, js, T0 + timedelta(minutes=10))  # the old timer fired again: unknown now, ignored
    assert again == after and acts == []


def test_outside_service_hours_and_on_a_closed_date_the_bot_offers() -> None:
    js = load_text(IDLE)
    evening = T0 + timedelta(hours=10)  # Monday 20:00 UTC = 21:00 Berlin
    _, acts = fire_due(start(js, evening), js, evening + timedelta(minutes=10))
    assert [s.template for s in sends(acts)] == ["chat_bot_offer"]
    closed = T0 + timedelta(days=1)  # Tuesday 2026-03-03 11:00 Berlin: a closed date
    _, acts = fire_due(start(js, closed), js, closed + timedelta(minutes=10))
    assert [s.template for s in sends(acts)] == ["chat_bot_offer"]


def test_closed_dates_push_the_next_opening() -> None:
    window = Window.model_validate({"days": ["mon", "tue"], "from": "08:00", "to": "20:00", "timezone": "UTC", "closed": ["2026-03-03"]})
    monday_night = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    assert not in_window(window, None, datetime(2026, 3, 3, 10, 0, tzinfo=UTC))
    assert next_opening(window, None, monday_night) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert window.closed == [date(2026, 3, 3)]


def test_a_calendar_is_usable_as_a_send_window_by_name() -> None:
    js = load_text(IDLE.replace("comm_type: service, next: done}\n  bot", "comm_type: service, window: service_hours, next: done}\n  bot"))
    assert js.newest("idle_cart").windows["chat"].timezone == "Europe/Berlin"  # type: ignore[union-attr]


def test_unknown_calendars_and_a_quiet_wait_without_activity_are_refused_where_they_are() -> None:
    with pytest.raises(JourneyError) as exc:
        load_text(
            IDLE.replace("{in_calendar: service_hours}", "{in_calendar: service_hour}").replace(
                "    activity: [web.page_view, web.form_submitted]\n", ""
            )
        )
    problems = exc.value.problems
    assert any(":10:3: steps.idle: quiet_for: needs activity:" in p for p in problems), problems
    with pytest.raises(JourneyError, match=r":22:30: unknown calendar 'service_hour' \(did you mean 'service_hours'\?\)"):
        load_text(IDLE.replace("{in_calendar: service_hours}", "{in_calendar: service_hour}"))
    with pytest.raises(JourneyError, match=r"a wait needs for: .* and timeout:, or quiet_for:"):
        load_text(
            IDLE.replace("    quiet_for: 10m\n    activity: [web.page_view, web.form_submitted]\n", "")
            .replace("    timeout: 2h\n", "")
            .replace("    on_quiet: route\n", "")
        )


def test_render_draws_the_quiet_edge_and_counts_customers_on_it() -> None:
    from orchestrator.designer.render import render_mermaid
    from tests.unit.test_examples import JOURNEYS, run

    plain = render_mermaid(load_text((JOURNEYS / "idle_cart.yaml").read_text()).newest("idle_cart").journey)  # type: ignore[union-attr]
    assert 's_idle -->|"quiet"| s_route' in plain and "until quiet for 10m" in plain
    assert run("idle_cart").path("i1", "idle_cart") == ["idle", "route", "live_chat", "done"]


def test_the_shipped_idle_cart_offer_expires_when_the_basket_holds_it_past_15_minutes() -> None:
    from orchestrator.actions import Disposition
    from orchestrator.dev.drive import decision
    from tests.unit.test_examples import JOURNEYS

    js = load_text((JOURNEYS / "idle_cart.yaml").read_text())
    full = lambda send, now: decision(send, "capped", "capacity exceeded", retry_at=now + timedelta(hours=6))  # noqa: E731
    state, _ = drive(CustomerState.new("c1"), ev("c", "web.cart_updated", T0, cart_id="k", cart_value=59.0, items=2), js, T0)
    quiet = T0 + timedelta(minutes=10)
    state, acts = drive(state, TimerFired(customer_id="c1", timer_id=state.instances[0].timers[0].timer_id, due_at=quiet), js, quiet, full)
    (held,) = [a for a in acts if isinstance(a, Disposition)]
    assert held.result == "deferred" and state.instances[0].timers[0].due_at == quiet + timedelta(minutes=15)
    (ref,) = state.instances[0].timers
    state, acts = drive(state, TimerFired(customer_id="c1", timer_id=ref.timer_id, due_at=ref.due_at), js, ref.due_at, full)
    assert [a.result for a in acts if isinstance(a, Disposition)] == ["expired"] and sends(acts) == [] and state.instances == []

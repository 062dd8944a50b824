"""The pure engine, construct by construct: entry, send + gate outcomes, wait/timeout, goals, dedupe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.actions import ArmTimer, CancelTimer, ConsentChange, Disposition, GateOutcome, Send, Trace
from orchestrator.dev.drive import approve_all, decision, drive
from orchestrator.engine import step
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.journey.loader import load_text
from orchestrator.state import CustomerState

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday

CART = """
id: cart
version: 1
name: Cart
entry:
  event: web.cart_abandoned
  when: [{field: data.cart_value, gte: 20}]
goals: [{name: purchased, event: web.purchase}]
exits: [{name: unsub, event: consent.unsubscribed, when: [{field: data.channel, in: [email, all]}]}]
start: first
steps:
  first: {type: send, channel: email, template: t1, comm_type: commercial, brand: shop,
          variables: {tone: friendly}, variables_from: {value: data.cart_value}, next: wait}
  wait: {type: wait, for: {opened_of: first}, timeout: 24h, on_event: done, on_timeout: second}
  second: {type: send, channel: email, template: t2, comm_type: commercial, next: done}
  done: {type: end}
"""


def ev(eid: str, etype: str, at: datetime = T0, cid: str = "c1", **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id=cid, type=etype, occurred_at=at, data=data)


def kinds(actions: list) -> list[str]:
    return [a.kind if a.kind != "trace" else f"trace:{a.what}" for a in actions]


def sends(actions: list) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def timers(actions: list) -> list[ArmTimer]:
    return [a for a in actions if isinstance(a, ArmTimer)]


def fire(state: CustomerState, arm: ArmTimer, js, decide=approve_all):
    return drive(state, TimerFired(customer_id=state.customer_id, timer_id=arm.timer_id, due_at=arm.due_at), js, arm.due_at, decide)


@pytest.fixture
def js():
    return load_text(CART)


def test_entry_sends_and_waits_for_the_open(js):
    state, actions = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=50.0), js, T0)
    assert kinds(actions) == [
        "trace:entered",
        "trace:step",
        "send",
        "disposition",
        "trace:send",
        "trace:step",
        "arm_timer",
        "trace:waiting",
    ]
    (send,) = sends(actions)
    assert send.send_id == "c1:cart:v1:e1:first"
    assert (send.channel, send.template, send.comm_type, send.brand) == ("email", "t1", "commercial", "shop")
    assert send.variables == {"tone": "friendly", "value": 50.0}
    (arm,) = timers(actions)
    assert arm.purpose == "timeout" and arm.due_at == T0 + timedelta(hours=24)
    (inst,) = state.instances
    assert inst.status == "waiting" and inst.step == "wait"
    assert [(a.event_type, a.send_id) for a in inst.awaiting] == [("ccm.opened", "c1:cart:v1:e1:first")]


def test_entry_condition_false_means_no_instance(js):
    state, actions = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=5.0), js, T0)
    assert state.instances == []
    assert [(a.what, a.journey_id, a.detail["reason"]) for a in actions if isinstance(a, Trace)] == [
        ("not_entered", "cart", "entry.when: entry.when[0] {field: data.cart_value, gte: 20.0} is false (data.cart_value = 5.0)")
    ]
    assert all(isinstance(a, Trace) for a in actions)  # nothing but the explanation


def test_open_of_the_exact_send_ends_without_reminder(js):
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    other, acts = drive(state, ev("o0", "ccm.opened", T0 + timedelta(hours=1), send_id="someone-else", channel="email"), js, T0)
    assert acts == [] and other.instances[0].status == "waiting"
    opened = ev("o1", "ccm.opened", T0 + timedelta(hours=2), send_id="c1:cart:v1:e1:first", channel="email")
    state, acts = drive(other, opened, js, T0 + timedelta(hours=2))
    assert kinds(acts) == ["cancel_timer", "trace:matched", "trace:step", "trace:exited"]
    assert isinstance(acts[0], CancelTimer) and acts[0].timer_id == "c1:cart@e1:wait:timeout"
    assert [t.edge for t in acts if isinstance(t, Trace) and t.what == "matched"] == ["done"]
    assert state.instances == [] and state.history["cart"].last_outcome == "completed"
    assert sends(acts) == []


def test_timeout_sends_the_reminder(js):
    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    state, acts = fire(state, timers(acts)[0], js)
    assert [s.template for s in sends(acts)] == ["t2"]
    assert [t.edge for t in acts if isinstance(t, Trace) and t.what == "timeout"] == ["second"]
    assert state.instances == []


def test_stale_and_duplicate_timers_are_ignored(js):
    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    arm = timers(acts)[0]
    after, acts1 = fire(state, arm, js)
    again, acts2 = fire(after, arm, js)
    assert acts1 and acts2 == [] and again is after
    unknown, acts3 = step(state, TimerFired(customer_id="c1", timer_id="nope", due_at=T0), js, T0)
    assert acts3 == [] and unknown is state


def test_goal_ends_instance_and_cancels_its_timer(js):
    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    arm = timers(acts)[0]
    state, acts = drive(state, ev("p1", "web.purchase", T0 + timedelta(hours=3), order_id="o", value=50.0), js, T0 + timedelta(hours=3))
    assert kinds(acts) == ["cancel_timer", "trace:goal"]
    assert isinstance(acts[0], CancelTimer) and acts[0].timer_id == arm.timer_id
    assert state.instances == [] and state.history["cart"].conversions == 1
    assert state.history["cart"].last_outcome == "goal"


def test_exit_with_condition(js):
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    kept, acts = drive(state, ev("u0", "consent.unsubscribed", channel="sms"), js, T0)
    assert kinds(acts) == ["consent"] and len(kept.instances) == 1
    gone, acts = drive(kept, ev("u1", "consent.unsubscribed", channel="email", brand="shop"), js, T0)
    assert kinds(acts) == ["consent", "cancel_timer", "trace:exited"]
    consent = acts[0]
    assert isinstance(consent, ConsentChange) and (consent.channel, consent.brand, consent.subscribed) == ("email", "shop", False)
    assert gone.instances == [] and gone.history["cart"].last_outcome == "exit:unsub"


def test_resubscribe_emits_consent_change(js):
    _, acts = drive(CustomerState.new("c1"), ev("r1", "consent.resubscribed", channel="sms"), js, T0)
    assert len(acts) == 1 and isinstance(acts[0], ConsentChange) and acts[0].subscribed is True and acts[0].brand is None


def test_duplicate_event_id_produces_only_a_trace(js):
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    again, acts = drive(state, ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    assert again is state
    assert kinds(acts) == ["trace:duplicate"]


def test_step_does_not_mutate_its_input(js):
    state0 = CustomerState.new("c1")
    dump0 = state0.model_dump_json()
    state1, acts = drive(state0, ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    assert state0.model_dump_json() == dump0
    dump1 = state1.model_dump_json()
    fire(state1, timers(acts)[0], js)
    drive(state1, ev("p1", "web.purchase", order_id="o", value=1.0), js, T0)
    assert state1.model_dump_json() == dump1


def test_state_round_trips_through_json(js):
    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    back = CustomerState.model_validate_json(state.model_dump_json())
    assert back == state
    # and the restored state behaves identically
    a = fire(state, timers(acts)[0], js)
    b = fire(back, timers(acts)[0], js)
    assert a[1] == b[1] and a[0].model_dump_json() == b[0].model_dump_json()


def why_not(actions: list) -> list[str]:
    return [a.detail["reason"] for a in actions if isinstance(a, Trace) and a.what == "not_entered"]


def test_reentry_after_exit_with_cooldown():
    js = load_text(CART.replace("  when: [{field: data.cart_value, gte: 20}]", "  reentry: {policy: after_exit, cooldown: 2d}"))
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    state, acts = drive(state, ev("e2", "web.cart_abandoned", cart_value=50.0), js, T0)  # live instance
    assert not any(isinstance(a, Trace) and a.what == "entered" for a in acts)
    assert why_not(acts) == ["reentry: after_exit, and the customer is still in the journey (instance cart@e1 at step wait)"]
    state, _ = drive(state, ev("p1", "web.purchase", order_id="o", value=1.0), js, T0)
    state, acts = drive(state, ev("e3", "web.cart_abandoned", cart_value=50.0), js, T0 + timedelta(days=1))  # cooling down
    assert why_not(acts) == ["reentry cooldown: last exit at 2026-03-02T10:00:00Z, may enter again from 2026-03-04T10:00:00Z"]
    assert len(acts) == 1
    state, acts = drive(state, ev("e4", "web.cart_abandoned", cart_value=50.0), js, T0 + timedelta(days=2))
    assert [a.instance_id for a in acts if isinstance(a, Trace) and a.what == "entered"] == ["cart@e4"]


def test_reentry_never():
    js = load_text(CART.replace("  when: [{field: data.cart_value, gte: 20}]", "  reentry: {policy: never}"))
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    state, _ = drive(state, ev("p1", "web.purchase", order_id="o", value=1.0), js, T0)
    state, acts = drive(state, ev("e2", "web.cart_abandoned", cart_value=50.0), js, T0 + timedelta(days=100))
    assert state.instances == []
    assert why_not(acts) == ["reentry: never, and the customer entered before (1 time)"] and len(acts) == 1


def test_reentry_always_allows_concurrent_instances():
    js = load_text(CART.replace("  when: [{field: data.cart_value, gte: 20}]", "  reentry: {policy: always}"))
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    state, _ = drive(state, ev("e2", "web.cart_abandoned", cart_value=50.0), js, T0)
    assert [i.instance_id for i in state.instances] == ["cart@e1", "cart@e2"]
    # a goal ends both
    state, acts = drive(state, ev("p1", "web.purchase", order_id="o", value=1.0), js, T0)
    assert state.instances == [] and kinds(acts).count("trace:goal") == 2


# ----------------------------------------------------------------- gate outcomes

FALLBACK = """
id: fb
version: 1
name: Fallback
entry: {event: web.form_submitted}
start: s
steps:
  s: {type: send, channel: sms, template: t, comm_type: service, on_capped: {action: fallback, channels: [email, direct_mail]},
      next: done, on_skip: missed}
  done: {type: end, outcome: sent}
  missed: {type: end, outcome: missed}
"""


def test_fallback_walks_channels_then_skips_to_on_skip():
    js = load_text(FALLBACK)
    seen: list[str] = []

    def decide(send, now):
        seen.append(send.send_id)
        return decision(send, "suppressed", f"unsubscribed from {send.channel}")

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, decide)
    assert seen == ["c1:fb:v1:f1:s", "c1:fb:v1:f1:s:email", "c1:fb:v1:f1:s:direct_mail"]
    disp = [a for a in acts if isinstance(a, Disposition)]
    assert [d.result for d in disp] == ["fallback", "fallback", "suppressed"]
    assert [s.channel for s in sends(acts)] == ["sms", "email", "direct_mail"]
    assert state.history["fb"].last_outcome == "missed"


def test_fallback_second_channel_approved():
    js = load_text(FALLBACK)

    def decide(send, now):
        return decision(send, "capped", "full") if send.channel == "sms" else decision(send)

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, decide)
    assert [(d.result, d.send.channel) for d in acts if isinstance(d, Disposition)] == [("fallback", "sms"), ("approved", "email")]
    assert state.history["fb"].last_outcome == "sent"


def test_capped_with_skip_goes_to_next():
    js = load_text(CART)

    def decide(send, now):
        return decision(send, "capped", "capacity 25 exceeded")

    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0, decide)
    (disp,) = [a for a in acts if isinstance(a, Disposition)]
    assert disp.result == "capped"
    # skipped first send: the wait has nothing to be opened, only its timeout
    (inst,) = state.instances
    assert inst.status == "waiting" and inst.awaiting == [] and len(inst.timers) == 1


DEFER = """
id: d
version: 1
name: Defer
entry: {event: web.form_submitted}
start: s
steps:
  s: {type: send, channel: email, template: t, comm_type: commercial, on_capped: {action: defer, max_attempts: 2}, next: done}
  done: {type: end}
"""


def test_defer_arms_timer_and_retries_with_new_attempt_id():
    js = load_text(DEFER)
    retry = T0 + timedelta(days=3)

    def capped(send, now):
        return decision(send, "capped", "full", retry_at=retry)

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, capped)
    (disp,) = [a for a in acts if isinstance(a, Disposition)]
    assert disp.result == "deferred"
    (arm,) = timers(acts)
    assert arm.purpose == "deferred_send" and arm.due_at == retry
    assert state.instances[0].status == "deferred"
    state, acts = fire(state, arm, js)
    assert [s.send_id for s in sends(acts)] == ["c1:d:v1:f1:s:a1"]
    assert [d.result for d in acts if isinstance(d, Disposition)] == ["approved"]
    assert state.instances == []


def test_defer_gives_up_after_max_attempts():
    js = load_text(DEFER)

    def capped(send, now):
        return decision(send, "capped", "full", retry_at=now + timedelta(days=1))

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, capped)
    ids = [s.send_id for s in sends(acts)]
    for _ in range(2):
        state, acts = fire(state, timers(acts)[0], js, capped)
        ids += [s.send_id for s in sends(acts)]
    assert ids == ["c1:d:v1:f1:s", "c1:d:v1:f1:s:a1", "c1:d:v1:f1:s:a2"]
    assert [d.result for d in acts if isinstance(d, Disposition)] == ["capped"]
    assert "gave up after 2 deferrals" in next(d for d in acts if isinstance(d, Disposition)).note
    assert state.instances == []


def test_defer_without_retry_time_skips():
    js = load_text(DEFER)

    def suppressed(send, now):
        return decision(send, "suppressed", "unsubscribed from email")

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, suppressed)
    assert [d.result for d in acts if isinstance(d, Disposition)] == ["suppressed"]
    assert timers(acts) == [] and state.instances == []


CALAMITY = """
id: outage
version: 1
name: Outage
entry: {event: ops.service_incident}
start: s
steps:
  s: {type: send, channel: email, template: outage, comm_type: calamity, priority: 10}
"""


def test_approved_calamity_cancels_deferred_marketing_in_all_instances():
    editorial = DEFER.replace("id: d", "id: news").replace("commercial", "editorial")
    service = DEFER.replace("id: d", "id: svc").replace("commercial", "service")
    js = load_text(DEFER, editorial, service, CALAMITY)

    def decide(send, now):
        if send.comm_type != "calamity":
            return decision(send, "capped", "full", retry_at=now + timedelta(days=1))
        return decision(send)

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, decide)
    deferred = {a.timer_id for a in timers(acts) if a.purpose == "deferred_send"}
    assert sorted(i.journey_id for i in state.instances if i.status == "deferred") == ["d", "news", "svc"]
    state, acts = drive(state, ev("i1", "ops.service_incident", incident_id="x", service="net", severity="major"), js, T0, decide)
    disp = [(d.result, d.send.journey_id) for d in acts if isinstance(d, Disposition)]
    assert disp == [("approved", "outage"), ("cancelled", "d"), ("cancelled", "news")]
    cancelled = {a.timer_id for a in acts if isinstance(a, CancelTimer)}
    assert cancelled < deferred and len(cancelled) == 2
    # the deferred service send survives the calamity
    assert [(i.journey_id, i.status) for i in state.instances] == [("svc", "deferred")]


def test_goal_cancels_a_deferred_send():
    js = load_text(DEFER.replace("start: s", "goals: [{event: web.purchase}]\nstart: s"))

    def capped(send, now):
        return decision(send, "capped", "full", retry_at=now + timedelta(days=1))

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, capped)
    state, acts = drive(state, ev("p1", "web.purchase", order_id="o", value=1.0), js, T0)
    assert kinds(acts) == ["cancel_timer", "disposition", "trace:goal"]
    assert isinstance(acts[1], Disposition) and acts[1].result == "cancelled"


def test_gate_outcome_for_unknown_send_is_ignored(js):
    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    send = sends(acts)[0]
    same, more = step(state, GateOutcome(customer_id="c1", send=send, decision=decision(send)), js, T0)
    assert more == [] and same is state


def test_every_send_gets_exactly_one_final_disposition(js):
    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    state, acts2 = fire(state, timers(acts)[0], js)
    all_acts = acts + acts2
    assert sorted(s.send_id for s in sends(all_acts)) == sorted(d.send.send_id for d in all_acts if isinstance(d, Disposition))


def test_actions_serialize_like_validated_models():
    """The engine builds its actions without re-validation; they must still dump and load like normal models."""
    from orchestrator import actions as A

    js = load_text(DEFER, CALAMITY, CART)

    def decide(send, now):
        return decision(send, "capped", "full", retry_at=now + timedelta(days=1)) if send.comm_type == "commercial" else decision(send)

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, decide)
    state, more = drive(state, ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0, decide)
    state, more2 = drive(state, ev("i1", "ops.service_incident", incident_id="x", service="s", severity="major"), js, T0, decide)
    kinds_seen = set()
    for a in acts + more + more2:
        kinds_seen.add(a.kind)
        back = type(a).model_validate_json(a.model_dump_json())
        assert back == a and back.model_dump() == a.model_dump()
    assert kinds_seen == {"trace", "send", "disposition", "arm_timer", "cancel_timer"}
    assert CustomerState.model_validate_json(state.model_dump_json()) == state
    assert isinstance(A.Trace.model_validate(acts[0].model_dump()), A.Trace)


# ----------------------------------------------------------------- deferred sends and send windows (issue 9, defect 1)

DEFER_IN_WINDOW = """
id: d
version: 1
name: Defer inside the send window
entry: {event: web.form_submitted}
send_window: {from: "09:00", to: "20:00"}
start: s
steps:
  s: {type: send, channel: email, template: t, comm_type: commercial, on_capped: {action: defer, max_attempts: 2}, next: done}
  done: {type: end}
"""


def test_a_deferred_send_is_retried_when_the_send_window_opens_not_at_the_basket_period_start():
    js = load_text(DEFER_IN_WINDOW)
    berlin = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)  # 14:00 in Berlin, inside the window
    state, _ = drive(CustomerState.new("c1"), ev("r1", "crm.customer_registered", timezone="Europe/Berlin"), js, berlin)
    local_midnight = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)  # 1 April 00:00 in Berlin: the next basket period

    def capped(send, now):
        return decision(send, "capped", "capacity 25 exceeded", retry_at=local_midnight)

    state, acts = drive(state, ev("f1", "web.form_submitted", berlin, form_id="x"), js, berlin, capped)
    (arm,) = timers(acts)
    assert arm.purpose == "deferred_send"
    assert arm.due_at == datetime(2026, 4, 1, 7, 0, tzinfo=UTC)  # 09:00 in Berlin on the 1st, not 00:00
    (disp,) = [a for a in acts if isinstance(a, Disposition)]
    assert disp.note == "capacity 25 exceeded; retry at 2026-04-01T07:00:00Z, when the send window opens"
    state, acts = fire(state, arm, js)
    assert [s.send_id for s in sends(acts)] == ["c1:d:v1:f1:s:a1"]


def test_a_deferred_send_due_outside_the_window_waits_for_it_under_a_new_timer_id():
    js = load_text(DEFER_IN_WINDOW)
    retry = T0 + timedelta(hours=2)  # 12:00 UTC, inside the window for a UTC customer

    def capped(send, now):
        return decision(send, "capped", "arbitration", retry_at=retry)

    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0, capped)
    (arm,) = timers(acts)
    assert arm.due_at == retry
    # the customer moves to Tokyo before the retry: 12:00 UTC is 21:00 there, after the window closed
    state, _ = drive(state, ev("p1", "crm.profile_updated", timezone="Asia/Tokyo"), js, T0 + timedelta(hours=1))
    state, acts = fire(state, arm, js)
    assert sends(acts) == []
    (held,) = timers(acts)
    assert held.purpose == "deferred_send" and held.timer_id != arm.timer_id
    assert held.due_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    assert state.instances[0].status == "deferred"
    # a redelivered TimerFired of the old timer does nothing
    again, acts = fire(state, arm, js)
    assert acts == [] and again == state
    state, acts = fire(state, held, js)
    assert [s.send_id for s in sends(acts)] == ["c1:d:v1:f1:s:a1"]


def test_profile_condition_keeps_a_customer_out_and_says_which():
    js = load_text(CART.replace("  when: [{field: data.cart_value, gte: 20}]", "  profile: [{field: profile.segment, ne: blocked}]"))
    state, _ = drive(CustomerState.new("c1"), ev("p1", "crm.profile_updated", segment="blocked"), js, T0)
    state, acts = drive(state, ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    assert state.instances == []
    assert why_not(acts) == ['entry.profile: entry.profile[0] {field: profile.segment, ne: blocked} is false (profile.segment = "blocked")']


def test_always_with_cooldown_says_when_the_customer_may_enter_again():
    js = load_text(CART.replace("  when: [{field: data.cart_value, gte: 20}]", "  reentry: {policy: always, cooldown: 1h}"))
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_value=50.0), js, T0)
    state, acts = drive(state, ev("e2", "web.cart_abandoned", cart_value=50.0), js, T0 + timedelta(minutes=10))
    assert why_not(acts) == ["reentry cooldown: last entry at 2026-03-02T10:00:00Z, may enter again from 2026-03-02T11:00:00Z"]

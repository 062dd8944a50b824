"""Every id the engine writes, pinned byte for byte (stored states and the basket's replay protection rely on them).

Send ids, timer ids, emit record ids, instance ids, campaign run ids and the audience event
id: a change here changes what a replay produces, so each is written out in full.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.actions import ArmTimer, Disposition, Emit, Send, Trace
from orchestrator.dev.drive import decision, drive
from orchestrator.engine import ids
from orchestrator.events import AudienceCheck, CustomerEvent, TimerFired
from orchestrator.journey.loader import load_text
from orchestrator.journey.model import Schedule
from orchestrator.journey.schedule import open_runs
from orchestrator.state import CustomerState, Instance

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

PIN = """
id: pin
version: 3
name: Pin
entry: {event: web.cart_abandoned}
start: first
steps:
  first: {type: send, channel: email, template: t1, comm_type: commercial, on_capped: {action: fallback, channels: [sms]}, next: wait}
  wait: {type: wait, for: {opened_of: first}, timeout: 1h, on_event: done, on_timeout: later}
  later: {type: send, channel: email, template: t2, comm_type: commercial, on_capped: {action: defer, max_attempts: 2}, next: rest}
  rest: {type: delay, duration: 1h, next: note}
  note: {type: emit, topic: webcare, record: {kind: "x"}, next: done}
  done: {type: end}
"""

LOOP = """
id: loop
version: 1
name: Loop
entry: {event: web.page_view}
start: s
steps:
  s: {type: send, channel: push, template: p, comm_type: service, next: w}
  w: {type: wait, for: {event: web.purchase}, timeout: 1h, on_event: done, on_timeout: s}
  done: {type: end}
"""

NEWS = """
id: news
version: 2
name: News
entry:
  audience:
    when: [{field: profile.segment, eq: active}]
    schedule: {every: day, at: "10:00"}
start: s
steps:
  s: {type: send, channel: email, template: n, comm_type: editorial, next: done}
  done: {type: end}
"""


def ev(eid: str, etype: str, at: datetime = T0, **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id="c1", type=etype, occurred_at=at, data=data)


def fire(state: CustomerState, arm: ArmTimer, js, decide):
    return drive(state, TimerFired(customer_id="c1", timer_id=arm.timer_id, due_at=arm.due_at), js, arm.due_at, decide)


def test_send_timer_emit_and_instance_ids_of_a_journey_are_pinned():
    js = load_text(PIN)

    def first_email_capped(send: Send, now: datetime):
        if send.send_id.endswith(":first") or (send.step_id == "later" and ":a" not in send.send_id):
            return decision(send, "capped", "full", retry_at=now + timedelta(hours=2))
        return decision(send)

    state, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=5.0), js, T0, first_email_capped)
    assert [a.send_id for a in acts if isinstance(a, Send)] == ["c1:pin:v3:e1:first", "c1:pin:v3:e1:first:sms"]
    assert [i.instance_id for i in state.instances] == ["pin@e1"]
    (timeout,) = [a for a in acts if isinstance(a, ArmTimer)]
    assert (timeout.timer_id, timeout.purpose) == ("c1:pin@e1:wait:timeout", "timeout")
    state, acts = fire(state, timeout, js, first_email_capped)
    assert [a.send_id for a in acts if isinstance(a, Send)] == ["c1:pin:v3:e1:later"]
    (deferred,) = [a for a in acts if isinstance(a, ArmTimer)]
    assert (deferred.timer_id, deferred.purpose) == ("c1:pin@e1:later:deferred:1", "deferred_send")
    state, acts = fire(state, deferred, js, first_email_capped)
    assert [a.send_id for a in acts if isinstance(a, Send)] == ["c1:pin:v3:e1:later:a1"]
    (delay,) = [a for a in acts if isinstance(a, ArmTimer)]
    assert (delay.timer_id, delay.purpose) == ("c1:pin@e1:rest:delay", "delay")
    state, acts = fire(state, delay, js, first_email_capped)
    assert [a.record_id for a in acts if isinstance(a, Emit)] == ["c1:pin:v3:e1:note"]
    assert state.instances == []


def test_a_second_visit_of_a_step_has_its_own_ids():
    js = load_text(LOOP)
    state, acts = drive(CustomerState.new("c1"), ev("pv", "web.page_view", url="/"), js, T0)
    (arm,) = [a for a in acts if isinstance(a, ArmTimer)]
    assert arm.timer_id == "c1:loop@pv:w:timeout"
    state, acts = fire(state, arm, js, lambda send, now: decision(send))
    assert [a.send_id for a in acts if isinstance(a, Send)] == ["c1:loop:v1:pv:s#2"]
    assert [a.timer_id for a in acts if isinstance(a, ArmTimer)] == ["c1:loop@pv:w#2:timeout"]


def test_timer_ids_of_quiet_waits_and_deferred_sends_held_for_the_window():
    inst = Instance(instance_id="j@e1", journey_id="j", version=1, entry_event_id="e1", entered_at=T0, step="w", visits={"w": 1, "s": 2})
    assert ids.timer_id("c1", inst, "w", "quiet", 1772449200) == "c1:j@e1:w:quiet:1772449200"
    assert ids.timer_id("c1", inst, "s", "window") == "c1:j@e1:s#2:window"
    assert ids.timer_id("c1", inst, "s", "deferred-window-20260302T0900", 2) == "c1:j@e1:s#2:deferred-window-20260302T0900:2"


def test_a_campaign_run_has_its_run_id_audience_event_id_and_instance_id():
    js = load_text(NEWS)
    (run,) = open_runs(Schedule(every="day", at="10:00"), T0)
    assert run.run_id == "2026-03-02T10:00Z"
    profiled, _ = drive(CustomerState.new("c1"), ev("p", "crm.profile_updated", T0 - timedelta(days=1), segment="active"), js, T0)
    check = AudienceCheck(customer_id="c1", journey_id="news", run_id=run.run_id, due_at=T0)
    assert check.event_id == "audience:news:2026-03-02T10:00Z"
    state, acts = drive(profiled, check, js, T0)
    assert [a.send_id for a in acts if isinstance(a, Send)] == ["c1:news:v2:audience:news:2026-03-02T10:00Z:s"]
    (entered,) = [a for a in acts if isinstance(a, Trace) and a.what == "entered"]
    assert entered.instance_id == "news@audience:news:2026-03-02T10:00Z"
    assert state.remembers("audience:news:2026-03-02T10:00Z")


def test_run_ids_of_every_kind_of_schedule():
    def first(**spec: object) -> str:
        return open_runs(Schedule(**spec), T0)[0].run_id  # type: ignore[arg-type]

    assert first(at="2026-03-01T11:30:00+01:00") == "2026-03-01T10:30Z"
    assert first(at="2026-03-01T10:30", local=True) == "2026-03-01T10:30L"
    assert first(every="day", at="09:15", local=True) == "2026-03-02T09:15L"
    assert first(every="hour", at="00:45") == "2026-03-02T09:45Z"
    assert first(every="week", at="10:00", on="mon") == "2026-03-02T10:00Z"
    assert first(every="month", at="08:00", day=1) == "2026-03-01T08:00Z"


def test_dispositions_carry_the_send_as_gated():
    js = load_text(PIN)
    _, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=5.0), js, T0)
    (d,) = [a for a in acts if isinstance(a, Disposition)]
    assert (d.send.send_id, d.send.instance_id, d.result) == ("c1:pin:v3:e1:first", "pin@e1", "approved")

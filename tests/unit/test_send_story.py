"""A send's story in one place: the send held in memory only while at the basket, one loop for every path,
and the campaign run on the engine's output (``Send.run_id``, ``Trace.run_id``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import processor
from orchestrator.actions import ConsentChange, Disposition, GateOutcome, Send, Trace
from orchestrator.dedupe import EngineLimits
from orchestrator.dev.drive import cap_all, decision, drive
from orchestrator.engine import step
from orchestrator.events import AudienceCheck, CustomerEvent, TimerFired
from orchestrator.journey.loader import load_text
from orchestrator.journey.model import Schedule
from orchestrator.journey.schedule import GRACE, open_runs
from orchestrator.metrics import Metrics
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import load_policy
from orchestrator.processor import RunawayJourney, gate_loop, process
from orchestrator.runtime.campaigns import CampaignScheduler, RunState
from orchestrator.runtime.store import StateStore
from orchestrator.state import CustomerState

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
RUN = "2026-03-02T10:00Z"

CART = """
id: cart
version: 1
name: Cart
entry: {event: web.cart_abandoned}
start: first
steps:
  first: {type: send, channel: email, template: t1, comm_type: commercial, on_capped: {action: fallback, channels: [sms]}, next: wait}
  wait: {type: wait, for: {opened_of: first}, timeout: 1h, on_event: done, on_timeout: done}
  done: {type: end}
"""

NEWS = """
id: news
version: 1
name: News
entry:
  audience:
    when: [{field: profile.segment, eq: active}]
    schedule: {every: day, at: "10:00"}
  reentry: {policy: never}
start: s
steps:
  s: {type: send, channel: email, template: n, comm_type: editorial, on_capped: {action: defer, max_attempts: 2}, next: done}
  done: {type: end}
"""

BYE = """
id: bye
version: 1
name: Bye
entry: {event: consent.unsubscribed}
start: s
steps:
  s: {type: send, channel: email, template: bye, comm_type: service, next: done}
  done: {type: end}
"""


def ev(eid: str, etype: str, at: datetime = T0, **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id="c1", type=etype, occurred_at=at, data=data)


def active() -> CustomerState:
    state, _ = drive(CustomerState.new("c1"), ev("p", "crm.profile_updated", T0 - timedelta(days=1), segment="active"), load_text(NEWS), T0)
    return state


def check(run: str = RUN) -> AudienceCheck:
    return AudienceCheck(customer_id="c1", journey_id="news", run_id=run, due_at=T0)


# ---------------------------------------------------------------- the send at the basket: in memory only


def test_a_send_at_the_basket_is_held_in_memory_and_never_stored():
    js = load_text(CART)
    state, actions = step(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=5.0), js, T0)
    (send,) = [a for a in actions if isinstance(a, Send)]
    (inst,) = state.instances
    assert inst.gating == send and inst.status == "running"
    stored = json.loads(state.model_dump_json())
    assert "gating" not in stored["instances"][0]
    after, more = step(state, GateOutcome(customer_id="c1", send=send, decision=decision(send)), js, T0)
    assert after.instances[0].gating is None and after.instances[0].status == "waiting"
    assert [d.result for d in more if isinstance(d, Disposition)] == ["approved"]


def test_a_state_stored_by_an_earlier_version_still_loads():
    js = load_text(CART)
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=5.0), js, T0)
    old = json.loads(state.model_dump_json())
    old["instances"][0]["gating"] = None  # every instance an earlier version stored had the key
    assert CustomerState.model_validate(old) == state
    send = {"send_id": "c1:cart:v1:e1:first", "customer_id": "c1", "journey_id": "cart", "journey_version": 1}
    send |= {"instance_id": "cart@e1", "step_id": "first", "channel": "email", "template": "t1", "comm_type": "commercial"}
    old["instances"][0] |= {"status": "gating", "gating": send, "timers": []}  # a send at the basket (never stored in practice)
    loaded = CustomerState.model_validate_json(json.dumps(old))
    assert loaded.instances[0].status == "running"
    assert "gating" not in json.loads(loaded.model_dump_json())["instances"][0]


def test_a_deferred_send_stored_before_run_ids_gets_its_run_from_its_instance():
    fields = {"send_id": "x", "customer_id": "c1", "journey_id": "news", "journey_version": 1, "step_id": "s"}
    fields |= {"channel": "email", "template": "n", "comm_type": "editorial"}
    assert Send.model_validate({**fields, "instance_id": f"news@audience:news:{RUN}"}).run_id == RUN
    assert Send.model_validate({**fields, "instance_id": "news@e1"}).run_id is None
    assert Send.model_validate({**fields, "instance_id": f"news@audience:news:{RUN}", "run_id": None}).run_id is None


# ---------------------------------------------------------------- one loop for every path


def test_the_worker_and_the_test_driver_run_the_same_loop():
    js = load_text(CART)
    message = ev("e1", "web.cart_abandoned", cart_id="k", cart_value=5.0)
    basket = MemoryBasket(load_policy(ROOT / "journeys" / "pressure.yaml"))
    result = asyncio.run(process(CustomerState.new("c1"), message, js, T0, basket))
    approved = {d.send.send_id: d.decision for d in result.dispositions}

    def same_answers(send: Send, now: datetime):
        return approved[send.send_id]

    state, actions = drive(CustomerState.new("c1"), message, js, T0, same_answers)
    assert state == result.state
    assert [a for a in actions if isinstance(a, Trace)] == result.traces
    assert [a for a in actions if isinstance(a, Disposition)] == result.dispositions


def test_a_consent_change_reaches_the_basket_before_a_later_send_is_gated():
    js = load_text(BYE)
    loop = gate_loop(CustomerState.new("c1"), ev("u1", "consent.unsubscribed", channel="sms"), js, T0)
    calls = []
    answer = None
    with pytest.raises(StopIteration):
        while True:
            call = loop.send(answer)
            calls.append(call)
            answer = decision(call) if isinstance(call, Send) else None
    assert [type(c) for c in calls] == [ConsentChange, Send]


def test_every_path_stops_a_runaway_message(monkeypatch):
    monkeypatch.setattr(processor, "MAX_ACTIONS_PER_MESSAGE", 3)
    js = load_text(CART)
    with pytest.raises(RunawayJourney):
        drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=5.0), js, T0)


# ---------------------------------------------------------------- the campaign run on the engine's output


def test_a_run_names_itself_on_its_traces_and_its_sends():
    js = load_text(NEWS)
    state, acts = drive(active(), check(), js, T0)
    (entered,) = [a for a in acts if isinstance(a, Trace) and a.what == "entered"]
    assert entered.run_id == RUN
    assert all(t.run_id is None for t in acts if isinstance(t, Trace) and t.what != "entered")
    assert [(s.send_id, s.run_id) for s in acts if isinstance(s, Send)] == [(f"c1:news:v1:audience:news:{RUN}:s", RUN)]
    assert {d.send.run_id for d in acts if isinstance(d, Disposition)} == {RUN}
    _, again = drive(state, check(), js, T0 + timedelta(minutes=1))
    assert [(t.what, t.run_id) for t in again if isinstance(t, Trace)] == [("duplicate", RUN)]
    _, later = drive(state, check("2026-03-03T10:00Z"), js, T0 + timedelta(days=1))
    assert [(t.what, t.run_id) for t in later if isinstance(t, Trace)] == [("not_entered", "2026-03-03T10:00Z")]


def test_a_retried_deferred_send_and_a_fallback_keep_the_run_and_event_entries_have_none():
    js = load_text(NEWS)
    state, acts = drive(active(), check(), js, T0, cap_all)
    (arm,) = [a for a in acts if a.kind == "arm_timer"]
    _, acts = drive(state, TimerFired(customer_id="c1", timer_id=arm.timer_id, due_at=arm.due_at), js, arm.due_at)
    assert [(s.send_id, s.run_id) for s in acts if isinstance(s, Send)] == [(f"c1:news:v1:audience:news:{RUN}:s:a1", RUN)]
    _, acts = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=5.0), load_text(CART), T0, cap_all)
    assert [(s.send_id, s.run_id) for s in acts if isinstance(s, Send)] == [
        ("c1:cart:v1:e1:first", None),
        ("c1:cart:v1:e1:first:sms", None),
    ]
    assert all(t.run_id is None for t in acts if isinstance(t, Trace))


# ---------------------------------------------------------------- when a run still reaches a customer: one answer


def test_a_run_reaches_a_customer_for_its_grace_at_most_half_the_dedupe_window():
    (daily,) = open_runs(Schedule(every="day", at="10:00"), T0)
    (hourly,) = open_runs(Schedule(every="hour", at="00:00"), T0)
    assert daily.reach() == GRACE and hourly.reach() == timedelta(hours=1)
    assert daily.reach(timedelta(hours=12)) == timedelta(hours=6)
    assert daily.open_for(None, T0 + GRACE - timedelta(seconds=1)) and not daily.open_for(None, T0 + GRACE)
    assert not daily.open_for(None, T0 + timedelta(hours=6), timedelta(hours=12))


def test_the_worker_scan_takes_the_reach_from_the_run():
    (daily,) = open_runs(Schedule(every="day", at="10:00"), T0)
    window = timedelta(hours=12)
    by_window = CampaignScheduler(StateStore("changelog"), Metrics(), dedupe_window=window)
    assert by_window.dedupe_window == window
    run = RunState("news", daily, daily.reach(by_window.dedupe_window))
    assert run.due(None)[2] == (T0 + timedelta(hours=6)).timestamp()
    assert CampaignScheduler(StateStore("changelog"), Metrics()).dedupe_window == EngineLimits().dedupe_window


def test_the_scan_asks_the_engines_dedupe_whether_a_run_reached_a_customer():
    js = load_text(NEWS)
    (daily,) = open_runs(Schedule(every="day", at="10:00"), T0)
    run = RunState("news", daily, daily.reach())
    state, _ = drive(active(), check(), js, T0)
    assert run.remembered_by(state.recent_event_ids) and state.remembers(run.event_id)
    assert not run.remembered_by(active().recent_event_ids)
    legacy = CustomerState.model_validate({"customer_id": "c1", "recent_event_ids": ["e1", run.event_id]})
    assert run.remembered_by(legacy.recent_event_ids) and not run.remembered_by("")

"""Message expiry (expires_after / on_expired) and content per channel on fallback: the pure engine, validate, simulate, render."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.actions import Action, ArmTimer, Disposition, Send, Trace
from orchestrator.designer.render import render_mermaid
from orchestrator.designer.simulate import format_text, simulate_files
from orchestrator.dev.drive import Decide, cap_all, decision, drive
from orchestrator.durations import HELP
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.journey.loader import JourneySet, load_text, parse_text
from orchestrator.pressure.basket import Decision
from orchestrator.records import OUTBOUND_MODELS, DecisionRecord, SendRequest
from orchestrator.state import CustomerState

ROOT = Path(__file__).resolve().parents[2]
SUN = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)  # a Sunday, 15:00 UTC
MON = datetime(2026, 3, 9, 8, 30, tzinfo=UTC)  # Monday 08:30 UTC, half an hour before opening

OFFER = """
id: offer
version: 1
name: In-store offer
entry: {event: geo.store_entered, reentry: {policy: always}}
start: offer
steps:
  offer:
    type: send
    channel: push
    template: in_store_offer
    comm_type: commercial
    window: {days: [mon, tue, wed, thu, fri, sat], from: "09:00", to: "20:00"}
    expires_after: 2h
    on_expired: missed
    next: done
  missed: {type: end, outcome: offer_expired}
  done: {type: end}
"""

DEFERRED = """
id: deferred
version: 1
name: Deferred offer
entry: {event: web.cart_abandoned}
start: offer
steps:
  offer:
    type: send
    channel: email
    template: cart_reminder
    comm_type: commercial
    on_capped: {action: defer, max_attempts: 3}
    expires_after: 15m
    EDGES
  done: {type: end}
"""
ENDS = {"skipped": "  skipped: {type: end, outcome: skipped}\n", "missed": "  missed: {type: end, outcome: missed}\n"}


def visit(eid: str, at: datetime) -> CustomerEvent:
    return CustomerEvent(
        event_id=eid, customer_id="c1", type="geo.store_entered", occurred_at=at, data={"store_id": "s", "latitude": 1, "longitude": 1}
    )


def cart(at: datetime) -> CustomerEvent:
    return CustomerEvent(
        event_id="k1", customer_id="c1", type="web.cart_abandoned", occurred_at=at, data={"cart_id": "k", "cart_value": 50}
    )


def arms(actions: list) -> list[ArmTimer]:
    return [a for a in actions if isinstance(a, ArmTimer)]


def dispositions(actions: list) -> list[Disposition]:
    return [a for a in actions if isinstance(a, Disposition)]


def sends(actions: list) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def ended(actions: list) -> list[str]:
    return [a.detail["outcome"] for a in actions if isinstance(a, Trace) and a.what in ("exited", "goal")]


def fire(state: CustomerState, arm: ArmTimer, js: JourneySet, decide: Decide | None = None) -> tuple[CustomerState, list[Action]]:
    message = TimerFired(customer_id=state.customer_id, timer_id=arm.timer_id, due_at=arm.due_at)
    return drive(state, message, js, arm.due_at, decide) if decide else drive(state, message, js, arm.due_at)


def deferred_journey(edges: str = "next: done") -> str:
    """The deferred journey with these edges out of its send step (and the end steps they name)."""
    return DEFERRED.replace("EDGES", edges) + "".join(step for name, step in ENDS.items() if f": {name}" in edges)


def locked(send: Send, now: datetime) -> Decision:
    return decision(send, "locked", f"calamity lock until {(now + timedelta(hours=72)).isoformat()}", retry_at=now + timedelta(hours=72))


# ------------------------------------------------------------------ expiry


def test_expires_while_held_by_the_send_window():
    js = load_text(OFFER)
    state, acts = drive(CustomerState.new("c1"), visit("v1", SUN), js, SUN)
    assert sends(acts) == [] and dispositions(acts) == []
    (arm,) = arms(acts)
    assert arm.purpose == "window" and arm.due_at == SUN + timedelta(hours=2)  # the deadline, not Monday 09:00
    assert state.instances[0].expires_at == SUN + timedelta(hours=2)
    state, acts = fire(state, arm, js)
    assert sends(acts) == []
    (d,) = dispositions(acts)
    assert d.result == "expired" and d.decision is None
    assert d.note == "expired: held by the send window since 2026-03-08T15:00:00Z; expires_after 2h passed at 2026-03-08T17:00:00Z"
    assert (d.send.send_id, d.send.template) == ("c1:offer:v1:v1:offer", "in_store_offer")
    (t,) = [a for a in acts if isinstance(a, Trace) and a.what == "send"]
    assert (t.detail["result"], t.edge) == ("expired", "missed")
    assert ended(acts) == ["offer_expired"] and state.instances == []
    record = DecisionRecord.of(d, arm.due_at)
    assert (record.result, record.outcome, record.code, record.template, record.cost) == (
        "expired",
        "not_asked",
        None,
        "in_store_offer",
        0.0,
    )


def test_not_expired_when_the_window_opens_in_time():
    js = load_text(OFFER)
    state, acts = drive(CustomerState.new("c1"), visit("v1", MON), js, MON)
    (arm,) = arms(acts)
    assert arm.due_at == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)  # the opening, before the 10:30 deadline
    state, acts = fire(state, arm, js)
    assert [d.result for d in dispositions(acts)] == ["approved"] and ended(acts) == ["completed"]


def test_expires_while_held_by_a_deferral_whose_retry_is_after_the_deadline():
    js = load_text(deferred_journey())
    state, acts = drive(CustomerState.new("c1"), cart(MON), js, MON, cap_all)  # capped; fits again a day later
    (d,) = dispositions(acts)
    assert d.result == "deferred" and "after the send expires at 2026-03-09T08:45:00Z: held until then" in d.note
    (arm,) = arms(acts)
    assert arm.purpose == "deferred_send" and arm.due_at == MON + timedelta(minutes=15)  # not a day later
    state, acts = fire(state, arm, js, cap_all)
    assert sends(acts) == []  # the basket is not asked again
    (d,) = dispositions(acts)
    assert d.result == "expired" and d.decision is not None and d.decision.outcome == "capped"
    assert d.note.startswith("expired: held by a basket deferral (capped, code capacity): capacity exceeded, fits again at ")
    assert d.note.endswith("; expires_after 15m passed at 2026-03-09T08:45:00Z")
    assert ended(acts) == ["completed"] and state.instances == []  # default: next (no on_expired, no on_skip)


def test_not_expired_when_the_deferral_retries_in_time():
    js = load_text(deferred_journey())
    soon = lambda send, now: decision(send, "capped", "capacity exceeded", retry_at=now + timedelta(minutes=5))  # noqa: E731
    state, acts = drive(CustomerState.new("c1"), cart(MON), js, MON, soon)
    (arm,) = arms(acts)
    assert arm.due_at == MON + timedelta(minutes=5)
    state, acts = fire(state, arm, js)
    assert [d.result for d in dispositions(acts)] == ["approved"] and state.instances == []


def test_expires_while_held_by_a_calamity_lock():
    js = load_text(deferred_journey("on_expired: missed\n    next: done"))
    state, acts = drive(CustomerState.new("c1"), cart(MON), js, MON, locked)
    (arm,) = arms(acts)
    assert arm.due_at == MON + timedelta(minutes=15)
    state, acts = fire(state, arm, js, locked)
    (d,) = dispositions(acts)
    assert d.result == "expired" and d.note.startswith("expired: held by a calamity lock: calamity lock until ")
    assert ended(acts) == ["missed"]


def test_the_default_after_expiry_is_on_skip_then_next():
    for edges, outcome in (
        ("on_skip: skipped\n    next: done", "skipped"),
        ("on_expired: missed\n    on_skip: skipped\n    next: done", "missed"),
    ):
        js = load_text(deferred_journey(edges))
        state, acts = drive(CustomerState.new("c1"), cart(MON), js, MON, cap_all)
        _, acts = fire(state, arms(acts)[0], js, cap_all)
        assert ended(acts) == [outcome], edges


def test_expiry_is_replay_idempotent():
    js = load_text(OFFER)
    state, acts = drive(CustomerState.new("c1"), visit("v1", SUN), js, SUN)
    (arm,) = arms(acts)
    first = fire(state, arm, js)
    again = fire(state, arm, js)  # the same timer, replayed from the same state
    assert first[0] == again[0]
    assert [a.model_dump() for a in first[1]] == [a.model_dump() for a in again[1]]
    _, after = fire(first[0], arm, js)  # redelivered after it fired: unknown timer, ignored
    assert after == []
    # an entry replayed from the same state fixes the same deadline and timer
    replay, acts2 = drive(CustomerState.new("c1"), visit("v1", SUN), js, SUN)
    assert replay == state and [a.timer_id for a in arms(acts2)] == [arm.timer_id]


def test_a_send_without_expires_after_keeps_waiting_for_the_window():
    js = load_text(OFFER.replace("    expires_after: 2h\n    on_expired: missed\n", "    on_skip: missed\n"))
    state, acts = drive(CustomerState.new("c1"), visit("v1", SUN), js, SUN)
    assert arms(acts)[0].due_at == datetime(2026, 3, 9, 9, 0, tzinfo=UTC) and state.instances[0].expires_at is None


# ------------------------------------------------------------------ fallback content per channel

FALLBACK = """
id: call
version: 1
name: Call-center script
entry: {event: web.cart_abandoned}
start: call
steps:
  call:
    type: send
    channel: call_center
    template: cc_script
    comm_type: service
    variables: {tone: warm, script: long}
    variables_from: {cart_value: data.cart_value}
    on_capped:
      action: fallback
      channels:
        - {channel: email, template: cc_script_email, variables: {script: short}}
        - sms
"""


def test_fallback_channel_with_its_own_template_and_variables():
    js = load_text(FALLBACK)
    capped = lambda send, now: decision(send, "approved" if send.channel == "sms" else "capped", "capacity exceeded")  # noqa: E731
    _, acts = drive(CustomerState.new("c1"), cart(MON), js, MON, capped)
    tried = [(s.channel, s.template, s.variables) for s in sends(acts)]
    assert tried == [
        ("call_center", "cc_script", {"tone": "warm", "script": "long", "cart_value": 50}),
        ("email", "cc_script_email", {"tone": "warm", "script": "short", "cart_value": 50}),
        ("sms", "cc_script", {"tone": "warm", "script": "long", "cart_value": 50}),  # a bare name: the step's content
    ]
    ds = dispositions(acts)
    assert [d.result for d in ds] == ["fallback", "fallback", "approved"]
    assert ds[0].note == "capacity exceeded; falling back to email with template cc_script_email"
    assert [DecisionRecord.of(d, MON).template for d in ds] == ["cc_script", "cc_script_email", "cc_script"]
    email = next(a for a in acts if isinstance(a, Trace) and a.what == "send")
    assert (email.detail["fallback_to"], email.detail["fallback_template"]) == ("email", "cc_script_email")


def test_fallback_to_email_sends_the_email_template():
    js = load_text(FALLBACK)
    first = lambda send, now: decision(send, "capped" if send.channel == "call_center" else "approved", "no")  # noqa: E731
    _, acts = drive(CustomerState.new("c1"), cart(MON), js, MON, first)
    approved = [d for d in dispositions(acts) if d.result == "approved"]
    request = SendRequest.of(approved[0], MON)
    assert (request.channel, request.template, request.variables["script"]) == ("email", "cc_script_email", "short")
    assert request.send_id == "c1:call:v1:k1:call:email"


def test_the_old_fallback_shape_still_works():
    js = load_text(FALLBACK.replace("        - {channel: email, template: cc_script_email, variables: {script: short}}\n", ""))
    capped = lambda send, now: decision(send, "approved" if send.channel == "sms" else "capped", "no")  # noqa: E731
    _, acts = drive(CustomerState.new("c1"), cart(MON), js, MON, capped)
    assert [(s.channel, s.template) for s in sends(acts)] == [("call_center", "cc_script"), ("sms", "cc_script")]
    assert dispositions(acts)[0].note == "no; falling back to sms"
    assert [DecisionRecord.of(d, MON).template for d in dispositions(acts)] == ["cc_script", "cc_script"]


# ------------------------------------------------------------------ validate, schemas, render, simulate


def problems(text: str) -> list[str]:
    journey, errors = parse_text(text, "offer.yaml")
    assert journey is None
    return errors


def test_validate_locates_expiry_and_fallback_problems():
    negative = problems(OFFER.replace("expires_after: 2h", "expires_after: -15m"))
    assert negative == [f"offer.yaml:14:5: steps.offer.expires_after: bad duration '-15m': {HELP}"]
    zero = problems(OFFER.replace("expires_after: 2h", "expires_after: 0s"))
    assert zero == [f"offer.yaml:14:5: steps.offer.expires_after: bad duration '0s': must be longer than 0s; {HELP}"]
    typo = problems(OFFER.replace("on_expired: missed", "on_expired: mised"))
    assert (
        typo[0]
        == "offer.yaml:15:5: unknown step 'mised' referenced from step 'offer': did you mean 'missed'? (steps are: offer, missed, done)"
    )
    alone = problems(OFFER.replace("    expires_after: 2h\n", ""))
    assert alone == ["offer.yaml:14:5: steps.offer.on_expired: on_expired only applies with expires_after: (how long the send may be held)"]
    raw = problems(OFFER.replace("expires_after: 2h", "expires_after: soon").replace("on_expired: missed", "on_expired: mised"))
    assert [p.split(": ")[0] for p in raw] == ["offer.yaml:14:5", "offer.yaml:15:5"]  # a rejected file still has its references checked
    bad_channel = problems(FALLBACK.replace("{channel: email,", "{channel: fax,"))
    channels = "email, sms, push, call_center, direct_mail, web_message, in_app"
    assert bad_channel == [f"offer.yaml:18:12: steps.call.on_capped.channels.0.channel: unknown channel 'fax': use one of {channels}"]
    bad_key = problems(FALLBACK.replace("template: cc_script_email,", "templat: cc_script_email,"))
    assert bad_key == ["offer.yaml:18:28: steps.call.on_capped.channels.0.templat: unknown key 'templat' (did you mean 'template'?)"]
    bare = problems(FALLBACK.replace("        - sms", "        - fax"))
    assert bare[0].startswith("offer.yaml:19:11: steps.call.on_capped.channels.1: unknown channel 'fax'")


def test_schemas_offer_expiry_fallback_content_and_the_expired_result():
    from orchestrator.journey.model import json_schema

    defs = json_schema()["$defs"]
    assert {"expires_after", "on_expired"} <= set(defs["SendStep"]["properties"])
    assert set(defs["FallbackChannel"]["properties"]) == {"channel", "template", "variables"}
    decision_schema = OUTBOUND_MODELS["decision"].model_json_schema()
    assert "expired" in decision_schema["properties"]["result"]["enum"]
    assert "template" in decision_schema["properties"]


def test_render_draws_the_on_expired_edge():
    js = load_text(OFFER)
    text = render_mermaid(js.newest("offer").journey)  # type: ignore[union-attr]
    assert 's_offer -->|"expired"| s_missed' in text and 's_offer -->|"sent"| s_done' in text
    assert "expires after 2h" in text
    counted = render_mermaid(js.newest("offer").journey, {("offer", "missed"): 1})  # type: ignore[union-attr]
    assert 's_offer -->|"expired: 1"| s_missed' in counted


def test_simulate_a_sunday_store_visit_never_gets_its_offer_on_monday():
    result = simulate_files(ROOT / "journeys", ROOT / "tests/fixtures/events/store_offer.jsonl")
    g2 = [r for r in result.for_customer("g2") if r.kind == "send"]
    assert [(r.at.isoformat(), r.data["result"], r.data["code"]) for r in g2] == [("2026-03-08T17:00:00+00:00", "expired", None)]
    assert g2[0].edge == "missed" and g2[0].data["reason"].startswith("expired: held by the send window since 2026-03-08T15:00:00Z")
    assert not [d for d in result.sends("g2") if d.result == "approved"]
    text = format_text(result, ["g2"])
    assert "send push in_store_offer (commercial, p6) -> expired: expired: held by the send window" in text
    assert "[basket not asked]" in text and "ended at missed: offer_expired" in text
    assert result.edge_counts("store_offer")[("offer", "missed")] == 1

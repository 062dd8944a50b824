"""`orchestrator simulate` tells everything: cancelled timers, timers' journeys, deferred sends' retries, folded refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.designer.simulate import RECORD_ADAPTER, format_json_lines, format_text, simulate, simulate_files
from orchestrator.journey.loader import load_text
from tests.unit.test_simulate import EVENTS, ROOT, Approve, camp, cli, crm

HIGH = """
id: high
version: 1
name: High priority service message
entry: {event: web.form_submitted}
start: s
steps:
  s: {type: send, channel: email, template: hi, comm_type: service, priority: 8}
"""

LOW = """
id: low
version: 1
name: Lower priority offer, deferred when the basket says no
entry: {event: web.page_view}
start: s
SEND_WINDOW
steps:
  s: {type: send, channel: email, template: lo, comm_type: commercial, priority: 5, on_capped: {action: defer, max_attempts: 3}}
"""

WINDOW = 'send_window: {from: "09:00", to: "10:00"}'


def _arbitration(tmp_path: Path, window: str = "") -> list[dict]:
    """A priority-8 send at 09:50, then a priority-5 send at 09:55 that arbitration (15 min) defers; JSON lines of customer c1."""
    (tmp_path / "high.yaml").write_text(HIGH)
    (tmp_path / "low.yaml").write_text(LOW.replace("SEND_WINDOW", window))
    (tmp_path / "pressure.yaml").write_text("capacity: 25\narbitration_window: 15m\n")
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"family": "web", "type": "form_submitted", "event_id": "f1", "customer_id": "c1", "occurred_at": "2026-01-05T09:50:00Z", '
        '"form_id": "x"}\n'
        '{"family": "web", "type": "page_view", "event_id": "p1", "customer_id": "c1", "occurred_at": "2026-01-05T09:55:00Z", "url": "/"}\n'
    )
    lines = [json.loads(line) for line in format_json_lines(simulate_files(tmp_path, events)).splitlines()]
    for line in lines:
        RECORD_ADAPTER.validate_python(line)
    return lines


def _deferred(lines: list[dict]) -> dict:
    [send] = [line for line in lines if line["kind"] == "send" and line["result"] == "deferred"]
    return send


def test_the_text_output_shows_cancelled_timers():
    code, out, _ = cli("simulate", "--customer", "c3", "--journeys", str(ROOT / "journeys"), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 0
    # c3 buys before the open's 24 h timeout: the goal cancels it
    assert "  2026-03-02T18:00:00Z  timer cancelled c3:abandoned_cart@c3-e1:wait_open:timeout" in out.splitlines()


def test_timer_records_carry_the_journey_that_armed_them():
    code, out, _ = cli("simulate", "--json", "--journeys", str(ROOT / "journeys"), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 0
    timers = [json.loads(line) for line in out.splitlines() if '"kind": "timer' in line]
    assert {t["kind"] for t in timers} == {"timer_armed", "timer", "timer_cancelled"}
    for t in timers:
        assert (t["journey"], t["version"], t["step_id"]) == ("abandoned_cart", 1, "wait_open"), t
        assert t["instance_id"] == f"abandoned_cart@{t['customer']}-e1"


def test_an_arbitration_deferral_states_its_retry_once(tmp_path):
    send = _deferred(_arbitration(tmp_path))
    # the basket's reason ends in its own retry time; the deferral adds when the journey retries: one "retry at"
    assert send["text"].count("retry at") == 1 and send["reason"].count("retry at") == 1
    assert send["reason"] == "arbitration: a priority-8 send went out within the window; retry at 2026-01-05T10:05:00Z"
    assert send["retry_at"] == send["fits_at"] == "2026-01-05T10:05:00Z"


def test_a_deferral_outside_the_send_window_says_when_the_retry_happens(tmp_path):
    lines = _arbitration(tmp_path, WINDOW)
    send = _deferred(lines)
    # arbitration would let it go at 10:05, but the window (09:00-10:00) is closed then: the retry is at the next opening
    assert send["retry_at"] == "2026-01-06T09:00:00Z" and send["fits_at"] == "2026-01-05T10:05:00Z"
    assert send["text"].count("retry at") == 1 and "retry at 2026-01-06T09:00:00Z, when the send window opens" in send["text"]
    [armed] = [line for line in lines if line["kind"] == "timer_armed"]
    assert armed["due_at"] == send["retry_at"] and (armed["journey"], armed["version"]) == ("low", 1)
    retried = [line for line in lines if line["kind"] == "send" and line["send_id"] == "c1:low:v1:p1:s:a1"]
    assert [(r["at"], r["result"]) for r in retried] == [("2026-01-06T09:00:00Z", "approved")]


PROMO = """
id: a_promo
version: 1
name: Promo
entry: {event: ops.service_incident}
start: s
steps:
  s: {type: send, channel: email, template: promo, comm_type: commercial, on_capped: {action: defer, max_attempts: 3}}
"""

NEWS = PROMO.replace("a_promo", "a0_news").replace(
    "email, template: promo, comm_type: commercial", "sms, template: news, comm_type: editorial"
)
ALERT = PROMO.replace("a_promo", "b_alert").replace("template: promo, comm_type: commercial", "template: alert, comm_type: calamity")


def test_a_send_deferred_and_cancelled_by_a_calamity_in_the_same_message_shows_both(tmp_path):
    for name, text in (("a0_news", NEWS), ("a_promo", PROMO), ("b_alert", ALERT)):
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "pressure.yaml").write_text("capacity: 15\npriority_reserve: []\n")
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"family": "ops", "type": "service_incident", "event_id": "i1", "customer_id": "c1", "occurred_at": "2026-01-05T09:50:00Z", '
        '"incident_id": "x", "service": "web", "severity": "major"}\n'
    )
    r = simulate_files(tmp_path, events)
    # the news SMS (7.5) leaves no room for the promo (10): deferred to the next month; the calamity alert then cancels it
    sends = [(rec.data["what"], rec.data["result"]) for rec in r.records if rec.kind == "send" and rec.journey_id == "a_promo"]
    assert sends == [("delayed", "deferred"), ("send", "cancelled")]
    timers = [(rec.kind, rec.journey_id) for rec in r.records if rec.kind.startswith("timer")]
    assert timers == [("timer_armed", "a_promo"), ("timer_cancelled", "a_promo")]
    for line in format_json_lines(r).splitlines():
        RECORD_ADAPTER.validate_python(json.loads(line))


def test_a_daily_campaign_with_reentry_never_says_once_why_a_member_stays_out():
    js = load_text(camp('{every: day, at: "10:00"}'))
    r = simulate(js, [crm("c", 1, segment="vip"), crm("d", 2, segment="vip")], Approve(), until=datetime(2026, 3, 8, tzinfo=UTC))
    # runs on the 1st..7th: c enters on the 1st and is kept out 6 times, d enters on the 2nd and is kept out 5 times
    assert [c.not_entered for c in r.campaigns] == [0, 1, 2, 2, 2, 2, 2]
    text = format_text(r)
    refusals = [line for line in text.splitlines() if "not entered" in line]
    why = "camp v1 not entered (audience.run): reentry: never, and the customer entered before (1 time)"
    assert refusals == [
        f"  2026-03-02T10:00:00Z  {why} (the same on 5 later runs, the last at 2026-03-07T10:00:00Z; shown once)",
        f"  2026-03-03T10:00:00Z  {why} (the same on 4 later runs, the last at 2026-03-07T10:00:00Z; shown once)",
    ]
    # the folded runs leave no "in the audience" line either; the runs that entered keep theirs
    assert text.count("in the audience\n") == 4
    # the JSON keeps every run's check and refusal
    lines = [json.loads(line) for line in format_json_lines(r).splitlines()]
    assert sum(line.get("what") == "not_entered" for line in lines) == 11
    assert sum(line["kind"] == "audience" for line in lines) == 13


def test_different_refusals_are_each_shown_and_the_same_one_once():
    # a 2-day wait: the daily run on the next day finds the customer still in the journey (a new instance every other day)
    js = load_text(camp('{every: day, at: "10:00"}', reentry="after_exit", **{"timeout: 1d": "timeout: 2d"}))
    r = simulate(js, [crm("c", 1, segment="vip")], Approve(), until=datetime(2026, 3, 8, tzinfo=UTC))
    assert [(c.entered, c.not_entered) for c in r.campaigns] == [(1, 0), (0, 1)] * 3 + [(1, 0)]
    refusals = [line.split("  ", 2)[2] for line in format_text(r).splitlines() if "not entered" in line]
    assert refusals == [
        f"camp v1 not entered (audience.run): reentry: after_exit, and the customer is still in the journey "
        f"(instance camp@audience:camp:2026-03-0{day}T10:00Z at step wait)"
        for day in (1, 3, 5)
    ]

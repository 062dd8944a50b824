"""Lead scores (journeys/scores.yaml, issue 15 item 1): decay, bounds, set_from, score crossings, validation. Pure engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.actions import Action, Send, Trace
from orchestrator.definitions import DefinitionsError, load_definitions
from orchestrator.designer.render import render_mermaid
from orchestrator.designer.simulate import simulate_files
from orchestrator.dev.drive import drive
from orchestrator.engine import step
from orchestrator.events import CustomerEvent, parse_inbound
from orchestrator.journey.loader import JourneyError, JourneySet, load_journeys, load_text, validate_paths
from orchestrator.journey.scores import EMPTY_SCORES, ScoresError, load_scores, loads_scores
from orchestrator.state import CustomerState, ScoreValue

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)

SCORES = """
scores:
  lead:
    half_life: 10d
    floor: 0
    cap: 100
    rules:
      - {event: web.page_view, points: 5}
      - {event: web.page_view, when: [{field: data.url, contains: /pricing}], points: 15}
      - {event: web.form_submitted, points: 30}
      - {event: consent.unsubscribed, points: -25}
  churn_risk:
    floor: 0
    cap: 1
    rules:
      - {event: crm.score_updated, when: [{field: data.score, eq: churn_risk}], set_from: data.value}
"""

CROSSING = """
id: sales
version: 1
name: Sales callback
entry:
  score: {name: lead, crosses: 50, hysteresis: 10}
  reentry: {policy: always}
start: call
steps:
  call: {type: send, channel: call_center, template: sales_callback, comm_type: commercial, next: done}
  done: {type: end}
"""


def journeys(*texts: str, scores: str = SCORES) -> JourneySet:
    return load_text(*texts, scores=loads_scores(scores))


def ev(etype: str, at: datetime, n: int, cid: str = "c1", **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=f"{cid}-{etype}-{n}", customer_id=cid, type=etype, occurred_at=at, data=data)


def run(js: JourneySet, events: list[CustomerEvent], state: CustomerState | None = None) -> tuple[CustomerState, list[list[Action]]]:
    state = state or CustomerState.new("c1")
    out = []
    for e in events:
        state, actions = step(state, e, js, e.occurred_at)
        out.append(actions)
    return state, out


def entered(actions: Sequence[Action]) -> list[str]:
    return [a.journey_id for a in actions if isinstance(a, Trace) and a.what == "entered"]


def lead(state: CustomerState) -> ScoreValue:
    return state.profile.scores["lead"]


# ---------------------------------------------------------------- the fold


def test_points_add_up_and_decay_by_half_life() -> None:
    js = journeys()
    state, _ = run(js, [ev("web.page_view", T0, 1, url="/"), ev("web.page_view", T0, 2, url="/pricing")])
    assert (lead(state).value, lead(state).at) == (25.0, T0)  # 5 + (5 + 15)
    assert lead(state).value_at(T0 + 10 * DAY) == 12.5
    assert lead(state).value_at(T0 + 20 * DAY) == 6.25
    assert lead(state).value_at(T0 - DAY) == 25.0  # never grows backwards
    state, _ = run(js, [ev("web.form_submitted", T0 + 10 * DAY, 3)], state)
    assert (lead(state).value, lead(state).at) == (42.5, T0 + 10 * DAY)  # 12.5 decayed + 30


def test_conditions_read_the_decayed_value_at_evaluation_time() -> None:
    gate = CROSSING.replace(
        "  score: {name: lead, crosses: 50, hysteresis: 10}\n",
        "  event: web.purchase\n  profile: [{field: profile.scores.lead, gte: 20}]\n",
    )
    js = journeys(gate.replace("id: sales", "id: hot"))
    state, _ = run(js, [ev("web.form_submitted", T0, 1)])  # 30
    _, (acts,) = run(js, [ev("web.purchase", T0 + 5 * DAY, 2, order_id="o", value=1)], state)  # 30 / 2**0.5 = 21.2
    assert entered(acts) == ["hot"]
    _, (acts,) = run(js, [ev("web.purchase", T0 + 6 * DAY, 2, order_id="o", value=1)], state)  # 30 / 2**0.6 = 19.8
    assert entered(acts) == []
    assert "profile.scores.lead = 19.79" in next(a.detail["reason"] for a in acts if isinstance(a, Trace))


def test_floor_cap_and_negative_points() -> None:
    js = journeys()
    forms = [ev("web.form_submitted", T0 + timedelta(minutes=i), i) for i in range(5)]
    state, _ = run(js, forms)
    assert lead(state).value == 100.0  # capped
    state, _ = run(js, [ev("consent.unsubscribed", T0 + timedelta(hours=1), 9, channel="all")], state)
    assert lead(state).value == round(100 * 0.5 ** (56 / (240 * 60)) - 25, 6)  # 100 (at T0 + 4 min) decayed 56 minutes, minus 25
    fresh, _ = run(js, [ev("consent.unsubscribed", T0, 1, channel="all")])
    assert lead(fresh).value == 0.0  # floor


def test_set_from_takes_the_models_value_and_only_its_own_score() -> None:
    js = journeys()
    state, _ = run(js, [ev("crm.score_updated", T0, 1, score="churn_risk", value=0.82, model="m1")])
    assert state.profile.scores["churn_risk"].value == 0.82 and "lead" not in state.profile.scores
    state, _ = run(js, [ev("crm.score_updated", T0 + DAY, 2, score="propensity", value=0.3)], state)
    assert state.profile.scores["churn_risk"].value == 0.82  # another model's score
    state, _ = run(js, [ev("crm.score_updated", T0 - DAY, 3, score="churn_risk", value=0.1)], state)
    assert state.profile.scores["churn_risk"].value == 0.82  # an older value arriving late does not win
    state, _ = run(js, [ev("crm.score_updated", T0 + 2 * DAY, 4, score="churn_risk", value=1.7)], state)
    assert state.profile.scores["churn_risk"].value == 1.0  # cap


def test_a_late_event_adds_its_points_decayed_by_its_age() -> None:
    js = journeys()
    state, _ = run(js, [ev("web.form_submitted", T0, 1), ev("web.form_submitted", T0 - 10 * DAY, 2)])
    assert (lead(state).value, lead(state).at) == (45.0, T0)  # 30 + 30 / 2


def test_events_without_rules_leave_the_profile_scores_alone_and_no_file_scores_nothing() -> None:
    js = journeys()
    state, _ = run(js, [ev("web.form_submitted", T0, 1)])
    after, _ = run(js, [ev("web.cart_abandoned", T0 + DAY, 2, cart_id="k", cart_value=5)], state)
    assert after.profile.scores is state.profile.scores
    assert JourneySet().score_rules == {} and JourneySet().scores is EMPTY_SCORES
    unscored, _ = run(JourneySet(), [ev("web.form_submitted", T0, 1)])
    assert unscored.profile.scores == {}


def test_the_state_round_trips_through_json() -> None:
    js = journeys(CROSSING)
    state = CustomerState.new("c1")
    for e in [ev("web.form_submitted", T0, 1), ev("web.form_submitted", T0, 2)]:
        state, _ = drive(state, e, js, e.occurred_at)  # sends answered: a stored state never holds one at the basket
    again = CustomerState.model_validate_json(state.model_dump_json())
    assert again == state and lead(again).latched == [(50.0, 40.0)]


def test_the_score_updated_event_parses() -> None:
    raw: dict[str, object] = {"type": "score_updated", "event_id": "e", "customer_id": "c", "occurred_at": "2026-03-02T10:00:00Z"}
    raw |= {"score": "churn_risk", "value": 0.4, "model": "churn-2026-03"}
    parsed = parse_inbound("crm", raw)
    assert (parsed.type, parsed.data["score"], parsed.data["value"]) == ("crm.score_updated", "churn_risk", 0.4)


# ---------------------------------------------------------------- crossings


def test_a_crossing_enters_once_and_not_again_while_above() -> None:
    js = journeys(CROSSING)
    state, acts = run(js, [ev("web.form_submitted", T0, 1), ev("web.form_submitted", T0 + timedelta(minutes=1), 2)])
    assert entered(acts[0]) == [] and entered(acts[1]) == ["sales"]  # 30, then 60: the second form crossed
    sends = [a for a in acts[1] if isinstance(a, Send)]
    assert sends and sends[0].template == "sales_callback"
    assert state.instances[0].entry_event_id == "c1-web.form_submitted-2"
    state, acts = run(js, [ev("web.page_view", T0 + timedelta(minutes=2), 3, url="/")], state)
    assert entered(acts[0]) == []  # still above: no new crossing


def test_rearmed_only_below_threshold_minus_hysteresis_by_negative_points() -> None:
    js = journeys(CROSSING, scores=SCORES.replace("    half_life: 10d\n", ""))  # no decay: exact values
    t = [T0 + timedelta(minutes=i) for i in range(10)]
    forms = [ev("web.form_submitted", t[i], i) for i in range(3)]
    state, acts = run(js, forms)  # 30, 60 (entered), 90
    assert [entered(a) for a in acts] == [[], ["sales"], []]
    state, acts = run(js, [ev("consent.unsubscribed", t[3], 3, channel="sms"), ev("consent.unsubscribed", t[4], 4, channel="sms")], state)
    assert lead(state).value == 40 and lead(state).latched == [(50.0, 40.0)]  # below 50, but not below 40
    state, acts = run(js, [ev("web.page_view", t[5], 5, url="/pricing")], state)  # 60: crossed 50 again, latched: no entry
    assert entered(acts[0]) == []
    state, acts = run(js, [ev("consent.unsubscribed", t[6], 6, channel="sms")], state)  # 35: below 40, re-armed
    assert lead(state).value == 35 and lead(state).latched == []
    state, acts = run(js, [ev("web.page_view", t[7], 7, url="/pricing")], state)  # 55: a new crossing
    assert entered(acts[0]) == ["sales"]


def test_rearmed_by_decay_and_decay_alone_never_enters() -> None:
    js = journeys(CROSSING)
    state, acts = run(js, [ev("web.form_submitted", T0, 1), ev("web.form_submitted", T0, 2)])  # 60
    assert entered(acts[1]) == ["sales"]
    # 60 decays below 40 after ~5.85 days; the next scoring event sees it and re-arms
    state, acts = run(js, [ev("web.page_view", T0 + 7 * DAY, 3, url="/")], state)  # 60 / 2**0.7 + 5 = 41.9
    assert entered(acts[0]) == [] and lead(state).latched == []
    state, acts = run(js, [ev("web.page_view", T0 + 7 * DAY, 4, url="/pricing")], state)  # 61.9: crosses again
    assert entered(acts[0]) == ["sales"]
    # decay alone: no event of a scored type, whatever time passes, enters nobody
    later, acts = run(js, [ev("web.cart_abandoned", T0 + 90 * DAY, 5, cart_id="k", cart_value=1)], state)
    assert entered(acts[0]) == [] and lead(later) is lead(state)


def test_decay_between_events_does_not_count_as_a_crossing_downward_or_up() -> None:
    js = journeys(CROSSING)
    state, _ = run(js, [ev("web.form_submitted", T0, 1)])  # 30, below: armed
    state, acts = run(js, [ev("web.page_view", T0 + 30 * DAY, 2, url="/")], state)  # 3.75 + 5: no crossing
    assert entered(acts[0]) == []


def test_replay_is_idempotent() -> None:
    js = journeys(CROSSING)
    state, _ = run(js, [ev("web.form_submitted", T0, 1)])
    crossing = ev("web.form_submitted", T0 + timedelta(minutes=1), 2)
    a_state, a_actions = step(state, crossing, js, crossing.occurred_at)
    b_state, b_actions = step(state, crossing, js, crossing.occurred_at)  # the same event on the same state
    assert a_state == b_state and a_actions == b_actions and entered(a_actions) == ["sales"]
    again, dup = step(a_state, crossing, js, crossing.occurred_at + timedelta(seconds=5))  # redelivered: deduplicated
    assert [t.what for t in dup if isinstance(t, Trace)] == ["duplicate"] and again.profile == a_state.profile
    assert again.history["sales"].entries == 1


def test_a_crossing_refused_by_entry_profile_says_why() -> None:
    js = journeys(CROSSING.replace("  reentry: {policy: always}\n", "  profile: [{field: profile.segment, eq: b2b}]\n"))
    _, acts = run(js, [ev("web.form_submitted", T0, 1), ev("web.form_submitted", T0, 2)])
    reasons = [a.detail["reason"] for a in acts[1] if isinstance(a, Trace) and a.what == "not_entered"]
    assert reasons == ["entry.profile: entry.profile[0] {field: profile.segment, eq: b2b} is false (the field is missing)"]


# ---------------------------------------------------------------- validation


def test_scores_file_problems_are_located(tmp_path: Path) -> None:
    bad = """scores:
  lead:
    half_life: 10d
    floor: 5
    rules:
      - {event: web.page_veiw, points: 5}
  Churn:
    rules: [{event: web.purchase, points: 1}]
  risk:
    rules:
      - {event: crm.score_updated, set_from: data.value}
      - {event: web.page_view, set_from: data.url}
      - {event: web.purchase, points: 1, set_from: data.value}
      - {event: web.purchase, when: [{field: data.valeu, gte: 1}, {field: profile.scores.leed, gt: 1}], points: 1}
"""
    path = tmp_path / "scores.yaml"
    path.write_text(bad)
    with pytest.raises(ScoresError) as exc:
        load_scores(path)
    problems = exc.value.problems
    name = str(path)
    assert f"{name}:2:3: scores.lead: a score with half_life decays toward 0: its floor must be 0 or less and its cap 0 or more" in problems
    assert (
        f"{name}:7:3: scores.Churn: 'Churn' is not a valid score name: use lowercase letters, digits and _, starting with a letter"
        in problems
    )
    assert any(p.startswith(f"{name}:13:9: scores.risk.rules.2") and "exactly one of points" in p for p in problems), problems
    # the meaning checks come once the shape is right
    fixed = bad.replace("    floor: 5\n", "").replace("  Churn:\n    rules: [{event: web.purchase, points: 1}]\n", "")
    fixed = fixed.replace("      - {event: web.purchase, points: 1, set_from: data.value}\n", "")
    path.write_text(fixed)
    with pytest.raises(ScoresError) as exc:
        load_scores(path)
    problems = exc.value.problems
    assert problems == [
        f"{name}:5:10: scores.lead.rules.0.event: unknown event type 'web.page_veiw' (did you mean 'web.page_view'?)",
        (
            f"{name}:8:10: scores.risk.rules.0.event: crm.score_updated carries every model's scores: say which one this rule takes, "
            "e.g. when: [{field: data.score, eq: risk}]"
        ),
        f"{name}:9:32: scores.risk.rules.1.set_from: data.url is a string: set_from needs a number field",
        (
            f"{name}:10:39: scores.risk.rules.2.when.0.field: unknown field 'data.valeu': the event web.purchase has no 'valeu' "
            "(did you mean 'data.value'?)"
        ),
        f"{name}:10:68: scores.risk.rules.2.when.1.field: unknown score 'leed' (did you mean 'lead'?)",
    ]


def test_unknown_profile_scores_in_a_journey_are_refused_with_did_you_mean(tmp_path: Path) -> None:
    (tmp_path / "scores.yaml").write_text(SCORES)
    text = CROSSING.replace("name: lead", "name: leads").replace(
        "  call: {type: send", "  call: {type: send, variables_from: {s: profile.scores.churn}"
    )
    text = text.replace("  reentry: {policy: always}\n", "  profile: [{field: profile.scores.laed, gte: 1}]\n")
    (tmp_path / "sales.yaml").write_text(text)
    problems = validate_paths([tmp_path])
    name = str(tmp_path / "sales.yaml")
    assert f"{name}:6:11: unknown score 'leads' (did you mean 'lead'?)" in problems, problems
    assert f"{name}:7:14: profile.scores.laed: unknown score 'laed' (did you mean 'lead'?)" in problems, problems
    assert any(
        p.startswith(f"{name}:10:") and "profile.scores.churn: unknown score 'churn' (did you mean 'churn_risk'?)" in p for p in problems
    )
    (tmp_path / "scores.yaml").unlink()
    problems = validate_paths([tmp_path])
    assert any("unknown score 'leads': there is no scores.yaml beside the journeys" in p for p in problems), problems
    with pytest.raises(JourneyError):
        load_journeys([tmp_path])


def test_definitions_load_scores_optionally_and_refuse_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "pressure.yaml").write_text("capacity: 25\n")
    (tmp_path / "profile.yaml").write_text("events: {}\n")
    other = CROSSING.replace("  score: {name: lead, crosses: 50, hysteresis: 10}\n", "  event: web.purchase\n")
    (tmp_path / "other.yaml").write_text(other.replace("id: sales", "id: other"))
    plain = load_definitions(tmp_path)
    assert plain.scores is not None and plain.scores.source is None and "scores" not in plain.summary()
    (tmp_path / "scores.yaml").write_text(SCORES)
    (tmp_path / "sales.yaml").write_text(CROSSING)
    scored = load_definitions(tmp_path)
    assert scored.summary().endswith("1 scores file (2 scores)")
    assert [j.id for c in scored.journeys.crossings["lead"] for j in c.journeys] == ["sales"]
    (tmp_path / "scores.yaml").write_text("scores:\n  lead:\n    rules: []\n")
    with pytest.raises(DefinitionsError) as exc:
        load_definitions(tmp_path)
    assert [p for p in exc.value.problems if "scores.yaml" in p] == [
        f"{tmp_path / 'scores.yaml'}:3:5: scores.lead.rules: a score needs at least one rule, e.g. - {{event: web.page_view, points: 1}}"
    ]
    assert not any("unknown score" in p for p in exc.value.problems)  # a broken file: no noise about the journeys


# ---------------------------------------------------------------- the example


def test_the_example_journey_and_scores_load_and_render() -> None:
    js = load_journeys([ROOT / "journeys"])
    assert js.scores.names() == ["churn_risk", "lead"]
    journey = js.newest("lead_scoring")
    assert journey is not None and journey.journey.entry.score is not None
    assert "on score lead crosses 50 (re-armed below 40)" in render_mermaid(journey.journey)


def test_the_example_scenario() -> None:
    r = simulate_files(ROOT / "journeys", ROOT / "tests" / "fixtures" / "events" / "lead_scoring.jsonl")
    leads = {c: [x.data for x in r.for_customer(c) if x.kind == "emit"] for c in ("p1", "p2", "p3", "p4")}
    assert [e["record_id"] for e in leads["p1"]] == ["p1:lead_scoring:v1:p1-f2:hand_to_sales"]  # once, though still above 50
    assert [e["record_id"] for e in leads["p3"]] == ["p3:lead_scoring:v1:p3-b1:hand_to_sales", "p3:lead_scoring:v1:p3-v1:hand_to_sales"]
    assert leads["p2"] == [] and leads["p4"] == []
    assert r.states["p4"].profile.scores["churn_risk"].value == 0.82
    assert round(leads["p3"][0]["record"]["score"], 2) == 70.0  # 20 + 20 + 30, the forms decayed by minutes


def test_simulate_shows_each_score_change_with_its_event() -> None:
    from orchestrator.designer.simulate import format_text

    r = simulate_files(ROOT / "journeys", ROOT / "tests" / "fixtures" / "events" / "lead_scoring.jsonl")
    events = [rec for rec in r.for_customer("p1") if rec.kind == "event"]
    assert events[0].data["scores"] == {"lead": {"before": 0.0, "after": 10.0}}  # a pricing page: 2 + 8
    assert "event web.form_submitted (p1-f2); score lead 41.99 -> 61.99" in format_text(r, ["p1"])

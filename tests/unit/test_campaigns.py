"""Campaigns and segments on the pure engine: audience evaluation, runs, qualification, schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from orchestrator.actions import Send, Trace
from orchestrator.dev.drive import drive
from orchestrator.events import AudienceCheck, CustomerEvent
from orchestrator.journey.loader import load_text
from orchestrator.journey.model import Audience, Entry, Schedule
from orchestrator.journey.schedule import open_runs, schedule_problem
from orchestrator.state import CustomerState

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

FEATURE = """
id: feature_news
version: 1
name: Feature announcement
entry:
  audience:
    when:
      - {field: profile.segment, eq: active}
      - {not_seen: web.feature_used, where: [{field: data.feature, eq: export}]}
    schedule: {at: "2026-12-01T10:00:00Z"}
  reentry: {policy: never}
start: announce
steps:
  announce: {type: send, channel: email, template: export_launch, comm_type: editorial, next: done}
  done: {type: end}
"""

SEGMENT = """
id: beta_welcome
version: 1
name: Welcome to the beta
entry:
  audience:
    when: [{field: profile.lists, contains: beta_testers}]
    qualify: on_change
  reentry: {policy: never}
start: hello
steps:
  hello: {type: send, channel: email, template: beta_hello, comm_type: service, next: done}
  done: {type: end}
"""


def ev(eid: str, etype: str, at: datetime = T0, cid: str = "c1", **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id=cid, type=etype, occurred_at=at, data=data)


def check(run: str = "2026-12-01T10:00Z", cid: str = "c1", journey: str = "feature_news") -> AudienceCheck:
    return AudienceCheck(customer_id=cid, journey_id=journey, run_id=run, due_at=T0)


def active(cid: str = "c1") -> CustomerState:
    state, _ = drive(
        CustomerState.new(cid), ev(f"{cid}-p", "crm.profile_updated", T0 - timedelta(days=3), cid, segment="active"), load_text(FEATURE), T0
    )
    return state


def sends(actions: list) -> list[str]:
    return [a.send_id for a in actions if isinstance(a, Send)]


# ---------------------------------------------------------------- campaign runs


def test_a_run_enters_a_customer_in_the_audience_with_a_send_id_of_the_run():
    js = load_text(FEATURE)
    state, acts = drive(active(), check(), js, T0)
    assert sends(acts) == ["c1:feature_news:v1:audience:feature_news:2026-12-01T10:00Z:announce"]
    entered = [a for a in acts if isinstance(a, Trace) and a.what == "entered"]
    assert [(t.instance_id, t.detail["event_type"]) for t in entered] == [
        ("feature_news@audience:feature_news:2026-12-01T10:00Z", "audience.run")
    ]
    assert state.history["feature_news"].entries == 1


def test_the_same_run_twice_enters_once_and_sends_once():
    js = load_text(FEATURE)
    state, first = drive(active(), check(), js, T0)
    again, acts = drive(state, check(), js, T0 + timedelta(minutes=5))  # redelivered, or re-published after a crash
    assert sends(first) and sends(acts) == []
    assert [a.what for a in acts if isinstance(a, Trace)] == ["duplicate"]
    assert again.history["feature_news"].entries == 1


def test_a_customer_outside_the_audience_does_not_enter_and_leaves_no_trace():
    js = load_text(FEATURE)
    used, _ = drive(active(), ev("u1", "web.feature_used", T0 - timedelta(days=1), feature="export"), js, T0)
    state, acts = drive(used, check(), js, T0)
    assert acts == [] and state.instances == []
    assert state.remembers("audience:feature_news:2026-12-01T10:00Z")


def test_reentry_rules_apply_across_runs_and_say_why():
    js = load_text(FEATURE.replace('schedule: {at: "2026-12-01T10:00:00Z"}', 'schedule: {every: day, at: "10:00"}'))
    state, acts = drive(active(), check("2026-12-01T10:00Z"), js, T0)
    assert len(sends(acts)) == 1
    state, acts = drive(state, check("2026-12-02T10:00Z"), js, T0 + timedelta(days=1))
    assert sends(acts) == []
    assert [a.detail["reason"] for a in acts if isinstance(a, Trace) and a.what == "not_entered"] == [
        "reentry: never, and the customer entered before (1 time)"
    ]


def test_a_check_for_a_journey_no_longer_live_does_nothing():
    js = load_text(FEATURE)
    state = active()
    assert drive(state, check(journey="gone"), js, T0) == (state, [])


# ---------------------------------------------------------------- segments: qualify on change, explicit lists


def test_a_customer_enters_once_when_an_event_makes_them_qualify():
    js = load_text(SEGMENT)
    state, acts = drive(CustomerState.new("c1"), ev("r1", "crm.customer_registered", timezone="Europe/Berlin"), js, T0)
    assert sends(acts) == []
    state, acts = drive(state, ev("l1", "crm.added_to_list", T0 + timedelta(hours=1), list="beta_testers"), js, T0 + timedelta(hours=1))
    assert state.profile.lists == ["beta_testers"]
    assert sends(acts) == ["c1:beta_welcome:v1:l1:hello"]
    state, acts = drive(state, ev("x1", "web.page_view", T0 + timedelta(hours=2), url="/"), js, T0 + timedelta(hours=2))
    assert sends(acts) == [] and not [a for a in acts if isinstance(a, Trace) and a.what == "not_entered"]


def test_removed_from_list_leaves_the_audience():
    js = load_text(SEGMENT)
    state, _ = drive(CustomerState.new("c1"), ev("l1", "crm.added_to_list", list="beta_testers"), js, T0)
    state, _ = drive(state, ev("l2", "crm.removed_from_list", T0 + timedelta(minutes=1), list="beta_testers"), js, T0)
    assert state.profile.lists == []


# ---------------------------------------------------------------- the audience in the journey file


def test_an_audience_reads_the_profile_not_an_event_payload():
    with pytest.raises(ValidationError, match=r"not data\.cart_value: there is no event payload"):
        Audience.model_validate({"when": [{"field": "data.cart_value", "gte": 1}], "qualify": "on_change"})


def test_an_audience_needs_a_schedule_or_qualify_and_an_entry_needs_a_way_in():
    with pytest.raises(ValidationError, match="needs a schedule, qualify: on_change, or both"):
        Audience.model_validate({"when": []})
    with pytest.raises(ValidationError, match="an entry needs an event"):
        Entry.model_validate({})


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ({"at": "10:00", "every": "week"}, "every: week needs on: mon..sun"),
        ({"at": "10:00", "every": "month"}, "every: month needs day: 1..28"),
        ({"at": "2026-12-01T10:00"}, 'at needs a UTC offset, e.g. "2026-12-01T10:00Z"; or add local: true'),
        ({"at": "2026-12-01T10:00Z", "local": True}, "a local schedule's at has no UTC offset"),
        ({"at": "tomorrow"}, "a once-only schedule's at is an ISO date-time"),
        ({"at": "00:15", "every": "hour", "local": True}, "every: hour cannot be local"),
    ],
)
def test_schedule_problems_say_what_to_write(schedule, problem):
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace("+", r"\+")):
        Schedule.model_validate(schedule)


# ---------------------------------------------------------------- schedules and runs


def run_ids(schedule: dict, now: datetime) -> list[str]:
    return [r.run_id for r in open_runs(Schedule.model_validate(schedule), now)]


def test_once_runs_have_one_run():
    assert run_ids({"at": "2026-12-01T10:00:00+01:00"}, T0) == ["2026-12-01T09:00Z"]
    assert run_ids({"at": "2026-12-01T10:00", "local": True}, T0) == ["2026-12-01T10:00L"]


def test_recurring_runs_are_the_latest_occurrence():
    now = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)  # a Wednesday
    assert run_ids({"every": "day", "at": "10:00"}, now) == ["2026-12-08T10:00Z"]
    assert run_ids({"every": "week", "on": "mon", "at": "10:00"}, now) == ["2026-12-07T10:00Z"]
    assert run_ids({"every": "month", "day": 1, "at": "10:00"}, now) == ["2026-12-01T10:00Z"]
    assert run_ids({"every": "hour", "at": "00:15"}, now) == ["2026-12-09T08:15Z"]


def test_a_local_run_reaches_each_customer_at_their_own_time_and_stays_open_a_day():
    (run, previous) = open_runs(Schedule.model_validate({"every": "month", "day": 1, "at": "10:00", "local": True}), T0)
    assert run.run_id == "2026-12-01T10:00L" and previous.run_id == "2026-11-01T10:00L"
    assert run.due_for("Europe/Berlin") == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert run.due_for("America/New_York") == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert run.due_for(None) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert run.open_for("Europe/Berlin", T0) and not run.open_for("America/New_York", T0)
    assert not run.open_for("Europe/Berlin", datetime(2026, 12, 2, 9, 0, tzinfo=UTC))  # 24 h later: closed


def test_schedule_problem_is_none_for_good_schedules():
    for spec in (
        {"at": "10:00", "every": "day"},
        {"at": "2026-12-01T10:00:00Z"},
        {"at": "07:30", "every": "week", "on": "fri", "local": True},
    ):
        assert schedule_problem(Schedule.model_validate(spec)) is None

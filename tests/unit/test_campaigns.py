"""Campaigns and segments on the pure engine: audience evaluation, runs, qualification, schedules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from orchestrator.actions import Send, Trace
from orchestrator.dev.drive import drive
from orchestrator.events import AudienceCheck, CustomerEvent
from orchestrator.journey.loader import load_text
from orchestrator.journey.model import Audience, Entry, Schedule
from orchestrator.journey.schedule import open_runs, schedule_problem
from orchestrator.metrics import Metrics
from orchestrator.runtime.campaigns import CampaignScheduler, Pass
from orchestrator.runtime.store import PartitionState, StateStore
from orchestrator.state import CustomerState, Profile

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


# ---------------------------------------------------------------- a worker's pass: customers who appear after it began

LOCAL_NEWS = """
id: local_news
version: 1
name: Local newsletter
entry:
  audience:
    when: [{field: profile.segment, eq: gold}]
    schedule: {at: "2026-12-01T10:00", local: true}
    throttle: {per_second: 100000}
  reentry: {policy: never}
start: hello
steps:
  hello: {type: send, channel: email, template: news, comm_type: editorial, next: done}
  done: {type: end}
"""
LOCAL_RUN = "2026-12-01T10:00L"
NY_DUE = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
"""10:00 in New York (UTC-5 in December)."""
LA_DUE = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


class Worker:
    """A CampaignScheduler over a real in-memory StateStore of partition 0, written to as the batch path does."""

    def __init__(self, text: str = LOCAL_NEWS, *customers: CustomerState) -> None:
        self.journeys = load_text(text)
        self.store = StateStore("changelog")
        self.store.partitions[0] = PartitionState()
        self.offset = 0
        for state in customers:
            self.put(state)
        self.t = 1000.0
        self.metrics = Metrics()
        self.scheduler = CampaignScheduler(self.store, self.metrics, clock=lambda: self.t)

    def put(self, state: CustomerState, *, parsed: bool = True) -> None:
        """A state write the batch path had acknowledged (``parsed``: with the parsed state, as the pipeline does)."""
        self.offset += 1
        self.store.put(0, state.customer_id, state.model_dump_json().encode(), [], self.offset, state if parsed else None)

    def rounds(self, now: datetime) -> tuple[list[AudienceCheck], list[dict]]:
        """Campaign rounds at ``now`` until nothing more is published: the checks (acknowledged) and the progress details."""
        checks: list[AudienceCheck] = []
        records: list[dict] = []
        for _ in range(100):
            self.t += 1.0
            self.scheduler.refresh(self.journeys, now, {0}, 1)
            work = self.scheduler.work(now)
            self.scheduler.published(work.checks, [True] * len(work.checks))
            checks += [c.check for c in work.checks]
            records += [json.loads(r.value)["detail"] for r in work.records]
            if not work.checks and not work.records and not work.busy and work.wait == float("inf"):
                return checks, records
        raise AssertionError("the scan did not settle")

    def pass_(self, run: str = LOCAL_RUN, journey: str = "local_news") -> Pass:
        return self.scheduler.campaigns[journey].runs[run].passes[0]


def gold(cid: str, timezone: str = "America/New_York") -> CustomerState:
    return CustomerState(customer_id=cid, profile=Profile(segment="gold", timezone=timezone))


def test_a_customer_registered_after_the_pass_began_is_reached_at_their_due_time():
    worker = Worker(LOCAL_NEWS, gold("known", "America/Los_Angeles"))
    assert worker.rounds(datetime(2026, 12, 1, 5, 0, tzinfo=UTC)) == ([], [])  # the pass began: "known" parked until 10:00 LA
    worker.put(gold("newcomer"))  # registered at 08:30 in New York, after the pass began
    assert worker.rounds(datetime(2026, 12, 1, 13, 30, tzinfo=UTC)) == ([], [])  # parked: not due yet
    checks, _ = worker.rounds(NY_DUE - timedelta(seconds=1))
    assert checks == []
    checks, _ = worker.rounds(NY_DUE)
    assert [(c.customer_id, c.run_id, c.due_at) for c in checks] == [("newcomer", LOCAL_RUN, NY_DUE)]
    assert worker.pass_().customers == 2 and not worker.pass_().complete
    checks, (record,) = worker.rounds(LA_DUE)
    assert [c.customer_id for c in checks] == ["known"]
    assert (record["customers"], record["audience"], record["complete"]) == (2, 2, True)


def test_a_customer_new_after_the_pass_completed_opens_it_again_and_the_counts_follow():
    worker = Worker(LOCAL_NEWS, gold("early", "Pacific/Auckland"))
    now = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)  # 11:00 in Auckland
    checks, (record,) = worker.rounds(now)
    assert [c.customer_id for c in checks] == ["early"] and record["complete"]
    assert worker.metrics.registry.get_sample_value("orchestrator_campaign_progress", {"journey": "local_news", "run": LOCAL_RUN}) == 1.0

    worker.put(gold("late", "Europe/Berlin"))  # due at 09:00 UTC: later
    checks, records = worker.rounds(now + timedelta(minutes=1))
    assert checks == [] and records == []
    p = worker.pass_()
    assert not p.complete and p.customers == 2 and p.pending == 1  # open again, "late" parked
    assert worker.metrics.registry.get_sample_value("orchestrator_campaign_progress", {"journey": "local_news", "run": LOCAL_RUN}) == 0.5
    checks, (record,) = worker.rounds(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert [(c.customer_id, c.due_at) for c in checks] == [("late", datetime(2026, 12, 1, 9, 0, tzinfo=UTC))]
    assert {k: record[k] for k in ("customers", "evaluated", "audience", "pending", "complete")} == {
        "customers": 2,
        "evaluated": 2,
        "audience": 2,
        "pending": 0,
        "complete": True,
    }


def test_a_customer_new_after_their_due_time_is_reached_within_the_reach_and_not_beyond():
    worker = Worker(LOCAL_NEWS, gold("west", "Pacific/Pago_Pago"))  # UTC-11: the run stays open for the far west
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    worker.rounds(now)
    worker.put(gold("kiritimati", "Pacific/Kiritimati"))  # due 2026-11-30 20:00 UTC: 40 h ago, beyond the 24 h reach
    worker.put(gold("honolulu", "Pacific/Honolulu"))  # due 2026-12-01 20:00 UTC: 16 h ago, still within it
    checks, _ = worker.rounds(now + timedelta(minutes=1))
    assert [(c.customer_id, c.due_at) for c in checks] == [("honolulu", datetime(2026, 12, 1, 20, 0, tzinfo=UTC))]
    p = worker.pass_()
    assert (p.customers, p.closed, p.audience) == (3, 1, 2)


@pytest.mark.parametrize("parsed", [True, False], ids=["with the parsed state", "bytes only"])
def test_a_parked_customer_whose_time_zone_changes_is_reached_at_the_new_due_time(parsed: bool):
    worker = Worker(LOCAL_NEWS, gold("moved_east", "America/Los_Angeles"), gold("moved_west"))
    worker.rounds(datetime(2026, 12, 1, 5, 0, tzinfo=UTC))  # both parked: 18:00 UTC and 15:00 UTC
    worker.put(gold("moved_east", "America/New_York"), parsed=parsed)  # now due at 15:00 UTC: earlier
    worker.put(gold("moved_west", "America/Los_Angeles"), parsed=parsed)  # now due at 18:00 UTC: later
    checks, _ = worker.rounds(NY_DUE)
    assert [(c.customer_id, c.due_at) for c in checks] == [("moved_east", NY_DUE)]
    checks, (record,) = worker.rounds(LA_DUE)
    assert [(c.customer_id, c.due_at) for c in checks] == [("moved_west", LA_DUE)]
    assert (record["customers"], record["audience"], record["complete"]) == (2, 2, True)
    assert worker.store.partitions[0].zones == {}  # the woken customers left the zone index


def test_a_customer_whose_zone_changed_after_their_due_time_came_is_reached_at_once():
    worker = Worker(LOCAL_NEWS, gold("c", "America/Los_Angeles"))
    worker.rounds(datetime(2026, 12, 1, 5, 0, tzinfo=UTC))
    worker.put(gold("c", "Europe/Berlin"))  # at 12:00 UTC the run is three hours due in Berlin
    checks, _ = worker.rounds(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert [(c.customer_id, c.due_at) for c in checks] == [("c", datetime(2026, 12, 1, 9, 0, tzinfo=UTC))]


def test_nothing_is_kept_for_new_customers_while_no_run_has_a_pass():
    worker = Worker(LOCAL_NEWS.replace('{at: "2026-12-01T10:00", local: true}', '{at: "2026-12-01T10:00:00Z"}'), gold("a"))
    worker.rounds(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))  # before the run
    worker.put(gold("b"))
    part = worker.store.partitions[0]
    assert part.arrivals is None and part.zones is None and part.rezoned == []
    checks, _ = worker.rounds(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    assert sorted(c.customer_id for c in checks) == ["a", "b"]  # both in the snapshot
    worker.put(gold("c"))
    assert part.arrivals == ["c"] and part.zones is None  # a UTC run parks nobody: no zone index
    checks, _ = worker.rounds(datetime(2026, 12, 1, 10, 5, tzinfo=UTC))
    assert [c.customer_id for c in checks] == ["c"] and part.arrivals == []
    worker.rounds(datetime(2026, 12, 2, 10, 0, tzinfo=UTC))  # the run closed
    assert part.arrivals is None

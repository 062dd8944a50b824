"""The worker side of campaign runs (runtime/campaigns.py) over an in-memory state store: no Kafka, a fake clock.

What is published is fed through the real engine (``dev.drive``) where the test needs the
engine's answer, so "harmless to redo" is checked against the engine, not assumed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from orchestrator.actions import Disposition, Send, Trace
from orchestrator.dedupe import recent_from_list
from orchestrator.designer.explain import build_story
from orchestrator.designer.report import build_report
from orchestrator.dev.drive import drive
from orchestrator.engine.ids import run_of_event, run_of_instance
from orchestrator.events import AudienceCheck
from orchestrator.journey.loader import JourneySet, load_text
from orchestrator.journey.schedule import GRACE, Run
from orchestrator.metrics import Metrics
from orchestrator.processor import Result
from orchestrator.records import CAMPAIGN_PROGRESS, JourneyLogRecord
from orchestrator.runtime.campaigns import (
    AudienceView,
    CampaignScheduler,
    TokenBucket,
    Work,
    run_reaches,
)
from orchestrator.runtime.outputs import BatchOutput, result_records
from orchestrator.runtime.pipeline import worker_topics
from orchestrator.runtime.store import PartitionState, StateStore
from orchestrator.settings import Settings
from orchestrator.state import CustomerState, Profile

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
RUN = "2026-12-01T10:00Z"

NEWSLETTER = """
id: newsletter
version: 1
name: Newsletter
entry:
  audience:
    when: [{field: profile.segment, eq: gold}]
    schedule: {at: "2026-12-01T10:00:00Z"}
    throttle: {per_second: 100000}
  reentry: {policy: never}
start: hello
steps:
  hello: {type: send, channel: email, template: news, comm_type: editorial, next: done}
  done: {type: end}
"""


def journeys(per_second: float = 100000, schedule: str = '{at: "2026-12-01T10:00:00Z"}') -> JourneySet:
    text = NEWSLETTER.replace("per_second: 100000", f"per_second: {per_second}")
    return load_text(text.replace('{at: "2026-12-01T10:00:00Z"}', schedule))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def customer(cid: str, segment: str | None = "gold", timezone: str = "UTC") -> CustomerState:
    return CustomerState(customer_id=cid, profile=Profile(segment=segment, timezone=timezone))


def store_of(by_partition: dict[int, list[CustomerState]]) -> StateStore:
    store = StateStore("changelog", cache_size=0)  # every state parsed from its bytes, as after a restore
    for p, states in by_partition.items():
        store.partitions[p] = PartitionState()
        for offset, state in enumerate(states):
            store.put(p, state.customer_id, state.model_dump_json().encode(), [], offset)
    return store


def scheduler(store: StateStore, clock: Clock | None = None, **kw: object) -> tuple[CampaignScheduler, Metrics]:
    metrics = Metrics()
    return CampaignScheduler(store, metrics, clock=clock or Clock(), **kw), metrics  # type: ignore[arg-type]


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def drain(s: CampaignScheduler, js: JourneySet, now: datetime, owned: set[int], total: int = 4, clock: Clock | None = None) -> Work:
    """Rounds until nothing more is published now (every check acknowledged); returns everything published."""
    everything = Work()
    for _ in range(1000):
        if clock is not None:
            clock.t += 1.0
        s.refresh(js, now, owned, total)
        work = s.work(now)
        s.published(work.checks, [True] * len(work.checks))
        everything.checks += work.checks
        everything.records += work.records
        if not work.checks and not work.records and not work.busy and work.wait == float("inf"):
            return everything  # nothing more until the clock moves on
    raise AssertionError("the scan did not settle")


def published(work: Work) -> list[str]:
    return sorted(c.check.customer_id for c in work.checks)


def progress(work: Work) -> list[JourneyLogRecord]:
    return [JourneyLogRecord.model_validate_json(r.value) for r in work.records]


# ---------------------------------------------------------------- who is published


def test_only_qualifying_customers_are_published_once_each_on_their_own_partition():
    gold = {p: [customer(f"g{p}-{i}") for i in range(5)] for p in range(4)}
    silver = {p: [customer(f"s{p}-{i}", "silver") for i in range(5)] for p in range(4)}
    store = store_of({p: gold[p] + silver[p] for p in range(4)})
    clock = Clock()
    s, metrics = scheduler(store, clock)
    js = journeys()

    out = drain(s, js, T0 + timedelta(seconds=5), {0, 1, 2, 3}, clock=clock)
    assert published(out) == sorted(c.customer_id for states in gold.values() for c in states)
    for item in out.checks:
        assert item.check.customer_id.startswith(f"g{item.partition}-")  # the partition the state lives in
        assert (item.check.journey_id, item.check.run_id, item.check.due_at) == ("newsletter", RUN, T0)
        assert item.check.event_id == f"audience:newsletter:{RUN}"
    assert drain(s, js, T0 + timedelta(seconds=30), {0, 1, 2, 3}, clock=clock).checks == []  # each once per run
    labels = {"journey": "newsletter", "run": RUN}
    assert metric(metrics, "orchestrator_campaign_evaluated_total", **labels) == 40
    assert metric(metrics, "orchestrator_campaign_audience_total", **labels) == 20
    assert metric(metrics, "orchestrator_campaign_progress", **labels) == 1.0


def test_nothing_before_the_run_and_nobody_after_its_grace():
    store = store_of({0: [customer("a"), customer("b")]})
    clock = Clock()
    s, _ = scheduler(store, clock)
    js = journeys()
    assert drain(s, js, T0 - timedelta(seconds=1), {0}, clock=clock).checks == []
    assert s.campaigns["newsletter"].runs == {}  # not open yet: no pass, no memory
    s2, _ = scheduler(store_of({0: [customer("a")]}), clock)
    assert drain(s2, js, T0 + timedelta(hours=24, seconds=1), {0}, clock=clock).checks == []  # closed for everyone


def test_a_local_run_reaches_each_customer_at_their_own_time_and_completes_after_the_last():
    local = '{at: "2026-12-01T10:00", local: true}'
    js = journeys(schedule=local)
    store = store_of({0: [customer("akl", timezone="Pacific/Auckland"), customer("utc"), customer("la", timezone="America/Los_Angeles")]})
    clock = Clock()
    s, metrics = scheduler(store, clock)
    run = "2026-12-01T10:00L"

    first = drain(s, js, datetime(2026, 11, 30, 21, 30, tzinfo=UTC), {0}, clock=clock)  # 10:30 in Auckland (UTC+13)
    assert published(first) == ["akl"]
    assert first.checks[0].check.due_at == datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
    assert metric(metrics, "orchestrator_campaign_progress", journey="newsletter", run=run) == pytest.approx(1 / 3)
    assert published(drain(s, js, datetime(2026, 12, 1, 10, 30, tzinfo=UTC), {0}, clock=clock)) == ["utc"]
    last = drain(s, js, datetime(2026, 12, 1, 18, 5, tzinfo=UTC), {0}, clock=clock)  # 10:05 in Los Angeles (UTC-8)
    assert published(last) == ["la"]
    (record,) = progress(last)
    assert record.detail | {"run": run} == {
        "run": run,
        "partition": 0,
        "customers": 3,
        "evaluated": 3,
        "audience": 3,
        "remembered": 0,
        "closed": 0,
        "pending": 0,
        "complete": True,
    }


# ---------------------------------------------------------------- the throttle


def test_the_token_bucket_starts_empty_refills_at_its_rate_and_holds_a_fifth_of_a_second():
    bucket = TokenBucket(10.0, now=0.0)
    assert not bucket.take(0.0)
    assert bucket.wait(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) and not bucket.take(0.1)
    assert sum(bucket.take(60.0) for _ in range(10)) == 2  # a minute idle still holds only 0.2 s of tokens
    bucket.set_rate(0.0, 61.0)  # a worker without partitions: its share is 0
    assert bucket.take(61.0) and bucket.wait(61.0) == float("inf")


@pytest.mark.parametrize(("owned", "rate"), [({0}, 25.0), ({0, 1}, 50.0), ({0, 1, 2, 3}, 100.0)])
def test_each_worker_publishes_its_share_of_the_throttle(owned: set[int], rate: float):
    store = store_of({p: [customer(f"c{p}-{i}") for i in range(400)] for p in range(4)})
    clock = Clock()
    s, metrics = scheduler(store, clock)
    js = journeys(per_second=100)
    now = T0 + timedelta(seconds=1)
    sent = 0
    per_second: list[int] = []
    for tick in range(80):  # 4 s in steps of 50 ms
        clock.t += 0.05
        s.refresh(js, now, owned, 4)
        work = s.work(now)
        s.published(work.checks, [True] * len(work.checks))
        sent += len(work.checks)
        if tick % 20 == 19:
            per_second.append(sent - sum(per_second))
    assert metric(metrics, "orchestrator_campaign_throttle_per_second", journey="newsletter") == rate
    assert rate * 3.9 <= sent <= rate * 4  # the bucket starts empty: it never gives more than the rate
    assert max(per_second) <= rate * 1.2 + 1


def test_a_slice_is_bounded_and_the_scan_goes_on_in_the_next():
    store = store_of({0: [customer(f"s{i}", "silver") for i in range(25)]})
    clock = Clock()
    s, _ = scheduler(store, clock, slice_size=10)
    js = journeys()
    s.refresh(js, T0, {0}, 4)
    clock.t += 1
    work = s.work(T0)
    assert work.busy and work.checks == []
    out = drain(s, js, T0, {0}, clock=clock)
    (record,) = progress(out)
    assert record.detail["evaluated"] == 25 and record.detail["complete"]


# ---------------------------------------------------------------- resuming, redoing


def engine_handles(js: JourneySet, store: StateStore, checks: list[AudienceCheck], now: datetime) -> list[str]:
    """Run checks through the engine as the batch path would, write the states back; returns the send ids."""
    sends: list[str] = []
    for check in checks:
        p = next(p for p, part in store.partitions.items() if check.customer_id in part.states)
        state, actions = drive(store.load(p, check.customer_id), check, js, now)
        sends += [a.send_id for a in actions if isinstance(a, Send)]
        store.put(p, check.customer_id, state.model_dump_json().encode(), [], 10_000)
    return sends


def test_a_fresh_scheduler_skips_customers_whose_state_remembers_the_run():
    js = journeys()
    store = store_of({0: [customer(f"g{i}") for i in range(6)], 1: [customer(f"h{i}") for i in range(6)]})
    now = T0 + timedelta(seconds=5)
    clock = Clock()
    old_owner, _ = scheduler(store, clock, slice_size=1)
    clock.t += 1
    old_owner.refresh(js, now, {0, 1}, 4)
    partial = old_owner.work(now)
    for _ in range(3):
        clock.t += 1
        partial.checks += old_owner.work(now).checks
    done = [c.check for c in partial.checks]
    assert 0 < len(done) < 12  # the old owner died mid-run
    engine_handles(js, store, done[:-1], now)  # ...and the last check it published was never processed

    new_clock = Clock()
    new_owner, _ = scheduler(store, new_clock)
    rest = drain(new_owner, js, now + timedelta(seconds=20), {0, 1}, clock=new_clock)
    again = {c.check.customer_id for c in rest.checks}
    assert again == ({f"g{i}" for i in range(6)} | {f"h{i}" for i in range(6)}) - {c.customer_id for c in done[:-1]}
    assert sum(r.detail["remembered"] for r in progress(rest)) == len(done) - 1


def test_a_redo_is_harmless_one_entry_and_one_send_id_per_customer():
    js = journeys()
    store = store_of({0: [customer("g1"), customer("g2"), customer("s1", "silver")]})
    now = T0 + timedelta(seconds=5)
    clock = Clock()
    s, _ = scheduler(store, clock)
    checks = [c.check for c in drain(s, js, now, {0}, clock=clock).checks]
    before = {cid: store.load(0, cid) for cid in ("g1", "g2")}
    sends = engine_handles(js, store, checks, now)
    assert sorted(sends) == [f"g1:newsletter:v1:audience:newsletter:{RUN}:hello", f"g2:newsletter:v1:audience:newsletter:{RUN}:hello"]

    # the same checks published again (a rebalance mid-run): duplicates, nothing else
    for check in checks:
        _, actions = drive(store.load(0, check.customer_id), check, js, now + timedelta(minutes=1))
        assert [a.what for a in actions if isinstance(a, Trace)] == ["duplicate"]
    # a replay from the state before the first check (killed before the state was written): same send id
    for check in checks:
        _, actions = drive(before[check.customer_id], check, js, now + timedelta(minutes=2))
        assert [a.send_id for a in actions if isinstance(a, Send)] == [f"{check.customer_id}:newsletter:v1:audience:newsletter:{RUN}:hello"]
    # and when the passes start again (a rebalance) the scan publishes nobody again
    s.restart()
    assert drain(s, js, now + timedelta(minutes=3), {0}, clock=clock).checks == []


def test_a_failed_publish_is_looked_at_again_and_the_pass_completes_only_after_the_ack():
    store = store_of({0: [customer("g1"), customer("g2")]})
    clock = Clock()
    s, metrics = scheduler(store, clock)
    js = journeys()
    s.refresh(js, T0, {0}, 4)
    clock.t += 1
    work = s.work(T0)
    assert len(work.checks) == 2 and work.records == []
    s.published(work.checks, [True, False])
    clock.t += 1
    retry = s.work(T0)
    assert [c.check.customer_id for c in retry.checks] == [work.checks[1].check.customer_id]
    assert retry.records == []  # still in flight
    s.published(retry.checks, [True])
    (record,) = progress(s.work(T0))
    assert record.detail["audience"] == 2 and record.detail["complete"]
    assert metric(metrics, "orchestrator_campaign_audience_total", journey="newsletter", run=RUN) == 2


def test_a_state_that_does_not_load_is_published_for_the_batch_path_to_dead_letter():
    store = store_of({0: [customer("g1")]})
    store.partitions[0].states["broken"] = b'{"customer_id": "broken", "profile": {"segment": 7}}'
    clock = Clock()
    s, _ = scheduler(store, clock)
    assert published(drain(s, journeys(), T0, {0}, clock=clock)) == ["broken", "g1"]


def test_only_owned_partitions_are_scanned_and_a_lost_partition_is_forgotten():
    store = store_of({0: [customer("a")], 1: [customer("b")]})
    clock = Clock()
    s, _ = scheduler(store, clock)
    js = journeys()
    assert published(drain(s, js, T0, {1}, clock=clock)) == ["b"]
    assert set(s.campaigns["newsletter"].runs[RUN].passes) == {1}
    assert published(drain(s, js, T0, {0}, clock=clock)) == ["a"]
    assert set(s.campaigns["newsletter"].runs[RUN].passes) == {0}


def test_a_rebalance_keeps_the_pass_of_a_partition_kept_as_it_was_and_restarts_the_others():
    store = store_of({0: [customer(f"a{i}", "silver") for i in range(20)], 1: [customer(f"b{i}", "silver") for i in range(20)]})
    clock = Clock()
    s, _ = scheduler(store, clock, slice_size=15)
    js = journeys()
    s.refresh(js, T0, {0, 1}, 4)
    clock.t += 1
    s.work(T0)
    passes = s.campaigns["newsletter"].runs[RUN].passes
    kept, moved = passes[0], passes[1]
    assert kept.cursor == 15 and moved.cursor == 0
    store.partitions[1] = PartitionState(states=dict(store.partitions[1].states))  # read again from its changelog
    s.refresh(js, T0, {0, 1}, 4)  # (a rebalance: partition 0 kept as it was)
    assert passes[0] is kept and kept.cursor == 15
    assert passes[1] is not moved and passes[1].cursor == 0  # a new pass from the restored states


def test_a_restore_that_failed_half_way_is_started_again_not_taken_as_complete():
    store = StateStore("changelog")
    tp = TopicPartition("changelog", 0)
    read: dict[int, int] = {}
    assert store._reset_moved([tp], {tp: 100}, read) == [tp]
    store.partitions[0].states["c1"] = b"{}"  # ...then the broker went away before offset 100
    assert store._reset_moved([tp], {tp: 100}, read) == [tp]  # read again from the beginning
    assert store.partitions[0].states == {}
    store.partitions[0].end_offset = 100  # what restore() sets once the partition is read to its end
    assert store._reset_moved([tp], {tp: 100}, {}) == []  # kept


def test_two_campaigns_take_turns_in_the_slices():
    other = NEWSLETTER.replace("id: newsletter", "id: other_news").replace("eq: gold", "eq: platinum")
    js = load_text(NEWSLETTER, other)
    store = store_of({0: [customer(f"s{i}", "silver") for i in range(50)]})
    clock = Clock()
    s, _ = scheduler(store, clock, slice_size=10)
    s.refresh(js, T0, {0}, 4)
    clock.t += 1
    s.work(T0)
    s.work(T0)
    cursors = {jid: c.runs[RUN].passes[0].cursor for jid, c in s.campaigns.items()}
    assert cursors == {"newsletter": 10, "other_news": 10}


def test_the_pipeline_counts_entries_and_decisions_of_a_run(tmp_path):
    js = journeys()
    policy = ROOT / "journeys" / "pressure.yaml"
    store = store_of({0: []})
    sched, m = scheduler(store, Clock())
    sched.refresh(js, T0, {0}, 4)  # the run is open here: it has its own label
    topics = worker_topics(Settings(journeys_dir=tmp_path, policy_file=policy))
    check = AudienceCheck(customer_id="g1", journey_id="newsletter", run_id=RUN, due_at=T0)
    state, actions = drive(customer("g1"), check, js, T0)
    traces = [a for a in actions if isinstance(a, Trace)]
    dispositions = [a for a in actions if isinstance(a, Disposition)]
    out = BatchOutput()
    result_records(out, Result(state=state, traces=traces, dispositions=dispositions), T0, topics, m, sched.run_label)
    out.tally.apply()
    assert metric(m, "orchestrator_campaign_entered_total", journey="newsletter", run=RUN) == 1
    assert metric(m, "orchestrator_campaign_decisions_total", journey="newsletter", run=RUN, result="approved") == 1
    _, again = drive(
        customer("g2"), AudienceCheck(customer_id="g2", journey_id="newsletter", run_id="2026-11-01T10:00Z", due_at=T0), js, T0
    )
    out = BatchOutput()
    result_records(out, Result(state=state, traces=[a for a in again if isinstance(a, Trace)]), T0, topics, m, sched.run_label)
    out.tally.apply()
    assert metric(m, "orchestrator_campaign_entered_total", journey="newsletter", run="older") == 1  # a run not open here


def test_metric_series_are_kept_for_the_newest_runs_only():
    js = journeys(schedule='{every: hour, at: "00:00"}')
    store = store_of({0: [customer("a")]})
    clock = Clock()
    s, metrics = scheduler(store, clock)
    first = "2026-12-01T10:00Z"
    drain(s, js, T0, {0}, clock=clock)
    assert metric(metrics, "orchestrator_campaign_evaluated_total", journey="newsletter", run=first) == 1
    for hour in range(1, 5):
        drain(s, js, T0 + timedelta(hours=hour), {0}, clock=clock)
    assert s.run_label("newsletter", first) == "older"  # five runs seen: the first one's series are gone
    assert metric(metrics, "orchestrator_campaign_evaluated_total", journey="newsletter", run=first) == 0
    assert metric(metrics, "orchestrator_campaign_evaluated_total", journey="newsletter", run="2026-12-01T14:00Z") == 1


def test_retired_campaigns_and_closed_runs_are_dropped():
    store = store_of({0: [customer("a")]})
    clock = Clock()
    s, metrics = scheduler(store, clock)
    js = journeys()
    drain(s, js, T0, {0}, clock=clock)
    s.refresh(js, T0 + timedelta(hours=24), {0}, 4)
    assert s.campaigns["newsletter"].runs == {}  # the run closed: its passes are gone
    s.refresh(JourneySet(), T0, {0}, 4)
    assert s.campaigns == {}
    assert metric(metrics, "orchestrator_campaign_throttle_per_second", journey="newsletter") == 0.0


# ---------------------------------------------------------------- what the scan reads


def test_the_light_view_reads_the_same_profile_and_remembered_ids_as_the_full_state():
    js = journeys()
    state = CustomerState(
        customer_id="x",
        profile=Profile(segment="gold", timezone="Europe/Berlin", attributes={"tier": 3, "vip": True}, lists=["a", "b"]),
    )
    state, _ = drive(state, AudienceCheck(customer_id="x", journey_id="newsletter", run_id=RUN, due_at=T0), js, T0)
    raw = state.model_dump_json().encode()
    view = AudienceView.model_validate_json(raw)
    assert view.profile == CustomerState.model_validate_json(raw).profile
    assert view.recent() == state.recent_event_ids and state.history  # history, instances ... skipped by the view
    legacy = AudienceView.model_validate_json(b'{"customer_id": "y", "recent_event_ids": ["e1", "e2"]}')
    assert legacy.recent() == recent_from_list(["e1", "e2"])


def test_progress_records_are_journey_log_records_that_report_and_explain_skip():
    store = store_of({0: [customer("g1"), customer("s1", "silver")]})
    clock = Clock()
    s, _ = scheduler(store, clock)
    js = journeys()
    out = drain(s, js, T0, {0}, clock=clock)
    (record,) = progress(out)
    assert (record.what, record.customer_id, record.instance_id, record.journey_id, record.journey_version) == (
        CAMPAIGN_PROGRESS,
        "",
        "",
        "newsletter",
        1,
    )
    assert out.records[0].key == "newsletter"
    _, actions = drive(store.load(0, "g1"), out.checks[0].check, js, T0)
    log = [r.value for r in out.records] + [JourneyLogRecord.of(a).model_dump_json().encode() for a in actions if isinstance(a, Trace)]
    report = build_report(log)
    (journey,) = report.journeys
    assert journey.journey_id == "newsletter" and journey.total.entered == 1
    assert not report.skipped
    story = build_story("g1", log)
    assert story.log_records == len(log) - 1 and all(line.what != CAMPAIGN_PROGRESS for line in story.lines)


def test_run_ids_are_read_back_from_entry_events_and_instances():
    assert run_of_event("newsletter", f"audience:newsletter:{RUN}") == RUN
    assert run_of_event("newsletter", "cart-1") is None
    assert run_of_instance("newsletter", f"newsletter@audience:newsletter:{RUN}") == RUN
    assert run_of_instance("newsletter", "newsletter@cart-1") is None
    assert run_of_instance("other", f"newsletter@audience:newsletter:{RUN}") is None
    utc = Run(RUN, T0, False)
    assert run_reaches(utc, T0, GRACE) and not run_reaches(utc, T0 - timedelta(seconds=1), GRACE)
    assert not run_reaches(utc, T0 + GRACE, GRACE)
    local = Run("2026-12-01T10:00L", T0.replace(tzinfo=None), True)
    assert run_reaches(local, T0 - timedelta(hours=14), GRACE) and run_reaches(
        local, T0 + timedelta(hours=14) + GRACE - timedelta(seconds=1), GRACE
    )

"""A scheduled campaign on the real stack: two workers, four partitions, one of them killed (kill -9) mid-run.

The oracle is the set of customers the test made qualify. Checked: every qualifying
customer entered exactly once (one instance; a replayed ``entered`` record of the same
instance is at-least-once and allowed) and nobody else; one approved decision and one send
id per qualifying customer, every send request gated (an approved decision with its send
id) and the basket charged once; the throttle held in every 1-s window of entries; each
partition's pass completed (``campaign_progress`` records) and ``orchestrator report`` reads
the journey log with them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from orchestrator.designer.report import build_report
from orchestrator.pressure.policy import load_policy
from orchestrator.pressure.redis_basket import RedisBasket
from tests.integration.helpers import Deployment, event, metric, wait_until

pytestmark = pytest.mark.integration

JOURNEY = "newsletter_it"
CUSTOMERS = 3000
PER_SECOND = 400
BURST = 0.2 * PER_SECOND
"""What the workers' token buckets may hold together beyond the rate (0.2 s of it)."""


def campaign(at: datetime) -> dict:
    return {
        "id": JOURNEY,
        "version": 1,
        "name": "Newsletter (integration test)",
        "entry": {
            "audience": {
                "when": [{"field": "profile.segment", "eq": "gold"}],
                "schedule": {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
                "throttle": {"per_second": PER_SECOND},
            },
            "reentry": {"policy": "never"},
        },
        "start": "hello",
        "steps": {
            "hello": {"type": "send", "channel": "email", "template": "newsletter", "comm_type": "editorial", "next": "done"},
            "done": {"type": "end"},
        },
    }


async def _balances(url: str, policy_file: str, customers: list[str]) -> dict[str, float]:
    basket = RedisBasket.from_url(url, load_policy(policy_file))
    try:
        now = datetime.now(UTC)
        return {c: (await basket.show(c, now)).balance for c in customers}
    finally:
        await basket.aclose()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most entries in any half-open window of ``window`` seconds."""
    times = sorted(times)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def test_a_campaign_run_survives_a_kill_9_enters_each_qualifying_customer_once_and_holds_its_throttle(deployment: Deployment) -> None:
    dep = deployment
    first = dep.start_worker(ORCH_PARTITIONS="4")
    second = dep.start_worker(ORCH_PARTITIONS="4")
    assert wait_until(
        lambda: (
            len(set((first.ready() or {}).get("partitions", ())) | set((second.ready() or {}).get("partitions", ()))) == 4
            and all((w.ready() or {}).get("partitions") for w in (first, second))
        ),
        60,
    )
    victim, survivor = (first, second) if 0 in first.ready()["partitions"] else (second, first)  # type: ignore[index]

    customers = [f"{dep.prefix}-c{i:04d}" for i in range(CUSTOMERS)]
    qualifying = {c for i, c in enumerate(customers) if i % 2 == 0}
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
    for i in range(0, CUSTOMERS, 500):
        dep.publish(
            "crm",
            *(
                event(c, "customer_registered", f"{c}-reg", segment="gold" if c in qualifying else "silver", timezone=zones[j % 4])
                for j, c in enumerate(customers[i : i + 500], start=i)
            ),
        )

    def processed() -> float:
        return sum(metric(w.metrics(), "orchestrator_processed_total", kind="event") for w in (first, second))

    assert wait_until(lambda: processed() >= CUSTOMERS, 60), processed()

    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    run_id = run_at.strftime("%Y-%m-%dT%H:%MZ")
    (dep.journeys_dir / f"{JOURNEY}.yaml").write_text(yaml.safe_dump(campaign(run_at), sort_keys=False))  # hot-reloaded

    def victim_published() -> float:
        return metric(victim.metrics(), "orchestrator_campaign_audience_total", journey=JOURNEY)

    assert wait_until(lambda: victim_published() >= 150, 30, interval=0.05), victim.log_tail()
    published_at_kill = victim_published()
    victim.kill()  # mid-run: it has published some of its partitions' checks, not all
    killed_at = time.time()
    killed_after = killed_at - run_at.timestamp()

    dep.read(  # until every qualifying customer entered (or the time is up: the asserts below say who is missing)
        "journey-log",
        until=lambda rs: len({r.json()["customer_id"] for r in rs if r.json()["what"] == "entered"}) >= len(qualifying),
        timeout=90,
    )
    time.sleep(2)  # anything still on its way
    journey_log = [r.json() for r in dep.read("journey-log", until=lambda rs: False, timeout=3)]
    decisions = [r.json() for r in dep.read("decisions", until=lambda rs: False, timeout=3)]
    sends = [r.json() for r in dep.read("sends", until=lambda rs: False, timeout=3)]

    # -- entered: every qualifying customer exactly once (one instance), nobody else
    entered = [r for r in journey_log if r["what"] == "entered" and r["journey_id"] == JOURNEY]
    instances: dict[str, set[str]] = defaultdict(set)
    for r in entered:
        instances[r["customer_id"]].add(r["instance_id"])
    missing = qualifying - set(instances)
    assert not missing, f"{len(missing)} qualifying customers never entered, e.g. {sorted(missing)[:3]}"
    assert set(instances) == qualifying, f"non-qualifying customers entered: {sorted(set(instances) - qualifying)[:3]}"
    assert all(ids == {f"{JOURNEY}@audience:{JOURNEY}:{run_id}"} for ids in instances.values())
    replayed_entries = len(entered) - len(instances)

    # -- sends: one approved decision and one send id per qualifying customer; every send request gated
    mine = [d for d in decisions if d["journey_id"] == JOURNEY]
    approved: dict[str, set[str]] = defaultdict(set)
    for d in mine:
        assert d["result"] == "approved", d
        approved[d["customer_id"]].add(d["send_id"])
    assert set(approved) == qualifying and all(len(ids) == 1 for ids in approved.values())
    send_ids: dict[str, set[str]] = defaultdict(set)
    for s in sends:
        assert s["journey_id"] == JOURNEY
        send_ids[s["customer_id"]].add(s["send_id"])
    assert set(send_ids) == qualifying
    assert send_ids == approved, "a send request without its approved decision (or with another send id)"
    duplicate_sends = len(sends) - len(send_ids)  # the same send id published twice by a replay: the CCM dedupes on it
    policy_file = str(dep.journeys_dir / "pressure.yaml")
    (cost,) = {d["cost"] for d in mine}
    balances = asyncio.run(_balances(dep.redis, policy_file, sorted(qualifying)))
    assert {c: b for c, b in balances.items() if b != cost} == {}, "a customer was charged twice (or not at all)"
    assert dep.read("dead-letter", until=lambda rs: False, timeout=1) == []

    # -- the throttle: entries (first `entered` per customer, at the engine clock = wall clock here) per 1-s window
    first_at: dict[str, float] = {}
    for r in entered:
        at = datetime.fromisoformat(r["at"].replace("Z", "+00:00")).timestamp()
        first_at[r["customer_id"]] = min(at, first_at.get(r["customer_id"], at))
    times = sorted(first_at.values())
    busiest = max_in_window(times)
    per_second = Counter(int(t - times[0]) for t in times)
    # Tolerance: the buckets may hold 0.2 s of the rate together (BURST); a check is entered in the batch after
    # it is published, so entries shift by up to one batch's latency (allow 0.25 s of the rate); and after the
    # failover the killed worker's checks still on the topic are replayed at once (their tokens were taken before).
    in_flight_allowance = 0.25 * PER_SECOND
    limit = PER_SECOND + BURST + in_flight_allowance
    summary = (
        f"customers {CUSTOMERS}, qualifying {len(qualifying)}, entered {len(instances)} ({replayed_entries} replayed entered "
        f"records), sends {len(send_ids)} ({duplicate_sends} duplicate send records), killed {killed_after:.1f}s after the "
        f"run's time with {published_at_kill:.0f} checks published by the victim, entries from "
        f"{times[0] - run_at.timestamp():.1f}s to {times[-1] - run_at.timestamp():.1f}s, "
        f"busiest 1-s window {busiest} (limit {limit:.0f}), per second {sorted(per_second.items())}"
    )
    print(summary)
    assert busiest <= limit, summary
    assert times[-1] > killed_at + 5, "the run was over before the kill: nothing was carried on by the survivor"
    assert len(times) / (times[-1] - times[0] + 1) <= PER_SECOND, summary

    # -- progress: every partition's pass completed, on the journey log; report reads the log with those records
    progress = [r for r in journey_log if r["what"] == "campaign_progress" and r["journey_id"] == JOURNEY]
    assert {r["detail"]["partition"] for r in progress if r["detail"]["complete"]} == {0, 1, 2, 3}
    assert all(r["customer_id"] == "" and r["instance_id"] == "" and r["detail"]["run"] == run_id for r in progress)
    assert wait_until(lambda: metric(survivor.metrics(), "orchestrator_campaign_progress", journey=JOURNEY, run=run_id) == 1.0, 10)
    report = build_report(journey_log)
    (row,) = [j for j in report.journeys if j.journey_id == JOURNEY]
    assert row.total.entered == len(qualifying)
    assert "unreadable record" not in report.skipped
    assert survivor.proc is not None and survivor.proc.poll() is None


def test_a_local_run_reaches_a_customer_registered_after_the_workers_pass_began(deployment: Deployment) -> None:
    """A local-time run is open and the worker's pass over the partitions has begun; a New York customer registered
    then (08:30 their time, engine clock 1 s = 10 min) is entered at 10:00 New York time."""
    dep = deployment
    speed = 600.0
    origin = time.time()
    worker = dep.start_worker(ORCH_CLOCK_SPEED=str(speed), ORCH_CLOCK_ORIGIN=str(origin), ORCH_CAMPAIGN_TICK="0.1")

    def engine(wall: float | None = None) -> datetime:
        wall = time.time() if wall is None else wall
        return datetime.fromtimestamp(origin + (wall - origin) * speed, UTC)

    new_york = ZoneInfo("America/New_York")
    known, newcomer = f"{dep.prefix}-known", f"{dep.prefix}-newcomer"
    dep.publish("crm", event(known, "customer_registered", f"{known}-reg", engine(), segment="gold", timezone="America/New_York"))
    assert wait_until(lambda: metric(worker.metrics(), "orchestrator_processed_total", kind="event") >= 1, 30)

    # the run: 10:00 New York time about 3 engine hours (18 s) from now, so it is open already (since 14 h before 10:00 UTC)
    local_ten = (engine() + timedelta(hours=3)).astimezone(new_york).replace(second=0, microsecond=0, tzinfo=None)
    due = local_ten.replace(tzinfo=new_york).astimezone(UTC)
    run_id = f"{local_ten:%Y-%m-%dT%H:%M}L"
    doc = campaign(due)
    doc["entry"]["audience"]["schedule"] = {"at": f"{local_ten:%Y-%m-%dT%H:%M}", "local": True}
    (dep.journeys_dir / f"{JOURNEY}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))  # hot-reloaded

    def pass_began() -> bool:  # the run's progress gauge exists once the worker has walked its pass (the known customer parked)
        return any(
            line.startswith("orchestrator_campaign_progress{") and f'journey="{JOURNEY}"' in line and f'run="{run_id}"' in line
            for line in worker.metrics().splitlines()
        )

    assert wait_until(pass_began, 10, interval=0.1), worker.log_tail()
    registered_at = engine()
    assert registered_at < due - timedelta(hours=1), "too slow: the test needs the registration well before the due time"
    dep.publish(
        "crm", event(newcomer, "customer_registered", f"{newcomer}-reg", registered_at, segment="gold", timezone="America/New_York")
    )

    wanted = {known, newcomer}
    records = dep.read(
        "journey-log",
        until=lambda rs: {r.json()["customer_id"] for r in rs if r.json()["what"] == "entered"} >= wanted,
        timeout=40,
    )
    entered = {r.json()["customer_id"]: r.json() for r in records if r.json()["what"] == "entered"}
    assert set(entered) == wanted, f"entered: {sorted(entered)}\n{worker.log_tail()}"
    for cid, record in entered.items():
        assert record["instance_id"] == f"{JOURNEY}@audience:{JOURNEY}:{run_id}", record
        at = datetime.fromisoformat(record["at"].replace("Z", "+00:00"))
        assert due <= at < due + timedelta(hours=1), (cid, at, due)  # at 10:00 New York time (within 6 s of wall time)

"""The feature announcement deployed into a running system (issue 14, "done when").

Events first, the journey file dropped into the worker's journeys directory later (hot
reload): the campaign "active customers who never used export" reaches only customers who
never used it, because ``profile.yaml`` made the worker record ``data.feature`` from its
start, whatever journeys were loaded; and the worker says from when that history is known.
The oracle is the set of customers the test made use the feature.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.integration.helpers import Deployment, event, metric, wait_until

pytestmark = pytest.mark.integration

JOURNEY = "feature_announcement_it"


def announcement(at: datetime) -> dict:
    return {
        "id": JOURNEY,
        "version": 1,
        "name": "Export announcement (integration test)",
        "entry": {
            "audience": {
                "when": [
                    {"since": "profile.last_seen_at", "younger_than": "30d"},
                    {"not_seen": "web.feature_used", "where": [{"field": "data.feature", "eq": "export"}]},
                ],
                "schedule": {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
            },
            "reentry": {"policy": "never"},
        },
        "start": "announce",
        "steps": {
            "announce": {"type": "send", "channel": "email", "template": "export_announcement", "comm_type": "editorial", "next": "done"},
            "done": {"type": "end"},
        },
    }


def test_a_campaign_deployed_later_reaches_only_customers_who_never_used_the_feature(deployment: Deployment) -> None:
    dep = deployment
    worker = dep.start_worker()  # the journeys directory holds only pressure.yaml and profile.yaml
    used = [f"{dep.prefix}-used{i}" for i in range(20)]
    other = [f"{dep.prefix}-other{i}" for i in range(20)]
    never = [f"{dep.prefix}-never{i}" for i in range(20)]
    earlier = datetime.now(UTC) - timedelta(days=3)
    events = [event(c, "feature_used", f"{c}-f", at=earlier, feature="export") for c in used]
    events += [event(c, "feature_used", f"{c}-f", at=earlier, feature="search") for c in other]
    events += [event(c, "page_view", f"{c}-p", at=earlier, url="/pricing") for c in never]
    # the users of export do other things later too: their last event is not the one that matters
    events += [event(c, "feature_used", f"{c}-f2", feature="search") for c in used]
    dep.publish("web", *events)

    def processed() -> float:
        return metric(worker.metrics(), "orchestrator_processed_total", kind="event")

    assert wait_until(lambda: processed() >= len(events), 60), processed()

    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    (dep.journeys_dir / f"{JOURNEY}.yaml").write_text(yaml.safe_dump(announcement(run_at), sort_keys=False))  # hot-reloaded

    expected = set(other) | set(never)
    sends = dep.read(
        "sends",
        until=lambda rs: len({r.json()["customer_id"] for r in rs}) >= len(expected),
        timeout=60,
    )
    time.sleep(2)  # a send to a user of export would come with the others
    sends = dep.read("sends", until=lambda rs: False, timeout=3)
    reached = {r.json()["customer_id"] for r in sends if r.json()["template"] == "export_announcement"}
    assert not reached & set(used), f"users of export were sent the announcement: {sorted(reached & set(used))[:3]}"
    assert reached == expected, f"missing: {sorted(expected - reached)[:3]}"

    # the worker said from when the history of data.feature is known (it recorded it from its start)
    log = worker.log_path.read_text()
    assert "profile facts: recording web.feature_used data.feature from" in log, worker.log_tail()
    assert f"journey {JOURNEY} v1 looks back ever, but the history of web.feature_used data.feature starts at" in log, worker.log_tail()

    # validate --kafka reads the same registry and says the same
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": dep.kafka, "ORCH_TOPIC_PREFIX": dep.prefix, "ORCH_PARTITIONS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "validate", "--kafka", str(dep.journeys_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "the history of web.feature_used data.feature starts at" in done.stdout, done.stdout
    assert f"facts registry {dep.prefix}.profile-facts: " in done.stdout, done.stdout

    # a broken journey and a broken policy dropped in together: one reload refuses both, each at its line
    (dep.journeys_dir / "broken.yaml").write_text(
        "id: broken\nversion: 1\nname: B\nentry: {event: web.purchase}\nstart: e\nsteps: {e: {type: ende}}\n"
    )
    policy = dep.journeys_dir / "pressure.yaml"
    good_policy = policy.read_text()
    policy.write_text(good_policy.replace("capacity:", "capacity: -1\n_old_capacity:", 1))
    assert wait_until(lambda: "journey reload refused" in worker.log_path.read_text(), 20), worker.log_tail()
    time.sleep(1)
    refused = [line for line in worker.log_path.read_text().splitlines() if "journey reload refused" in line]
    assert any(f"{dep.journeys_dir / 'broken.yaml'}:6:" in line for line in refused), refused
    assert any(f"{policy}:" in line for line in refused), refused

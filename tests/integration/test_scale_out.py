"""Horizontal scale: two workers in one consumer group share the customer partitions."""

from __future__ import annotations

import re
import time

import pytest
import yaml

from tests.integration.helpers import ROOT, Deployment, event

pytestmark = pytest.mark.integration


def processed(metrics: str) -> int:
    m = re.search(r'^orchestrator_processed_total\{kind="event"\} ([0-9.e+]+)$', metrics, re.M)
    return int(float(m.group(1))) if m else 0


def test_two_workers_split_the_customers_and_each_customer_is_handled_once(deployment: Deployment) -> None:
    dep = deployment
    doc = yaml.safe_load((ROOT / "journeys" / "abandoned_cart.yaml").read_text())
    doc["steps"]["wait_open"]["timeout"] = "1h"
    (dep.journeys_dir / "abandoned_cart.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    first = dep.start_worker(ORCH_PARTITIONS="4")
    second = dep.start_worker(ORCH_PARTITIONS="4")
    # wait until the group has settled with both members owning customer partitions
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        owned = [set((w.ready() or {}).get("partitions", ())) for w in (first, second)]
        if all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}:
            break
        time.sleep(0.5)
    assert all(owned) and owned[0] | owned[1] == {0, 1, 2, 3}, owned

    customers = [f"{dep.prefix}-c{i}" for i in range(40)]
    dep.publish("web", *(event(c, "cart_abandoned", f"{c}-cart", cart_id="k", cart_value=70.0) for c in customers))
    sends = dep.read("sends", until=lambda rs: len({r.key for r in rs}) >= len(customers), timeout=90)

    assert sorted({r.key or "" for r in sends}) == sorted(customers)
    assert len({r.json()["send_id"] for r in sends}) == len(customers)  # one message per customer, no double handling
    counts = [processed(w.metrics()) for w in (first, second)]
    assert sum(counts) == len(customers), counts
    assert all(n > 0 for n in counts), f"both workers must take part: {counts}"


def test_worker_refuses_to_start_when_partitions_do_not_match(deployment: Deployment) -> None:
    dep = deployment
    (dep.journeys_dir / "abandoned_cart.yaml").write_text((ROOT / "journeys" / "abandoned_cart.yaml").read_text())
    first = dep.start_worker(ORCH_PARTITIONS="2")  # creates the topics and changelogs with 2 partitions
    first.stop()
    wrong = dep.start_worker(wait=False, ORCH_PARTITIONS="4")
    assert wrong.proc is not None
    assert wrong.proc.wait(timeout=60) == 2
    log = wrong.log_path.read_text()
    assert f"topic {dep.topic('customer-events')} has 2 partitions" in log
    assert "but ORCH_PARTITIONS=4" in log

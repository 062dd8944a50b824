"""Issue 2's end-to-end path through Faust, real Kafka and real Redis.

journeys/abandoned_cart.yaml, with the wait shortened to 3 s: an abandoned cart
sends an email (after a basket check in Redis); no open within the timeout → a
reminder; an open of *that* email before the timeout → no reminder.
"""

from __future__ import annotations

import time

import pytest
import yaml

from tests.integration.helpers import ROOT, Deployment, event, metric

pytestmark = pytest.mark.integration

TIMEOUT_S = 3


def install_short_journey(dep: Deployment) -> None:
    doc = yaml.safe_load((ROOT / "journeys" / "abandoned_cart.yaml").read_text())
    doc["steps"]["wait_open"]["timeout"] = f"{TIMEOUT_S}s"
    (dep.journeys_dir / "abandoned_cart.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    # The committed policy arbitrates sends within 15 minutes by priority; a reminder
    # 3 s after the first mail would be capped by it. Switch arbitration off here.
    policy = yaml.safe_load((dep.journeys_dir / "pressure.yaml").read_text())
    policy["arbitration_window"] = None
    (dep.journeys_dir / "pressure.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


def sends_for(records, customer: str) -> list[dict]:
    return [r.json() for r in records if r.key == customer]


def test_reminder_on_inaction_and_no_reminder_after_open(deployment: Deployment) -> None:
    dep = deployment
    install_short_journey(dep)
    worker = dep.start_worker()

    idle, opener = f"{dep.prefix}-idle", f"{dep.prefix}-opener"
    dep.publish(
        "web",
        event(idle, "cart_abandoned", f"{idle}-cart", cart_id="k1", cart_value=80.0),
        event(opener, "cart_abandoned", f"{opener}-cart", cart_id="k2", cart_value=45.0),
    )

    # Both get the first email; the CCM platform then reports that the opener opened it.
    first = dep.read("sends", until=lambda rs: {r.key for r in rs} >= {idle, opener}, timeout=60)
    opener_first = sends_for(first, opener)
    assert [s["template"] for s in opener_first] == ["cart_reminder"]
    dep.publish(
        "ccm",
        event(opener, "opened", f"{opener}-open", send_id=opener_first[0]["send_id"], channel="email"),
    )

    # The idle customer's reminder must come; wait a further timeout for anything the opener might get.
    sends = dep.read("sends", until=lambda rs: len(sends_for(rs, idle)) >= 2, timeout=60)
    time.sleep(TIMEOUT_S + 2)
    sends = dep.read("sends", until=lambda rs: False, timeout=3)

    idle_sends = sends_for(sends, idle)
    assert [(s["template"], s["channel"], s["comm_type"], s["journey_id"], s["step_id"]) for s in idle_sends] == [
        ("cart_reminder", "email", "commercial", "abandoned_cart", "send_first"),
        ("cart_reminder_2", "email", "commercial", "abandoned_cart", "send_reminder"),
    ]
    assert idle_sends[0]["variables"]["tone"] == "friendly"
    assert idle_sends[1]["variables"]["tone"] == "urgent"
    assert idle_sends[0]["basket_balance"] == 10 and idle_sends[1]["basket_balance"] == 20
    assert len({s["send_id"] for s in idle_sends}) == 2

    opener_sends = sends_for(sends, opener)
    assert [s["template"] for s in opener_sends] == ["cart_reminder"]

    # Every send went through the basket: one approved decision per send request, none other.
    decisions = dep.read("decisions", until=lambda rs: len(rs) >= 3, timeout=10)
    assert sorted((d.key, d.json()["result"]) for d in decisions) == sorted([(idle, "approved"), (idle, "approved"), (opener, "approved")])
    assert {d.json()["send_id"] for d in decisions} == {s["send_id"] for s in idle_sends + opener_sends}

    # What an SRE alerts on counted what happened: two sends caused by events, one by a timer
    # (the reminder), one timer fired late by a measured amount, every gate round timed.
    text = worker.metrics()
    assert metric(text, "orchestrator_event_to_send_seconds_count", trigger="event") == 2
    assert metric(text, "orchestrator_event_to_send_seconds_count", trigger="timer") == 1
    assert metric(text, "orchestrator_timer_lateness_seconds_count") >= 1
    assert metric(text, "orchestrator_gate_seconds_count") >= 2
    assert metric(text, "orchestrator_rebalances_total", kind="assigned") >= 1

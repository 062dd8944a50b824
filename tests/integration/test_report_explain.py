"""`orchestrator report` and `orchestrator explain CUSTOMER` on the real stack.

A worker runs the example journeys (journeys/*.yaml, unchanged) on its own topics. Two
customers abandon a cart (an approved email, then a 24 h wait for its open), four churn-risk
customers go through the churn_apology A/B split, one of them buys (the goal). The churners'
ids are picked with the engine's own split function so that two get each variant (random ids
all fell into one variant in 1 run of 16). One cart customer also sends a malformed cart
event (dead-lettered), and their cart event occurred ten minutes before it was published.
Then:

* ``report`` reads the whole journey log from Kafka and counts the entries, the goal, the
  split's variants (baseline and weights from the journey file) and the sends;
* ``explain`` tells one cart customer's story from their partition only: the partition the
  worker's producer chose for their key, which the test finds by reading every partition;
  each event at its own time (the cart event's occurred_at, not the batch's), and the
  dead-lettered event with its code.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.designer import explain as ex
from orchestrator.designer import report as rp
from orchestrator.dev import kafkatools
from orchestrator.engine.ids import choose_variant
from orchestrator.events import FAMILIES
from orchestrator.journey import model as m
from orchestrator.journey.loader import load_journeys
from orchestrator.timeutil import iso_utc
from tests.integration.helpers import ROOT, Deployment, event

pytestmark = pytest.mark.integration

PARTITIONS = 2  # Deployment.env()


def run(register: Callable[[Any], None], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out, err)
    return code, out.getvalue(), err.getvalue()


def on_two_partitions(prefix: str) -> tuple[str, str]:
    """Two cart customer ids whose keys the default partitioner puts on different partitions."""
    names = [f"{prefix}-cart-{i}" for i in range(50)]
    first = names[0]
    second = next(n for n in names if ex.partition_for(n, PARTITIONS) != ex.partition_for(first, PARTITIONS))
    return first, second


def churners_by_variant(prefix: str, per_variant: int = 2) -> dict[str, str]:
    """Churn customer id -> its churn_apology split variant, ``per_variant`` ids per variant (the engine's choose_variant)."""
    journey = load_journeys([ROOT / "journeys"]).get("churn_apology", 1)
    assert journey is not None
    split = journey.journey.steps["offer_test"]
    assert isinstance(split, m.SplitStep)
    picked: dict[str, str] = {}
    for i in range(1000):
        name = f"{prefix}-churn-{i}"
        variant = choose_variant(name, "churn_apology", split, "offer_test").name
        if sum(v == variant for v in picked.values()) < per_variant:
            picked[name] = variant
    assert sorted(picked.values()) == sorted(v.name for v in split.variants for _ in range(per_variant))
    return picked


def test_report_and_explain_on_a_running_worker(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = deployment
    for path in (ROOT / "journeys").glob("*.yaml"):
        if path.name != "pressure.yaml":
            shutil.copy(path, dep.journeys_dir / path.name)
    dep.start_worker()

    cart_a, cart_b = on_two_partitions(dep.prefix)
    expected_variant = churners_by_variant(dep.prefix)
    churners = list(expected_variant)
    now = datetime.now(UTC).replace(microsecond=0)
    cart_at, bad_at = now - timedelta(minutes=10), now - timedelta(minutes=5)  # when the events occurred: before the worker saw them
    dep.publish("web", event(cart_a, "cart_abandoned", f"{cart_a}-cart", cart_at, cart_id="k1", cart_value=80.0))
    dep.publish("web", event(cart_b, "cart_abandoned", f"{cart_b}-cart", cart_id="k1", cart_value=80.0))
    dep.publish("web", event(cart_a, "cart_abandoned", f"{cart_a}-bad", bad_at, cart_id="k2", cart_value="abc"))  # dead-lettered
    dep.publish("crm", *[event(c, "churn_risk_scored", f"{c}-score", score=0.9) for c in churners])

    def waiting(records: list[kafkatools.Record]) -> set[str]:
        return {r.key for r in records if r.key and r.json()["what"] == "waiting"}

    everyone = {cart_a, cart_b, *churners}
    dep.read("journey-log", until=lambda rs: waiting(rs) >= everyone, timeout=90)
    buyer = churners[0]
    dep.publish("web", event(buyer, "purchase", f"{buyer}-buy", order_id="o1", value=30.0))
    log = dep.read("journey-log", until=lambda rs: any(r.key == buyer and r.json()["what"] == "goal" for r in rs), timeout=60)
    decisions = dep.read("decisions", until=lambda rs: {r.key for r in rs} >= everyone, timeout=30)
    (dead,) = dep.read("dead-letter", until=lambda rs: any(r.key == cart_a for r in rs), timeout=30)
    assert (dead.key, dead.headers["dlq.code"], dead.partition) == (cart_a, "schema", ex.partition_for(cart_a, PARTITIONS))

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", dep.kafka)
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", dep.prefix)
    monkeypatch.setenv("ORCH_JOURNEYS_DIR", str(dep.journeys_dir))

    # ---- report: the whole journey log, from Kafka
    code, out, err = run(rp.register, "report", "--json", "--timeout", "30")
    assert code == 0, err
    report = rp.Report.model_validate_json(out)
    assert report.source == dep.topic("journey-log") and report.records >= len(log)
    journeys = {(j.journey_id, j.version): j for j in report.journeys}
    assert set(journeys) == {("abandoned_cart", 1), ("churn_apology", 1)}
    cart = journeys[("abandoned_cart", 1)].total
    assert (cart.entered, cart.customers, cart.converted, cart.open, cart.sends) == (2, 2, 0, 2, {"approved": 2})
    churn = journeys[("churn_apology", 1)]
    assert (churn.total.entered, churn.total.converted, churn.total.open) == (4, 1, 3)
    (split,) = churn.splits
    assert (split.step_id, split.baseline_from) == ("offer_test", "journey file")
    assert [(v.variant, v.weight) for v in split.variants] == [("ten_percent", 50), ("twenty_percent", 50)]
    variant_of = {r.key: r.json()["detail"]["variant"] for r in log if r.json()["what"] == "split"}
    assert variant_of == expected_variant  # the worker split them as the engine's function says: two per variant
    for v in split.variants:
        assert v.entered == sum(name == v.variant for name in variant_of.values()) == 2
        assert v.converted == (1 if v.variant == variant_of[buyer] else 0)
        assert v.n_too_small
    assert sum(v.sends.get("approved", 0) for v in split.variants) == 4

    code, text, _ = run(rp.register, "report", "--journey", "churn_apology")
    assert code == 0
    assert "churn_apology v1\n  entered 4 instances (4 customers), converted 1 = 25.0 % [" in text
    assert "split offer_test: baseline ten_percent (first variant with entries, in the journey file's order)" in text

    # ---- explain: one customer, from their partition only
    by_key = {r.key: r.partition for r in log if r.key in (cart_a, cart_b)}
    assert by_key[cart_a] != by_key[cart_b]  # the producer put them where the default partitioner says
    assert by_key[cart_a] == ex.partition_for(cart_a, PARTITIONS) and by_key[cart_b] == ex.partition_for(cart_b, PARTITIONS)
    assert {r.partition for r in decisions if r.key == cart_a} == {by_key[cart_a]}

    code, out, err = run(ex.register, "explain", cart_a, "--json", "--timeout", "30")
    assert code == 0, err
    story = ex.Story.model_validate_json(out)
    p = by_key[cart_a]
    read_topics = ("journey-log", "decisions", "customer-events", *(f"in.{family}" for family in FAMILIES), "dead-letter")
    assert story.partitions == {dep.topic(t): p for t in read_topics}  # inbound too: events handled in one hop are only there
    assert [line.what for line in story.lines] == ["entered", "dead_letter", "send", "waiting"]
    assert story.decisions == 1 and story.lines[2].decision is not None and story.lines[2].decision.result == "approved"
    assert story.dead_letters == 1 and story.dead_letters_scanned == 1
    entered, bad, sent, _ = story.lines
    # each event at its own time: the cart event's and the bad event's occurred_at, the send when the worker handled it
    assert (entered.at, bad.at) == (cart_at, bad_at) and entered.logged_at is not None and entered.logged_at >= now
    assert sent.at == entered.logged_at and bad.dead_letter is not None and bad.dead_letter.code == "schema"
    assert cart_b not in out

    code, text, _ = run(ex.register, "explain", cart_a)
    assert code == 0
    lines = text.splitlines()
    send_id = sent.detail["send_id"]
    read = ", ".join(f"partition {p} of {dep.topic(t)}" for t in read_topics)
    assert (
        lines[0] == f"customer {cart_a}: 5 journey-log records, 1 decision, 1 dead letter (read {read}); 2 step records not shown (--steps)"
    )
    handled = f" (handled {iso_utc(entered.logged_at)})"
    assert lines[1] == (
        f"{iso_utc(cart_at)}  abandoned_cart v1  entered on web.cart_abandoned (event {cart_a}-cart), starts at send_first{handled}"
    )
    assert lines[2].startswith(f"{iso_utc(bad_at)}  -  dead-lettered web event (code schema, event {cart_a}-bad): ")
    assert "cart_value" in lines[2] and "abc" in lines[2] and " (handled " in lines[2]
    assert lines[3].startswith(f"{iso_utc(sent.at)}  abandoned_cart v1  ")
    assert re.search(
        r"  send_first: sent email cart_reminder: approved \(fits: .*\) "
        r"\[(code fits; )?basket 10/\d+ in \d{4}-\d{2}, cost 10\] -> wait_open$",
        lines[3],
    )
    assert re.search(rf"  wait_open: waiting for ccm\.opened of send {re.escape(send_id)} until \d{{4}}-\d\d-\d\dT", lines[4])
    assert len(lines) == 5

    # what explain reads: only that partition of each topic (the other customer's records are never fetched)
    topics = [dep.topic(t) for t in ("journey-log", "decisions", "customer-events")]
    raw, chosen = asyncio.run(rp.read_to_end(dep.kafka, topics, 30, choose=lambda _t, n: [ex.partition_for(cart_a, n)]))
    assert chosen == {t: [p] for t in topics}
    assert {r.partition for r in raw} == {p} and cart_b.encode() not in {r.key for r in raw}

    # a customer the system never saw: an empty story, exit 0
    code, text, _ = run(ex.register, "explain", f"{dep.prefix}-nobody")
    assert code == 0 and "no journey-log records" in text

    # the churn buyer's story ends with the goal
    code, text, _ = run(ex.register, "explain", buyer, "--journey", "churn_apology")
    assert code == 0
    assert f"offer_test: split, variant {variant_of[buyer]}" in text
    assert text.splitlines()[-1].endswith("converted, the journey ends")
    json.loads(run(ex.register, "explain", buyer, "--json")[1])


def test_commands_fail_cleanly_without_the_topics(kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", unique)
    code, out, err = run(rp.register, "report", "--timeout", "20")
    assert code == 1 and out == "" and f"topic {unique}.journey-log does not exist" in err
    code, out, err = run(ex.register, "explain", "someone-queried", "--timeout", "20")
    assert code == 1 and out == "" and "does not exist" in err and "someone-queried" not in err

"""A Redis that lost its data mid-stream: the worker rebuilds the baskets from the decisions topic.

The oracle: a customer's basket holds 25 points and each nudge costs 10, so of three nudges in one
month exactly two are approved, whatever happens to Redis in between; and a customer who unsubscribed
before Redis lost its data stays unsubscribed. Redis is killed (SIGKILL),
its files deleted and started again empty between the second and the third nudge, while the third
ones are already on their way. Without the rebuild every third nudge would be approved (an empty
basket), and a replay would be charged again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from orchestrator.dev.private_stack import PrivateStack
from orchestrator.pressure.policy import load_policy
from orchestrator.pressure.redis_basket import RedisBasket
from tests.integration.helpers import Deployment, event, metric, wait_until

pytestmark = pytest.mark.integration

NUDGE = """\
id: nudge
version: 1
name: Nudge on every abandoned cart
entry:
  event: web.cart_abandoned
  reentry: {policy: always}
start: nudge
steps:
  nudge: {type: send, channel: email, template: nudge, comm_type: commercial, priority: 5, brand: shop, next: done}
  done: {type: end}
"""


def _decisions(dep: Deployment, until: int) -> list[dict[str, object]]:
    records = dep.read("decisions", until=lambda rs: len(rs) >= until, timeout=90)
    return [r.json() for r in records]


def test_redis_wiped_mid_stream_rebuilds_every_basket_and_nobody_goes_over_capacity(
    deployment: Deployment, private_stack: PrivateStack
) -> None:
    dep = deployment
    dep.kafka, dep.redis = private_stack.kafka, private_stack.redis
    for f in dep.journeys_dir.glob("*.yaml"):
        if f.name not in ("pressure.yaml", "profile.yaml"):
            f.unlink()
    (dep.journeys_dir / "nudge.yaml").write_text(NUDGE)
    worker = dep.start_worker()
    customers = [f"{dep.prefix}-c{i}" for i in range(60)]

    def nudge(n: int) -> None:
        dep.publish("web", *(event(c, "cart_abandoned", f"{c}-cart-{n}", cart_id=f"k{n}", cart_value=50.0) for c in customers))

    nudge(1)
    nudge(2)
    before = _decisions(dep, until=2 * len(customers))
    assert Counter(d["outcome"] for d in before) == {"approved": 2 * len(customers)}

    unsubscribed = customers[:10]
    dep.publish("consent", *(event(c, "unsubscribed", f"{c}-unsub", channel="email") for c in unsubscribed))
    consent = dep.read("consent", until=lambda rs: len(rs) >= len(unsubscribed), timeout=60)
    assert {r.json()["customer_id"]: r.json()["suppressions"] for r in consent} == {c: ["email"] for c in unsubscribed}

    private_stack.kill_redis(wipe=True)  # a lost disk: the AOF goes with it
    nudge(3)  # on its way while Redis is gone
    time.sleep(1.0)
    private_stack.start_redis()  # empty: every decision written back below was really gone (restore.lua writes only those)

    decisions = _decisions(dep, until=3 * len(customers))
    by_customer: dict[str, list[dict[str, object]]] = defaultdict(list)
    for d in decisions:
        by_customer[str(d["customer_id"])].append(d)
    approved = {c: {d["send_id"] for d in ds if d["outcome"] == "approved"} for c, ds in by_customer.items()}
    over = {c: len(ids) for c, ids in approved.items() if len(ids) != 2}
    assert not over, f"customers not at exactly two approved nudges after the rebuild: {over}"
    third = [d for d in decisions if str(d["send_id"]) not in {s for ids in approved.values() for s in ids}]
    # the unsubscribes came back too: suppression is decided before capacity, so those say "unsubscribed"
    assert {d["customer_id"] for d in third if (d["outcome"], d["code"]) == ("suppressed", "unsubscribed")} == set(unsubscribed)
    assert {(d["outcome"], d["code"]) for d in third if d["customer_id"] not in unsubscribed} == {("capped", "capacity")}

    async def baskets() -> dict[str, tuple[float, set[str]]]:
        basket = RedisBasket.from_url(dep.redis, load_policy(dep.journeys_dir / "pressure.yaml"))
        try:
            now = datetime.now(UTC)
            views = {c: await basket.show(c, now) for c in customers}
            return {c: (v.balance, {s.send_id for s in v.spends}) for c, v in views.items()}
        finally:
            await basket.aclose()

    after = asyncio.run(baskets())
    wrong = {c: b for c, b in after.items() if b != (20.0, approved[c])}
    assert not wrong, f"baskets not rebuilt to their two approved spends, each charged once: {list(wrong.items())[:3]}"

    text = worker.metrics()
    assert metric(text, "orchestrator_basket_rebuilt_sends_total") == 2 * len(customers)
    assert metric(text, "orchestrator_basket_rebuilt_suppressions_total") == len(unsubscribed)
    rebuilds = [
        line
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if "Redis did not hold the baskets" in line and " 0 of " not in line
    ]
    assert rebuilds, "the rebuild is logged"
    print(rebuilds[-1])  # the rebuild's duration, for the record
    assert wait_until(lambda: worker.ready() is not None, 20)
    assert dep.read("dead-letter", until=lambda rs: False, timeout=1.5) == []

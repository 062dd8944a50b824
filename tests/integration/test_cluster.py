"""The worker on a Redis Cluster (3 masters + 3 replicas, ``stack/stack up --redis-cluster``).

A master killed mid-stream: its replica takes over within the cluster's node timeout, the batches
wait (CLUSTERDOWN, lost connections, MOVED are transient) and every send arrives, no customer spent
twice. And a worker left in single mode against the cluster is a configuration error: it refuses to
start with one line saying what to set, and dead-letters nothing.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio.cluster import RedisCluster

from orchestrator.dev.private_stack import PrivateStack
from tests.integration.helpers import Deployment, basket_balances, cart, install_journey, metric, send_ids_by_customer

pytestmark = pytest.mark.integration


async def _masters(url: str) -> list[int]:
    client = RedisCluster.from_url(url)
    try:
        await client.initialize()
        return sorted(int(n.port) for n in client.get_primaries())
    finally:
        await client.aclose()


def test_a_master_killed_mid_stream_loses_no_send_and_charges_nobody_twice(deployment: Deployment, cluster_stack: PrivateStack) -> None:
    dep = deployment
    dep.kafka, dep.redis = cluster_stack.kafka, cluster_stack.redis
    install_journey(dep, timeout="4s")  # two sends per customer: 10 + 10 points
    worker = dep.start_worker(ORCH_REDIS_MODE="cluster")
    customers = [f"{dep.prefix}-c{i}" for i in range(240)]
    victim = asyncio.run(_masters(dep.redis))[0]
    try:
        for i in range(0, len(customers), 40):
            dep.publish("web", *(cart(c) for c in customers[i : i + 40]))
            if i == 80:
                cluster_stack.kill_cluster_node(victim)  # SIGKILL of a master while its customers are being gated
            time.sleep(0.3)
        sends = send_ids_by_customer(dep, until=2 * len(customers), timeout=150)
        time.sleep(2)
        sends = send_ids_by_customer(dep, until=10_000, timeout=3)
    finally:
        cluster_stack.start_redis()  # the old master comes back as a replica: the session's cluster stays whole
    missing = [c for c in customers if {t for _, t in sends.get(c, ())} != {"cart_reminder", "cart_reminder_2"}]
    assert not missing, f"{len(missing)} customers without both messages, e.g. {[(c, sends.get(c)) for c in missing[:3]]}"
    assert all(len(ids) == 2 for ids in sends.values()), "one send id per message: a retried batch reuses it"
    balances = asyncio.run(basket_balances(dep.redis, customers, "cluster"))
    assert {c: b for c, b in balances.items() if b != 20.0} == {}, "a customer was charged twice (or not at all)"
    assert victim not in asyncio.run(_masters(dep.redis)), "the killed master's replica took over"
    text = worker.metrics()
    assert metric(text, "orchestrator_dependency_retries_total", dependency="redis") >= 1, "the failover was ridden out"
    # the replica had the partition marks too: a failover loses no data, so nothing is rebuilt
    assert metric(text, "orchestrator_basket_rebuilt_sends_total") == 0
    assert dep.read("dead-letter", until=lambda rs: False, timeout=1.5) == []


def test_single_mode_against_a_cluster_refuses_to_start_and_dead_letters_nothing(
    deployment: Deployment, cluster_stack: PrivateStack
) -> None:
    dep = deployment
    dep.kafka, dep.redis = cluster_stack.kafka, cluster_stack.redis
    install_journey(dep, timeout="1h")
    customers = [f"{dep.prefix}-c{i}" for i in range(50)]
    dep.publish("web", *(cart(c) for c in customers))
    wrong = dep.start_worker(wait=False)  # ORCH_REDIS_MODE left at single
    assert wrong.proc is not None
    assert wrong.proc.wait(timeout=60) == 2
    log = wrong.log_path.read_text()
    assert "is a Redis Cluster node" in log and "set ORCH_REDIS_MODE=cluster" in log
    assert "Traceback" not in log
    right = dep.start_worker(ORCH_REDIS_MODE="cluster")
    sends = send_ids_by_customer(dep, until=len(customers), timeout=90)
    assert sorted(sends) == sorted(customers)
    assert dep.read("dead-letter", until=lambda rs: False, timeout=1.5) == []
    assert right.ready() is not None

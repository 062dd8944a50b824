"""One hop: an inbound event already on its customer's partition is processed where it is.

Keyed by customer id with the default partitioner (as the tests and most producers publish),
an inbound event is handled without being republished on ``customer-events``; an unkeyed
one takes the second hop. Both reach the journey; the oracle is the sends topic, the
customer-events topic and the worker's ``orchestrator_inbound_direct`` counter. With
``ORCH_DIRECT_INBOUND=false`` every event takes the second hop.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.helpers import Deployment, cart, install_journey, metric

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, docs: list[dict], keyed: bool) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for doc in docs:
            await producer.send_and_wait(topic, json.dumps(doc).encode(), key=doc["customer_id"].encode() if keyed else None)
    finally:
        await producer.stop()


def _sends(dep: Deployment, n: int) -> set[str]:
    records = dep.read("sends", until=lambda rs: len(rs) >= n, timeout=60)
    return {r.json()["customer_id"] for r in records}


@pytest.mark.parametrize("direct", [True, False], ids=["one-hop", "always-two-hops"])
def test_keyed_events_skip_the_second_hop_and_unkeyed_ones_take_it(deployment: Deployment, direct: bool) -> None:
    dep = deployment
    install_journey(dep, timeout="1h")
    worker = dep.start_worker(ORCH_DIRECT_INBOUND=str(direct).lower())
    keyed = [f"{dep.prefix}-k{i}" for i in range(12)]
    unkeyed = [f"{dep.prefix}-u{i}" for i in range(8)]
    asyncio.run(_produce(dep.kafka, dep.topic("in.web"), [cart(c) for c in keyed], keyed=True))
    asyncio.run(_produce(dep.kafka, dep.topic("in.web"), [cart(c) for c in unkeyed], keyed=False))

    assert _sends(dep, 20) == set(keyed + unkeyed), "every cart reaches its journey, whichever way it came"
    envelopes = dep.read("customer-events", until=lambda rs: False, timeout=3)
    republished = {r.json()["customer_id"] for r in envelopes if r.json().get("kind") == "event"}
    text = worker.metrics()
    direct_count = metric(text, "orchestrator_inbound_direct_total", family="web")
    if direct:
        assert republished == set(unkeyed), "only the unkeyed events take the second hop"
        assert direct_count == len(keyed)
    else:
        assert republished == set(keyed + unkeyed)
        assert direct_count == 0
    assert metric(text, "orchestrator_events_total", family="web", outcome="accepted") == 20
    assert metric(text, "orchestrator_processed_total", kind="event") == 20

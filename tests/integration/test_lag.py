"""Consumer lag from the group's committed offsets against end offsets, on the real broker.

Each test has its own topics and consumer group (``unique``) and deletes its topics at
the end. Numbers are exact: records are produced to explicit partitions and offsets are
committed explicitly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from orchestrator.runtime import lag_cli
from orchestrator.runtime.lag import LagProbe, PartitionLag, group_lag
from orchestrator.runtime.preflight import ensure_topics

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- helpers -------------------------------------------------------------------------------


async def _produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """``counts[p]`` records to partition ``p`` of ``topic``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, n in counts.items():
            for i in range(n):
                await producer.send_and_wait(topic, f"r{i}".encode(), key=b"k", partition=partition)
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets for ``group`` without joining it (manual assignment: the group stays Empty)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _delete_before(bootstrap: str, tp: TopicPartition, offset: int) -> None:
    """Move the log start of ``tp`` to ``offset`` (what retention does)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(before_offset=offset)})
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if doomed := [t for t in topics if t in existing]:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def _wait_assigned(*consumers: AIOKafkaConsumer, total: int, timeout: float = 15.0) -> None:
    """Until the members together hold ``total`` partitions, each at least one."""
    deadline = time.monotonic() + timeout
    while not (all(c.assignment() for c in consumers) and sum(len(c.assignment()) for c in consumers) == total):
        assert time.monotonic() < deadline, f"no assignment: {[c.assignment() for c in consumers]}"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def _member(bootstrap: str, topic: str, group: str, client_id: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A live member of ``group`` subscribed to ``topic`` (it leaves the group on exit)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        heartbeat_interval_ms=300,
        session_timeout_ms=10000,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _read_until(probe: LagProbe, state: str, timeout: float = 15.0) -> list[PartitionLag]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await probe.read()
        if probe.group_state == state:
            return rows
        assert time.monotonic() < deadline, f"group stayed {probe.group_state}, expected {state}"
        await asyncio.sleep(0.2)


@pytest.fixture
def cleanup(kafka_bootstrap: str) -> Iterator[list[str]]:
    """Topics appended here are deleted after the test."""
    topics: list[str] = []
    yield topics
    asyncio.run(_delete_topics(kafka_bootstrap, topics))


def _main(argv: list[str]) -> int:
    """``orchestrator <argv>`` with only the lag command registered."""
    parser = argparse.ArgumentParser(prog="orchestrator")
    lag_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


# --- the probe -----------------------------------------------------------------------------


async def test_lag_per_partition_owned_uncommitted_rebalanced_and_left(kafka_bootstrap: str, unique: str, cleanup: list[str]) -> None:
    topic, group = f"{unique}.in.web", f"{unique}-app"
    cleanup.append(topic)
    await ensure_topics(kafka_bootstrap, [topic], partitions=3)
    await _produce(kafka_bootstrap, topic, {0: 5, 1: 7, 2: 4})
    await _delete_before(kafka_bootstrap, TopicPartition(topic, 2), 1)  # retention: p2 now starts at 1
    tp = [TopicPartition(topic, p) for p in range(3)]

    async with LagProbe(kafka_bootstrap, group, [topic], timeout=5.0) as probe:
        # A group that never existed: every retained record is lag, nobody owns anything.
        assert await probe.read() == [
            PartitionLag(topic, 0, None, 5, 5, None),
            PartitionLag(topic, 1, None, 7, 7, None),
            PartitionLag(topic, 2, None, 4, 3, None),  # end - log start, not end - 0
        ]
        assert probe.group_state == "Dead"

        async with _member(kafka_bootstrap, topic, group, f"{unique}-a") as a:
            await _wait_assigned(a, total=3)
            await a.commit({tp[0]: 3, tp[1]: 7})  # p2 never committed
            rows = await _read_until(probe, "Stable")
            owner_a = rows[0].owner
            assert owner_a is not None and owner_a.startswith(f"{unique}-a/") and len(owner_a) > len(f"{unique}-a/")
            assert rows == [
                PartitionLag(topic, 0, 3, 5, 2, owner_a),
                PartitionLag(topic, 1, 7, 7, 0, owner_a),
                PartitionLag(topic, 2, None, 4, 3, owner_a),
            ]

            # Retention passes the committed offset of p0: only what is still retained is lag.
            await _delete_before(kafka_bootstrap, tp[0], 4)
            assert (await probe.read())[0] == PartitionLag(topic, 0, 3, 5, 1, owner_a)

            # A second member joins: after the rebalance each partition names its new owner,
            # and the committed offsets are unchanged.
            async with _member(kafka_bootstrap, topic, group, f"{unique}-b") as b:
                await _wait_assigned(a, b, total=3)
                rows = await _read_until(probe, "Stable")
                owner_b = next(r.owner for r in rows if r.owner != owner_a)
                assert owner_b is not None and owner_b.startswith(f"{unique}-b/")
                expected_owner = {**{t.partition: owner_a for t in a.assignment()}, **{t.partition: owner_b for t in b.assignment()}}
                assert rows == [
                    PartitionLag(topic, 0, 3, 5, 1, expected_owner[0]),
                    PartitionLag(topic, 1, 7, 7, 0, expected_owner[1]),
                    PartitionLag(topic, 2, None, 4, 3, expected_owner[2]),
                ]

        # Both members left: the lag is still there, read from the committed offsets, owned by nobody.
        rows = await _read_until(probe, "Empty")
        assert rows == [
            PartitionLag(topic, 0, 3, 5, 1, None),
            PartitionLag(topic, 1, 7, 7, 0, None),
            PartitionLag(topic, 2, None, 4, 3, None),
        ]

        # More records arrive while nobody consumes: the lag grows with the end offsets.
        await _produce(kafka_bootstrap, topic, {1: 2})
        assert [r.lag for r in await probe.read()] == [1, 2, 3]


_KILLED_MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer, TopicPartition
bootstrap, topic, group, client_id = sys.argv[1:5]
async def main():
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=client_id,
                         enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500)
    await c.start()
    while len(c.assignment()) < 3:
        await asyncio.sleep(0.05)
    await c.commit({TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 1})
    print("ready", flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""


async def test_partitions_of_a_killed_member_keep_their_lag(kafka_bootstrap: str, unique: str, cleanup: list[str]) -> None:
    topic, group, client_id = f"{unique}.in.ccm", f"{unique}-app", f"{unique}-doomed"
    cleanup.append(topic)
    await ensure_topics(kafka_bootstrap, [topic], partitions=3)
    await _produce(kafka_bootstrap, topic, {0: 3, 1: 4, 2: 2})

    # Popen returns at once (no wait on the child); the test only needs its pid to SIGKILL it
    member = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-c", _KILLED_MEMBER, kafka_bootstrap, topic, group, client_id],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(member.stdout.readline), 20)  # type: ignore[union-attr]
        assert line.strip() == "ready"
    finally:
        member.send_signal(signal.SIGKILL)  # no LeaveGroup, no more heartbeats
        member.wait()
        member.stdout.close()  # type: ignore[union-attr]

    async with LagProbe(kafka_bootstrap, group, [topic]) as probe:
        # Until its session expires the coordinator still counts the dead member as the owner.
        rows = await probe.read()
        assert probe.group_state == "Stable"
        owner = rows[0].owner
        assert owner is not None and owner.startswith(f"{client_id}/")
        assert rows == [
            PartitionLag(topic, 0, 2, 3, 1, owner),
            PartitionLag(topic, 1, 1, 4, 3, owner),
            PartitionLag(topic, 2, None, 2, 2, owner),
        ]
        # Session expired (6 s): the member is gone, its partitions and their lag are not.
        rows = await _read_until(probe, "Empty", timeout=15)
        assert rows == [
            PartitionLag(topic, 0, 2, 3, 1, None),
            PartitionLag(topic, 1, 1, 4, 3, None),
            PartitionLag(topic, 2, None, 2, 2, None),
        ]
    assert await group_lag(kafka_bootstrap, group, [topic]) == rows


# --- the command ---------------------------------------------------------------------------


def test_lag_command_json_and_table(
    kafka_bootstrap: str, unique: str, cleanup: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.settings import Settings

    app_id = f"{unique}-app"
    monkeypatch.delenv("ORCH_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", unique)
    monkeypatch.setenv("ORCH_APP_ID", app_id)
    settings = Settings()
    inbound = list(settings.inbound_topics())
    web, customer = f"{unique}.in.web", f"{unique}.customer-events"
    changelog = f"{app_id}-customer-state-changelog"
    assert web in inbound
    cleanup.extend([*inbound, customer, changelog])

    async def setup() -> None:
        await ensure_topics(kafka_bootstrap, [*inbound, customer, changelog], partitions=2)
        await _produce(kafka_bootstrap, web, {0: 3})
        await _produce(kafka_bootstrap, customer, {1: 2})
        await _produce(kafka_bootstrap, changelog, {0: 5})
        # The group has committed offsets on a changelog too: it must still not be listed.
        await _commit(kafka_bootstrap, app_id, {TopicPartition(web, 0): 1, TopicPartition(changelog, 0): 2})

    asyncio.run(setup())

    assert _main(["lag", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    report = json.loads(captured.out)
    expected_rows: list[dict[str, Any]] = []
    for topic in [*inbound, customer]:
        for p in range(2):
            committed = 1 if (topic, p) == (web, 0) else None
            end = {(web, 0): 3, (customer, 1): 2}.get((topic, p), 0)
            expected_rows.append(
                {"topic": topic, "partition": p, "committed": committed, "end": end, "lag": end - (committed or 0), "owner": None}
            )
    assert report == {
        "group": app_id,
        "state": "Empty",
        "bootstrap": kafka_bootstrap,
        "partitions": expected_rows,
        "total_lag": 4,
        "missing_topics": [],
    }

    # The table: aligned columns, '-' for never committed and no owner, a total line.
    assert _main(["lag"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"group {app_id} (Empty) at {kafka_bootstrap}"
    assert lines[1].split() == ["topic", "partition", "committed", "end", "lag", "owner"]
    partitions = 2 * len([*inbound, customer])  # every inbound family's topic and the customer topic, 2 partitions each
    assert len(lines) == 2 + partitions + 1
    assert {len(line) - 1 for line in lines[2:-1]} == {lines[1].index("owner")}  # every row's owner '-' under "owner"
    assert [line.split() for line in lines[2:-1] if line.startswith(web + " ")] == [
        [web, "0", "1", "3", "2", "-"],
        [web, "1", "-", "0", "0", "-"],
    ]
    assert lines[-1] == f"total lag 4 over {partitions} partitions"

    # Overrides: another group on two of the topics (one comma-separated) and a topic that does not exist.
    assert _main(["lag", "--json", "--group", f"{unique}-other", "--topics", f"{web},{customer}", f"{unique}.nope"]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"orchestrator lag: not listed, topic does not exist or is not visible: {unique}.nope\n"
    report = json.loads(captured.out)
    assert [(r["topic"], r["partition"], r["committed"], r["end"], r["lag"]) for r in report["partitions"]] == [
        (web, 0, None, 3, 3),
        (web, 1, None, 0, 0),
        (customer, 0, None, 0, 0),
        (customer, 1, None, 2, 2),
    ]
    assert (report["group"], report["state"], report["total_lag"], report["missing_topics"]) == (
        f"{unique}-other",
        "Dead",
        5,
        [f"{unique}.nope"],
    )


def test_lag_command_fails_fast_when_kafka_does_not_answer(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A port that accepts connections and never answers: a hung broker, not a refused connection.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.delenv("ORCH_KAFKA_BOOTSTRAP_SERVERS", raising=False)
        monkeypatch.delenv("ORCH_APP_ID", raising=False)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", address)
        started = time.monotonic()
        assert _main(["lag", "--timeout", "1.5", "--json"]) == 1
        elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"orchestrator lag: cannot read the lag of consumer group 'journey-orchestrator' from Kafka at {address}: no answer within 1.5 s\n"
    )
    assert 1.4 < elapsed < 3.5

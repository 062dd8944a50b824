"""Small aiokafka helpers for the demo, the tests and ``orchestrator publish``.

Not used by the worker (Faust owns its own clients there).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


@dataclass(frozen=True)
class Record:
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int

    def json(self) -> Any:
        return json.loads(self.value)


async def ensure_topics(bootstrap: str, names: Sequence[str], partitions: int = 4, **client_kw: Any) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kw)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except Exception as exc:  # noqa: BLE001 - a concurrent creator is fine
                if "TopicAlreadyExists" not in type(exc).__name__ and "already exists" not in str(exc):
                    raise
    finally:
        await admin.close()


async def produce(bootstrap: str, records: Iterable[tuple[str, str, bytes]], **client_kw: Any) -> int:
    """Publish (topic, key, value) records with acks=all; returns how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **client_kw)
    await producer.start()
    count = 0
    try:
        futures = []
        for topic, key, value in records:
            futures.append(await producer.send(topic, value=value, key=key.encode()))
            count += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


async def consume(
    bootstrap: str,
    topics: Sequence[str],
    until: Callable[[list[Record]], bool],
    timeout: float,
    **client_kw: Any,
) -> list[Record]:
    """Read ``topics`` from the beginning (no consumer group) until ``until(records)`` or ``timeout`` seconds.

    The topics must exist (see :func:`ensure_topics`).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kw)
    await consumer.start()
    out: list[Record] = []
    try:
        deadline = time.monotonic() + timeout
        parts = [TopicPartition(t, p) for t in topics for p in (await _partitions(consumer, t, deadline))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while time.monotonic() < deadline and not until(out):
            batch = await consumer.getmany(timeout_ms=250)
            for tp_records in batch.values():
                out.extend(
                    Record(
                        topic=r.topic,
                        key=r.key.decode() if r.key is not None else None,
                        value=r.value,
                        headers={k: v.decode(errors="replace") for k, v in (r.headers or ())},
                        partition=r.partition,
                        offset=r.offset,
                    )
                    for r in tp_records
                )
    finally:
        await consumer.stop()
    return out


async def _partitions(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> set[int]:
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} does not exist")
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        await asyncio.sleep(0.3)


def read_event_file(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines event file: each line ``{"family": ..., ...inbound fields...}``."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out

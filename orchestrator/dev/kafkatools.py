"""Small aiokafka helpers: topic creation (also the worker's preflight), and producing/reading for the demo, tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


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


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, Mapping[str, str]] | Sequence[str],
    partitions: int,
    replication_factor: int = 1,
    **client_kw: Any,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the ones created.

    ``topics`` is a list of names or a mapping name -> topic config (e.g. compaction).
    Existence is checked with ``list_topics``, which names no topic and so never makes a
    broker with ``auto.create.topics.enable`` create one with its default partition count
    (a metadata request for a missing topic by name does).
    """
    configs: Mapping[str, Mapping[str, str]] = topics if isinstance(topics, Mapping) else {n: {} for n in topics}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kw)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in configs if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor,
                              topic_configs=dict(configs[n])) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass  # a concurrent creator (another worker of the group) got there first
        return missing
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

"""Small aiokafka helpers for the demo, the tests and the benchmarks: produce records, read a topic back.

Topic creation is the worker's own (``orchestrator.runtime.preflight.ensure_topics``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


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

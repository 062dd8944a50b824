"""Reading Kafka topics from their beginning to their end, then stopping (``report`` and ``explain``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class KafkaReadError(RuntimeError):
    """The topic could not be read to its end (no broker, no such topic, timeout); the message says which."""


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


PartitionChooser = Callable[[str, int], Sequence[int]]
"""``(topic, partition count) -> the partitions to read``."""


async def read_to_end(
    bootstrap: str,
    topics: Sequence[str],
    timeout: float,
    choose: PartitionChooser | None = None,
    **client_kw: Any,
) -> tuple[list[RawRecord], dict[str, list[int]]]:
    """Read partitions of ``topics`` from their beginning up to their end offsets taken at the start, then stop.

    ``choose`` picks the partitions per topic (default: all). No consumer group is joined and
    nothing is committed. Returns the records (per partition in offset order) and the partitions
    read. Raises :class:`KafkaReadError` when a topic does not exist or it all takes longer than
    ``timeout`` seconds.
    """
    try:
        return await asyncio.wait_for(_read_to_end(bootstrap, topics, choose, client_kw), timeout)
    except TimeoutError:
        raise KafkaReadError(f"could not read {', '.join(topics)} at {bootstrap} to the end within {timeout:g} s") from None


async def _partition_counts(bootstrap: str, topics: Sequence[str], client_kw: Mapping[str, Any]) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kw)
    await admin.start()
    try:  # every topic's metadata (asking for a missing topic by name could make the broker create it)
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics() if t.get("partitions")}
    finally:
        await admin.close()
    missing = [t for t in topics if t not in counts]
    if missing:
        raise KafkaReadError(f"topic {', '.join(missing)} does not exist at {bootstrap} (check ORCH_TOPIC_PREFIX)")
    return {t: counts[t] for t in topics}


async def _read_to_end(
    bootstrap: str, topics: Sequence[str], choose: PartitionChooser | None, client_kw: Mapping[str, Any]
) -> tuple[list[RawRecord], dict[str, list[int]]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    try:
        counts = await _partition_counts(bootstrap, topics, client_kw)
        chosen = {t: sorted(choose(t, n) if choose else range(n)) for t, n in counts.items()}
        parts = [TopicPartition(t, p) for t, ps in chosen.items() for p in ps]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **client_kw
        )
        await consumer.start()
    except KafkaError as exc:
        raise KafkaReadError(f"cannot read from Kafka at {bootstrap} ({type(exc).__name__}: {exc})") from None
    out: list[RawRecord] = []
    try:
        consumer.assign(parts)
        starts, ends = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
        for tp in parts:  # an explicit seek: seek_to_beginning can lose a race with the initial offset reset
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in parts if starts[tp] < ends[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                out.extend(RawRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in records if r.offset < ends[tp])
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return out, chosen


@contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """Keep aiokafka's own connection errors off a command's terminal (the command says what failed, once).

    Only when nothing configured logging (a command line, not a worker or a test with handlers).
    """
    loggers = [logging.getLogger("aiokafka")] if not logging.getLogger().handlers else []
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)

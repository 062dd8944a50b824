"""What a batch publishes, as typed records: pure functions, no Kafka, no clock of their own.

Every loop of the worker hands the producer :class:`OutRecord` values (the publisher in
``context.py`` is the only place that talks to the producer), and counts what it published
in a :class:`~orchestrator.metrics.Tally` applied once the records are acknowledged.

- :func:`result_records`: one message's :class:`~orchestrator.processor.Result` → its sends,
  decisions, journey log and emit records, and what to count.
- :func:`envelope_record`: a valid inbound event → its canonical envelope on customer-events.
- :class:`DeadLetter` and :func:`dead_letter_record`: a message that cannot be processed →
  the dead-letter record (original bytes, reason in ``dlq.*`` headers, Kafka Connect style).
- :class:`StateWrite` and :func:`state_record`: one customer's new state for the changelog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from orchestrator.events import CustomerEvent, encode_internal
from orchestrator.fastmodel import fast_json
from orchestrator.metrics import Metrics, Tally
from orchestrator.processor import Result
from orchestrator.records import ConsentRecord, DecisionRecord, EmitRecord, JourneyLogRecord, SendRequest
from orchestrator.runtime.timers import encode_timers
from orchestrator.state import CustomerState

Headers = list[tuple[str, bytes]]


class OutRecord(NamedTuple):
    """One record to publish. ``partition`` None: the producer's partitioner picks it from the key."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: Headers | None = None
    timestamp_ms: int | None = None
    """The record's timestamp (None: now): an envelope keeps its inbound event's, so latency counts from the upstream publish."""


class StateWrite(NamedTuple):
    """A customer's new state for the changelog, with its pending timers (id, due epoch seconds) for the heap."""

    partition: int
    customer_id: str
    raw: bytes
    timers: list[tuple[str, float]]


class Source(NamedTuple):
    """Where a consumed message came from (its commit position and, for dead letters, its bytes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    """The record's Kafka timestamp (CreateTime: when its producer published it)."""


@dataclass(frozen=True)
class DeadLetter:
    """Why a message goes to the dead-letter topic."""

    source: Source
    code: str
    """Short and stable, for metrics and alerts: ``invalid_json``, ``key_mismatch``, ``processing_failed`` ..."""
    reason: str
    """For the upstream team: what was wrong and how to fix it (may hold the customer id: never logged as is)."""
    exception: str
    customer_id: str | None = None
    family: str = ""


@dataclass
class Topics:
    """The worker's output topic names (``<prefix>.<name>``) and how emit topics are named."""

    customer_events: str
    sends: str
    decisions: str
    journey_log: str
    dead_letter: str
    emit_topic: Callable[[str], str]
    """An emit step's ``topic`` → its Kafka topic (``<prefix>.out.<topic>``)."""
    consent: str = ""
    """The customers' suppressions after each consent change (compacted); empty: not published (tests of outputs alone)."""
    copartitioned: frozenset[str] = frozenset()
    """Output topics with as many partitions as customer-events: a customer's record goes to the customer's
    partition, given explicitly (the number murmur2 of the key gives; the producer need not hash it again)."""


@dataclass
class BatchOutput:
    """Everything one batch attempt wants to publish, and what to count once it is published."""

    records: list[OutRecord] = field(default_factory=list)
    states: list[StateWrite] = field(default_factory=list)
    parsed: dict[str, CustomerState] = field(default_factory=dict)
    """The parsed new states (kept in memory beside the bytes, so the next batch need not parse them)."""
    tally: Tally = field(default_factory=Tally)
    dead: list[DeadLetter] = field(default_factory=list)
    """This batch's dead letters (their records are in ``records``): logged once published."""
    emit_topics: set[str] = field(default_factory=set)
    """The outbound topics of this batch's emit records (made sure to exist before they are published)."""


def result_records(
    out: BatchOutput,
    res: Result,
    at: datetime,
    topics: Topics,
    metrics: Metrics,
    run_label: Callable[[str, str], str],
    partition: int | None = None,
) -> None:
    """Add one message's outputs to ``out``: decisions, send requests, journey log, emit records, and their counts.

    ``run_label`` turns a campaign run id into its metric label (the scheduler keeps the last
    few runs by name, older ones as ``older``). ``partition``: the customer's partition, given
    explicitly for the output topics co-partitioned with customer-events.
    """
    tally = out.tally
    same = topics.copartitioned
    if res.dispositions:
        p = partition if topics.decisions in same else None
        for d in res.dispositions:
            key = d.send.customer_id.encode()
            out.records.append(OutRecord(topics.decisions, key, fast_json(DecisionRecord.of(d, at)), p))
            tally.add(metrics.decisions, d.result, d.send.comm_type, d.send.channel)
            if d.send.run_id is not None:
                tally.add(metrics.campaign_decisions, d.send.journey_id, run_label(d.send.journey_id, d.send.run_id), d.result)
    if res.sends:
        p = partition if topics.sends in same else None
        for d in res.sends:
            value = fast_json(SendRequest.of(d, at))
            out.records.append(OutRecord(topics.sends, d.send.customer_id.encode(), value, p))
            tally.add(metrics.sends, d.send.channel, d.send.comm_type)
    p = partition if topics.journey_log in same else None
    for t in res.traces:
        out.records.append(OutRecord(topics.journey_log, t.customer_id.encode(), fast_json(JourneyLogRecord.of(t)), p))
        tally.add(metrics.journey_steps, t.journey_id or "(none)", t.what)
        if t.what == "entered" and t.run_id is not None:
            tally.add(metrics.campaign_entered, t.journey_id, run_label(t.journey_id, t.run_id))
    for e in res.emits:  # never gated: published with the batch's other outputs
        topic = topics.emit_topic(e.topic)
        out.emit_topics.add(topic)
        out.records.append(OutRecord(topic, e.customer_id.encode(), fast_json(EmitRecord.of(e))))


def envelope_record(event: CustomerEvent, topics: Topics, timestamp_ms: int | None = None) -> OutRecord:
    """A valid inbound event's canonical envelope, keyed (and so partitioned) by customer, with the inbound record's timestamp."""
    return OutRecord(topics.customer_events, event.customer_id.encode(), encode_internal(event), None, None, timestamp_ms or None)


def consent_record(customer_id: str, suppressions: list[str], at: datetime, topics: Topics, partition: int) -> OutRecord:
    """A customer's suppressions after this batch's consent changes, on the customer's partition (a rebuild reads it there)."""
    value = ConsentRecord(customer_id=customer_id, suppressions=suppressions, changed_at=at).model_dump_json().encode()
    return OutRecord(topics.consent, customer_id.encode(), value, partition if topics.consent in topics.copartitioned else None)


def state_record(write: StateWrite, changelog: str) -> OutRecord:
    """A customer's state on the changelog, on the customer's own partition, its pending timers in a header."""
    return OutRecord(changelog, write.customer_id.encode(), write.raw, write.partition, [("timers", encode_timers(write.timers))])


def dead_letter_record(dl: DeadLetter, topic: str, max_bytes: int, at: datetime) -> OutRecord:
    """The dead-letter record: the original bytes (cut to ``max_bytes``, the cut said in ``dlq.truncated``) and why, in headers."""
    src = dl.source
    value = src.value or b""
    headers: Headers = [
        ("dlq.reason", dl.reason.encode()),
        ("dlq.code", dl.code.encode()),
        ("dlq.exception", dl.exception.encode()),
        ("dlq.family", dl.family.encode()),
        ("dlq.customer", (dl.customer_id or "").encode()),
        ("dlq.source.topic", src.topic.encode()),
        ("dlq.source.partition", str(src.partition).encode()),
        ("dlq.source.offset", str(src.offset).encode()),
        ("dlq.at", at.isoformat().encode()),
    ]
    if len(value) > max_bytes:
        headers.append(("dlq.truncated", str(len(value)).encode()))
        value = value[:max_bytes]
    return OutRecord(topic, (src.key or b"")[:1024] or None, value, None, headers)


__all__ = [
    "BatchOutput",
    "DeadLetter",
    "OutRecord",
    "Source",
    "StateWrite",
    "Topics",
    "dead_letter_record",
    "envelope_record",
    "result_records",
    "state_record",
]

"""``orchestrator explain CUSTOMER``: one customer's story on a running system, in time order.

``orchestrator/cli.py`` calls :func:`register` on its subparsers::

    orchestrator explain CUSTOMER [--journey ID] [--since TIME] [--steps] [--json] [--timeout S]

It reads the customer's records from the journey log (``<ORCH_TOPIC_PREFIX>.journey-log``) and
the basket decisions (``<ORCH_TOPIC_PREFIX>.decisions``). Both are keyed by customer id and the
worker's producer uses Kafka's default partitioner, so one partition of each topic holds all of
the customer's records: :func:`partition_for` computes it (murmur2 of the key, as the Java
client and aiokafka do) and only that partition is read, from its beginning to its end at the
time of the call, keeping the records whose key is the customer id.

It also reads the customer's partition of ``<prefix>.customer-events`` (the canonical envelopes,
timers and campaign checks the worker republishes keyed by customer), of each inbound topic
``<prefix>.in.<family>`` that exists (the raw upstream events, keyed by customer id by contract)
and of ``<prefix>.dead-letter``:

- **Each event at its own time.** The worker stamps every record of one batch with the batch's
  time (``BatchLoop.attempt`` takes ``now`` once per batch; the engine's traces and the decisions
  carry it), so the journey log alone would put every event of a batch at one time. A line about
  an event is put at that event's ``occurred_at`` (a timeout or resume at its timer's due time);
  the text says ``(handled <time>)`` when the worker handled it a second or more later. The time
  comes from the event's envelope on customer-events or, for an inbound event the worker
  processed directly because it already sat on the customer's partition (no second hop, so no
  envelope), from the raw event on its inbound topic; the first record of an event id wins. An
  event gone with the topics' retention leaves the record's time.
- **Dead letters.** The worker keys a dead letter by the key of the message that failed (an
  inbound event's upstream key, the customer id by contract; a customer-events record's
  customer id) with the default partitioner, so the customer's dead letters are on
  :func:`partition_for` of the dead-letter topic too: that one partition is read (the headline
  names it; ``--json`` gives how many records it held) and the records keyed by the customer,
  or whose ``dlq.customer`` header names them, are kept. Each is shown with its ``dlq.code`` and
  ``dlq.reason`` at the event's ``occurred_at`` when its original bytes carry a valid one, else
  at ``dlq.at``, else at the record's timestamp. Not attributed (cannot be, without reading
  the whole topic and guessing): an upstream message sent without a key or keyed by another id
  (``key_mismatch`` shows under the key it was sent with), i.e. whose customer id could not be
  parsed from the key.

Lines are sorted by their own time (the log's order within one instant), so an event that came
late is told where it happened, before lines the worker logged earlier.

Cost: one partition per topic, each from its beginning: besides the journey log and the
decisions, the customer-events partition is about as large as the journey log's (every event of
the customers sharing the partition, for the topic's retention), the inbound partitions together
hold every upstream event of those customers, the dead-letter partition only what failed. Each
inbound topic is looked up first (a missing one is skipped, not an error).

The story (:func:`build_story`, a pure function over the records) says, per journey instance:
entered (which journey and version, on which event), did not enter (``not_entered`` records:
why not), split into which variant, which branch, waited (for what, until when), sent or not
and why (the decision's reason and code, the basket's balance and capacity in its period, the
cost), deferred until, fell back to another channel, got the awaited event, timed out, resumed,
reached the goal or left (how). Decisions are joined to the journey-log record of the same send
id and result; a decision without one (a deferred send cancelled when the journey ended) gets
a line of its own. ``step`` records are left out unless ``--steps``: the lines around them say
the same. Dead-lettered events are lines of their own (journey ``-``).

The customer id goes only to this command's own output (the user asked about that customer);
nothing is logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel, ConfigDict

from orchestrator.designer.report import load_settings, log_records, parse_time
from orchestrator.designer.report_kafka import (
    KafkaReadError,
    RawRecord,
    _partition_counts,  # the same topic check and partition count as read_to_end
    quiet_kafka_client,
    read_to_end,
)
from orchestrator.events import AudienceCheck, CustomerEvent, InvalidEvent, TimerFired, decode_internal, decode_json
from orchestrator.records import JourneyLogRecord, read_records
from orchestrator.timeutil import iso_utc

if TYPE_CHECKING:
    from orchestrator.settings import Settings

__all__ = [
    "CustomerRecords",
    "DeadLetterView",
    "DecisionView",
    "Story",
    "StoryLine",
    "build_story",
    "dead_letter_view",
    "event_times",
    "format_story",
    "partition_for",
    "read_customer",
    "register",
]


class DecisionView(BaseModel):
    """A record of the decisions topic as this command reads it (``code`` optional: older records have none)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    send_id: str
    customer_id: str
    journey_id: str
    journey_version: int
    step_id: str
    channel: str
    outcome: str
    result: str
    reason: str
    code: str | None = None
    cost: float
    balance: float
    capacity: float
    period: str
    retry_at: datetime | None = None
    decided_at: datetime


class DeadLetterView(BaseModel):
    """A record of the dead-letter topic as this command reads it (:func:`dead_letter_view`).

    The worker (``runtime/outputs.py: dead_letter_record``) writes the original bytes as the value,
    the source message's key as the key, and why in ``dlq.*`` headers.
    """

    model_config = ConfigDict(frozen=True)

    key: str | None
    """The record's key: the key of the message that failed (by the upstream contract, the customer id)."""
    customer_id: str | None
    """The ``dlq.customer`` header (set only when the worker had parsed the customer id), else None."""
    code: str
    reason: str
    family: str | None = None
    exception: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    truncated: int | None = None
    """``dlq.truncated``: the original length when the value was cut."""
    event_id: str | None = None
    event_type: str | None = None
    """``event_id`` / ``type`` of the original bytes, when they are a JSON object that has them."""
    occurred_at: datetime | None = None
    """The original event's ``occurred_at``, when its bytes carry a valid one (with an offset)."""
    dead_lettered_at: datetime | None = None
    """The ``dlq.at`` header: when the worker dead-lettered it (wall clock)."""
    timestamp: datetime | None = None
    """The Kafka record's timestamp."""

    @property
    def at(self) -> datetime | None:
        """Its own time: the event's ``occurred_at``, else when it was dead-lettered, else the record's timestamp."""
        return self.occurred_at or self.dead_lettered_at or self.timestamp

    def belongs_to(self, customer_id: str) -> bool:
        """Keyed by the customer, or the worker named them in ``dlq.customer``."""
        return customer_id in (self.key, self.customer_id)


class StoryLine(BaseModel):
    at: datetime
    """When what the line tells happened: the event's ``occurred_at`` (a timer's due time) for a line about an event
    when the event is known, else the record's own time."""
    journey_id: str | None
    journey_version: int | None
    instance_id: str | None
    step_id: str | None
    what: str
    """The journey-log record's ``what``, ``decision`` for a decision without a journey-log record, ``dead_letter``."""
    text: str
    detail: dict[str, Any]
    decision: DecisionView | None = None
    dead_letter: DeadLetterView | None = None
    logged_at: datetime | None = None
    """The time on the record itself (journey-log ``at``, ``decided_at``, ``dlq.at``): when the worker handled it.
    The worker stamps every record of one batch with the batch's time, so this is not the event's time."""


class Story(BaseModel):
    """The ``--json`` document."""

    customer_id: str
    journey: str | None
    since: datetime | None
    partitions: dict[str, int]
    """Topic -> the one partition read (empty when the story was built from records in hand)."""
    dead_letters_scanned: int = 0
    """Records of the dead-letter partition read (0 when built from records in hand)."""
    log_records: int
    hidden_steps: int = 0
    """``step`` records left out (shown with ``--steps``)."""
    decisions: int
    dead_letters: int = 0
    """The customer's dead-lettered messages (keyed by the customer id, or ``dlq.customer`` names them)."""
    lines: list[StoryLine]


# ---------------------------------------------------------------- partitioning


def partition_for(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts the key ``customer_id`` on (murmur2, as the worker's producer)."""
    from aiokafka.partitioner import DefaultPartitioner

    every = list(range(partitions))
    return int(DefaultPartitioner()(customer_id.encode(), every, every))


# ---------------------------------------------------------------- the story


_AWAITED = re.compile(r"^(?P<type>[^\[]+)\[(?P<send>.+)\]$")


def _awaited(items: Any) -> str:
    """``["ccm.opened[<send id>]", ...]`` as words."""
    if not items:
        return "nothing (the timeout only)"
    words = []
    for item in items:
        m = _AWAITED.match(str(item))
        words.append(f"{m['type']} of send {m['send']}" if m else str(item))
    return " or ".join(words)


def _basket(d: DecisionView | None) -> str:
    if d is None:
        return " [no decision record found]"
    if d.outcome == "not_asked":  # expired while the send window held it: the basket was never asked
        return " [basket not asked]"
    code = f"code {d.code}; " if d.code else ""
    retry = f"; fits again at {iso_utc(d.retry_at)}" if d.retry_at and d.result not in ("approved", "cancelled") else ""
    return f" [{code}basket {d.balance:g}/{d.capacity:g} in {d.period}, cost {d.cost:g}{retry}]"


def _send_text(r: JourneyLogRecord, d: DecisionView | None) -> str:
    x = r.detail
    result, reason, channel = x.get("result"), x.get("reason", d.reason if d else ""), x.get("channel", d.channel if d else "?")
    if result == "approved":
        text = f"sent {channel} {x.get('template', '')}".rstrip() + f": approved ({reason})"
    elif result == "fallback":
        content = f" with template {x['fallback_template']}" if x.get("fallback_template") not in (None, x.get("template")) else ""
        text = f"{channel} not sent ({reason}), falling back to {x.get('fallback_to', '?')}{content}"
    elif result == "cancelled":
        text = f"send cancelled: {reason}"
    else:
        text = f"{channel} not sent, {result}: {reason}"
    return f"{r.step_id}: {text}{_basket(d)}" + (f" -> {r.edge}" if r.edge and r.edge != r.step_id else "")


def _exited_text(r: JourneyLogRecord) -> str:
    x = r.detail
    outcome = str(x.get("outcome", "?"))
    if outcome.startswith("exit:"):
        return f"left by exit rule {x.get('exit', outcome[5:])} (event {x.get('event_id')}) at {r.step_id}"
    return f"ended at {r.step_id}: {outcome}" + (f" ({x['reason']})" if x.get("reason") else "")


_Text = Callable[[JourneyLogRecord, dict[str, Any]], str]

_TEXT: dict[str, _Text] = {
    "entered": lambda r, x: f"entered on {x.get('event_type')} (event {x.get('event_id')}), starts at {r.edge}",
    "not_entered": lambda r, x: (
        f"did not enter {r.journey_id}: {x.get('reason', '?')}"
        + (f" (on {x['event_type']}, event {x.get('event_id')})" if x.get("event_type") else "")
    ),
    "step": lambda r, x: f"at step {r.step_id} ({x.get('type')})",
    "branch": lambda r, x: f"{r.step_id}: branch case {x.get('case')} -> {r.edge or 'end'}",
    "split": lambda r, x: (
        f"{r.step_id}: split, variant {x.get('variant')}{' (sticky: as before)' if x.get('sticky') else ''} -> {r.edge or 'end'}"
    ),
    "waiting": lambda r, x: f"{r.step_id}: waiting for {_awaited(x.get('awaiting'))} until {x.get('until')}",
    "matched": lambda r, x: f"{r.step_id}: got {x.get('event_type')} (event {x.get('event_id')}) -> {r.edge or 'end'}",
    "resumed": lambda r, x: f"{r.step_id}: resumed ({x.get('reason', 'delay over')}) -> {r.edge or 'end'}",
    "goal": lambda r, x: f"GOAL {x.get('goal')} reached (event {x.get('event_id')}) at {r.step_id}: converted, the journey ends",
    "exited": lambda r, x: _exited_text(r),
    "duplicate": lambda r, x: f"event {x.get('event_id')} ({x.get('type')}) ignored: already processed (duplicate)",
}


def _delayed_text(r: JourneyLogRecord, d: DecisionView | None) -> str:
    x = r.detail
    if x.get("send_id"):
        reason = f": {d.reason}" if d is not None else ""
        return f"{r.step_id}: send deferred until {x.get('until')}{reason}" + _basket(d)
    return f"{r.step_id}: waiting until {x.get('until')} ({x.get('reason', 'delay')})"


def _decision_key(r: JourneyLogRecord) -> tuple[str, str] | None:
    send_id = r.detail.get("send_id")
    if not send_id or r.what not in ("send", "delayed"):
        return None
    return str(send_id), "deferred" if r.what == "delayed" else str(r.detail.get("result"))


def _own_time(r: JourneyLogRecord, times: Mapping[str, datetime]) -> datetime:
    """When what ``r`` tells happened: its event's or timer's own time when known, else the record's (the batch's) time."""
    about = _about(r)
    return times.get(about, r.at) if about else r.at


def _about(r: JourneyLogRecord) -> str | None:
    """The id of the message a journey-log record is about: its event (``event_id``) or its timer (``timer:<id>``)."""
    x = r.detail
    if x.get("event_id"):
        return str(x["event_id"])
    if x.get("timer_id") and r.what in ("timeout", "resumed"):
        return f"timer:{x['timer_id']}"
    return None


class _Teller:
    """Turns one customer's records into lines, remembering what each instance waits for."""

    def __init__(self, decisions: Mapping[tuple[str, str], DecisionView], times: Mapping[str, datetime]) -> None:
        self.decisions = decisions
        self.times = times
        self.used: set[tuple[str, str]] = set()
        self.awaiting: dict[str, Any] = {}

    def line(self, r: JourneyLogRecord) -> StoryLine:
        key = _decision_key(r)
        d = self.decisions.get(key) if key else None
        if key is not None and d is not None:
            self.used.add(key)
        if r.what == "send":
            text = _send_text(r, d)
        elif r.what == "delayed":
            text = _delayed_text(r, d)
        elif r.what == "timeout":
            awaited = self.awaiting.get(r.instance_id)  # unknown when the wait began before --since
            text = f"{r.step_id}: timed out" + (f" waiting for {_awaited(awaited)}" if awaited else "") + f" -> {r.edge or 'end'}"
        else:
            text = _TEXT.get(r.what, lambda r, x: f"{r.what} {r.step_id or ''} {x}")(r, r.detail)
        if r.what == "waiting":
            self.awaiting[r.instance_id] = r.detail.get("awaiting")
        return StoryLine(
            at=_own_time(r, self.times),  # the event's own time, not the batch's
            journey_id=r.journey_id or None,
            journey_version=r.journey_version if r.journey_id else None,
            instance_id=r.instance_id or None,
            step_id=r.step_id,
            what=r.what,
            text=text,
            detail=r.detail,
            decision=d,
            logged_at=r.at,
        )


def _decision_line(d: DecisionView) -> StoryLine:
    text = f"{d.step_id}: {d.channel} send {d.result}: {d.reason}{_basket(d)}"
    return StoryLine(
        at=d.decided_at,
        journey_id=d.journey_id,
        journey_version=d.journey_version,
        instance_id=None,
        step_id=d.step_id,
        what="decision",
        text=text,
        detail={"send_id": d.send_id},
        decision=d,
        logged_at=d.decided_at,
    )


def _dead_letter_line(d: DeadLetterView, at: datetime) -> StoryLine:
    if d.family:
        what = f"{d.family} event"
    elif d.event_type:
        what = f"{d.event_type} event"
    else:
        what = f"message from {d.source_topic or '?'}"
    about = f"code {d.code}" + (f", event {d.event_id}" if d.event_id else "")
    cut = f" [value cut: the original had {d.truncated} bytes]" if d.truncated else ""
    return StoryLine(
        at=at,
        journey_id=None,
        journey_version=None,
        instance_id=None,
        step_id=None,
        what="dead_letter",
        text=f"dead-lettered {what} ({about}): {d.reason}{cut}",
        detail={"code": d.code, "event_id": d.event_id},
        dead_letter=d,
        logged_at=d.dead_lettered_at,
    )


# ---------------------------------------------------------------- dead letters and event times


def _header(headers: Mapping[str, bytes], name: str) -> str | None:
    raw = headers.get(name)
    return raw.decode("utf-8", "replace") if raw else None


def _time(text: Any) -> datetime | None:
    """An ISO time with an offset, else None (a naive or malformed time is not trusted)."""
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _number(text: str | None) -> int | None:
    return int(text) if text and text.lstrip("-").isdigit() else None


def _original(value: bytes | None) -> dict[str, Any]:
    """The dead letter's original bytes as a JSON object, within the inbound bounds; ``{}`` when they are not one."""
    if not value:
        return {}
    try:
        doc = decode_json(value)
    except InvalidEvent:  # not JSON, too deep, too large, cut short (dlq.truncated): no event fields to read
        return {}
    return doc if isinstance(doc, dict) else {}


def dead_letter_view(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]], timestamp_ms: int | None = None
) -> DeadLetterView | None:
    """A dead-letter record as read from Kafka; None when it carries no ``dlq.code`` (not written by a worker)."""
    h = dict(headers)
    code = _header(h, "dlq.code")
    if code is None:
        return None
    doc = _original(value)
    event_id, event_type = doc.get("event_id"), doc.get("type")
    return DeadLetterView(
        key=key.decode("utf-8", "replace") if key else None,
        customer_id=_header(h, "dlq.customer"),
        code=code,
        reason=_header(h, "dlq.reason") or "",
        family=_header(h, "dlq.family"),
        exception=_header(h, "dlq.exception"),
        source_topic=_header(h, "dlq.source.topic"),
        source_partition=_number(_header(h, "dlq.source.partition")),
        source_offset=_number(_header(h, "dlq.source.offset")),
        truncated=_number(_header(h, "dlq.truncated")),
        event_id=event_id if isinstance(event_id, str) else None,
        event_type=event_type if isinstance(event_type, str) else None,
        occurred_at=_time(doc.get("occurred_at")),
        dead_lettered_at=_time(_header(h, "dlq.at")),
        timestamp=datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms is not None and timestamp_ms >= 0 else None,
    )


_Internal = CustomerEvent | TimerFired | AudienceCheck


def event_times(customer_id: str, items: Iterable[_Internal | Mapping[str, Any] | bytes | str]) -> dict[str, datetime]:
    """Message id -> its own time, from the customer's records of ``<prefix>.customer-events`` and the inbound topics.

    An event's ``occurred_at`` under its ``event_id``; a timer's due time under ``timer:<timer id>``; a campaign
    check's due time under its event id. A record that is not an internal message is read as a raw inbound
    event (the upstream JSON the worker processed without republishing it): its ``occurred_at`` under its
    ``event_id`` when both are there, ``occurred_at`` with a time zone (:func:`_inbound_time`). The first record
    of an id wins (a redelivery keeps the first time); records of other customers and records that are neither
    are left out.
    """
    times: dict[str, datetime] = {}
    for item in items:
        if isinstance(item, CustomerEvent | TimerFired | AudienceCheck):
            msg: _Internal = item
        else:
            try:
                msg = decode_internal(item if isinstance(item, bytes | str) else json.dumps(dict(item)))
            except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError; TypeError: not JSON-able
                if (raw := _inbound_time(customer_id, item)) is not None:
                    times.setdefault(*raw)
                continue
        if msg.customer_id == customer_id:
            times.setdefault(msg.event_id, msg.occurred_at if isinstance(msg, CustomerEvent) else msg.due_at)
    return times


def _inbound_time(customer_id: str, item: Mapping[str, Any] | bytes | str) -> tuple[str, datetime] | None:
    """``(event_id, occurred_at)`` of a raw inbound event of the customer, else None.

    Needs a string ``event_id``, ``customer_id`` equal to the customer and an ISO ``occurred_at`` with a time zone;
    the rest of the event is not checked (the worker validated it, or dead-lettered it and no line is about it).
    """
    if isinstance(item, bytes | str):
        try:
            doc = decode_json(item)  # within the inbound bounds
        except InvalidEvent:
            return None
    else:
        doc = item
    if not isinstance(doc, Mapping) or doc.get("customer_id") != customer_id:
        return None
    event_id, at = doc.get("event_id"), _time(doc.get("occurred_at"))
    return (event_id, at) if isinstance(event_id, str) and at is not None else None


def _decisions(items: Iterable[DecisionView | Mapping[str, Any] | bytes]) -> list[DecisionView]:
    """The decision records this command understands; others are left out (the story goes on without them)."""
    return read_records(DecisionView, items)[0]


def build_story(
    customer_id: str,
    log: Iterable[JourneyLogRecord | Mapping[str, Any] | bytes],
    decisions: Iterable[DecisionView | Mapping[str, Any] | bytes] = (),
    *,
    dead_letters: Iterable[DeadLetterView | Mapping[str, Any]] = (),
    events: Iterable[_Internal | Mapping[str, Any] | bytes | str] = (),
    journey: str | None = None,
    since: datetime | None = None,
    steps: bool = False,
    partitions: Mapping[str, int] | None = None,
    dead_letters_scanned: int = 0,
) -> Story:
    """The customer's story from their journey-log records (in log order), decision records and dead letters.

    Records of other customers are ignored; ``journey`` keeps one journey (dead letters stay: a
    dead-lettered event never reached a journey, so it may be why nothing happened in that one),
    ``since`` the lines at or after that time; ``step`` records only with ``steps``.

    Each line is at its own time. The worker stamps all records of one batch with the batch's
    time, so a line about an event (entered, not entered, awaited event, goal, exit, duplicate)
    is put at the event's ``occurred_at`` and a timeout or resume at its timer's due time, looked
    up in ``events`` (the customer's ``customer-events`` records and raw inbound events,
    :func:`event_times`); without them, or when the event is no longer there, at the record's time. A dead letter is at the
    event's ``occurred_at`` when its bytes carry one, else at ``dlq.at``, else at the record's
    timestamp. Lines are sorted by that time, the log's order kept within one instant.
    """
    records, _ = log_records(log)
    times = event_times(customer_id, events)
    mine = [
        r
        for r in records
        if r.customer_id == customer_id and (journey is None or r.journey_id == journey) and (since is None or _own_time(r, times) >= since)
    ]
    decided: dict[tuple[str, str], DecisionView] = {}
    for d in _decisions(decisions):
        if d.customer_id == customer_id and (journey is None or d.journey_id == journey) and (since is None or d.decided_at >= since):
            decided.setdefault((d.send_id, d.result), d)  # a redelivered decision once
    teller = _Teller(decided, times)
    lines = [teller.line(r) for r in sorted(mine, key=lambda r: r.at) if steps or r.what != "step"]
    lines += [_decision_line(d) for key, d in decided.items() if key not in teller.used]
    letters = [
        _dead_letter_line(d, at)
        for d in _dead_letters(customer_id, dead_letters)
        if (at := d.at) is not None and (since is None or at >= since)
    ]
    lines += letters
    lines.sort(key=lambda line: line.at)  # stable: the log's order within one instant, then lone decisions, then dead letters
    return Story(
        customer_id=customer_id,
        journey=journey,
        since=since,
        partitions=dict(partitions or {}),
        dead_letters_scanned=dead_letters_scanned,
        log_records=len(mine),
        hidden_steps=0 if steps else sum(r.what == "step" for r in mine),
        decisions=len(decided),
        dead_letters=len(letters),
        lines=lines,
    )


def _dead_letters(customer_id: str, items: Iterable[DeadLetterView | Mapping[str, Any]]) -> list[DeadLetterView]:
    """The customer's dead letters; one dead-lettered again by a retried batch (same source offset) once."""
    out: list[DeadLetterView] = []
    seen: set[tuple[str | None, int | None, int]] = set()
    for item in items:
        d = item if isinstance(item, DeadLetterView) else DeadLetterView.model_validate(item)
        if not d.belongs_to(customer_id):
            continue
        if d.source_offset is not None:
            source = (d.source_topic, d.source_partition, d.source_offset)
            if source in seen:
                continue
            seen.add(source)
        out.append(d)
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def format_story(story: Story) -> str:
    """The story as text: a headline, then one line per thing that happened, oldest first."""
    where = ", ".join(f"partition {p} of {t}" for t, p in story.partitions.items())
    head = f"customer {story.customer_id}: {_count(story.log_records, 'journey-log record')}, {_count(story.decisions, 'decision')}"
    head += f", {_count(story.dead_letters, 'dead letter')}" if story.dead_letters else ""
    head += f" (read {where})" if where else ""
    head += f"; {_count(story.hidden_steps, 'step record')} not shown (--steps)" if story.hidden_steps else ""
    if story.journey or story.since:
        head += f"; only {story.journey}" if story.journey else ""
        head += f"; since {iso_utc(story.since)}" if story.since else ""
    lines = [head]
    if not story.lines:
        lines.append("nothing happened to this customer in the journeys (no journey-log records)")
    for line in story.lines:
        who = f"{line.journey_id} v{line.journey_version}" if line.journey_id else "-"
        lines.append(f"{iso_utc(line.at)}  {who}  {line.text}{_handled(line)}")
    return "\n".join(lines)


_NOTICEABLE = timedelta(seconds=1)


def _handled(line: StoryLine) -> str:
    """`` (handled <time>)`` when the worker handled the line's event a noticeable while after (or before) it happened."""
    if line.logged_at is None or abs(line.logged_at - line.at) < _NOTICEABLE:
        return ""
    return f" (handled {iso_utc(line.logged_at)})"


# ---------------------------------------------------------------- Kafka


@dataclass(frozen=True)
class CustomerRecords:
    """What :func:`read_customer` read for one customer."""

    log: list[bytes]
    decisions: list[bytes]
    events: list[bytes]
    """Their ``customer-events`` records (canonical envelopes, timers, campaign checks), then their records of the
    inbound topics read (raw upstream events): the events' own times (:func:`event_times`)."""
    dead_letters: list[DeadLetterView]
    partitions: dict[str, int]
    """Topic -> the one partition read."""
    dead_letters_scanned: int
    """Records on the dead-letter partition read (theirs and other customers')."""


async def read_customer(
    bootstrap: str,
    log_topic: str,
    decisions_topic: str,
    customer_id: str,
    timeout: float,
    *,
    events_topic: str,
    dead_letter_topic: str,
    inbound_topics: Sequence[str] = (),
    **client_kw: Any,
) -> CustomerRecords:
    """The customer's journey-log, decision, customer-events, inbound and dead-letter records, and the partition read per topic.

    Reads only the customer's partition of each topic (:func:`partition_for`), from its
    beginning to its end at the time of the call, and keeps the records keyed by the customer
    (and, on the dead-letter topic, those whose ``dlq.customer`` header names them).

    ``inbound_topics`` (``<prefix>.in.<family>``) are read for the events' own times: an inbound
    event that already sits on the customer's partition is processed by the worker directly,
    without a second hop through ``customer-events``, so its ``occurred_at`` is only on the
    inbound topic. Their records follow the customer-events records in ``events``. An inbound
    topic that does not exist is left out (not every family's topic need be created); one of the
    other topics missing raises as before. Raises :class:`~orchestrator.designer.report.KafkaReadError`.
    """
    key = customer_id.encode()
    topics = [log_topic, decisions_topic, events_topic]
    outbound, inbound, dead = await asyncio.gather(  # all to their end (or failure), so no reader is left unclosed
        read_to_end(bootstrap, topics, timeout, choose=lambda _topic, n: [partition_for(customer_id, n)], **client_kw),
        _read_inbound(bootstrap, inbound_topics, customer_id, timeout, client_kw),
        _read_dead_letters(bootstrap, dead_letter_topic, customer_id, timeout, client_kw),
        return_exceptions=True,
    )
    if isinstance(outbound, BaseException):
        raise outbound
    if isinstance(inbound, BaseException):
        raise inbound
    if isinstance(dead, BaseException):
        raise dead
    (raw, chosen), (raw_in, chosen_in), (letters, dlq_partition, scanned) = outbound, inbound, dead
    mine = [r for r in [*raw, *raw_in] if r.key == key and r.value is not None]
    values = {t: [r.value for r in mine if r.topic == t and r.value is not None] for t in [*topics, *chosen_in]}
    events = values[events_topic] + [v for t in chosen_in for v in values[t]]
    partitions = {t: ps[0] for t, ps in (chosen | chosen_in).items()} | {dead_letter_topic: dlq_partition}
    return CustomerRecords(values[log_topic], values[decisions_topic], events, letters, partitions, scanned)


async def _read_inbound(
    bootstrap: str, topics: Sequence[str], customer_id: str, timeout: float, client_kw: Mapping[str, Any]
) -> tuple[list[RawRecord], dict[str, list[int]]]:
    """The customer's partition of those of ``topics`` that exist, read to its end, and the partition read per topic.

    :func:`~orchestrator.designer.report_kafka.read_to_end` raises for a missing topic, so each
    topic is looked up first (:func:`_partition_counts` per topic, concurrently); ``timeout``
    bounds the look-up and the read together.
    """
    if not topics:
        return [], {}
    from aiokafka.errors import KafkaError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        found = await asyncio.wait_for(
            asyncio.gather(*(_partition_counts(bootstrap, [t], client_kw) for t in topics), return_exceptions=True), timeout
        )
    except TimeoutError:
        raise KafkaReadError(f"could not read {', '.join(topics)} at {bootstrap} to the end within {timeout:g} s") from None
    present = []
    for topic, got in zip(topics, found, strict=True):
        if isinstance(got, KafkaReadError):  # no such topic: nothing of the customer's on it
            continue
        if isinstance(got, KafkaError):
            raise KafkaReadError(f"cannot read from Kafka at {bootstrap} ({type(got).__name__}: {got})") from None
        if isinstance(got, BaseException):
            raise got
        present.append(topic)
    if not present:
        return [], {}
    left = max(deadline - loop.time(), 0.0)
    return await read_to_end(bootstrap, present, left, choose=lambda _topic, n: [partition_for(customer_id, n)], **client_kw)


async def _read_dead_letters(
    bootstrap: str, topic: str, customer_id: str, timeout: float, client_kw: Mapping[str, Any]
) -> tuple[list[DeadLetterView], int, int]:
    """The customer's dead letters on their partition of ``topic``, the partition, and how many records it held.

    The worker keys a dead letter by the key of the message that failed (inbound: the upstream
    key, which is the customer id by contract; customer-events: the customer id) with Kafka's
    default partitioner, so the customer's dead letters are on :func:`partition_for` of that
    key. Its own reader, not :func:`~orchestrator.designer.report.read_to_end`: the code and
    the reason are in the headers.
    """
    try:
        return await asyncio.wait_for(_read_dead_letter_partition(bootstrap, topic, customer_id, client_kw), timeout)
    except TimeoutError:
        raise KafkaReadError(f"could not read {topic} at {bootstrap} to the end within {timeout:g} s") from None


async def _read_dead_letter_partition(
    bootstrap: str, topic: str, customer_id: str, client_kw: Mapping[str, Any]
) -> tuple[list[DeadLetterView], int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    try:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **client_kw)
        await consumer.start()
    except KafkaError as exc:
        raise KafkaReadError(f"cannot read from Kafka at {bootstrap} ({type(exc).__name__}: {exc})") from None
    try:
        counts = await _partition_counts(bootstrap, [topic], client_kw)  # raises KafkaReadError for a missing topic
        tp = TopicPartition(topic, partition_for(customer_id, counts[topic]))
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, start)
        found: list[DeadLetterView] = []
        scanned = 0
        while start < end and await consumer.position(tp) < end:
            for r in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                if r.offset >= end:
                    continue
                scanned += 1
                view = dead_letter_view(r.key, r.value, r.headers, r.timestamp)
                if view is not None and view.belongs_to(customer_id):
                    found.append(view)
        return found, tp.partition, scanned
    except KafkaError as exc:
        raise KafkaReadError(f"cannot read from Kafka at {bootstrap} ({type(exc).__name__}: {exc})") from None
    finally:
        await consumer.stop()


# ---------------------------------------------------------------- the command


HELP = (
    "Tell one customer's story on the running system, oldest first: which journeys they entered (version, on which event) "
    "or did not enter and why, split variants and branches, what they waited for and until when, each send and the basket's "
    "decision on it (reason, code, balance/capacity, deferred until), awaited events, timeouts, goals and exits. "
    "Also their dead-lettered events (code and reason), and each event at its own time (occurred_at). "
    "Reads only the customer's partition of <ORCH_TOPIC_PREFIX>.journey-log, .decisions, .customer-events, .dead-letter "
    "and the inbound topics .in.<family> that exist (Kafka's default partitioner on the customer id), from the beginning "
    "to its current end."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``explain CUSTOMER [--journey ID] [--since TIME] [--steps] [--json] [--timeout S]``."""
    p = sub.add_parser("explain", help="one customer's story in time order: entries, waits, sends and why, goals", description=HELP)
    p.add_argument("customer", metavar="CUSTOMER", help="the customer id (the key of the outbound topics)")
    p.add_argument("--journey", default=None, metavar="ID", help="only this journey")
    p.add_argument("--since", type=parse_time, default=None, metavar="TIME", help="only what happened at or after this ISO time")
    p.add_argument("--steps", action="store_true", help="also list each step entered (left out by default: the lines around say it)")
    p.add_argument("--json", action="store_true", help="print the story as one JSON object")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds to read the partitions before giving up with exit 1 (default 60)",
    )
    p.set_defaults(func=_explain_command)


def _read(args: argparse.Namespace, settings: Settings) -> CustomerRecords:
    from orchestrator.runtime.preflight import aiokafka_kwargs

    with quiet_kafka_client():
        return asyncio.run(
            read_customer(
                settings.kafka_bootstrap_servers,
                settings.topic("journey-log"),
                settings.topic("decisions"),
                args.customer,
                args.timeout,
                events_topic=settings.topic("customer-events"),
                dead_letter_topic=settings.topic("dead-letter"),
                inbound_topics=list(settings.inbound_topics()),
                **aiokafka_kwargs(settings),
            )
        )


def _explain_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = load_settings("explain", err)
    if settings is None:
        return 1
    try:
        got = _read(args, settings)
    except KafkaReadError as exc:
        print(f"orchestrator explain: {exc}", file=err)
        return 1
    story = build_story(
        args.customer,
        got.log,
        got.decisions,
        dead_letters=got.dead_letters,
        events=got.events,
        journey=args.journey,
        since=args.since,
        steps=args.steps,
        partitions=got.partitions,
        dead_letters_scanned=got.dead_letters_scanned,
    )
    out.write((story.model_dump_json(indent=2) if args.json else format_story(story)) + "\n")
    return 0

"""``orchestrator explain CUSTOMER``: one customer's story on a running system, in time order.

``orchestrator/cli.py`` calls :func:`register` on its subparsers::

    orchestrator explain CUSTOMER [--journey ID] [--since TIME] [--steps] [--json] [--timeout S]

It reads the customer's records from the journey log (``<ORCH_TOPIC_PREFIX>.journey-log``) and
the basket decisions (``<ORCH_TOPIC_PREFIX>.decisions``). Both are keyed by customer id and the
worker's producer uses Kafka's default partitioner, so one partition of each topic holds all of
the customer's records: :func:`partition_for` computes it (murmur2 of the key, as the Java
client and aiokafka do) and only that partition is read, from its beginning to its end at the
time of the call, keeping the records whose key is the customer id.

The story (:func:`build_story`, a pure function over the records) says, per journey instance:
entered (which journey and version, on which event), did not enter (``not_entered`` records:
why not), split into which variant, which branch, waited (for what, until when), sent or not
and why (the decision's reason and code, the basket's balance and capacity in its period, the
cost), deferred until, fell back to another channel, got the awaited event, timed out, resumed,
reached the goal or left (how). Decisions are joined to the journey-log record of the same send
id and result; a decision without one (a deferred send cancelled when the journey ended) gets
a line of its own. ``step`` records are left out unless ``--steps``: the lines around them say
the same.

The customer id goes only to this command's own output (the user asked about that customer);
nothing is logged.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel, ConfigDict

from orchestrator.designer.report import KafkaReadError, load_settings, log_records, parse_time, quiet_kafka_client, read_to_end
from orchestrator.records import JourneyLogRecord, read_records
from orchestrator.timeutil import iso_utc

if TYPE_CHECKING:
    from orchestrator.settings import Settings

__all__ = ["DecisionView", "Story", "StoryLine", "build_story", "format_story", "partition_for", "read_customer", "register"]


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


class StoryLine(BaseModel):
    at: datetime
    journey_id: str | None
    journey_version: int | None
    instance_id: str | None
    step_id: str | None
    what: str
    """The journey-log record's ``what``, or ``decision`` for a decision without a journey-log record."""
    text: str
    detail: dict[str, Any]
    decision: DecisionView | None = None


class Story(BaseModel):
    """The ``--json`` document."""

    customer_id: str
    journey: str | None
    since: datetime | None
    partitions: dict[str, int]
    """Topic -> the one partition read (empty when the story was built from records in hand)."""
    log_records: int
    hidden_steps: int = 0
    """``step`` records left out (shown with ``--steps``)."""
    decisions: int
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
    code = f"code {d.code}; " if d.code else ""
    retry = f"; fits again at {iso_utc(d.retry_at)}" if d.retry_at and d.result not in ("approved", "cancelled") else ""
    return f" [{code}basket {d.balance:g}/{d.capacity:g} in {d.period}, cost {d.cost:g}{retry}]"


def _send_text(r: JourneyLogRecord, d: DecisionView | None) -> str:
    x = r.detail
    result, reason, channel = x.get("result"), x.get("reason", d.reason if d else ""), x.get("channel", d.channel if d else "?")
    if result == "approved":
        text = f"sent {channel} {x.get('template', '')}".rstrip() + f": approved ({reason})"
    elif result == "fallback":
        text = f"{channel} not sent ({reason}), falling back to {x.get('fallback_to', '?')}"
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


class _Teller:
    """Turns one customer's records into lines, remembering what each instance waits for."""

    def __init__(self, decisions: Mapping[tuple[str, str], DecisionView]) -> None:
        self.decisions = decisions
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
            at=r.at,
            journey_id=r.journey_id or None,
            journey_version=r.journey_version if r.journey_id else None,
            instance_id=r.instance_id or None,
            step_id=r.step_id,
            what=r.what,
            text=text,
            detail=r.detail,
            decision=d,
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
    )


def _decisions(items: Iterable[DecisionView | Mapping[str, Any] | bytes]) -> list[DecisionView]:
    """The decision records this command understands; others are left out (the story goes on without them)."""
    return read_records(DecisionView, items)[0]


def build_story(
    customer_id: str,
    log: Iterable[JourneyLogRecord | Mapping[str, Any] | bytes],
    decisions: Iterable[DecisionView | Mapping[str, Any] | bytes] = (),
    *,
    journey: str | None = None,
    since: datetime | None = None,
    steps: bool = False,
    partitions: Mapping[str, int] | None = None,
) -> Story:
    """The customer's story from their journey-log records (in log order) and decision records.

    Records of other customers are ignored; ``journey`` keeps one journey, ``since`` the records
    at or after that time; ``step`` records only with ``steps``.
    """
    records, _ = log_records(log)
    mine = [
        r
        for r in records
        if r.customer_id == customer_id and (journey is None or r.journey_id == journey) and (since is None or r.at >= since)
    ]
    decided: dict[tuple[str, str], DecisionView] = {}
    for d in _decisions(decisions):
        if d.customer_id == customer_id and (journey is None or d.journey_id == journey) and (since is None or d.decided_at >= since):
            decided.setdefault((d.send_id, d.result), d)  # a redelivered decision once
    teller = _Teller(decided)
    lines = [teller.line(r) for r in sorted(mine, key=lambda r: r.at) if steps or r.what != "step"]
    lines += [_decision_line(d) for key, d in decided.items() if key not in teller.used]
    lines.sort(key=lambda line: line.at)  # stable: the log's order within one instant, lone decisions after
    return Story(
        customer_id=customer_id,
        journey=journey,
        since=since,
        partitions=dict(partitions or {}),
        log_records=len(mine),
        hidden_steps=0 if steps else sum(r.what == "step" for r in mine),
        decisions=len(decided),
        lines=lines,
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def format_story(story: Story) -> str:
    """The story as text: a headline, then one line per thing that happened, oldest first."""
    where = ", ".join(f"partition {p} of {t}" for t, p in story.partitions.items())
    head = f"customer {story.customer_id}: {_count(story.log_records, 'journey-log record')}, {_count(story.decisions, 'decision')}"
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
        lines.append(f"{iso_utc(line.at)}  {who}  {line.text}")
    return "\n".join(lines)


# ---------------------------------------------------------------- Kafka


async def read_customer(
    bootstrap: str, log_topic: str, decisions_topic: str, customer_id: str, timeout: float, **client_kw: Any
) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    """The customer's journey-log and decision record values, and the partition read per topic.

    Reads only the customer's partition of each topic (:func:`partition_for`), from its
    beginning to its end at the time of the call, and keeps the records keyed by the customer.
    Raises :class:`~orchestrator.designer.report.KafkaReadError`.
    """
    key = customer_id.encode()
    raw, chosen = await read_to_end(
        bootstrap, [log_topic, decisions_topic], timeout, choose=lambda _topic, n: [partition_for(customer_id, n)], **client_kw
    )
    mine = [r for r in raw if r.key == key and r.value is not None]
    log = [r.value for r in mine if r.topic == log_topic and r.value is not None]
    decisions = [r.value for r in mine if r.topic == decisions_topic and r.value is not None]
    return log, decisions, {t: ps[0] for t, ps in chosen.items()}


# ---------------------------------------------------------------- the command


HELP = (
    "Tell one customer's story on the running system, oldest first: which journeys they entered (version, on which event) "
    "or did not enter and why, split variants and branches, what they waited for and until when, each send and the basket's "
    "decision on it (reason, code, balance/capacity, deferred until), awaited events, timeouts, goals and exits. "
    "Reads only the customer's partition of <ORCH_TOPIC_PREFIX>.journey-log and <ORCH_TOPIC_PREFIX>.decisions "
    "(Kafka's default partitioner on the customer id), from the beginning to its current end."
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


def _read(args: argparse.Namespace, settings: Settings) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    from orchestrator.runtime.preflight import aiokafka_kwargs

    with quiet_kafka_client():
        return asyncio.run(
            read_customer(
                settings.kafka_bootstrap_servers,
                settings.topic("journey-log"),
                settings.topic("decisions"),
                args.customer,
                args.timeout,
                **aiokafka_kwargs(settings),
            )
        )


def _explain_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = load_settings("explain", err)
    if settings is None:
        return 1
    try:
        log, decisions, partitions = _read(args, settings)
    except KafkaReadError as exc:
        print(f"orchestrator explain: {exc}", file=err)
        return 1
    story = build_story(args.customer, log, decisions, journey=args.journey, since=args.since, steps=args.steps, partitions=partitions)
    out.write((story.model_dump_json(indent=2) if args.json else format_story(story)) + "\n")
    return 0

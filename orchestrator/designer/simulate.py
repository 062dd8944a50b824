"""Replay an event file offline: the real engine, the in-memory basket, a virtual clock.

``orchestrator simulate --journeys journeys/ events.jsonl`` calls :func:`simulate_files`.
Each event is processed at its ``occurred_at`` through
:func:`orchestrator.processor.process` (exactly the code the Faust worker runs) with
:class:`~orchestrator.pressure.memory.MemoryBasket`. Before each event, every armed
timer due at or before it fires, in due order; after the last event the remaining
timers fire up to ``until`` (default: the last event + 90 days). Cancelled timers
never fire.

The result is structured (:class:`SimulationResult`): the records in the order they
happened, per customer, plus the final states; the CLI prints it and ``render``
counts customers per edge from its traces.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from orchestrator.actions import ArmTimer, CancelTimer, Disposition, Trace
from orchestrator.events import CustomerEvent, InvalidEvent, TimerFired, parse_inbound
from orchestrator.journey.loader import JourneySet, load_journeys
from orchestrator.pressure.basket import Basket
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import POLICY_FILE, PressurePolicy, load_policy
from orchestrator.processor import process
from orchestrator.state import CustomerState
from orchestrator.timeutil import iso_utc

DEFAULT_HORIZON = timedelta(days=90)

RecordKind = Literal["event", "timer", "trace", "send", "consent", "timer_armed", "timer_cancelled"]


@dataclass(frozen=True)
class SimRecord:
    """One line of simulation output."""

    at: datetime
    customer_id: str
    kind: RecordKind
    text: str
    journey_id: str | None = None
    journey_version: int | None = None
    instance_id: str | None = None
    step_id: str | None = None
    edge: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of ``simulate --json``)."""
        out: dict[str, Any] = {"at": iso_utc(self.at), "customer": self.customer_id, "kind": self.kind}
        for key, name in (
            ("journey_id", "journey"),
            ("journey_version", "version"),
            ("instance_id", "instance_id"),
            ("step_id", "step_id"),
            ("edge", "edge"),
        ):
            value = getattr(self, key)
            if value is not None:
                out[name] = value
        out.update(self.data)
        out["text"] = self.text
        return out


@dataclass
class SimulationResult:
    """Everything a simulation produced."""

    records: list[SimRecord] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    dispositions: list[Disposition] = field(default_factory=list)
    states: dict[str, CustomerState] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """Invalid input lines: ``file:line: reason`` (skipped)."""

    def customers(self) -> list[str]:
        """Customer ids in order of first appearance."""
        return list(dict.fromkeys(r.customer_id for r in self.records))

    def for_customer(self, customer_id: str) -> list[SimRecord]:
        return [r for r in self.records if r.customer_id == customer_id]

    def sends(self, customer_id: str | None = None) -> list[Disposition]:
        """Final dispositions (one per gated send), optionally for one customer."""
        return [d for d in self.dispositions if customer_id is None or d.send.customer_id == customer_id]

    def path(self, customer_id: str, journey_id: str | None = None) -> list[str]:
        """The steps a customer went through (``step`` traces), optionally in one journey."""
        return [
            t.step_id or ""
            for t in self.traces
            if t.customer_id == customer_id and t.what == "step" and (journey_id is None or t.journey_id == journey_id)
        ]

    def edge_counts(self, journey_id: str) -> Counter[tuple[str, str]]:
        """Distinct customers per edge ``(from, to)`` of one journey: ``from`` is ``start`` for
        entries; ``to`` is ``goal`` / ``exit`` for goals and exits, ``finish`` for "the journey ends"."""
        from orchestrator.designer.render import count_edges

        return count_edges(
            (
                {
                    "customer": t.customer_id,
                    "journey": t.journey_id,
                    "what": t.what,
                    "step_id": t.step_id,
                    "edge": t.edge,
                    "outcome": t.detail.get("outcome"),
                }
                for t in self.traces
            ),
            journey_id,
        )


@dataclass(frozen=True)
class InputEvent:
    """One line of an events file, validated."""

    line: int
    event: CustomerEvent


def read_events(path: str | os.PathLike[str]) -> tuple[list[InputEvent], list[str]]:
    """Parse a JSON-lines events file: each line ``{"family": "web", ...inbound fields...}``.

    Returns the valid events and, for every invalid line, ``file:line: reason``.
    Blank lines and lines starting with ``#`` are skipped.
    """
    name = os.fspath(path)
    events: list[InputEvent] = []
    errors: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                errors.append(f"{name}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(doc, dict):
                errors.append(f'{name}:{lineno}: expected a JSON object with a "family" key')
                continue
            family = doc.pop("family", None)
            if not isinstance(family, str):
                errors.append(f'{name}:{lineno}: missing "family" (one of ccm, web, callcenter, geo, consent, crm, ops)')
                continue
            try:
                events.append(InputEvent(lineno, parse_inbound(family, doc)))
            except InvalidEvent as exc:
                errors.append(f"{name}:{lineno}: {exc.reason}")
    return events, errors


class _Clock:
    """Armed timers ordered by due time; cancelled ones are skipped."""

    def __init__(self) -> None:
        self.heap: list[tuple[datetime, int, str, str]] = []
        self.live: dict[tuple[str, str], datetime] = {}
        self.seq = 0

    def arm(self, op: ArmTimer) -> None:
        self.seq += 1
        self.live[(op.customer_id, op.timer_id)] = op.due_at
        heapq.heappush(self.heap, (op.due_at, self.seq, op.customer_id, op.timer_id))

    def cancel(self, op: CancelTimer) -> None:
        self.live.pop((op.customer_id, op.timer_id), None)

    def pop_due(self, until: datetime) -> TimerFired | None:
        while self.heap and self.heap[0][0] <= until:
            due, _, cid, tid = heapq.heappop(self.heap)
            if self.live.get((cid, tid)) == due:
                del self.live[(cid, tid)]
                return TimerFired(customer_id=cid, timer_id=tid, due_at=due)
        return None


def default_basket(policy_path: str | os.PathLike[str] | None) -> Basket:
    """The in-memory basket with the policy file (or the default policy when the file does not exist).

    Raises :class:`~orchestrator.pressure.policy.PolicyError` when the file is invalid.
    """
    if policy_path is not None and Path(policy_path).exists():
        return MemoryBasket(load_policy(policy_path))
    return MemoryBasket(PressurePolicy())


async def simulate_async(
    journeys: JourneySet,
    events: Sequence[InputEvent | CustomerEvent],
    basket: Basket,
    until: datetime | None = None,
) -> SimulationResult:
    """Replay ``events`` (in ``occurred_at`` order, stable) through the processor with a virtual clock."""
    items = [e if isinstance(e, InputEvent) else InputEvent(0, e) for e in events]
    items.sort(key=lambda e: e.event.occurred_at)
    if until is None:
        until = (items[-1].event.occurred_at if items else datetime.now(UTC)) + DEFAULT_HORIZON
    result = SimulationResult()
    clock = _Clock()
    states: dict[str, CustomerState] = {}

    async def run(message: CustomerEvent | TimerFired, now: datetime) -> None:
        cid = message.customer_id
        state = states.get(cid) or CustomerState.new(cid)
        res = await process(state, message, journeys, now, basket)
        states[cid] = res.state
        _record(result, message, now, res)
        for op in res.timer_ops:
            if isinstance(op, ArmTimer):
                clock.arm(op)
            else:
                clock.cancel(op)

    for item in items:
        at = item.event.occurred_at
        while (fired := clock.pop_due(at)) is not None:
            await run(fired, fired.due_at)
        await run(item.event, at)
    while (fired := clock.pop_due(until)) is not None:
        await run(fired, fired.due_at)
    result.states = states
    return result


def simulate(
    journeys: JourneySet,
    events: Sequence[InputEvent | CustomerEvent],
    basket: Basket | None = None,
    until: datetime | None = None,
) -> SimulationResult:
    """Synchronous :func:`simulate_async` (default basket: in-memory with the default policy)."""
    return asyncio.run(simulate_async(journeys, events, basket or default_basket(None), until))


def simulate_files(
    journeys_dir: str | os.PathLike[str],
    events_path: str | os.PathLike[str],
    policy_path: str | os.PathLike[str] | None = None,
    until: datetime | None = None,
) -> SimulationResult:
    """Load journeys and events from files and simulate (policy default: ``<journeys dir>/pressure.yaml``).

    Raises :class:`~orchestrator.errors.DefinitionError` for invalid journeys or an invalid
    policy; invalid event lines are skipped and listed in ``result.errors``.
    """
    journeys = load_journeys([Path(journeys_dir)])
    events, errors = read_events(events_path)
    if policy_path is None:
        base = Path(journeys_dir)
        policy_path = (base if base.is_dir() else base.parent) / POLICY_FILE
    result = asyncio.run(simulate_async(journeys, events, default_basket(policy_path), until))
    result.errors = errors + result.errors
    return result


# ------------------------------------------------------------------ records


def _record(result: SimulationResult, message: CustomerEvent | TimerFired, now: datetime, res: Any) -> None:
    cid = message.customer_id
    add = result.records.append
    if isinstance(message, CustomerEvent):
        add(
            SimRecord(
                now, cid, "event", f"event {message.type} ({message.event_id})", data={"event_id": message.event_id, "type": message.type}
            )
        )
    else:
        add(SimRecord(now, cid, "timer", f"timer fired {message.timer_id}", data={"timer_id": message.timer_id}))
    for c in res.consent_changes:
        verb = "resubscribed to" if c.subscribed else "unsubscribed from"
        add(
            SimRecord(
                now,
                cid,
                "consent",
                f"consent: {verb} {c.channel}" + (f" ({c.brand})" if c.brand else ""),
                data={"channel": c.channel, "brand": c.brand, "subscribed": c.subscribed},
            )
        )
    by_send = {d.send.send_id: d for d in res.dispositions}
    used: set[str] = set()
    for t in res.traces:
        result.traces.append(t)
        disp = by_send.get(str(t.detail.get("send_id", "")))
        if disp is not None and t.what in ("send", "delayed") and disp.send.send_id not in used:
            used.add(disp.send.send_id)
            add(_send_record(now, t, disp))
        else:
            add(
                SimRecord(
                    now,
                    cid,
                    "trace",
                    _trace_text(t),
                    t.journey_id or None,
                    t.journey_version or None,
                    t.instance_id or None,
                    t.step_id,
                    t.edge,
                    data={"what": t.what, **t.detail},
                )
            )
    for d in res.dispositions:
        result.dispositions.append(d)
        if d.send.send_id not in used:  # e.g. cancelled by a goal or a calamity
            used.add(d.send.send_id)
            add(
                SimRecord(
                    now,
                    cid,
                    "send",
                    _send_text(d),
                    d.send.journey_id,
                    d.send.journey_version,
                    d.send.instance_id,
                    d.send.step_id,
                    None,
                    data={"what": "disposition", **_send_data(d)},
                )
            )
    for op in res.timer_ops:
        if isinstance(op, ArmTimer):
            add(
                SimRecord(
                    now,
                    cid,
                    "timer_armed",
                    f"timer armed {op.purpose} {op.timer_id} due {iso_utc(op.due_at)}",
                    data={"timer_id": op.timer_id, "purpose": op.purpose, "due_at": iso_utc(op.due_at)},
                )
            )
        else:
            add(SimRecord(now, cid, "timer_cancelled", f"timer cancelled {op.timer_id}", data={"timer_id": op.timer_id}))


def _send_data(d: Disposition) -> dict[str, Any]:
    s, dec = d.send, d.decision
    return {
        "result": d.result,
        "send_id": s.send_id,
        "channel": s.channel,
        "template": s.template,
        "comm_type": s.comm_type,
        "priority": s.priority,
        "brand": s.brand,
        "variables": s.variables,
        "reason": d.note or dec.reason,
        "cost": dec.cost,
        "balance": dec.balance,
        "capacity": dec.capacity,
        "period": dec.period,
        "retry_at": iso_utc(dec.retry_at) if dec.retry_at else None,
    }


def _send_text(d: Disposition) -> str:
    s, dec = d.send, d.decision
    return (
        f"send {s.channel} {s.template} ({s.comm_type}, p{s.priority}) -> {d.result}: {d.note or dec.reason} "
        f"[basket {dec.balance:g}/{dec.capacity:g}] {s.send_id}"
    )


def _send_record(now: datetime, t: Trace, d: Disposition) -> SimRecord:
    return SimRecord(
        now,
        t.customer_id,
        "send",
        _send_text(d) + (f" -> {t.edge}" if t.edge and t.edge != t.step_id else ""),
        t.journey_id,
        t.journey_version,
        t.instance_id,
        t.step_id,
        t.edge,
        data={"what": t.what, **_send_data(d)},
    )


_TRACE_TEXT: dict[str, Callable[[str, Trace, dict[str, Any]], str]] = {
    "entered": lambda head, t, d: f"{head} entered ({d.get('event_type')}) -> {t.edge}",
    "step": lambda head, t, d: f"{head} step {t.step_id} ({d.get('type')})",
    "branch": lambda head, t, d: f"{head} branch {t.step_id}: {d.get('case')} -> {t.edge or 'end'}",
    "split": lambda head, t, d: (
        f"{head} split {t.step_id}: variant {d.get('variant')}{' (sticky)' if d.get('sticky') else ''} -> {t.edge or 'end'}"
    ),
    "waiting": lambda head, t, d: (
        f"{head} waiting at {t.step_id} for {', '.join(d.get('awaiting') or ['(nothing: timeout only)'])} until {d.get('until')}"
    ),
    "matched": lambda head, t, d: f"{head} {t.step_id}: got {d.get('event_type')} -> {t.edge or 'end'}",
    "timeout": lambda head, t, d: f"{head} {t.step_id}: timed out -> {t.edge or 'end'}",
    "delayed": lambda head, t, d: f"{head} {t.step_id}: {d.get('reason')} until {d.get('until')}",
    "resumed": lambda head, t, d: f"{head} {t.step_id}: resumed ({d.get('reason', 'delay over')}) -> {t.edge or 'end'}",
    "goal": lambda head, t, d: f"{head} GOAL {d.get('goal')} at {t.step_id}",
    "exited": lambda head, t, d: f"{head} ended at {t.step_id}: {d.get('outcome')}" + (f" ({d['reason']})" if "reason" in d else ""),
    "send": lambda head, t, d: f"{head} {t.step_id}: send {d.get('result')} -> {t.edge or 'end'}",
    "duplicate": lambda head, t, d: f"duplicate event {d.get('event_id')} ignored",
}
"""One line of text per kind of journey-log trace."""


def _trace_text(t: Trace) -> str:
    head = f"{t.journey_id} v{t.journey_version}" if t.journey_id else "-"
    text = _TRACE_TEXT.get(t.what)
    return text(head, t, t.detail) if text is not None else f"{head} {t.what} {t.step_id or ''} {t.detail}"


def format_text(result: SimulationResult, customers: Iterable[str] | None = None) -> str:
    """Human-readable output: per customer, each event, step, send (with outcome and why) and timer."""
    wanted = list(customers) if customers is not None else result.customers()
    lines: list[str] = []
    for cid in wanted:
        lines.append(f"customer {cid}")
        for r in result.for_customer(cid):
            if r.kind == "timer_cancelled":
                continue
            lines.append(f"  {iso_utc(r.at)}  {r.text}")
        lines.append("")
    return "\n".join(lines)


def format_json_lines(result: SimulationResult, customers: Iterable[str] | None = None) -> str:
    """One JSON object per line, per customer in order of appearance."""
    wanted = list(customers) if customers is not None else result.customers()
    out = []
    for cid in wanted:
        for r in result.for_customer(cid):
            out.append(json.dumps(r.to_json(), sort_keys=False, default=str))
    return "\n".join(out) + ("\n" if out else "")

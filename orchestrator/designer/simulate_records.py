"""The records of one processed message (:class:`~orchestrator.designer.simulate_result.SimRecord`) and their text lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.actions import ArmTimer, Disposition, Emit, Trace
from orchestrator.designer import effects
from orchestrator.designer.simulate_result import RecordKind, SimRecord, SimulationResult
from orchestrator.events import AudienceCheck, CustomerEvent, TimerFired
from orchestrator.processor import Result
from orchestrator.state import CustomerState
from orchestrator.timeutil import iso_utc


@dataclass(frozen=True)
class TimerOwner:
    """The journey instance a timer belongs to (timer records carry it)."""

    journey_id: str
    version: int
    instance_id: str
    step_id: str | None = None
    """The step it was armed at (None when the instance ended in the same message)."""


def _timer_line(now: datetime, cid: str, kind: RecordKind, text: str, owner: TimerOwner | None, data: dict[str, Any]) -> SimRecord:
    """A timer record, with the journey instance the timer belongs to when it is known."""
    if owner is None:
        return SimRecord(now, cid, kind, text, data=data)
    return SimRecord(now, cid, kind, text, owner.journey_id, owner.version, owner.instance_id, owner.step_id, data=data)


def _message_record(
    message: CustomerEvent | TimerFired | AudienceCheck,
    now: datetime,
    resolved: dict[str, str] | None,
    owners: Mapping[str, TimerOwner] | None = None,
    scored: dict[str, tuple[float, float]] | None = None,
) -> SimRecord:
    cid = message.customer_id
    if isinstance(message, TimerFired):
        owner = (owners or {}).get(message.timer_id)
        return _timer_line(now, cid, "timer", f"timer fired {message.timer_id}", owner, {"timer_id": message.timer_id})
    if isinstance(message, AudienceCheck):
        return SimRecord(
            now,
            cid,
            "audience",
            f"campaign {message.journey_id} run {message.run_id}: in the audience",
            message.journey_id,
            data={"run_id": message.run_id, "due_at": iso_utc(message.due_at)},
        )
    text = f"event {message.type} ({message.event_id})"
    data: dict[str, Any] = {"event_id": message.event_id, "type": message.type}
    if resolved:
        text += "".join(f" {k}={v}" for k, v in resolved.items())
        data["resolved"] = dict(resolved)
    if scored:
        text += "".join(f"; score {name} {before:g} -> {after:g}" for name, (before, after) in scored.items())
        data["scores"] = {name: {"before": before, "after": after} for name, (before, after) in scored.items()}
    return SimRecord(now, cid, "event", text, data=data)


def score_changes(before: CustomerState, after: CustomerState, at: datetime) -> dict[str, tuple[float, float]]:
    """Per score the event changed: (its value just before the event, decayed to ``at``; its value after), rounded to 2 places."""
    old, new = before.profile.scores, after.profile.scores
    if old is new:
        return {}
    out: dict[str, tuple[float, float]] = {}
    for name, value in new.items():
        prior = old.get(name)
        if prior is None or prior.value != value.value or prior.at != value.at:
            out[name] = (round(prior.value_at(at), 2) if prior is not None else 0.0, round(value.value, 2))
    return out


def _record(
    result: SimulationResult,
    message: CustomerEvent | TimerFired | AudienceCheck,
    now: datetime,
    res: Result,
    resolved: dict[str, str] | None = None,
    owners: Mapping[str, TimerOwner] | None = None,
    scored: dict[str, tuple[float, float]] | None = None,
) -> None:
    cid = message.customer_id
    owners = owners or {}
    add = result.records.append
    add(_message_record(message, now, resolved, owners, scored))
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
    pending = list(res.dispositions)
    for t in res.traces:
        result.traces.append(t)
        disp = _disposition_of(t, pending)
        if disp is not None:
            add(_send_record(now, t, disp))
        else:
            add(
                _emit_record(now, t, res.emits)
                or SimRecord(
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
    result.dispositions.extend(res.dispositions)
    for d in pending:  # decided outside a send step, e.g. cancelled by a goal
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
        owner = owners.get(op.timer_id)
        if isinstance(op, ArmTimer):
            text = f"timer armed {op.purpose} {op.timer_id} due {iso_utc(op.due_at)}"
            data = {"timer_id": op.timer_id, "purpose": op.purpose, "due_at": iso_utc(op.due_at)}
            add(_timer_line(now, cid, "timer_armed", text, owner, data))
        else:
            add(_timer_line(now, cid, "timer_cancelled", f"timer cancelled {op.timer_id}", owner, {"timer_id": op.timer_id}))


def _emit_record(now: datetime, t: Trace, emits: list[Emit]) -> SimRecord | None:
    """The ``emit`` record an ``emitted`` trace stands for (None: the trace is no emit): the record as it is published."""
    if t.what != "emitted":
        return None
    e = next((e for e in emits if e.record_id == t.detail.get("record_id")), None)
    if e is None:
        return None
    head = f"{t.journey_id} v{t.journey_version}"
    return SimRecord(
        now,
        t.customer_id,
        "emit",
        effects.emit_text(head, t.step_id, e.topic, e.record, e.record_id, t.edge),
        t.journey_id,
        t.journey_version,
        t.instance_id,
        t.step_id,
        t.edge,
        data={"record_id": e.record_id, "topic": e.topic, "record": e.record, "truncated": e.truncated},
    )


def _disposition_of(t: Trace, pending: list[Disposition]) -> Disposition | None:
    """The disposition a ``send`` or ``delayed`` trace stands for, taken out of ``pending`` (None: the trace is no send).

    A send id can have two dispositions in one message (deferred, then cancelled by a calamity send that went out):
    a ``delayed`` trace stands for the deferral, a ``send`` trace for the disposition with its ``result``.
    """
    if t.what not in ("send", "delayed") or "send_id" not in t.detail:
        return None
    result = "deferred" if t.what == "delayed" else t.detail.get("result")
    for i, d in enumerate(pending):
        if d.send.send_id == t.detail["send_id"] and d.result == result:
            return pending.pop(i)
    return None


def _waiting_text(head: str, t: Trace, d: dict[str, Any]) -> str:
    """``waiting at STEP for EVENTS until T``; a quiet_for wait says how long the customer must be quiet."""
    awaiting = ", ".join(d.get("awaiting") or [])
    if d.get("quiet_for"):
        what = f"until quiet for {d['quiet_for']}" + (f" or {awaiting}" if awaiting else "")
        return f"{head} waiting at {t.step_id} {what}" + (f", at most until {d['until']}" if d.get("until") else "")
    return f"{head} waiting at {t.step_id} for {awaiting or '(nothing: timeout only)'} until {d.get('until')}"


def _note(d: Disposition) -> str:
    """Why, in words: the journey's note on the decision (a deferral's states its retry once), else the basket's reason."""
    return d.note or (d.decision.reason if d.decision is not None else "")


def _send_data(d: Disposition, retry_at: str | None = None) -> dict[str, Any]:
    """The send record's fields; ``retry_at``: when the journey retries a deferred send (default: the basket's retry time)."""
    s, dec = d.send, d.decision
    fits_at = iso_utc(dec.retry_at) if dec is not None and dec.retry_at else None
    return {
        "result": d.result,
        "send_id": s.send_id,
        "channel": s.channel,
        "template": s.template,
        "comm_type": s.comm_type,
        "priority": s.priority,
        "brand": s.brand,
        "variables": s.variables,
        "reason": _note(d),
        "code": getattr(dec, "code", None),
        # not asked (a send that expired while its send window held it): no cost, no basket
        "cost": dec.cost if dec is not None else 0.0,
        "balance": dec.balance if dec is not None else 0.0,
        "capacity": dec.capacity if dec is not None else 0.0,
        "period": dec.period if dec is not None else "",
        "retry_at": retry_at or fits_at,
        "fits_at": fits_at,
    }


def _send_text(d: Disposition) -> str:
    s, dec = d.send, d.decision
    basket = f"[basket {dec.balance:g}/{dec.capacity:g}]" if dec is not None else "[basket not asked]"
    return f"send {s.channel} {s.template} ({s.comm_type}, p{s.priority}) -> {d.result}: {_note(d)} {basket} {s.send_id}"


def _send_record(now: datetime, t: Trace, d: Disposition) -> SimRecord:
    retry_at = str(t.detail["until"]) if d.result == "deferred" and t.what == "delayed" and t.detail.get("until") else None
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
        data={"what": t.what, **_send_data(d, retry_at)},
    )


_TRACE_TEXT: dict[str, Callable[[str, Trace, dict[str, Any]], str]] = {
    "entered": lambda head, t, d: f"{head} entered ({d.get('event_type')}) -> {t.edge}",
    "step": lambda head, t, d: f"{head} step {t.step_id} ({d.get('type')})",
    "branch": lambda head, t, d: f"{head} branch {t.step_id}: {d.get('case')} -> {t.edge or 'end'}",
    "split": lambda head, t, d: (
        f"{head} split {t.step_id}: variant {d.get('variant')}{' (sticky)' if d.get('sticky') else ''} -> {t.edge or 'end'}"
    ),
    "waiting": lambda head, t, d: _waiting_text(head, t, d),
    "matched": lambda head, t, d: f"{head} {t.step_id}: got {d.get('event_type')} -> {t.edge or 'end'}",
    "timeout": lambda head, t, d: f"{head} {t.step_id}: timed out -> {t.edge or 'end'}",
    "quiet": lambda head, t, d: f"{head} {t.step_id}: quiet since {d.get('quiet_since')} -> {t.edge or 'end'}",
    "delayed": lambda head, t, d: f"{head} {t.step_id}: {d.get('reason')} until {d.get('until')}",
    "resumed": lambda head, t, d: f"{head} {t.step_id}: resumed ({d.get('reason', 'delay over')}) -> {t.edge or 'end'}",
    "goal": lambda head, t, d: f"{head} GOAL {d.get('goal')} at {t.step_id}",
    "exited": lambda head, t, d: f"{head} ended at {t.step_id}: {d.get('outcome')}" + (f" ({d['reason']})" if "reason" in d else ""),
    "send": lambda head, t, d: f"{head} {t.step_id}: send {d.get('result')} -> {t.edge or 'end'}",
    "duplicate": lambda head, t, d: f"duplicate event {d.get('event_id')} ignored",
    "not_entered": lambda head, t, d: f"{head} not entered ({d.get('event_type')}): {d.get('reason')}",
    "profile_updated": lambda head, t, d: effects.profile_trace_text(head, t.step_id, d, t.edge),
    "emitted": lambda head, t, d: f"{head} {t.step_id}: emitted {d.get('record_id')} on out.{d.get('topic')} -> {t.edge or 'end'}",
}
"""One line of text per kind of journey-log trace."""


def _trace_text(t: Trace) -> str:
    head = f"{t.journey_id} v{t.journey_version}" if t.journey_id else "-"
    text = _TRACE_TEXT.get(t.what)
    return text(head, t, t.detail) if text is not None else f"{head} {t.what} {t.step_id or ''} {t.detail}"

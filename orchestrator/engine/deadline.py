"""Message expiry: the deadline of a send step with ``expires_after`` (pure helpers, no engine state changes).

A send step with ``expires_after`` fixes its deadline when it is reached (the step's entry
time + ``expires_after``; a resumed step keeps it). A send held past the deadline is not
sent: every timer that holds it (the send window's opening, a deferral's retry, a deferred
send waiting for the window) is armed at the deadline instead when it would come later,
and a timer armed at or after the deadline expires the send when it fires
(:mod:`orchestrator.engine.expiry`). Both are decided from the stored deadline and the
timer's own due time, never from the clock, so a replayed timer decides the same.

Sends without ``expires_after`` pay one field check (``step_def.expires_after is None``).
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.journey import model as m
from orchestrator.state import Instance


def held_until(inst: Instance, step_def: m.SendStep, due: datetime) -> datetime | None:
    """The deadline of ``inst``'s send when it comes at or before ``due`` (hold until it, then expire); else None."""
    if step_def.expires_after is None:
        return None
    deadline = inst.expires_at
    return deadline if deadline is not None and deadline <= due else None


def expires_at_timer(inst: Instance, step_def: m.SendStep, due_at: datetime) -> bool:
    """Whether a timer due at ``due_at`` that holds ``inst``'s send was armed at (or after) its deadline: it expires."""
    deadline = inst.expires_at
    return step_def.expires_after is not None and deadline is not None and due_at >= deadline

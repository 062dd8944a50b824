"""A synchronous driver for the pure engine, for tests, property tests and the benchmark.

:func:`drive` does what :func:`orchestrator.processor.process` does, without a basket
object: it runs the same loop (:func:`orchestrator.processor.gate_loop`), and every
:class:`~orchestrator.actions.Send` is decided by a plain function and fed straight back as
a :class:`~orchestrator.actions.GateOutcome`. Use it to test journey logic in microseconds;
use ``orchestrator.designer.simulate`` for the real in-memory basket.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from orchestrator.actions import Action, Send
from orchestrator.dedupe import DEFAULT_LIMITS, EngineLimits
from orchestrator.events import AudienceCheck, CustomerEvent, TimerFired
from orchestrator.journey.loader import JourneySet
from orchestrator.pressure.basket import Decision, Outcome
from orchestrator.processor import gate_loop
from orchestrator.state import CustomerState

Decide = Callable[[Send, datetime], Decision]


def decision(send: Send, outcome: Outcome = "approved", reason: str = "fits", retry_at: datetime | None = None) -> Decision:
    """A basket decision for ``send`` (cost/balance are placeholders)."""
    return Decision(
        send_id=send.send_id,
        customer_id=send.customer_id,
        outcome=outcome,
        reason=reason,
        cost=10.0,
        balance=10.0 if outcome == "approved" else 25.0,
        capacity=25.0,
        period="test",
        retry_at=retry_at,
    )


def approve_all(send: Send, now: datetime) -> Decision:
    """A basket that always says yes."""
    return decision(send)


def cap_all(send: Send, now: datetime) -> Decision:
    """A basket that is always full; capacity returns a day later."""
    return decision(send, "capped", "capacity exceeded", retry_at=now + timedelta(days=1))


def drive(
    state: CustomerState,
    message: CustomerEvent | TimerFired | AudienceCheck,
    journeys: JourneySet,
    now: datetime,
    decide: Decide = approve_all,
    limits: EngineLimits = DEFAULT_LIMITS,
) -> tuple[CustomerState, list[Action]]:
    """One message through the engine, every send gated by ``decide``; all actions in order (Sends included)."""
    loop = gate_loop(state, message, journeys, now, limits)
    answer: Decision | None = None
    while True:
        try:
            call = loop.send(answer)
        except StopIteration as stop:
            return stop.value
        answer = decide(call, now) if isinstance(call, Send) else None

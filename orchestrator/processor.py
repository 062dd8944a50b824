"""One message in, everything that must happen out: engine + basket, no Kafka.

This is the single place where the pure engine meets the basket. The Faust agent
(``orchestrator/runtime``) and ``orchestrator simulate`` both call :func:`process`
and differ only in what they do with the :class:`Result`: the agent persists the
state, publishes sends/decisions/traces and arms timers in its table; simulate
prints them and feeds timers to its virtual clock.

The flow for one message:

1. ``engine.step`` folds the message into the customer's state and returns actions.
2. Each :class:`Send` is gated at the basket; the decision goes straight back into
   ``engine.step`` as a :class:`GateOutcome`, which returns a :class:`Disposition`
   (approved / capped / deferred / fallback ...) and any follow-up actions.
3. :class:`ConsentChange` updates the basket's suppression lists.
4. Timer operations, traces and dispositions are collected in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.actions import (
    Action,
    ArmTimer,
    CancelTimer,
    ConsentChange,
    Disposition,
    GateOutcome,
    Send,
    Trace,
)
from orchestrator.engine import step
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.journey.loader import JourneySet
from orchestrator.pressure.basket import Basket
from orchestrator.state import CustomerState

MAX_ACTIONS_PER_MESSAGE = 1000


class RunawayJourney(RuntimeError):
    """A single message produced more actions than any sane journey would (a loop without a wait)."""


@dataclass
class Result:
    """Everything one message caused, in the order it happened."""

    state: CustomerState
    sends: list[Disposition] = field(default_factory=list)
    """The approved dispositions: publish each as a send request to the CCM platform."""
    dispositions: list[Disposition] = field(default_factory=list)
    """Every gated send's final word: publish on the decisions topic."""
    traces: list[Trace] = field(default_factory=list)
    timer_ops: list[ArmTimer | CancelTimer] = field(default_factory=list)
    """Arm/cancel in the order the engine asked; apply them in this order."""
    consent_changes: list[ConsentChange] = field(default_factory=list)


async def process(
    state: CustomerState,
    message: CustomerEvent | TimerFired,
    journeys: JourneySet,
    now: datetime,
    basket: Basket,
) -> Result:
    """Run one message through the engine, gating every send at ``basket``.

    Idempotent under redelivery as long as ``state`` is the state from before the
    first delivery: the engine's output is deterministic and the basket answers a
    known send id with its recorded decision.
    """
    state, actions = step(state, message, journeys, now)
    result = Result(state=state)
    queue: list[Action] = list(actions)
    handled = 0
    while queue:
        handled += 1
        if handled > MAX_ACTIONS_PER_MESSAGE:
            raise RunawayJourney(
                f"message {getattr(message, 'event_id', '?')} for customer {message.customer_id} "
                f"produced more than {MAX_ACTIONS_PER_MESSAGE} actions"
            )
        action = queue.pop(0)
        if isinstance(action, Send):
            decision = await basket.gate(action.gate_request(now))
            result.state, follow_up = step(
                result.state, GateOutcome(customer_id=action.customer_id, send=action, decision=decision), journeys, now
            )
            queue[0:0] = follow_up
        elif isinstance(action, Disposition):
            result.dispositions.append(action)
            if action.result == "approved":
                result.sends.append(action)
        elif isinstance(action, ConsentChange):
            await basket.set_consent(action.customer_id, action.channel, action.brand, action.subscribed, action.at)
            result.consent_changes.append(action)
        elif isinstance(action, (ArmTimer, CancelTimer)):
            result.timer_ops.append(action)
        elif isinstance(action, Trace):
            result.traces.append(action)
        else:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown action {action!r}")
    return result

"""Messages in, everything that must happen out: engine + basket, no Kafka.

This is the single place where the pure engine meets the basket. The worker
(``orchestrator/runtime``) calls :func:`process_batch` for each batch it consumes;
``orchestrator simulate`` calls :func:`process` for one message at a time; tests and
benchmarks call ``dev.drive.drive``. All of them run one loop, :func:`gate_loop`, and
differ only in who answers the basket calls and what they do with the outcome: the worker
persists the state and publishes sends, decisions and traces; simulate prints them and
feeds timers to its virtual clock.

The flow for one message (:func:`gate_loop`):

1. ``engine.step`` folds the message into the customer's state and returns actions.
2. Each :class:`Send` is gated at the basket; the decision goes straight back into
   ``engine.step`` as a :class:`GateOutcome`, which returns a :class:`Disposition`
   (approved / capped / deferred / fallback ...) and any follow-up actions, handled next.
3. Each :class:`ConsentChange` updates the basket's suppression lists, before any later send is gated.

:func:`run_message` sorts the actions into a :class:`Result` (timer operations, traces,
dispositions and emitted records, each in order). Both are generators: they *yield* each
basket call (a :class:`Send` to gate, or a :class:`ConsentChange`) and are resumed with
the answer. That is what lets :func:`process_batch` run the messages of many customers
side by side and gate all their sends in one pipelined round trip per round, while each
customer's own messages still run strictly one after the other, in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.actions import (
    Action,
    ArmTimer,
    CancelTimer,
    ConsentChange,
    Disposition,
    Emit,
    GateOutcome,
    Send,
    Trace,
)
from orchestrator.dedupe import DEFAULT_LIMITS, EngineLimits
from orchestrator.engine import step
from orchestrator.events import AudienceCheck, CustomerEvent, TimerFired
from orchestrator.fastmodel import fast_json
from orchestrator.journey.loader import JourneySet
from orchestrator.pressure.basket import Basket, Decision
from orchestrator.state import CustomerState

MAX_ACTIONS_PER_MESSAGE = 1000
YIELD_EVERY = 128
"""Customers run between two turns of the event loop in :func:`process_batch` (a batch of thousands is
CPU-bound for a while; the worker's timer loop must not wait for all of it)."""

Message = CustomerEvent | TimerFired | AudienceCheck
BasketCall = Send | ConsentChange
"""What :func:`gate_loop` asks of the basket: gate a send (answered with its Decision), or apply a consent change (answered with None)."""


class RunawayJourney(RuntimeError):
    """A single message produced more actions than any sane journey would (a loop without a wait)."""


class StateTooLarge(RuntimeError):
    """The customer's state after a message would exceed the configured maximum; the message is refused."""


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
    emits: list[Emit] = field(default_factory=list)
    """Records of emit steps: publish each on ``<prefix>.out.<topic>`` with the other outputs (never gated)."""


@dataclass
class Failure:
    """A message that could not be processed; the customer's state is as it was before it."""

    message: Message
    error: BaseException

    @property
    def reason(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


def gate_loop(
    state: CustomerState, message: Message, journeys: JourneySet, now: datetime, limits: EngineLimits = DEFAULT_LIMITS
) -> Generator[BasketCall, Decision | None, tuple[CustomerState, list[Action]]]:
    """One message through the engine, every send gated: the send-then-gate loop of every path.

    Yields each :class:`Send` (answer with the basket's Decision; it goes back into the engine as
    a :class:`GateOutcome` at once, and what that produces comes next) and each
    :class:`ConsentChange` (answer None, once the basket applied it). Returns the final state and
    every action in the order it happened, Sends included. Raises :class:`RunawayJourney` past
    ``MAX_ACTIONS_PER_MESSAGE`` actions.
    """
    state, actions = step(state, message, journeys, now, limits)
    done: list[Action] = []
    queue: list[Action] = list(actions)
    while queue:
        if len(done) >= MAX_ACTIONS_PER_MESSAGE:
            raise RunawayJourney(
                f"message {getattr(message, 'event_id', '?')} for customer {message.customer_id} "
                f"produced more than {MAX_ACTIONS_PER_MESSAGE} actions"
            )
        action = queue.pop(0)
        done.append(action)
        if isinstance(action, Send):
            decision = yield action
            assert decision is not None, "a send must be answered with a Decision"
            outcome = GateOutcome(customer_id=action.customer_id, send=action, decision=decision)
            state, follow_up = step(state, outcome, journeys, now, limits)
            queue[0:0] = follow_up
        elif isinstance(action, ConsentChange):
            yield action
    return state, done


def run_message(
    state: CustomerState, message: Message, journeys: JourneySet, now: datetime, limits: EngineLimits = DEFAULT_LIMITS
) -> Generator[BasketCall, Decision | None, Result]:
    """Run one message through the engine (:func:`gate_loop`); yields each basket call and expects its answer back.

    Idempotent under redelivery as long as ``state`` is the state from before the
    first delivery: the engine's output is deterministic and the basket answers a
    known send id with its recorded decision.
    """
    state, actions = yield from gate_loop(state, message, journeys, now, limits)
    result = Result(state=state)
    for action in actions:
        if isinstance(action, Disposition):
            result.dispositions.append(action)
            if action.result == "approved":
                result.sends.append(action)
        elif isinstance(action, (ArmTimer, CancelTimer)):
            result.timer_ops.append(action)
        elif isinstance(action, Trace):
            result.traces.append(action)
        elif isinstance(action, Emit):
            result.emits.append(action)
        elif isinstance(action, ConsentChange):
            result.consent_changes.append(action)
        elif not isinstance(action, Send):  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown action {action!r}")
    return result


async def _answer(basket: Basket, call: BasketCall, now: datetime) -> Decision | None:
    if isinstance(call, Send):
        return await basket.gate(call.gate_request(now))
    await basket.set_consent(call.customer_id, call.channel, call.brand, call.subscribed, call.at)
    return None


async def process(
    state: CustomerState,
    message: Message,
    journeys: JourneySet,
    now: datetime,
    basket: Basket,
    limits: EngineLimits = DEFAULT_LIMITS,
) -> Result:
    """Run one message through the engine, gating every send at ``basket`` (one call at a time).

    ``limits`` (the dedupe window and id cap) goes to every ``engine.step`` call.
    """
    gen = run_message(state, message, journeys, now, limits)
    answer: Decision | None = None
    while True:
        try:
            call = gen.send(answer)
        except StopIteration as stop:
            return stop.value
        answer = await _answer(basket, call, now)


# ---------------------------------------------------------------- batches


@dataclass
class CustomerWork:
    """One customer's messages of a batch, in arrival order, and the state before them."""

    state: CustomerState
    messages: list[Message]


@dataclass
class CustomerOutcome:
    """What a batch did to one customer."""

    state: CustomerState
    """The state after every message that succeeded."""
    encoded: bytes | None
    """``state`` as JSON, or None when no message changed the state (nothing to write)."""
    results: list[Result | Failure]
    """One per message, in order."""
    suppressions: list[str] | None = None
    """The customer's suppressions in the basket after this batch's last consent change (None: no change): published on
    ``<prefix>.consent`` so a basket rebuild gets them back (``runtime/basket_guard.py``)."""


def _run_customer(
    work: CustomerWork, journeys: JourneySet, now: datetime, max_state_bytes: int, limits: EngineLimits = DEFAULT_LIMITS
) -> Generator[BasketCall, Decision | None, CustomerOutcome]:
    """One customer's messages one after the other; a failing message leaves the state as it was."""
    state = work.state
    encoded: bytes | None = None
    results: list[Result | Failure] = []
    for message in work.messages:
        try:
            result = yield from run_message(state, message, journeys, now, limits)
            if result.state is not state:
                raw = fast_json(result.state)
                if len(raw) > max_state_bytes:
                    raise StateTooLarge(
                        f"the state of customer {message.customer_id} would be {len(raw)} bytes after this message, "
                        f"over the limit of {max_state_bytes} (ORCH_MAX_STATE_BYTES); the message is refused and "
                        "the state kept as it was"
                    )
                encoded = raw
        except Exception as exc:  # noqa: BLE001 - any error of one message is that message's failure
            results.append(Failure(message, exc))
            continue
        state = result.state
        results.append(result)
    return CustomerOutcome(state=state, encoded=encoded, results=results)


async def _apply_consents(
    basket: Basket, calls: dict[int, BasketCall], suppressions: dict[int, list[str]]
) -> dict[int, BaseException | None]:
    """Apply a round's consent changes one by one; each customer's error (None: applied) to throw back into its run.

    ``suppressions`` gets each changed customer's suppressions after the change.
    """
    errors: dict[int, BaseException | None] = {}
    for i, call in calls.items():
        if isinstance(call, ConsentChange):
            try:
                suppressions[i] = await basket.set_consent(call.customer_id, call.channel, call.brand, call.subscribed, call.at)
                errors[i] = None
            except Exception as exc:  # noqa: BLE001 - that customer's message fails; the caller classifies it
                errors[i] = exc
    return errors


async def process_batch(
    work: Sequence[CustomerWork],
    journeys: JourneySet,
    now: datetime,
    basket: Basket,
    *,
    max_state_bytes: int = 512 * 1024,
    limits: EngineLimits = DEFAULT_LIMITS,
    gate_seconds: list[float] | None = None,
) -> list[CustomerOutcome]:
    """Run a batch: each customer's messages in order, all customers side by side.

    Rounds: every customer runs until it needs the basket (or is done); the gate
    requests of all customers are then decided in one ``gate_many`` round trip,
    consent changes applied, and every customer resumed with its answer. A basket
    error for one call (an error reply, a failed consent change) is thrown into that
    customer's run and becomes a :class:`Failure` of that message; a connection error
    of a whole round raises out of here. The caller decides what is transient and
    retries the whole batch: the engine is deterministic and the basket idempotent by
    send id, so a rerun gives the same answers. ``gate_seconds``, when given, gets the
    duration of each basket round trip.
    """
    runs = [_run_customer(w, journeys, now, max_state_bytes, limits) for w in work]
    outcomes: list[CustomerOutcome | None] = [None] * len(runs)
    pending: dict[int, BasketCall] = {}
    suppressions: dict[int, list[str]] = {}

    def resume(i: int, answer: Decision | None = None, error: BaseException | None = None) -> None:
        try:
            call = runs[i].throw(error) if error is not None else runs[i].send(answer)
        except StopIteration as stop:
            outcomes[i] = stop.value
            return
        pending[i] = call

    for i in range(len(runs)):
        resume(i)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # let the worker's other loops (due timers) run between slices of a large batch
    while pending:
        calls, pending = pending, {}
        consent_errors = await _apply_consents(basket, calls, suppressions)
        gates = [(i, c.gate_request(now)) for i, c in calls.items() if isinstance(c, Send)]
        if gates:
            started = time.perf_counter()
            answers = await basket.gate_many([g for _, g in gates], return_exceptions=True)
            if gate_seconds is not None:
                gate_seconds.append(time.perf_counter() - started)
        else:
            answers = []
        for i, error in consent_errors.items():
            resume(i, error=error)
        for n, ((i, _), answer) in enumerate(zip(gates, answers, strict=True)):
            if isinstance(answer, BaseException):
                resume(i, error=answer)
            else:
                resume(i, answer)
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
    return _finished(outcomes, suppressions)


def _finished(outcomes: list[CustomerOutcome | None], suppressions: dict[int, list[str]]) -> list[CustomerOutcome]:
    """The customers' outcomes, each with its suppressions after the batch's last consent change."""
    for i, members in suppressions.items():
        outcome = outcomes[i]
        if outcome is not None:
            outcome.suppressions = members
    return [o for o in outcomes if o is not None]

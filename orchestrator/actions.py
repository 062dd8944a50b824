"""What the pure engine asks the shell to do, and what the shell tells it back.

``engine.step(state, message, journeys, now) -> (state, actions)`` returns a list of
the :data:`Action` models below. The processor (``orchestrator/processor.py``)
carries them out (an :class:`Emit` is published as it is): each :class:`Send` is gated at the basket and the decision goes
straight back into the engine as a :class:`GateOutcome`, so the journey (not the
shell) decides what a capped send means (skip, fall back, defer).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.events import Channel
from orchestrator.pressure.basket import CommType, Decision, GateRequest

OnCapped = Literal["skip", "fallback", "defer"]
DispositionResult = Literal["approved", "capped", "suppressed", "deferred", "fallback", "cancelled", "expired"]
"""What the journey made of a basket decision (see :attr:`Disposition.result`)."""
TimerPurpose = Literal["timeout", "delay", "window", "deferred_send", "quiet"]
"""What a timer is for (``ArmTimer.purpose``, ``state.TimerRef.purpose``; the engine has one handler per purpose):
a wait's timeout, a delay step, a send window's or window step's opening, a deferred send's retry, a quiet_for wait's check."""
TIMER_PURPOSES: tuple[TimerPurpose, ...] = get_args(TimerPurpose)


class Send(BaseModel):
    """The journey wants to contact the customer. Gated before it goes anywhere."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["send"] = "send"
    send_id: str = Field(
        description="Deterministic: customer, journey, version, instance, step (+ channel on fallback, + attempt on retry)."
    )
    customer_id: str
    journey_id: str
    journey_version: int
    instance_id: str
    step_id: str
    channel: Channel
    template: str
    comm_type: CommType
    priority: int = Field(default=5, ge=1, le=10)
    brand: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    timezone: str = "UTC"
    on_capped: OnCapped = "skip"
    fallback_channels: list[Channel] = Field(
        default_factory=list, description="Remaining channels to try on capped/suppressed when on_capped='fallback'."
    )
    run_id: str | None = Field(
        default=None, description="The campaign run that started the instance (None: not a campaign's); not sent to the basket or the CCM."
    )

    @model_validator(mode="before")
    @classmethod
    def _run_of_stored_send(cls, data: Any) -> Any:
        """A send stored before ``run_id`` existed (a deferred send in a state): its run, from its instance id."""
        if isinstance(data, dict) and "run_id" not in data and isinstance(data.get("instance_id"), str):
            from orchestrator.engine.ids import run_of_instance  # the engine package imports this module

            return {**data, "run_id": run_of_instance(str(data.get("journey_id")), data["instance_id"])}
        return data

    def gate_request(self, now: datetime) -> GateRequest:
        return GateRequest(
            send_id=self.send_id,
            customer_id=self.customer_id,
            comm_type=self.comm_type,
            channel=self.channel,
            brand=self.brand,
            priority=self.priority,
            timezone=self.timezone,
            now=now,
        )


class ArmTimer(BaseModel):
    """Arm a durable timer; when due the shell delivers a TimerFired with this id."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["arm_timer"] = "arm_timer"
    customer_id: str
    timer_id: str = Field(description="Deterministic and unique per purpose, e.g. '<instance>:<step>:timeout'.")
    due_at: datetime
    purpose: TimerPurpose = Field(description="What the timer is for (see TimerPurpose).")


class CancelTimer(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["cancel_timer"] = "cancel_timer"
    customer_id: str
    timer_id: str


class ConsentChange(BaseModel):
    """A consent event changes the basket's suppression lists."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["consent"] = "consent"
    customer_id: str
    channel: Channel | Literal["all"]
    brand: str | None = None
    subscribed: bool
    at: datetime


class Disposition(BaseModel):
    """The final word on one gated send, published on the decisions topic."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["disposition"] = "disposition"
    send: Send
    decision: Decision | None = Field(
        description="The basket's decision; None when the basket was not asked (a send that expired while its send window held it)."
    )
    result: DispositionResult = Field(
        description=(
            "approved: goes out now; capped/suppressed: not sent (skip); deferred: retried at decision.retry_at; "
            "fallback: another channel is tried; cancelled: a deferred send dropped (calamity, goal, exit); "
            "expired: held (send window, deferral, calamity lock) past the step's expires_after, not sent."
        )
    )
    note: str = ""


class Trace(BaseModel):
    """One observable thing that happened in a journey instance (simulate output, journey log topic, metrics)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["trace"] = "trace"
    customer_id: str
    journey_id: str
    journey_version: int
    instance_id: str
    step_id: str | None = None
    what: Literal[
        "entered",
        "not_entered",
        "step",
        "branch",
        "split",
        "waiting",
        "matched",
        "timeout",
        "quiet",
        "delayed",
        "resumed",
        "send",
        "exited",
        "goal",
        "duplicate",
        "ignored",
        "profile_updated",
        "emitted",
    ]
    edge: str | None = Field(default=None, description="The step taken next (render counts customers per edge).")
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime
    run_id: str | None = Field(
        default=None,
        description=(
            "The campaign run an audience check was for, on its entered / not_entered / duplicate trace (None otherwise); "
            "not on the journey-log record."
        ),
    )


class Emit(BaseModel):
    """An ``emit`` step's record for ``<prefix>.out.<topic>`` (another team's system). Not a message to the customer:
    never gated, published with the batch's other outputs before its offsets are committed."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["emit"] = "emit"
    record_id: str = Field(description="Deterministic (customer, journey, version, instance, step visit): a replay emits the same id.")
    topic: str = Field(description="The outbound topic's name, e.g. webcare for <prefix>.out.webcare.")
    customer_id: str
    journey_id: str
    journey_version: int
    instance_id: str
    step_id: str
    event_id: str | None = Field(default=None, description="The event that last moved the instance.")
    record: dict[str, Any] = Field(default_factory=dict)
    truncated: list[str] = Field(default_factory=list, description="Fields whose value read from an event was cut to the bound.")
    at: datetime


Action = Send | ArmTimer | CancelTimer | ConsentChange | Disposition | Trace | Emit


class GateOutcome(BaseModel):
    """Fed back into ``engine.step`` right after a Send was gated (same writer, same instant)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["gate"] = "gate"
    customer_id: str
    send: Send
    decision: Decision

    @property
    def event_id(self) -> str:
        return f"gate:{self.send.send_id}"

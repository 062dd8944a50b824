"""The models of one ``simulate --json`` line (:data:`SimulateRecord`), committed as ``schemas/simulate-record.json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from orchestrator.actions import Disposition, TimerPurpose, Trace
from orchestrator.events import Channel
from orchestrator.pressure.basket import CommType

if TYPE_CHECKING:
    SendResult = str
    TraceWhat = str
else:  # the models' own literals, so that the schema follows them (and the schema drift test says when to regenerate)
    SendResult = Disposition.model_fields["result"].annotation
    TraceWhat = Trace.model_fields["what"].annotation


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime = Field(description="Virtual time it happened, ISO 8601 UTC.")
    text: str = Field(description="The same line in the text output.")


class _CustomerLine(_Line):
    customer: str = Field(description="The customer id.")
    journey: str | None = Field(default=None, description="Journey id (traces, sends, campaign checks and timers).")
    version: int | None = Field(default=None, description="Journey version the customer's instance runs on.")
    instance_id: str | None = Field(default=None, description="The journey instance.")
    step_id: str | None = Field(default=None, description="The step it happened at.")
    edge: str | None = Field(default=None, description="The step taken next (render counts customers per edge).")


class EventRecord(_CustomerLine):
    """An event line of the event file was processed."""

    kind: Literal["event"]
    event_id: str
    type: str = Field(description="Qualified event type, e.g. web.cart_abandoned.")
    resolved: dict[str, str] | None = Field(
        default=None, description='Placeholders ({"send_of": STEP}) of this event and the values they resolved to: field -> value.'
    )
    scores: dict[str, dict[str, float]] | None = Field(
        default=None,
        description="Scores (journeys/scores.yaml) this event changed: name -> {before (decayed to the event's time), after}.",
    )


class TimerRecord(_CustomerLine):
    """A timer fired (journey, version, instance_id and step_id: the instance that armed it)."""

    kind: Literal["timer"]
    timer_id: str


class AudienceRecord(_CustomerLine):
    """A campaign run reached the customer and they were in its audience: the engine decides on their entry (traces follow)."""

    kind: Literal["audience"]
    run_id: str = Field(description="The run, e.g. 2026-12-01T10:00Z, or 2026-12-01T10:00L for a local run.")
    due_at: AwareDatetime = Field(description="When the run reached this customer (their local time for a local run).")


class ConsentRecord(_CustomerLine):
    """A consent event changed the basket's suppression lists."""

    kind: Literal["consent"]
    channel: str = Field(description="A channel or 'all'.")
    brand: str | None
    subscribed: bool


class TraceRecord(_CustomerLine):
    """Something happened in a journey instance; the trace's detail fields (outcome, reason, goal, variant ...) are added as they are."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["trace"]
    what: TraceWhat


class SendRecord(_CustomerLine):
    """A gated send and the basket's decision on it."""

    kind: Literal["send"]
    what: Literal["send", "delayed", "disposition"] = Field(
        description="send: decided at a send step; delayed: deferred; disposition: decided outside a step (e.g. cancelled by a goal)."
    )
    result: SendResult
    send_id: str
    channel: Channel
    template: str
    comm_type: CommType
    priority: int = Field(ge=1, le=10)
    brand: str | None
    variables: dict[str, Any]
    reason: str = Field(description="Why, in words.")
    code: str | None = Field(
        description=(
            "Why, as a stable code from the basket: fits, exempt, calamity, capacity, reserve, arbitration, locked, "
            "unsubscribed; null when the basket gives none."
        )
    )
    cost: float
    balance: float = Field(description="Points spent in the period after this decision.")
    capacity: float
    period: str
    retry_at: AwareDatetime | None = Field(
        description=(
            "deferred: when the journey retries the send (the send window's opening when the basket's time falls outside the "
            "window); capped/locked: the earliest time the send would fit."
        )
    )
    fits_at: AwareDatetime | None = Field(
        default=None, description="For capped/locked/deferred: the basket's earliest time the send would fit (null: never, or approved)."
    )


class EmitLine(_CustomerLine):
    """An emit step's record, as the worker publishes it on <prefix>.out.<topic> (not a message to the customer: never gated)."""

    kind: Literal["emit"]
    record_id: str = Field(description="Deterministic: customer, journey, version, entry event, step visit (the same on a replay).")
    topic: str = Field(description="The outbound topic's name: the record goes to <prefix>.out.<topic>.")
    record: dict[str, Any] = Field(description="The step's fields: literals and the values read from the event or profile.")
    truncated: list[str] = Field(description="Fields whose value was cut to 512 characters.")


class TimerArmedRecord(_CustomerLine):
    """A timer was armed (journey, version, instance_id and step_id: the instance that armed it)."""

    kind: Literal["timer_armed"]
    timer_id: str
    purpose: TimerPurpose = Field(description="What the timer is for (one of actions.TimerPurpose).")
    due_at: AwareDatetime


class TimerCancelledRecord(_CustomerLine):
    """A timer was cancelled: it will not fire (journey, version, instance_id and step_id: the instance that armed it)."""

    kind: Literal["timer_cancelled"]
    timer_id: str


class _VersionLine(_Line):
    journey: str
    version: int
    live_version: int | None = Field(description="The version new entrants take from now on; null when none is live.")
    where: str = Field(description="file:line:col of the line in the event file.")


class DeployRecord(_VersionLine):
    """A deploy line of the event file loaded a journey version (no customer: it comes before the customers' records)."""

    kind: Literal["deploy"]
    file: str = Field(description="The deployed journey file.")


class RetireRecord(_VersionLine):
    """A retire line of the event file retired a journey version (no customer: it comes before the customers' records)."""

    kind: Literal["retire"]


class CampaignRunRecord(_Line):
    """One run of a scheduled audience, summed up (no customer: it comes after the version changes, before the customers)."""

    kind: Literal["campaign_run"]
    journey: str
    version: int = Field(description="The live version when the run began.")
    run_id: str = Field(description="The run, e.g. 2026-12-01T10:00Z, or 2026-12-01T10:00L for a local run.")
    local: bool = Field(description="Each customer at that time in their time zone.")
    evaluated: int = Field(description="Customers seen by their due time, whose audience conditions were evaluated.")
    in_audience: int = Field(description="Of those, the customers the audience's conditions held for.")
    entered: int = Field(description="Of those, the customers the journey's re-entry rule let in.")
    not_entered: int = Field(description="In the audience, but kept out by the re-entry rule.")
    throttle_per_second: float = Field(description="The audience's throttle (not simulated: customers enter at their due time).")
    throttle_seconds: float = Field(
        description="How long the run's largest burst (customers in the audience due at the same time) takes at the throttle."
    )


SimulateRecord = Annotated[
    EventRecord
    | TimerRecord
    | AudienceRecord
    | ConsentRecord
    | TraceRecord
    | SendRecord
    | TimerArmedRecord
    | TimerCancelledRecord
    | EmitLine
    | DeployRecord
    | RetireRecord
    | CampaignRunRecord,
    Field(discriminator="kind"),
]
"""One line of ``simulate --json``."""

RECORD_ADAPTER: TypeAdapter[Any] = TypeAdapter(SimulateRecord)


def record_json_schema() -> dict[str, Any]:
    """The JSON Schema of one ``simulate --json`` line (committed as ``schemas/simulate-record.json``)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "simulate-record.json",
        "title": "simulate --json record",
        "description": (
            "One line of `orchestrator simulate --json`: the deploy/retire lines first, then the campaign runs, then per "
            "customer in order of appearance every event, campaign check, trace, send, consent change and timer, told apart by `kind`."
        ),
        **RECORD_ADAPTER.json_schema(),
    }

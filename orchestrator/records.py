"""Outbound records: what we publish for other teams (JSON, keyed by customer id).

- ``<prefix>.sends``: :class:`SendRequest` — an approved message for the CCM platform.
  The CCM platform must echo ``send_id`` on its delivered/opened/clicked events.
- ``<prefix>.decisions``: :class:`DecisionRecord` — every basket decision and what the
  journey made of it (approved, capped, suppressed, deferred, fallback, cancelled, expired).
- ``<prefix>.consent``: :class:`ConsentRecord` — a customer's suppressions after a consent
  change (compacted: the latest per customer), the durable record a basket rebuild reads.
- ``<prefix>.journey-log``: :class:`JourneyLogRecord` — each observable journey step, and
  the progress of campaign runs (``what: campaign_progress``, detail :class:`CampaignProgress`).
- ``<prefix>.out.<topic>``: :class:`EmitRecord` — a record of a journey's ``emit`` step for
  another team's system (a webcare desk ...); deduplicate on ``record_id``.
- ``<prefix>.dead-letter``: the original bytes of an invalid inbound message, with the
  reason in headers (``dlq.reason``, ``dlq.source.topic`` ...), Kafka Connect style.

Their JSON Schemas are in ``schemas/outbound/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.actions import Disposition, DispositionResult, Emit, Send, Trace
from orchestrator.fastmodel import fast_new
from orchestrator.pressure.basket import DecisionCode


class SendRequest(BaseModel):
    """An approved outbound message. ``send_id`` is stable across redeliveries: deduplicate on it."""

    model_config = ConfigDict(frozen=True)

    send_id: str
    customer_id: str
    channel: str
    template: str
    comm_type: str
    priority: int
    brand: str | None
    variables: dict[str, Any]
    journey_id: str
    journey_version: int
    step_id: str
    approved_at: datetime
    basket_balance: float
    basket_capacity: float

    @classmethod
    def of(cls, disposition: Disposition, at: datetime) -> SendRequest:
        """From a validated disposition (built without validating again: the worker writes one per send)."""
        send: Send = disposition.send
        return fast_new(
            cls,
            send_id=send.send_id,
            customer_id=send.customer_id,
            channel=send.channel,
            template=send.template,
            comm_type=send.comm_type,
            priority=send.priority,
            brand=send.brand,
            variables=send.variables,
            journey_id=send.journey_id,
            journey_version=send.journey_version,
            step_id=send.step_id,
            approved_at=at,
            basket_balance=float(disposition.decision.balance) if disposition.decision is not None else 0.0,
            basket_capacity=float(disposition.decision.capacity) if disposition.decision is not None else 0.0,
        )


class DecisionRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    send_id: str
    customer_id: str
    journey_id: str
    journey_version: int
    step_id: str
    channel: str
    comm_type: str
    priority: int
    template: str = Field(default="", description="The template of the send decided on (a fallback channel's own, if it has one).")
    outcome: str = Field(
        description=(
            "The basket's answer: approved | capped | suppressed | locked; not_asked: a send that expired while its send window held it."
        )
    )
    code: DecisionCode | None = Field(
        description=(
            "Why the basket answered so, machine-readable. approved: fits | exempt | calamity; suppressed: unsubscribed; "
            "locked: locked; capped: arbitration | reserve | capacity. Specified in orchestrator/pressure/policy.py. "
            "null when the basket was not asked (outcome not_asked; cost, balance and capacity are then 0)."
        )
    )
    result: DispositionResult = Field(
        description=(
            "What the journey made of it: approved | capped | suppressed | deferred | fallback | cancelled | expired "
            "(held by a send window, a deferral or a calamity lock past the step's expires_after: not sent)."
        )
    )
    reason: str
    cost: float
    balance: float
    capacity: float
    period: str
    retry_at: datetime | None
    decided_at: datetime
    brand: str | None = Field(default=None, description="The send's brand (none: every brand); kept to rebuild a basket.")
    timezone: str | None = Field(
        default=None, description="The customer's time zone the basket period followed; kept to rebuild a basket (pressure/restore.py)."
    )

    @classmethod
    def of(cls, d: Disposition, at: datetime) -> DecisionRecord:
        """From a validated disposition (built without validating again: the worker writes one per decision)."""
        dec = d.decision
        send = d.send
        return fast_new(  # in the declared order: the JSON keys follow it
            cls,
            send_id=send.send_id,
            customer_id=send.customer_id,
            journey_id=send.journey_id,
            journey_version=send.journey_version,
            step_id=send.step_id,
            channel=send.channel,
            comm_type=send.comm_type,
            priority=send.priority,
            template=send.template,
            outcome=dec.outcome if dec is not None else "not_asked",
            code=dec.code if dec is not None else None,
            result=d.result,
            reason=d.note or (dec.reason if dec is not None else ""),
            cost=float(dec.cost) if dec is not None else 0.0,
            balance=float(dec.balance) if dec is not None else 0.0,
            capacity=float(dec.capacity) if dec is not None else 0.0,
            period=dec.period if dec is not None else "",
            retry_at=dec.retry_at if dec is not None else None,
            decided_at=at,
            brand=send.brand,
            timezone=send.timezone,
        )


class JourneyLogRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: str
    journey_id: str
    journey_version: int
    instance_id: str
    step_id: str | None
    what: str
    edge: str | None
    detail: dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, t: Trace) -> JourneyLogRecord:
        """From a validated trace (built without validating again: the worker writes one per trace)."""
        return fast_new(
            cls,
            customer_id=t.customer_id,
            journey_id=t.journey_id,
            journey_version=t.journey_version,
            instance_id=t.instance_id,
            step_id=t.step_id,
            what=t.what,
            edge=t.edge,
            detail=t.detail,
            at=t.at,
        )


CAMPAIGN_PROGRESS = "campaign_progress"
"""The ``what`` of a journey-log record that reports a campaign run's progress on one partition."""


class CampaignProgress(BaseModel):
    """How far one worker's pass of a campaign run over one partition got: the ``detail`` of a
    ``campaign_progress`` journey-log record (``orchestrator.runtime.campaigns``).

    The record is a plain :class:`JourneyLogRecord` (same topic, same schema) with
    ``what: campaign_progress``, ``journey_id``/``journey_version`` of the campaign,
    ``customer_id: ""``, ``instance_id: ""``, ``step_id``/``edge`` null, ``at`` the engine time,
    keyed by the journey id (not a customer: ``orchestrator explain`` never shows it, and
    ``orchestrator report`` skips records without an instance). One is published every
    ``ORCH_CAMPAIGN_PROGRESS_EVERY`` customers settled and one when the pass completes. After a
    rebalance the partition's new owner passes it again and publishes its own records: the
    newest record per (journey, run, partition) is the current one.
    """

    model_config = ConfigDict(frozen=True)

    run: str = Field(description="The run id, e.g. 2026-12-01T10:00Z.")
    partition: int = Field(description="The customer-events partition passed.")
    customers: int = Field(description="Customers the partition held when the pass started.")
    evaluated: int = Field(description="Customers whose audience conditions were evaluated (due, run open, not reached before).")
    audience: int = Field(description="Of them, those who qualified: an AudienceCheck was published for each (the engine decides).")
    remembered: int = Field(description="Customers whose state already remembers the run (reached before): skipped.")
    closed: int = Field(description="Customers for whom the run had closed (more than its grace after their due time): skipped.")
    pending: int = Field(description="Customers the run has not reached yet (their local time is still before it).")
    complete: bool = Field(description="Every customer of the pass is settled.")

    def record(self, journey_id: str, journey_version: int, at: datetime) -> JourneyLogRecord:
        return JourneyLogRecord(
            customer_id="",
            journey_id=journey_id,
            journey_version=journey_version,
            instance_id="",
            step_id=None,
            what=CAMPAIGN_PROGRESS,
            edge=None,
            detail=self.model_dump(),
            at=at,
        )


class EmitRecord(BaseModel):
    """A record of an ``emit`` step on ``<prefix>.out.<topic>``, for another team's system (nobody is contacted).

    ``record_id`` is stable across replays and redeliveries: deduplicate on it.
    """

    model_config = ConfigDict(frozen=True)

    record_id: str = Field(description="customer:journey:vN:entry-event:step[#visit]; the same when a batch is replayed.")
    topic: str = Field(description="The outbound topic's name (the step's topic:), e.g. webcare.")
    customer_id: str
    journey_id: str
    journey_version: int
    instance_id: str
    step_id: str
    event_id: str | None = Field(description="The event that last moved the journey instance (the trigger or an awaited event).")
    record: dict[str, str | int | float | bool | None] = Field(
        description="The step's fields: literals and values read from the event or profile (at most 32; strings at most 512 characters)."
    )
    truncated: list[str] = Field(description="Fields whose value read from an event was longer than 512 characters and was cut.")
    emitted_at: datetime

    @classmethod
    def of(cls, e: Emit) -> EmitRecord:
        return cls(
            record_id=e.record_id,
            topic=e.topic,
            customer_id=e.customer_id,
            journey_id=e.journey_id,
            journey_version=e.journey_version,
            instance_id=e.instance_id,
            step_id=e.step_id,
            event_id=e.event_id,
            record=e.record,
            truncated=e.truncated,
            emitted_at=e.at,
        )


class ConsentRecord(BaseModel):
    """A customer's suppressions in the basket after a consent change (``<prefix>.consent``, compacted, keyed by customer).

    Redis holds the suppression set; this topic is its durable copy: after Redis lost its data
    the worker puts the latest set of each customer back before any send is gated again.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: str
    suppressions: list[str] = Field(description="e.g. ['sms', 'email@brand-a', 'all@brand-b', 'all']; [] after a full resubscribe.")
    changed_at: datetime


OUTBOUND_MODELS: dict[str, type[BaseModel]] = {
    "send_request": SendRequest,
    "decision": DecisionRecord,
    "consent": ConsentRecord,
    "journey_log": JourneyLogRecord,
    "emit": EmitRecord,
}


M = TypeVar("M", bound=BaseModel)


def read_records(model: type[M], items: Iterable[M | Mapping[str, Any] | bytes]) -> tuple[list[M], int]:
    """Validate records of one outbound topic (models, dicts, or JSON bytes as read from Kafka).

    Returns the valid ones and how many were not records of ``model`` (skipped: a reader of a
    topic goes on past a record it does not understand, and may say how many it skipped).
    """
    out: list[M] = []
    bad = 0
    for item in items:
        try:
            if isinstance(item, model):
                out.append(item)
            elif isinstance(item, bytes | bytearray):
                out.append(model.model_validate_json(item))
            else:
                out.append(model.model_validate(item))
        except ValidationError:
            bad += 1
    return out, bad

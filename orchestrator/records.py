"""Outbound records: what we publish for other teams (JSON, keyed by customer id).

- ``<prefix>.sends``: :class:`SendRequest` — an approved message for the CCM platform.
  The CCM platform must echo ``send_id`` on its delivered/opened/clicked events.
- ``<prefix>.decisions``: :class:`DecisionRecord` — every basket decision and what the
  journey made of it (approved, capped, suppressed, deferred, fallback, cancelled).
- ``<prefix>.journey-log``: :class:`JourneyLogRecord` — each observable journey step.
- ``<prefix>.dead-letter``: the original bytes of an invalid inbound message, with the
  reason in headers (``dlq.reason``, ``dlq.source.topic`` ...), Kafka Connect style.

Their JSON Schemas are in ``schemas/outbound/``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.actions import Disposition, Send, Trace
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
        send: Send = disposition.send
        return cls(
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
            basket_balance=disposition.decision.balance,
            basket_capacity=disposition.decision.capacity,
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
    outcome: str
    """The basket's answer: approved | capped | suppressed | locked."""
    code: DecisionCode = Field(
        description=(
            "Why the basket answered so, machine-readable. approved: fits | exempt | calamity; suppressed: unsubscribed; "
            "locked: locked; capped: arbitration | reserve | capacity. Specified in orchestrator/pressure/policy.py."
        )
    )
    result: str
    """What the journey made of it: approved | capped | suppressed | deferred | fallback | cancelled."""
    reason: str
    cost: float
    balance: float
    capacity: float
    period: str
    retry_at: datetime | None
    decided_at: datetime

    @classmethod
    def of(cls, d: Disposition, at: datetime) -> DecisionRecord:
        return cls(
            send_id=d.send.send_id,
            customer_id=d.send.customer_id,
            journey_id=d.send.journey_id,
            journey_version=d.send.journey_version,
            step_id=d.send.step_id,
            channel=d.send.channel,
            comm_type=d.send.comm_type,
            priority=d.send.priority,
            outcome=d.decision.outcome,
            code=d.decision.code,
            result=d.result,
            reason=d.note or d.decision.reason,
            cost=d.decision.cost,
            balance=d.decision.balance,
            capacity=d.decision.capacity,
            period=d.decision.period,
            retry_at=d.decision.retry_at,
            decided_at=at,
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
        return cls(**t.model_dump(exclude={"kind"}))


OUTBOUND_MODELS: dict[str, type[BaseModel]] = {
    "send_request": SendRequest,
    "decision": DecisionRecord,
    "journey_log": JourneyLogRecord,
}

"""The one interface every contact-pressure basket implements.

Two implementations share it: :class:`orchestrator.pressure.redis_basket.RedisBasket`
(one atomic Lua script, production) and :class:`orchestrator.pressure.memory.MemoryBasket`
(the in-memory twin used by ``simulate``). A differential test demands identical
decisions from both for the same sequence of calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.events import Channel

CommType = Literal["service", "editorial", "commercial", "calamity"]
COMM_TYPES: tuple[str, ...] = CommType.__args__  # type: ignore[attr-defined]
Outcome = Literal["approved", "capped", "suppressed", "locked"]
DecisionCode = Literal["fits", "exempt", "calamity", "unsubscribed", "locked", "arbitration", "reserve", "capacity"]
"""Why the basket decided as it did, machine-readable; one line each in the docstring of :mod:`orchestrator.pressure.policy`.

approved: ``fits`` | ``exempt`` | ``calamity``; suppressed: ``unsubscribed``; locked: ``locked``;
capped: ``arbitration`` | ``reserve`` | ``capacity``."""
DECISION_CODES: tuple[str, ...] = DecisionCode.__args__  # type: ignore[attr-defined]


class GateRequest(BaseModel):
    """One outbound message asking for room in the customer's basket."""

    model_config = ConfigDict(frozen=True)

    send_id: str = Field(description="Idempotency key: the same id always gets the same decision and spends once.")
    customer_id: str
    comm_type: CommType
    channel: Channel
    brand: str | None = None
    priority: int = Field(default=5, ge=1, le=10, description="1 lowest .. 10 highest")
    timezone: str = Field(default="UTC", description="Customer's IANA time zone; the period boundaries follow it.")
    now: datetime


def code_from_reason(outcome: Any, reason: str) -> DecisionCode:
    """The code of a :class:`Decision` made without one, read from its reason text and outcome.

    Baskets always set the code; this covers customer state stored before decisions had
    one (the decision of a deferred send) and decisions written by hand in tests.
    """
    if outcome == "capped":
        if reason.startswith("arbitration:"):
            return "arbitration"
        return "reserve" if reason.startswith("reserve:") else "capacity"
    if outcome == "suppressed":
        return "unsubscribed"
    if outcome == "locked":
        return "locked"
    if reason.startswith("calamity:"):
        return "calamity"
    return "exempt" if " is exempt from capacity" in reason else "fits"


def _code_of(data: dict[str, Any]) -> DecisionCode:
    return code_from_reason(data.get("outcome"), data.get("reason", ""))


class Decision(BaseModel):
    """The basket's answer for one :class:`GateRequest`."""

    model_config = ConfigDict(frozen=True)

    send_id: str
    customer_id: str
    outcome: Outcome
    reason: str = Field(
        description="Why, in words: e.g. 'fits', 'capacity 25 exceeded: 20 spent + 10', 'unsubscribed from sms', 'calamity lock until ...'"
    )
    code: DecisionCode = Field(
        default_factory=_code_of,
        description="Why, machine-readable (see DecisionCode). Omitted: derived from the reason and outcome.",
    )
    cost: float = Field(description="Points this send costs (or would have cost).")
    balance: float = Field(description="Points spent in the current period after this decision.")
    capacity: float
    period: str = Field(description="The basket period the decision was taken in, e.g. '2026-11' or 'rolling-30d'.")
    retry_at: datetime | None = Field(default=None, description="For capped/locked: the earliest time the send would fit (for defer).")
    replayed: bool = Field(default=False, description="True when this send id had been decided before (idempotent replay).")


class Spend(BaseModel):
    send_id: str
    at: datetime
    cost: float
    comm_type: CommType
    channel: Channel
    brand: str | None = None
    priority: int = 5


class BasketView(BaseModel):
    """What ``orchestrator basket show CUSTOMER`` prints."""

    customer_id: str
    period: str
    capacity: float
    balance: float
    spends: list[Spend]
    locked_until: datetime | None = None
    suppressions: list[str] = Field(description="e.g. ['sms', 'email@brand-a', 'all@brand-b', 'all']")


class Basket(Protocol):
    """Contact-pressure gate. All methods are coroutines so both twins are used the same way."""

    async def gate(self, request: GateRequest) -> Decision:
        """Decide one send atomically (suppression, calamity lock, capacity, idempotent spend)."""
        ...

    async def gate_many(self, requests: Sequence[GateRequest], *, return_exceptions: bool = False) -> list[Decision | BaseException]:
        """Decide several sends in order, in one round trip where the implementation can.

        With ``return_exceptions`` an error reply for one request is returned in its place
        (the others are still decided); without it the first such error is raised. A lost
        connection always raises.
        """
        ...

    async def set_consent(self, customer_id: str, channel: str, brand: str | None, subscribed: bool, at: datetime) -> list[str]:
        """Unsubscribe (subscribed=False) or resubscribe a customer for a channel ('all' = every channel) and brand (None = every
        brand); returns the customer's suppressions after the change, sorted (the worker publishes them: a rebuild reads them)."""
        ...

    async def show(self, customer_id: str, now: datetime, timezone: str = "UTC") -> BasketView:
        """The customer's basket in the period containing ``now``."""
        ...

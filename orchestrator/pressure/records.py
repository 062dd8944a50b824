"""What both baskets store and return: spend records, decision records and their reason texts.

A spend is stored as ``at|cost|priority|type|channel|brand``; a decision as a
:data:`DecisionRecord` list. Both baskets (``gate.lua`` and the in-memory twin) write
the same records, and :func:`decision_from_record` turns one into the
:class:`~orchestrator.pressure.basket.Decision` a journey sees, with its reason in
words. The rules behind the codes are specified in the docstring of
:mod:`orchestrator.pressure.policy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.pressure.basket import BasketView, Decision, DecisionCode, GateRequest, Outcome, Spend, code_from_reason
from orchestrator.pressure.consent import split_member
from orchestrator.pressure.periods import PeriodInfo
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.timeutil import from_ms, iso_utc, to_ms

if TYPE_CHECKING:
    from orchestrator.pressure.planner import GatePlan

__all__ = ["PUBLIC_CODES", "DecisionRecord", "basket_view", "decision_from_record", "decode_spend", "encode_spend", "record_cost"]


# ---------------------------------------------------------------- spends


def encode_spend(at_ms: int, cost: int, priority: int, comm_type: str, channel: str, brand: str) -> str:
    """``at|cost|priority|type|channel|brand`` — the brand last, so it may contain ``|``."""
    return f"{at_ms}|{cost}|{priority}|{comm_type}|{channel}|{brand}"


def decode_spend(send_id: str, record: str) -> Spend:
    """A stored spend record back as a :class:`Spend`."""
    at, cost, priority, comm_type, channel, brand = record.split("|", 5)
    return Spend(
        send_id=send_id,
        at=from_ms(int(at)),
        cost=int(cost) / 100,
        comm_type=comm_type,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        brand=brand or None,
        priority=int(priority),
    )


def record_cost(record: str | None) -> int:
    """The cost field (hundredths of a point) of an ``at|cost|...`` spend record; 0 for none."""
    if not record:
        return 0
    return int(record.split("|", 2)[1])


def basket_view(
    policy: PressurePolicy,
    customer_id: str,
    info: PeriodInfo,
    records: dict[str, str],
    balance: int,
    lock_until_ms: int,
    now: datetime,
    suppressions: Iterable[str],
) -> BasketView:
    """Assemble a :class:`BasketView` from the raw state both baskets read the same way."""
    return BasketView(
        customer_id=customer_id,
        period=info.id,
        capacity=policy.capacity,
        balance=balance / 100,
        spends=sorted((decode_spend(s, r) for s, r in records.items()), key=lambda s: (s.at, s.send_id)),
        locked_until=from_ms(lock_until_ms) if lock_until_ms > to_ms(now) else None,
        suppressions=sorted(suppressions),
    )


# ---------------------------------------------------------------- decisions

DecisionRecord = list[Any]
"""``[outcome, code, cost, balance, limit, capacity, retry_ms, detail, period]``.

What both baskets store under a send id and return; amounts in hundredths of a
point, ``retry_ms`` 0 for none, ``detail`` a string (the matched suppression, the
lock end, the blocking priority, the exempt type).

``code`` is the stored (internal) code; :data:`PUBLIC_CODES` maps it to the
:data:`~orchestrator.pressure.basket.DecisionCode` a :class:`Decision` carries. Records
are replayed for as long as they live in Redis, so stored codes are never renamed: a
new public name is given here."""

PUBLIC_CODES: dict[str, DecisionCode] = {
    "fits": "fits",
    "exempt": "exempt",
    "calamity": "calamity",
    "suppressed": "unsubscribed",
    "locked": "locked",
    "arbitration": "arbitration",
    "reserve": "reserve",
    "capacity": "capacity",
}
"""Stored code -> public code. Only ``suppressed`` is renamed: the outcome already says
suppressed, the code says why (the customer unsubscribed)."""


class _Decided(NamedTuple):
    """A :data:`DecisionRecord` with its fields typed."""

    outcome: Outcome
    code: str
    cost: int
    balance: int
    limit: int
    capacity: int
    retry_ms: int
    detail: str
    period: str

    @classmethod
    def of(cls, record: DecisionRecord) -> _Decided:
        outcome, code, cost, balance, limit, capacity, retry_ms, detail, period = record
        return cls(outcome, str(code), int(cost), int(balance), int(limit), int(capacity), int(retry_ms), str(detail), str(period))

    @property
    def before(self) -> int:
        """The balance before this send (an approved send has already been added)."""
        return self.balance - self.cost if self.outcome == "approved" else self.balance


def decision_from_record(request: GateRequest | GatePlan, record: DecisionRecord, replayed: bool) -> Decision:
    """Turn a stored decision record into the :class:`Decision` both baskets return."""
    d = _Decided.of(record)
    reason = _reason(d)
    # model_construct: every value comes from our own record and is already well-typed;
    # validating ~10 fields per decision would cost more than the rest of the client path.
    return Decision.model_construct(
        send_id=request.send_id,
        customer_id=request.customer_id,
        outcome=d.outcome,
        reason=reason,
        code=PUBLIC_CODES.get(d.code) or code_from_reason(d.outcome, reason),  # an unknown stored code: as for a legacy decision
        cost=d.cost / 100,
        balance=d.balance / 100,
        capacity=d.capacity / 100,
        period=d.period,
        retry_at=from_ms(d.retry_ms) if d.retry_ms else None,
        replayed=replayed,
    )


# ---------------------------------------------------------------- reason texts, one per code


def _pts(units: int) -> str:
    return f"{units / 100:g}"


def _iso(ms: int) -> str:
    return iso_utc(from_ms(ms))


def _fits(d: _Decided) -> str:
    return f"fits: {_pts(d.before)} spent + {_pts(d.cost)} = {_pts(d.balance)} of {_pts(d.limit)}"


def _exempt(d: _Decided) -> str:
    return f"{d.detail} is exempt from capacity: {_pts(d.balance)} of {_pts(d.capacity)} spent"


def _calamity(d: _Decided) -> str:
    until = f"; locked until {_iso(int(d.detail))}" if d.detail else ""
    return f"calamity: approved regardless of capacity, {_pts(d.balance)} of {_pts(d.capacity)} spent{until}"


def _suppressed(d: _Decided) -> str:
    channel, brand = split_member(d.detail)
    what = "all channels" if channel == "all" else channel
    return f"unsubscribed from {what}" + (f" for brand {brand}" if brand else "") + f" ({d.detail})"


def _locked(d: _Decided) -> str:
    return f"calamity lock until {_iso(int(d.detail))}"


def _arbitration(d: _Decided) -> str:
    return f"arbitration: a priority-{d.detail} send went out within the window; retry at {_iso(d.retry_ms)}"


def _reserve(d: _Decided) -> str:
    return f"reserve: priority {d.detail} may fill only up to {_pts(d.limit)}: {_pts(d.before)} spent + {_pts(d.cost)}"


def _capacity(d: _Decided) -> str:
    return f"capacity {_pts(d.capacity)} exceeded: {_pts(d.before)} spent + {_pts(d.cost)}"


_REASONS: dict[str, Callable[[_Decided], str]] = {
    "fits": _fits,
    "exempt": _exempt,
    "calamity": _calamity,
    "suppressed": _suppressed,
    "locked": _locked,
    "arbitration": _arbitration,
    "reserve": _reserve,
    "capacity": _capacity,
}


def _reason(d: _Decided) -> str:
    explain = _REASONS.get(d.code)
    return explain(d) if explain is not None else f"{d.outcome}: {d.code}"

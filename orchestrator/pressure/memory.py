"""The in-memory basket: the twin of the Redis Lua gate, used by ``simulate`` and unit tests.

It follows ``gate.lua`` step by step on the same :class:`~orchestrator.pressure.planner.GatePlan`
(the policy math is shared in :mod:`orchestrator.pressure.planner`; the rules are
specified in :mod:`orchestrator.pressure.policy`), so both baskets return identical
decisions for the same calls; a differential test checks it. Keys never expire here:
a twin lives for one simulation.

Usage::

    basket = MemoryBasket(load_policy("journeys/pressure.yaml"))
    decision = await basket.gate(request)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.pressure.basket import BasketView, Decision, GateRequest
from orchestrator.pressure.consent import apply_consent, suppression_candidates
from orchestrator.pressure.periods import period_info
from orchestrator.pressure.planner import GatePlan, GatePlanner
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.records import DecisionRecord, basket_view, decision_from_record, record_cost

__all__ = ["MemoryBasket"]


@dataclass
class _Customer:
    """One customer's basket state; mirrors the Redis keys of ``gate.lua``."""

    decisions: dict[str, DecisionRecord] = field(default_factory=dict)  # :sent:<send_id>
    suppressed: set[str] = field(default_factory=set)  # :suppressed
    lock_until: int = 0  # :lock
    arbitration: dict[int, int] = field(default_factory=dict)  # :arb  priority -> last approval ms
    spent: dict[str, int] = field(default_factory=dict)  # :spent:<period>  (calendar)
    spends: dict[str, dict[str, str]] = field(default_factory=dict)  # :spends:<period>  send_id -> record
    window: dict[str, int] = field(default_factory=dict)  # :window  send_id -> at ms  (rolling)


class MemoryBasket:
    """A :class:`~orchestrator.pressure.basket.Basket` held in a dict; same semantics as the Redis gate."""

    def __init__(self, policy: PressurePolicy) -> None:
        self._planner = GatePlanner(policy)
        self._customers: dict[str, _Customer] = {}

    @property
    def policy(self) -> PressurePolicy:
        """The policy this basket decides by (make a new basket to change it)."""
        return self._planner.policy

    def _customer(self, customer_id: str) -> _Customer:
        return self._customers.setdefault(customer_id, _Customer())

    async def gate(self, request: GateRequest) -> Decision:
        """Decide one send (see :mod:`orchestrator.pressure.policy` for the rules)."""
        plan = self._planner.plan(request)
        replayed, record = self._decide(plan)
        return decision_from_record(request, record, replayed)

    async def gate_many(self, requests: Sequence[GateRequest], *, return_exceptions: bool = False) -> list[Decision | BaseException]:
        """Decide several sends in order (the twin has no error replies: ``return_exceptions`` changes nothing)."""
        return [await self.gate(r) for r in requests]

    # -- the twin of gate.lua; keep the two in step

    def _balance(self, c: _Customer, plan: GatePlan) -> tuple[int, list[tuple[int, str, int]]]:
        """Current spend in the period; for rolling also the window, oldest first: (at, send_id, cost)."""
        if plan.period.kind != "rolling":
            return c.spent.get(plan.period.id, 0), []
        spends = c.spends.setdefault(plan.period.id, {})
        horizon = plan.now_ms - plan.period.window_ms
        for send_id in [s for s, at in c.window.items() if at <= horizon]:  # purge expired spends
            del c.window[send_id]
            spends.pop(send_id, None)
        window = sorted((at, s, record_cost(spends.get(s))) for s, at in c.window.items())
        return sum(cost for _, _, cost in window), window

    def _decide(self, plan: GatePlan) -> tuple[bool, DecisionRecord]:
        c = self._customer(plan.customer_id)
        if plan.send_id in c.decisions:  # 1. replay
            return True, list(c.decisions[plan.send_id])
        balance, window = self._balance(c, plan)
        refusal = _suppression(c, plan) or _lock(c, plan)  # 2., 3.
        if refusal is None and not plan.is_calamity:
            refusal = _arbitration(c, plan) or _over_limit(plan, balance, window)  # 5., 6.
        if refusal is not None:
            outcome, code, retry_ms, detail = refusal
            return False, _remember(c, plan, outcome, code, balance, retry_ms, detail)
        code, detail = _approve(c, plan)  # 4. (calamity) or 6. (fits / exempt), then 7.
        return False, _remember(c, plan, "approved", code, balance + plan.cost, 0, detail)

    # -- consent and inspection

    async def set_consent(self, customer_id: str, channel: str, brand: str | None, subscribed: bool, at: datetime) -> list[str]:
        """Unsubscribe or resubscribe (see :func:`~orchestrator.pressure.consent.apply_consent`); ``at`` is not stored."""
        c = self._customer(customer_id)
        c.suppressed = apply_consent(c.suppressed, channel, brand, subscribed)
        return sorted(c.suppressed)

    async def show(self, customer_id: str, now: datetime, timezone: str = "UTC") -> BasketView:
        """The customer's basket in the period containing ``now`` (read-only)."""
        info = period_info(self.policy, now, timezone)
        c = self._customers.get(customer_id) or _Customer()
        records = c.spends.get(info.id, {})
        if info.kind == "rolling":
            records = {s: records[s] for s, at in c.window.items() if at > info.start_ms and s in records}
            balance = sum(record_cost(r) for r in records.values())
        else:
            balance = c.spent.get(info.id, 0)
        return basket_view(self.policy, customer_id, info, dict(records), balance, c.lock_until, now, c.suppressed)


# -- the steps of gate.lua, in its order; a refusal is (outcome, code, retry_ms, detail)

_Refusal = tuple[str, str, int, str]


def _remember(c: _Customer, plan: GatePlan, outcome: str, code: str, balance: int, retry_ms: int, detail: str) -> DecisionRecord:
    """Store the decision under the send id (a redelivery replays it); a copy to return."""
    record: DecisionRecord = [outcome, code, plan.cost, balance, plan.limit, plan.capacity, retry_ms, detail, plan.period.id]
    c.decisions[plan.send_id] = record
    return list(record)


def _suppression(c: _Customer, plan: GatePlan) -> _Refusal | None:
    """2. The customer unsubscribed from this channel (or all) for this brand (or all)."""
    for member in suppression_candidates(plan.channel, plan.brand or None):
        if member in c.suppressed:
            return "suppressed", "suppressed", 0, member
    return None


def _lock(c: _Customer, plan: GatePlan) -> _Refusal | None:
    """3. A calamity lock is active and blocks this type."""
    if plan.blocked_by_lock and c.lock_until > plan.now_ms:
        return "locked", "locked", c.lock_until, str(c.lock_until)
    return None


def _arbitration(c: _Customer, plan: GatePlan) -> _Refusal | None:
    """5. A strictly higher priority was approved within the window."""
    if plan.arbitration_ms <= 0:
        return None
    blocker, retry = 0, 0
    for q in range(plan.priority + 1, 11):
        at = c.arbitration.get(q)
        if at is not None and at > plan.now_ms - plan.arbitration_ms:
            blocker = q
            retry = max(retry, at + plan.arbitration_ms)
    if blocker:
        return "capped", "arbitration", retry, str(blocker)
    return None


def _over_limit(plan: GatePlan, balance: int, window: list[tuple[int, str, int]]) -> _Refusal | None:
    """6. Capacity and reserve (exempt types skip it)."""
    if plan.exempt or balance + plan.cost <= plan.limit:
        return None
    code = "reserve" if balance + plan.cost <= plan.capacity else "capacity"
    return "capped", code, _retry_when_fits(plan, balance, window), str(plan.priority)


def _approve(c: _Customer, plan: GatePlan) -> tuple[str, str]:
    """4./6./7. Lock for a calamity, record the spend and the arbitration time; the code and detail of the approval."""
    if plan.is_calamity:
        code, detail = "calamity", ""
        if plan.lock_ms > 0:
            c.lock_until = max(c.lock_until, plan.now_ms + plan.lock_ms)
            detail = str(c.lock_until)
    elif plan.exempt:
        code, detail = "exempt", plan.comm_type
    else:
        code, detail = "fits", ""
    p = plan.period
    if p.kind == "rolling":
        c.window[plan.send_id] = plan.now_ms
    else:
        c.spent[p.id] = c.spent.get(p.id, 0) + plan.cost
    c.spends.setdefault(p.id, {})[plan.send_id] = plan.spend_record
    if plan.arbitration_ms > 0 and not plan.is_calamity:
        c.arbitration[plan.priority] = max(c.arbitration.get(plan.priority, plan.now_ms), plan.now_ms)
    return code, detail


def _retry_when_fits(plan: GatePlan, balance: int, window: list[tuple[int, str, int]]) -> int:
    """When a capped send would fit (0 = never under this policy)."""
    if plan.cost > plan.limit:
        return 0
    if plan.period.kind != "rolling":
        return plan.period.end_ms
    need = balance + plan.cost - plan.limit
    freed = 0
    for at, _, cost in window:
        freed += cost
        if freed >= need:
            return at + plan.period.window_ms
    return 0

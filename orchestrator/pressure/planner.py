"""Planning one gate request: all policy arithmetic and time-zone math, done once in Python.

Both baskets start here: the Redis basket passes a :class:`GatePlan` to ``gate.lua``,
the in-memory twin reads it directly, so the Lua and Python checks see exactly the
same numbers. The rules are specified in the docstring of :mod:`orchestrator.pressure.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.events import CHANNELS
from orchestrator.pressure.basket import COMM_TYPES, GateRequest
from orchestrator.pressure.costs import cost_units, to_units
from orchestrator.pressure.periods import PeriodInfo, period_info
from orchestrator.pressure.policy import PressurePolicy, Rolling
from orchestrator.pressure.records import encode_spend
from orchestrator.timeutil import to_ms

__all__ = ["GatePlan", "GatePlanner", "plan_gate"]

_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class GatePlan:
    """Everything a basket needs to decide one request; all policy math already done.

    The Redis basket passes these fields as ARGV to ``gate.lua``; the twin reads them
    directly. Amounts are hundredths of a point, times epoch milliseconds.
    """

    customer_id: str
    send_id: str
    now_ms: int
    period: PeriodInfo
    cost: int
    limit: int
    capacity: int
    is_calamity: bool
    blocked_by_lock: bool
    exempt: bool
    lock_ms: int
    arbitration_ms: int
    priority: int
    comm_type: str
    channel: str
    brand: str
    ttl_ms: int
    spend_record: str


class GatePlanner:
    """:func:`plan_gate` for one policy, with its arithmetic done once.

    Costs per (type, channel), limits per priority and the current calendar period per
    time zone are cached on the instance (each basket owns one planner), so planning a
    request is a few dict lookups. The results are exactly those of the uncached helpers.
    """

    _MAX_ZONES = 4096  # bounds the period cache against garbage time-zone strings

    def __init__(self, policy: PressurePolicy) -> None:
        self.policy = policy
        self._costs = {(t, c): cost_units(policy, t, c) for t in COMM_TYPES for c in CHANNELS}
        self._limits = {p: to_units(policy.limit_for(p)) for p in range(1, 11)}
        self._capacity = to_units(policy.capacity)
        self._blocked = frozenset(policy.calamity.blocks)
        self._exempt = frozenset(policy.exempt_types) | {"calamity"}
        self._lock_ms = policy.calamity.lock // _MS
        self._arbitration_ms = policy.arbitration_window // _MS if policy.arbitration_window else 0
        self._margin_ms = policy.key_margin // _MS
        self._periods: dict[str | None, PeriodInfo] = {}

    def period(self, now: datetime, tz: str | None) -> PeriodInfo:
        """:func:`~orchestrator.pressure.periods.period_info`, reusing the calendar period last computed for ``tz``.

        The cached period is used while ``now`` is inside it; rolling periods are not cached.
        """
        if isinstance(self.policy.period, Rolling):
            return period_info(self.policy, now, tz)
        now_ms = to_ms(now)
        cached = self._periods.get(tz)
        if cached is not None and cached.start_ms <= now_ms < cached.end_ms:
            return cached
        info = period_info(self.policy, now, tz)
        if len(self._periods) >= self._MAX_ZONES:
            self._periods.clear()
        self._periods[tz] = info
        return info

    def plan(self, request: GateRequest) -> GatePlan:
        """Do the pure part of a gate decision for ``request``."""
        now_ms = to_ms(request.now)
        period = self.period(request.now, request.timezone)
        comm_type, channel, priority = request.comm_type, request.channel, request.priority
        cost = self._costs[(comm_type, channel)]
        # keys live until the period ends (rolling: one window after this spend), plus the margin
        ttl = (period.window_ms if period.kind == "rolling" else period.end_ms - now_ms) + self._margin_ms
        brand = request.brand or ""
        return GatePlan(
            customer_id=request.customer_id,
            send_id=request.send_id,
            now_ms=now_ms,
            period=period,
            cost=cost,
            limit=self._limits[priority],
            capacity=self._capacity,
            is_calamity=comm_type == "calamity",
            blocked_by_lock=comm_type in self._blocked,
            exempt=comm_type in self._exempt,
            lock_ms=self._lock_ms,
            arbitration_ms=self._arbitration_ms,
            priority=priority,
            comm_type=comm_type,
            channel=channel,
            brand=brand,
            ttl_ms=max(ttl, 1),
            spend_record=encode_spend(now_ms, cost, priority, comm_type, channel, brand),
        )


def plan_gate(policy: PressurePolicy, request: GateRequest) -> GatePlan:
    """Do the pure part of a gate decision for ``request`` under ``policy`` (uncached; baskets use :class:`GatePlanner`)."""
    return GatePlanner(policy).plan(request)

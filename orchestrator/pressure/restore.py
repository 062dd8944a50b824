"""Rebuilding a basket from the decisions topic: the pure part (what to write back into Redis).

Redis is a cache of a durable record. Every answer the gate gave is published on
``<prefix>.decisions`` (:class:`orchestrator.records.DecisionRecord`: send id, outcome,
code, cost, balance, period, time), so a Redis that lost its data can be given back the
current periods' spends and send-id records. :func:`restore_calls` turns a customer's
decision records into :class:`RestoreCall` s; ``restore.lua`` applies each one
idempotently (nothing is written for a send id Redis still knows), so a rebuild may run
over customers whose keys survived, and twice.

What comes back, per decision still inside its period (plus ``key_margin``):

- the send-id record, so a replayed send gets its first answer again and never spends
  twice. Its ``limit`` and ``detail`` fields are not on the topic; they are derived
  (the policy's limit for the priority; the detail from the code and reason), which
  only matters for the wording of a replayed decision's reason;
- for an approved send, its spend (calendar: the period's sum; rolling: the window
  entry) and spend record, with the keys' expiry where the gate would have put it;
- a calamity send's lock and an approval's arbitration time, while they last.

The suppression set is not on the decisions topic: the worker publishes each customer's
set after a consent change on the compacted ``<prefix>.consent`` topic and puts the latest
back first (``RedisBasket.restore_suppressions``). See the README ("A basket that survives
losing Redis").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.pressure.basket import code_from_reason
from orchestrator.pressure.costs import to_units
from orchestrator.pressure.periods import period_info
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.records import PUBLIC_CODES, encode_spend
from orchestrator.records import DecisionRecord
from orchestrator.timeutil import to_ms

__all__ = ["RestoreCall", "horizon", "restore_calls", "stored_record"]

_MS = timedelta(milliseconds=1)
_DAY_MS = 86_400_000
_ZONE_SLACK_MS = 14 * 3_600_000
"""A record without a time zone (written before records carried it) may be in any zone: its calendar month may end
up to 14 hours after the UTC month; its keys are kept that much longer."""
_STORED_CODE = {public: stored for stored, public in PUBLIC_CODES.items()}
_BASKET_OUTCOMES = frozenset({"approved", "capped", "suppressed", "locked"})


@dataclass(frozen=True)
class RestoreCall:
    """One decision to write back (``restore.lua``'s ARGV, with the keys named by the basket)."""

    customer_id: str
    send_id: str
    period: str
    rolling: bool
    record: str
    """The send-id record as ``gate.lua`` stores it (a JSON array)."""
    approved: bool
    at_ms: int
    cost: int
    spend_record: str
    ttl_ms: int
    lock_until_ms: int
    """0: no calamity lock to restore."""
    arbitration_priority: int
    """0: no arbitration time to restore."""
    arbitration_until_ms: int


def horizon(policy: PressurePolicy) -> timedelta:
    """How far back (engine time) a rebuild reads: the longest period plus the key margin and the zone slack."""
    days = getattr(policy.period, "days", 31)
    return timedelta(days=days, milliseconds=_ZONE_SLACK_MS) + policy.key_margin


def restore_calls(policy: PressurePolicy, decisions: Iterable[DecisionRecord], now: datetime) -> list[RestoreCall]:
    """The calls that give Redis back ``decisions`` (in topic order) as of ``now``.

    The first record of a send id wins (a replayed decision is published again, later);
    records the basket never decided (``not_asked``) and records whose keys would
    already have expired are left out.
    """
    now_ms = to_ms(now)
    margin_ms = policy.key_margin // _MS
    lock_ms = policy.calamity.lock // _MS
    arbitration_ms = policy.arbitration_window // _MS if policy.arbitration_window else 0
    seen: set[tuple[str, str]] = set()
    out: list[RestoreCall] = []
    for d in decisions:
        if d.outcome not in _BASKET_OUTCOMES or (d.customer_id, d.send_id) in seen:
            continue
        seen.add((d.customer_id, d.send_id))
        at_ms = to_ms(d.decided_at)
        rolling = d.period.startswith("rolling-")
        if rolling:
            days = int(d.period.removeprefix("rolling-").removesuffix("d") or 0)
            end_ms = at_ms + days * _DAY_MS
        else:
            end_ms = period_info(policy, d.decided_at, d.timezone).end_ms + (0 if d.timezone else _ZONE_SLACK_MS)
        ttl = end_ms + margin_ms - now_ms
        if ttl <= 0:
            continue
        approved = d.outcome == "approved"
        cost = to_units(d.cost)
        lock_until = at_ms + lock_ms if approved and d.comm_type == "calamity" and lock_ms else 0
        arbitrates = approved and arbitration_ms > 0 and d.comm_type != "calamity" and at_ms + arbitration_ms > now_ms
        out.append(
            RestoreCall(
                customer_id=d.customer_id,
                send_id=d.send_id,
                period=d.period,
                rolling=rolling,
                record=json.dumps(stored_record(policy, d, lock_until), separators=(",", ":"), ensure_ascii=False),
                approved=approved,
                at_ms=at_ms,
                cost=cost,
                spend_record=encode_spend(at_ms, cost, d.priority, d.comm_type, d.channel, d.brand or ""),
                ttl_ms=ttl,
                lock_until_ms=lock_until if lock_until > now_ms else 0,
                arbitration_priority=d.priority if arbitrates else 0,
                arbitration_until_ms=at_ms + arbitration_ms if arbitrates else 0,
            )
        )
    return out


_SUPPRESSION = re.compile(r"\(([^()]*)\)$")
_BLOCKER = re.compile(r"a priority-(\d+) send")


def stored_record(policy: PressurePolicy, d: DecisionRecord, lock_until_ms: int = 0) -> list[object]:
    """The send-id record ``gate.lua`` stored for the decision ``d`` published
    (``[outcome, code, cost, balance, limit, capacity, retry_ms, detail, period]``)."""
    public = d.code or code_from_reason(d.outcome, d.reason)
    code = _STORED_CODE.get(public, public)
    detail = ""
    retry_ms = to_ms(d.retry_at) if d.retry_at else 0
    if code == "suppressed":
        m = _SUPPRESSION.search(d.reason)
        detail = m.group(1) if m else d.channel
    elif code == "locked":
        detail = str(retry_ms)
    elif code == "calamity":
        detail = str(lock_until_ms) if lock_until_ms else ""
    elif code == "arbitration":
        m = _BLOCKER.search(d.reason)
        detail = m.group(1) if m else str(d.priority)
    elif code in ("reserve", "capacity"):
        detail = str(d.priority)
    elif code == "exempt":
        detail = d.comm_type
    limit = to_units(policy.limit_for(d.priority))
    return [d.outcome, code, to_units(d.cost), to_units(d.balance), limit, to_units(d.capacity), retry_ms, detail, d.period]

"""The pure part of a basket rebuild: which decisions come back, and the send-id record each one gets."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from orchestrator.pressure.basket import CommType, Decision, GateRequest
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.restore import horizon, restore_calls, stored_record
from orchestrator.records import DecisionRecord

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
POLICY = PressurePolicy.model_validate({"arbitration_window": "20m", "calamity": {"lock": "6h"}, "exempt_types": ["service"]})


def record(request: GateRequest, d: Decision | None, outcome: str | None = None) -> DecisionRecord:
    return DecisionRecord(
        send_id=request.send_id, customer_id=request.customer_id, journey_id="j", journey_version=1, step_id="s",
        channel=request.channel, comm_type=request.comm_type, priority=request.priority,
        outcome=outcome or (d.outcome if d else "not_asked"), code=d.code if d else None, result="approved",
        reason=d.reason if d else "", cost=d.cost if d else 0.0, balance=d.balance if d else 0.0,
        capacity=d.capacity if d else 0.0, period=d.period if d else "", retry_at=d.retry_at if d else None,
        decided_at=request.now, brand=request.brand, timezone=request.timezone,
    )  # fmt: skip


def request(send_id: str, at: datetime, comm_type: CommType = "commercial", priority: int = 5) -> GateRequest:
    return GateRequest(send_id=send_id, customer_id="c", comm_type=comm_type, channel="sms", priority=priority, now=at)


async def test_the_derived_send_id_record_is_the_one_the_gate_stored_for_every_code() -> None:
    rng = random.Random(3)
    twin = MemoryBasket(POLICY)
    await twin.set_consent("c2", "push", None, False, T0)
    at = T0
    codes = set()
    for n in range(400):
        at += timedelta(minutes=rng.choice([0, 1, 7, 30, 300, 3000]))
        cid = rng.choice(["c", "c2"])
        types: list[CommType] = ["service", "editorial", "commercial", "calamity"]
        req = GateRequest(
            send_id=f"s{n}", customer_id=cid, comm_type=rng.choices(types, weights=[3, 3, 6, 1])[0],
            channel=rng.choice(["sms", "email", "push"]), priority=rng.randint(1, 10), now=at,
        )  # fmt: skip
        d = await twin.gate(req)
        stored = twin._customers[cid].decisions[req.send_id]
        lock = int(stored[7]) if stored[1] == "calamity" and stored[7] else 0
        assert stored_record(POLICY, record(req, d), lock) == list(stored), (req, d)
        codes.add(stored[1])
    assert codes == {"fits", "exempt", "calamity", "suppressed", "locked", "arbitration", "reserve", "capacity"}


def test_only_decisions_the_basket_made_and_still_keeps_come_back_first_one_wins() -> None:
    approved = Decision(send_id="a", customer_id="c", outcome="approved", reason="fits", cost=10, balance=10, capacity=25, period="2026-11")
    old = record(request("old", T0 - timedelta(days=60)), approved.model_copy(update={"period": "2026-09"}))
    first = record(request("a", T0), approved)
    replay = record(request("a", T0 + timedelta(hours=1)), approved.model_copy(update={"replayed": True}))
    never = record(request("n", T0), None)
    calls = restore_calls(POLICY, [old, first, replay, never], T0 + timedelta(hours=2))
    assert [(c.send_id, c.at_ms) for c in calls] == [("a", int(T0.timestamp() * 1000))]
    (call,) = calls
    assert call.approved and call.cost == 1000 and call.spend_record.startswith(f"{call.at_ms}|1000|5|commercial|sms|")
    month_end = datetime(2026, 12, 1, tzinfo=UTC) + POLICY.key_margin
    assert call.ttl_ms == int((month_end - (T0 + timedelta(hours=2))).total_seconds() * 1000)
    assert call.arbitration_priority == 0, "the arbitration window (20m) is over two hours later"


def test_a_calamity_restores_its_lock_while_it_lasts() -> None:
    d = Decision(
        send_id="k", customer_id="c", outcome="approved", reason="calamity", code="calamity", cost=0, balance=0, capacity=25,
        period="2026-11",
    )  # fmt: skip
    (call,) = restore_calls(POLICY, [record(request("k", T0, "calamity"), d)], T0 + timedelta(hours=1))
    assert call.lock_until_ms == int((T0 + timedelta(hours=6)).timestamp() * 1000)
    assert restore_calls(POLICY, [record(request("k", T0, "calamity"), d)], T0 + timedelta(hours=7))[0].lock_until_ms == 0


def test_the_horizon_covers_the_longest_period_and_the_key_margin() -> None:
    assert horizon(POLICY) == timedelta(days=31, hours=14) + POLICY.key_margin
    rolling = PressurePolicy.model_validate({"period": {"kind": "rolling", "days": 3}})
    assert horizon(rolling) == timedelta(days=3, hours=14) + rolling.key_margin

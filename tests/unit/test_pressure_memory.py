"""The contact-pressure rules, on the in-memory twin; the policy file and its file:line errors.

Each ``rule_*`` coroutine states one rule of ``orchestrator/pressure/policy.py`` (its docstring) against
any :class:`Basket`; this module runs them on :class:`MemoryBasket`, and
``tests/integration/test_basket_redis.py`` runs the very same list (:data:`RULES`) on
the Redis Lua gate.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from orchestrator.actions import Disposition, Send
from orchestrator.durations import parse_duration
from orchestrator.events import Channel
from orchestrator.pressure.basket import DECISION_CODES, Basket, CommType, Decision, GateRequest
from orchestrator.pressure.cli import validate_policy_file
from orchestrator.pressure.consent import apply_consent
from orchestrator.pressure.costs import send_cost
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.periods import period_bounds, period_id
from orchestrator.pressure.policy import PolicyError, PressurePolicy, load_policy
from orchestrator.pressure.records import decision_from_record
from orchestrator.records import DecisionRecord
from orchestrator.yamlpos import load_yaml_with_positions, loads_yaml_with_positions, locate

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)

MakeBasket = Callable[[PressurePolicy], Basket]


def policy(**overrides: Any) -> PressurePolicy:
    """The default policy with some settings replaced (validated like a file)."""
    return PressurePolicy.model_validate(overrides)


def req(
    cid: str,
    send_id: str,
    comm_type: CommType = "commercial",
    channel: Channel = "email",
    *,
    at: datetime = T0,
    priority: int = 8,
    brand: str | None = None,
    tz: str = "UTC",
) -> GateRequest:
    return GateRequest(
        send_id=send_id,
        customer_id=cid,
        comm_type=comm_type,
        channel=channel,
        brand=brand,
        priority=priority,
        timezone=tz,
        now=at,
    )


# ---------------------------------------------------------------- the rules, for any basket


async def rule_cost_and_approval(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    d = await b.gate(req(cid, "a", "commercial", "sms"))
    assert (d.outcome, d.cost, d.balance, d.capacity, d.period, d.replayed) == ("approved", 15.0, 15.0, 25.0, "2026-11", False)
    assert d.retry_at is None and d.reason.startswith("fits") and d.code == "fits"


async def rule_capacity_caps_until_next_period_in_customer_tz(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    assert (await b.gate(req(cid, "a", "commercial", "email", priority=9, tz="Europe/Berlin"))).outcome == "approved"
    assert (await b.gate(req(cid, "b", "commercial", "sms", priority=9, tz="Europe/Berlin"))).balance == 25.0
    capped = await b.gate(req(cid, "c", "service", "email", priority=9, tz="Europe/Berlin"))
    assert capped.outcome == "capped" and capped.balance == 25.0 and "capacity 25 exceeded" in capped.reason
    assert capped.code == "capacity"
    assert capped.retry_at == datetime(2026, 12, 1, tzinfo=BERLIN)
    later = await b.gate(req(cid, "d", "service", "email", at=capped.retry_at, priority=9, tz="Europe/Berlin"))
    assert (later.outcome, later.period, later.balance) == ("approved", "2026-12", 2.0)


async def rule_period_follows_customer_time_zone(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    instant = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already December in Berlin, still November in New York
    berlin = await b.gate(req(cid, "a", at=instant, tz="Europe/Berlin"))
    new_york = await b.gate(req(cid, "b", at=instant, tz="America/New_York"))
    assert (berlin.period, berlin.balance) == ("2026-12", 10.0)
    assert (new_york.period, new_york.balance) == ("2026-11", 10.0)


async def rule_priority_reserve(make: MakeBasket, cid: str) -> None:
    b = make(policy())  # priority <=3 up to 15, <=6 up to 20
    assert (await b.gate(req(cid, "a", "commercial", priority=2))).outcome == "approved"
    assert (await b.gate(req(cid, "b", "editorial", priority=2))).balance == 15.0
    low = await b.gate(req(cid, "c", "service", priority=2))
    assert (low.outcome, low.code, low.balance) == ("capped", "reserve", 15.0) and low.reason.startswith("reserve")
    assert (await b.gate(req(cid, "d", "service", priority=5))).balance == 17.0
    mid = await b.gate(req(cid, "e", "editorial", priority=5))
    assert (mid.outcome, mid.code) == ("capped", "reserve") and mid.reason.startswith("reserve")
    high = await b.gate(req(cid, "f", "editorial", priority=9))
    assert (high.outcome, high.code, high.balance) == ("approved", "fits", 22.0)


async def rule_cost_above_limit_never_fits(make: MakeBasket, cid: str) -> None:
    b = make(policy(capacity=15, priority_reserve=[]))
    d = await b.gate(req(cid, "a", "commercial", "call_center"))
    assert (d.outcome, d.code, d.cost, d.balance, d.retry_at) == ("capped", "capacity", 20.0, 0.0, None)


async def rule_calamity_spends_over_capacity_and_locks(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    await b.gate(req(cid, "a", "commercial", "sms", priority=9))
    await b.gate(req(cid, "b", "commercial", "email", priority=9))  # 25 of 25
    cal = await b.gate(req(cid, "cal", "calamity", "email", priority=10, at=T0 + timedelta(hours=1)))
    lock_end = T0 + timedelta(hours=1 + 72)
    assert (cal.outcome, cal.code, cal.balance) == ("approved", "calamity", 45.0) and "calamity" in cal.reason
    for comm_type in ("commercial", "editorial"):
        d = await b.gate(req(cid, f"x-{comm_type}", comm_type, at=T0 + timedelta(hours=2)))
        assert (d.outcome, d.code, d.retry_at, d.balance) == ("locked", "locked", lock_end, 45.0)
    service = await b.gate(req(cid, "svc", "service", at=T0 + timedelta(hours=2), priority=9))
    assert (service.outcome, service.code) == ("capped", "capacity")  # not blocked by the lock, but the basket is full
    after = await b.gate(req(cid, "after", "commercial", at=lock_end, priority=9))
    assert (after.outcome, after.code) == ("capped", "capacity") and "capacity" in after.reason
    view = await b.show(cid, T0 + timedelta(hours=2))
    assert view.locked_until == lock_end and view.balance == 45.0


async def rule_service_passes_during_lock(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    await b.gate(req(cid, "cal", "calamity", "push", priority=10))
    d = await b.gate(req(cid, "svc", "service", "email", at=T0 + timedelta(minutes=5)))
    assert (d.outcome, d.balance) == ("approved", 22.0)


async def rule_calamity_lock_extends_never_shortens(make: MakeBasket, cid: str) -> None:
    b = make(policy(calamity={"lock": "10h"}))
    await b.gate(req(cid, "c1", "calamity", at=T0 + timedelta(hours=5)))
    await b.gate(req(cid, "c2", "calamity", at=T0))  # an older incident arriving late: lock stays at T0+15h
    d = await b.gate(req(cid, "x", "editorial", at=T0 + timedelta(hours=14)))
    assert (d.outcome, d.retry_at) == ("locked", T0 + timedelta(hours=15))
    await b.gate(req(cid, "c3", "calamity", at=T0 + timedelta(hours=14)))
    d = await b.gate(req(cid, "y", "editorial", at=T0 + timedelta(hours=16)))
    assert d.retry_at == T0 + timedelta(hours=24)


async def rule_calamity_respects_unsubscribe(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    await b.set_consent(cid, "email", None, False, T0)
    cal = await b.gate(req(cid, "cal", "calamity", "email"))
    assert (cal.outcome, cal.code, cal.balance) == ("suppressed", "unsubscribed", 0.0)
    after = await b.gate(req(cid, "x", "commercial", "sms"))
    assert after.outcome == "approved"  # no lock was set


async def rule_suppression_per_channel_and_brand(make: MakeBasket, cid: str) -> None:
    b = make(policy(capacity=1000, priority_reserve=[]))
    await b.set_consent(cid, "sms", "brand-a", False, T0)
    assert (await b.gate(req(cid, "1", "service", "sms", brand="brand-a"))).outcome == "suppressed"
    assert (await b.gate(req(cid, "2", "service", "sms", brand="brand-b"))).outcome == "approved"
    assert (await b.gate(req(cid, "3", "service", "sms"))).outcome == "approved"
    await b.set_consent(cid, "all", "brand-b", False, T0)
    d = await b.gate(req(cid, "4", "service", "email", brand="brand-b"))
    assert (d.outcome, d.code) == ("suppressed", "unsubscribed") and "all@brand-b" in d.reason
    await b.set_consent(cid, "email", None, False, T0)
    assert (await b.gate(req(cid, "5", "service", "email", brand="brand-c"))).outcome == "suppressed"
    await b.set_consent(cid, "email", None, True, T0)
    assert (await b.gate(req(cid, "6", "service", "email", brand="brand-c"))).outcome == "approved"
    await b.set_consent(cid, "all", None, False, T0)
    assert (await b.gate(req(cid, "7", "service", "push"))).outcome == "suppressed"
    await b.set_consent(cid, "push", None, True, T0)  # splits 'all' into the other channels
    assert (await b.gate(req(cid, "8", "service", "push"))).outcome == "approved"
    assert (await b.gate(req(cid, "9", "service", "email"))).outcome == "suppressed"
    view = await b.show(cid, T0)
    assert "push" not in view.suppressions and "email" in view.suppressions and "sms@brand-a" in view.suppressions


async def rule_replay_spends_once(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    first = await b.gate(req(cid, "same", "commercial", "email"))
    again = await b.gate(req(cid, "same", "commercial", "email", at=T0 + timedelta(minutes=1)))
    changed = await b.gate(req(cid, "same", "service", "sms", at=T0 + timedelta(days=1)))
    assert again.replayed and changed.replayed and not first.replayed
    assert again.model_copy(update={"replayed": False}) == first == changed.model_copy(update={"replayed": False})
    view = await b.show(cid, T0)
    assert view.balance == 10.0 and [s.send_id for s in view.spends] == ["same"]


async def rule_replay_of_capped_stays_capped(make: MakeBasket, cid: str) -> None:
    b = make(policy(capacity=10, priority_reserve=[]))
    await b.gate(req(cid, "a"))
    capped = await b.gate(req(cid, "b"))
    assert capped.outcome == "capped" and capped.retry_at is not None
    replay = await b.gate(req(cid, "b", at=capped.retry_at))  # the next period has room, but a send id keeps its answer
    assert (replay.outcome, replay.code, replay.replayed, replay.retry_at) == ("capped", "capacity", True, capped.retry_at)


async def rule_arbitration_window(make: MakeBasket, cid: str) -> None:
    b = make(policy(capacity=100, priority_reserve=[], arbitration_window="15m"))
    m = timedelta(minutes=1)
    assert (await b.gate(req(cid, "p8", "service", priority=8))).outcome == "approved"
    low = await b.gate(req(cid, "p5", "service", priority=5, at=T0 + 5 * m))
    assert (low.outcome, low.code, low.retry_at) == ("capped", "arbitration", T0 + 15 * m) and low.reason.startswith("arbitration")
    assert (await b.gate(req(cid, "p8b", "service", priority=8, at=T0 + 6 * m))).outcome == "approved"
    assert (await b.gate(req(cid, "p9", "service", priority=9, at=T0 + 6 * m))).outcome == "approved"
    low2 = await b.gate(req(cid, "p5b", "service", priority=5, at=T0 + 16 * m))
    assert (low2.outcome, low2.retry_at) == ("capped", T0 + 21 * m)
    assert (await b.gate(req(cid, "p5c", "service", priority=5, at=T0 + 21 * m))).outcome == "approved"


async def rule_calamity_ignores_arbitration(make: MakeBasket, cid: str) -> None:
    b = make(policy(arbitration_window="1h"))
    await b.gate(req(cid, "p9", "service", priority=9))
    cal = await b.gate(req(cid, "cal", "calamity", priority=1, at=T0 + timedelta(minutes=1)))
    svc = await b.gate(req(cid, "svc", "service", priority=9, at=T0 + timedelta(minutes=2)))
    assert cal.outcome == "approved" and svc.outcome == "approved"  # a calamity does not arbitrate others


async def rule_rolling_window(make: MakeBasket, cid: str) -> None:
    b = make(policy(period={"kind": "rolling", "days": 7}, priority_reserve=[]))
    day = timedelta(days=1)
    assert (await b.gate(req(cid, "a"))).period == "rolling-7d"
    await b.gate(req(cid, "b", at=T0 + day))
    capped = await b.gate(req(cid, "c", at=T0 + 2 * day))
    assert (capped.outcome, capped.code, capped.balance, capped.retry_at) == ("capped", "capacity", 20.0, T0 + 7 * day)
    assert (await b.gate(req(cid, "d", at=T0 + 7 * day - timedelta(milliseconds=1)))).outcome == "capped"
    ok = await b.gate(req(cid, "e", at=T0 + 7 * day))
    assert (ok.outcome, ok.balance) == ("approved", 20.0)
    big = await b.gate(req(cid, "f", "commercial", "sms", at=T0 + 7 * day))  # 20 + 15 - 25 = 10 must expire: "b"
    assert big.retry_at == T0 + 8 * day
    view = await b.show(cid, T0 + 7 * day)
    assert [s.send_id for s in view.spends] == ["b", "e"] and view.balance == 20.0


async def rule_exempt_types_bypass_capacity(make: MakeBasket, cid: str) -> None:
    b = make(policy(exempt_types=["service"]))
    await b.gate(req(cid, "a", "commercial", "sms", priority=9))
    await b.gate(req(cid, "b", "commercial", "email", priority=9))
    d = await b.gate(req(cid, "svc", "service", "call_center", priority=1))
    assert (d.outcome, d.code, d.balance) == ("approved", "exempt", 29.0) and "exempt" in d.reason


async def rule_every_code_names_its_rule(make: MakeBasket, cid: str) -> None:
    """Each public code, produced by the rule the policy docstring names for it (the same record replays it)."""
    b = make(policy(capacity=40, arbitration_window="10m", exempt_types=["service"], calamity={"lock": "1h"}))
    h = timedelta(hours=1)
    await b.set_consent(cid, "sms", None, False, T0)
    steps = [
        (req(cid, "fits", "commercial", priority=9), "approved", "fits"),  # 10 of 40
        (req(cid, "unsub", "commercial", "sms", priority=9), "suppressed", "unsubscribed"),
        (req(cid, "arb", "editorial", priority=4, at=T0 + timedelta(minutes=5)), "capped", "arbitration"),
        (req(cid, "reserve", "commercial", priority=2, at=T0 + h), "capped", "reserve"),  # 10 + 10 > 15
        (req(cid, "exempt", "service", "call_center", priority=2, at=T0 + h), "approved", "exempt"),  # 14 of 40
        (req(cid, "big", "commercial", "call_center", priority=9, at=T0 + h), "approved", "fits"),  # 34 of 40
        (req(cid, "capacity", "commercial", priority=9, at=T0 + 2 * h), "capped", "capacity"),  # 34 + 10 > 40
        (req(cid, "calamity", "calamity", priority=1, at=T0 + 2 * h), "approved", "calamity"),  # 54, locked for 1h
        (req(cid, "locked", "commercial", priority=9, at=T0 + 2 * h), "locked", "locked"),
    ]
    got = [(d.outcome, d.code) for d in [await b.gate(r) for r, _, _ in steps]]
    assert got == [(outcome, code) for _, outcome, code in steps]
    assert {code for _, code in got} == set(DECISION_CODES)
    replays = await b.gate_many([r for r, _, _ in steps])
    assert [(d.outcome, d.code, d.replayed) for d in replays if isinstance(d, Decision)] == [(o, c, True) for o, c in got]


async def rule_rounding_to_hundredths(make: MakeBasket, cid: str) -> None:
    p = policy(channel_weights={"sms": 1.333}, capacity=5.34, priority_reserve=[])
    b = make(p)
    assert send_cost(p, "service", "sms") == 2.67
    assert (await b.gate(req(cid, "a", "service", "sms"))).balance == 2.67
    assert (await b.gate(req(cid, "b", "service", "sms"))).balance == 5.34
    assert (await b.gate(req(cid, "c", "service", "sms"))).outcome == "capped"


async def rule_gate_many_decides_in_order(make: MakeBasket, cid: str) -> None:
    b = make(policy(priority_reserve=[]))
    answers = await b.gate_many([req(cid, "a"), req(cid, "b"), req(cid, "c"), req(cid, "a")])
    ds = [d for d in answers if isinstance(d, Decision)]  # without return_exceptions an error raises
    assert [(d.outcome, d.code) for d in ds] == [("approved", "fits"), ("approved", "fits"), ("capped", "capacity"), ("approved", "fits")]
    assert [d.balance for d in ds] == [10.0, 20.0, 20.0, 10.0] and ds[3].replayed


async def rule_show_lists_the_period(make: MakeBasket, cid: str) -> None:
    b = make(policy())
    await b.gate(req(cid, "oct", at=datetime(2026, 10, 20, tzinfo=UTC)))
    await b.gate(req(cid, "nov", "service", "sms", at=T0, brand="brand-a", priority=4))
    await b.set_consent(cid, "push", None, False, T0)
    view = await b.show(cid, T0 + timedelta(days=1))
    assert (view.period, view.balance, view.capacity, view.locked_until) == ("2026-11", 3.0, 25.0, None)
    assert [(s.send_id, s.cost, s.channel, s.brand, s.priority, s.at) for s in view.spends] == [("nov", 3.0, "sms", "brand-a", 4, T0)]
    assert view.suppressions == ["push"]


RULES: list[Callable[[MakeBasket, str], Awaitable[None]]] = [obj for name, obj in sorted(globals().items()) if name.startswith("rule_")]


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
async def test_rule_on_memory_twin(rule: Callable[[MakeBasket, str], Awaitable[None]]) -> None:
    await rule(MemoryBasket, "c-" + uuid.uuid4().hex[:8])


# ---------------------------------------------------------------- pure helpers


def test_stored_records_decode_to_public_codes() -> None:
    """Records already in Redis keep their internal codes; the Decision carries the public one."""
    request = req("c-1", "s-1")
    stored = {
        "fits": ["approved", "fits", 1000, 1000, 2500, 2500, 0, "", "2026-11"],
        "exempt": ["approved", "exempt", 200, 2700, 2500, 2500, 0, "service", "2026-11"],
        "calamity": ["approved", "calamity", 2000, 4500, 2500, 2500, 0, "1794052800000", "2026-11"],
        "unsubscribed": ["suppressed", "suppressed", 1000, 0, 2500, 2500, 0, "sms@brand-a", "2026-11"],
        "locked": ["locked", "locked", 1000, 0, 2500, 2500, 1794052800000, "1794052800000", "2026-11"],
        "arbitration": ["capped", "arbitration", 1000, 0, 2500, 2500, 1794052800000, "9", "2026-11"],
        "reserve": ["capped", "reserve", 1000, 1000, 1500, 2500, 1794052800000, "2", "2026-11"],
        "capacity": ["capped", "capacity", 1000, 2000, 2500, 2500, 1794052800000, "8", "2026-11"],
    }
    assert set(stored) == set(DECISION_CODES)
    for code, record in stored.items():
        assert decision_from_record(request, json.loads(json.dumps(record)), False).code == code
    assert decision_from_record(request, stored["unsubscribed"], True).reason == "unsubscribed from sms for brand brand-a (sms@brand-a)"
    # an unknown stored code (a newer gate.lua during a rolling deploy) still decodes, by its outcome
    odd = decision_from_record(request, ["capped", "quota", 1000, 2000, 2500, 2500, 0, "", "2026-11"], False)
    assert (odd.code, odd.reason) == ("capacity", "capped: quota")


@pytest.mark.parametrize(
    ("outcome", "reason", "code"),
    [
        ("approved", "fits: 0 spent + 10 = 10 of 25", "fits"),
        ("approved", "service is exempt from capacity: 27 of 25 spent", "exempt"),
        ("approved", "calamity: approved regardless of capacity, 45 of 25 spent", "calamity"),
        ("suppressed", "unsubscribed from sms (sms)", "unsubscribed"),
        ("locked", "calamity lock until 2026-11-13T13:00:00Z", "locked"),
        ("capped", "arbitration: a priority-9 send went out within the window; retry at 2026-11-10T12:15:00Z", "arbitration"),
        ("capped", "reserve: priority 2 may fill only up to 15: 10 spent + 10", "reserve"),
        ("capped", "capacity 25 exceeded: 20 spent + 10", "capacity"),
        ("capped", "capacity exceeded", "capacity"),
    ],
)
def test_decision_without_a_code_gets_it_from_its_reason(outcome: str, reason: str, code: str) -> None:
    """Customer state stored before codes existed (a deferred send's decision) still loads, with the right code."""
    stored = {"send_id": "s", "customer_id": "c", "outcome": outcome, "reason": reason, "cost": 10, "balance": 20, "capacity": 25}
    stored |= {"period": "2026-11"}
    assert Decision.model_validate_json(json.dumps(stored)).code == code
    assert Decision.model_validate({**stored, "code": "fits"}).code == "fits"  # a stored code wins


def test_outbound_decision_record_carries_the_code() -> None:
    send = Send(
        send_id="s-1", customer_id="c-1", journey_id="j", journey_version=1, instance_id="i", step_id="remind",
        channel="sms", template="t", comm_type="commercial",
    )  # fmt: skip
    stored = ["suppressed", "suppressed", 1500, 0, 2500, 2500, 0, "sms", "2026-11"]
    decision = decision_from_record(send.gate_request(T0), stored, False)
    disposition = Disposition(send=send, decision=decision, result="suppressed")
    record = json.loads(DecisionRecord.of(disposition, T0).model_dump_json())
    assert (record["outcome"], record["code"], record["result"], record["reason"]) == (
        "suppressed",
        "unsubscribed",
        "suppressed",
        "unsubscribed from sms (sms)",
    )


def test_period_helpers() -> None:
    p = policy()
    instant = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)
    assert period_id(p, instant, "Europe/Berlin") == "2026-04"  # 00:30 local, after the DST change
    assert period_id(p, instant, "UTC") == "2026-03"
    assert period_id(p, instant, "Not/AZone") == "2026-03"  # unknown zones fall back to UTC
    start, end = period_bounds(p, instant, "Europe/Berlin")
    assert (start, end) == (datetime(2026, 4, 1, tzinfo=BERLIN).timestamp(), datetime(2026, 5, 1, tzinfo=BERLIN).timestamp())
    assert period_bounds(p, datetime(2026, 12, 15, tzinfo=UTC), "UTC")[1] == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    rolling = policy(period={"kind": "rolling", "days": 30})
    assert period_id(rolling, instant, "UTC") == "rolling-30d"
    assert period_bounds(rolling, instant, "UTC") == ((instant - timedelta(days=30)).timestamp(), instant.timestamp())


def test_costs_use_points_times_channel_weight() -> None:
    p = policy()
    assert [send_cost(p, t, "email") for t in ("service", "editorial", "commercial", "calamity")] == [2, 5, 10, 20]
    assert send_cost(p, "commercial", "sms") == 15 and send_cost(p, "commercial", "call_center") == 20
    assert send_cost(policy(channel_weights={"push": 0.125}), "service", "push") == 0.25  # 0.25 exactly
    assert send_cost(policy(channel_weights={"push": 0.1225}), "service", "push") == 0.25  # 0.245 rounds half-up


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(days=14)
    with pytest.raises(ValueError):
        parse_duration("3 days")


@pytest.mark.parametrize(
    ("members", "channel", "brand", "subscribed", "expected"),
    [
        (set(), "sms", None, False, {"sms"}),
        (set(), "all", "b", False, {"all@b"}),
        ({"sms", "sms@b", "email@b"}, "sms", None, True, {"email@b"}),
        ({"all"}, "sms", None, True, {"email", "push", "call_center", "direct_mail", "web_message", "in_app"}),
        ({"all@b", "all"}, "sms", "b", True, {"all", "email@b", "push@b", "call_center@b", "direct_mail@b", "web_message@b", "in_app@b"}),
        ({"sms", "all"}, "sms", "b", True, {"sms", "all"}),  # a brand resubscribe does not lift company-wide ones
        ({"sms@b", "email@b", "sms@c", "all"}, "all", "b", True, {"sms@c", "all"}),
        ({"sms@b", "all", "email"}, "all", None, True, set()),
    ],
)
def test_consent_algebra(members: set[str], channel: str, brand: str | None, subscribed: bool, expected: set[str]) -> None:
    assert apply_consent(members, channel, brand, subscribed) == expected


# ---------------------------------------------------------------- the policy file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pressure.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_committed_policy_is_valid_and_uses_the_documented_defaults() -> None:
    path = ROOT / "journeys" / "pressure.yaml"
    assert validate_policy_file(path) == []
    p = load_policy(path)
    assert p.capacity == 25 and p.points.commercial == 10 and p.calamity.lock == timedelta(hours=72)
    assert policy().model_dump() == PressurePolicy().model_dump() and PressurePolicy().arbitration_window is None


def test_empty_policy_file_means_defaults(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "# nothing set\n")) == PressurePolicy()


def test_policy_errors_point_at_file_line_col(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        period: {kind: rolling}
        capacity: lots
        points:
          commercial: 10
          promo: 3
        priority_reserve:
          - {max_priority: 3, fill_up_to: 15}
          - max_priority: 6
            fill_up_to: 20
        calamity:
          lock: 3 days
        exempt_types: [servce]
        """,
    )
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    problems = info.value.problems
    expect = {
        "period.days": (line_of(path, "period:"), "Field required"),
        "capacity": (line_of(path, "capacity:"), "valid number"),
        "points.promo": (line_of(path, "promo"), "unknown setting"),
        "calamity.lock": (line_of(path, "lock:"), "bad duration '3 days': use a whole number followed by a unit"),
        "exempt_types.0": (line_of(path, "exempt_types"), "'service'"),
    }
    assert len(problems) == len(expect), problems
    for loc, (line, text) in expect.items():
        hits = [p for p in problems if f":{line}:" in p and f" {loc}: " in p and text in p]
        assert hits, f"no problem for {loc} at line {line} containing {text!r} in {problems}"
        assert hits[0].startswith(f"{path}:{line}:")


def test_cross_field_problems_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        capacity: 25
        priority_reserve:
          - {max_priority: 3, fill_up_to: 15}
          - max_priority: 3
            fill_up_to: 30
        """,
    )
    problems = validate_policy_file(path)
    fill = line_of(path, "fill_up_to: 30")
    dup = line_of(path, "- max_priority: 3")
    assert f"{path}:{fill}:5: priority_reserve.1.fill_up_to: fill_up_to 30 exceeds the capacity 25" in problems
    assert any(p.startswith(f"{path}:{dup}:5: priority_reserve.1.max_priority: max_priority 3 is already used") for p in problems)
    assert len(problems) == 2


def test_yaml_syntax_and_shape_errors(tmp_path: Path) -> None:
    bad = write(tmp_path, "capacity: [1,\n")
    [problem] = validate_policy_file(bad)
    assert problem.startswith(f"{bad}:2:1: invalid YAML")
    assert validate_policy_file(write(tmp_path, "- 1\n- 2\n")) == [
        f"{tmp_path / 'pressure.yaml'}:1:1: the policy must be a mapping of settings, got list"
    ]
    missing = tmp_path / "absent.yaml"
    [problem] = validate_policy_file(missing)
    assert problem.startswith(f"{missing}:1:1: cannot read the policy")


# ---------------------------------------------------------------- yamlpos


def test_yaml_positions_and_locate(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nlist:\n  - {x: 1, y: 2}\n  - x: 3\n    y: 4\nnested:\n  deep:\n    k: v\n")
    data, pos = load_yaml_with_positions(path)
    assert data["list"][1] == {"x": 3, "y": 4}
    assert pos[()] == (1, 1) and pos[("a",)] == (1, 1)
    assert pos[("list", 0, "y")] == (3, 12) and pos[("list", 1)] == (4, 5) and pos[("list", 1, "y")] == (5, 5)
    assert locate(pos, ("nested", "deep", "k")) == (8, 5)
    assert locate(pos, ("nested", "deep", "missing")) == (7, 3)  # nearest existing parent
    assert locate(pos, ("list", "function-after[x]", 1, "y")) == (5, 5)  # union tags are skipped
    assert locate(pos, ("nowhere",)) == (1, 1)
    assert loads_yaml_with_positions("") == (None, {(): (1, 1)})

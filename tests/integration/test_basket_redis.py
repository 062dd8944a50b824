"""The Redis Lua basket on a real Redis: every rule, the twin differential, concurrency, replay, keys.

Every test uses its own key prefix and customer ids (uuid), so tests can share one Redis; each
test deletes its own keys afterwards (never FLUSHALL).
Each test runs on one Redis (``redis_url``) and on a Redis Cluster (``redis_cluster_url``: three masters).
``BASKET_DIFF_SEQUENCES`` sets how many random sequences the differential test runs (default 1500 on one
Redis, a third of that on the cluster: the rules are the same script, what the cluster adds is routing).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from orchestrator.events import Channel
from orchestrator.pressure.basket import CommType, Decision, GateRequest
from orchestrator.pressure.connect import RedisClient, RedisMode, check_redis, redis_client
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.periods import period_info
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.redis_basket import RedisBasket
from orchestrator.pressure.restore import restore_calls
from orchestrator.records import DecisionRecord
from orchestrator.timeutil import to_ms
from tests.unit.test_pressure_memory import RULES, MakeBasket, req

pytestmark = pytest.mark.integration


@pytest.fixture(params=["single", "cluster"])
def mode(request: pytest.FixtureRequest) -> RedisMode:
    """Every test runs on one Redis and on a Redis Cluster (3 masters)."""
    return cast(RedisMode, request.param)


@pytest.fixture
def url(mode: RedisMode, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_cluster_url" if mode == "cluster" else "redis_url"))


@pytest.fixture
async def client(url: str, mode: RedisMode) -> AsyncIterator[RedisClient]:
    r = redis_client(url, mode, max_connections=200)
    await check_redis(r, mode, url)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture
async def prefix(client: RedisClient) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"test-basket-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        keys = [k async for k in client.scan_iter(match=f"{name}:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.unlink(*keys[i : i + 5000])


def new_customer(tag: str = "c") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


async def customer_keys(r: RedisClient, prefix: str, cid: str) -> list[str]:
    return sorted([k.decode() async for k in r.scan_iter(match=f"{prefix}:{{{cid}}}:*", count=1000)])


# ---------------------------------------------------------------- each rule on Redis


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
async def test_rule_on_redis(rule: Callable[[MakeBasket, str], Awaitable[None]], client: RedisClient, prefix: str) -> None:
    await rule(lambda policy: RedisBasket(client, policy, prefix=prefix), new_customer())


# ---------------------------------------------------------------- differential: Lua gate vs twin

POLICIES: list[dict[str, Any]] = [
    {},
    {
        "arbitration_window": "20m",
        "calamity": {"lock": "6h"},
        "channel_weights": {"sms": 1.333, "push": 0.7},
        "exempt_types": ["service"],
    },
    {
        "period": {"kind": "rolling", "days": 3},
        "arbitration_window": "1h",
        "calamity": {"lock": "2h", "blocks": ["commercial", "editorial", "service"]},
    },
    {
        "period": {"kind": "rolling", "days": 1},
        "capacity": 12.5,
        "priority_reserve": [{"max_priority": 5, "fill_up_to": 7.5}],
        "points": {"editorial": 2.5},
    },
    {
        "capacity": 40,
        "priority_reserve": [{"max_priority": 9, "fill_up_to": 30}, {"max_priority": 2, "fill_up_to": 10}],
        "calamity": {"lock": "0s"},
    },
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "Australia/Lord_Howe", "Not/AZone"]
TYPES: list[CommType] = ["service", "editorial", "commercial", "calamity"]
CHANNELS: list[Channel] = ["email", "sms", "push", "call_center", "direct_mail", "web_message", "in_app"]
BRANDS = [None, "brand-a", "brand-b"]
STEPS = [
    timedelta(0),
    timedelta(seconds=1),
    timedelta(minutes=7),
    timedelta(hours=1),
    timedelta(hours=9),
    timedelta(days=1),
    timedelta(days=4),
    -timedelta(minutes=30),
]


def random_start(rng: random.Random) -> datetime:
    """Often just before a month end, so sequences cross period boundaries in some zone."""
    month = datetime(2026 + rng.randint(0, 1), rng.randint(1, 12), 1, tzinfo=UTC)
    if rng.random() < 0.6:
        return month - timedelta(hours=rng.randint(0, 30), minutes=rng.randint(0, 59))
    return month + timedelta(days=rng.randint(0, 27), seconds=rng.randint(0, 86399), microseconds=rng.randint(0, 999999))


async def run_sequence(seed: int, redis_basket: RedisBasket, twin: MemoryBasket, run_id: str) -> int:
    """One random operation sequence through both baskets; returns the number of gate decisions compared."""
    rng = random.Random(seed)
    customers = [f"{run_id}-{seed}-{i}" for i in range(rng.randint(1, 3))]
    tz_of = {c: rng.choice(ZONES) for c in customers}
    now = random_start(rng)
    sent: list[tuple[str, str]] = []
    compared = 0

    def make_request() -> GateRequest:
        nonlocal now
        now += rng.choice(STEPS)
        if sent and rng.random() < 0.2:
            cid, send_id = rng.choice(sent)  # a replay, possibly with a different payload
        else:
            cid, send_id = rng.choice(customers), f"s{len(sent)}"
            sent.append((cid, send_id))
        return GateRequest(
            send_id=send_id, customer_id=cid, comm_type=rng.choices(TYPES, weights=[4, 4, 6, 1])[0],
            channel=rng.choice(CHANNELS), brand=rng.choice(BRANDS), priority=rng.randint(1, 10),
            timezone=tz_of[cid] if rng.random() < 0.9 else rng.choice(ZONES), now=now,
        )  # fmt: skip

    for step in range(rng.randint(5, 40)):
        roll = rng.random()
        if roll < 0.70:
            request = make_request()
            got, want = await redis_basket.gate(request), await twin.gate(request)
            assert got == want, f"seed {seed} step {step}: {request!r}\n redis: {got!r}\n twin:  {want!r}"
            compared += 1
        elif roll < 0.80:
            batch = [make_request() for _ in range(rng.randint(2, 5))]
            got_many, want_many = await redis_basket.gate_many(batch), await twin.gate_many(batch)
            assert got_many == want_many, f"seed {seed} step {step} (gate_many): {batch!r}\n redis: {got_many!r}\n twin:  {want_many!r}"
            compared += len(batch)
        elif roll < 0.92:
            cid = rng.choice(customers)
            args = (cid, rng.choice(CHANNELS + ["all"]), rng.choice(BRANDS), rng.random() < 0.4, now)
            await redis_basket.set_consent(*args)
            await twin.set_consent(*args)
        else:
            cid = rng.choice(customers)
            got_view, want_view = await redis_basket.show(cid, now, tz_of[cid]), await twin.show(cid, now, tz_of[cid])
            assert got_view == want_view, f"seed {seed} step {step} (show {cid})"
    for cid in customers:
        assert await redis_basket.show(cid, now, tz_of[cid]) == await twin.show(cid, now, tz_of[cid]), f"seed {seed}: final view of {cid}"
    return compared


async def test_differential_lua_gate_vs_twin(client: RedisClient, mode: RedisMode, prefix: str) -> None:
    sequences = int(os.environ.get("BASKET_DIFF_SEQUENCES", "1500")) // (3 if mode == "cluster" else 1)
    run_id = new_customer("diff")
    policies = [PressurePolicy.model_validate(p) for p in POLICIES]
    # one twin per policy; customer ids are unique per sequence so sequences do not interact
    pairs = [(RedisBasket(client, p, prefix=prefix), MemoryBasket(p)) for p in policies]
    outcomes: dict[str, int] = {}
    compared = 0
    for seed in range(sequences):
        redis_basket, twin = pairs[seed % len(pairs)]
        compared += await run_sequence(seed, redis_basket, twin, run_id)
    for _, twin in pairs:
        for state in twin._customers.values():
            for record in state.decisions.values():
                outcomes[f"{record[0]}/{record[1]}"] = outcomes.get(f"{record[0]}/{record[1]}", 0) + 1
    print(f"differential: {sequences} sequences, {compared} gate decisions compared, outcomes {sorted(outcomes.items())}")
    # the random sequences must actually reach every rule, or the comparison proves little
    for code in ("approved/fits", "approved/calamity", "approved/exempt", "suppressed/suppressed", "locked/locked",
                 "capped/arbitration", "capped/reserve", "capped/capacity"):  # fmt: skip
        assert outcomes.get(code, 0) >= 10, f"{code} reached only {outcomes.get(code, 0)} times: {outcomes}"


# ---------------------------------------------------------------- concurrency and replay


async def test_fifty_concurrent_gates_never_overspend(url: str, mode: RedisMode, prefix: str) -> None:
    policy = PressurePolicy.model_validate({"priority_reserve": []})
    cid = new_customer()
    clients = [redis_client(url, mode, max_connections=20) for _ in range(5)]  # five "workers"
    try:
        baskets = [RedisBasket(c, policy, prefix=prefix) for c in clients]
        rng = random.Random(7)
        requests = [
            req(
                cid,
                f"send-{i}",
                rng.choice(["service", "editorial", "commercial"]),
                rng.choice(["email", "sms", "call_center"]),
                priority=9,
            )
            for i in range(50)
        ]
        decisions = await asyncio.gather(*(baskets[i % 5].gate(r) for i, r in enumerate(requests)))
        approved = [d for d in decisions if d.outcome == "approved"]
        view = await baskets[0].show(cid, requests[0].now)
        assert view.balance <= policy.capacity
        assert round(sum(d.cost for d in approved), 2) == view.balance
        assert sorted(s.send_id for s in view.spends) == sorted(d.send_id for d in approved)
        assert {d.outcome for d in decisions} == {"approved", "capped"}
        # every capped send really did not fit at the moment it was decided
        assert all(d.balance + d.cost > policy.capacity for d in decisions if d.outcome == "capped")
    finally:
        for c in clients:
            await c.aclose()


async def test_replayed_send_id_spends_once_even_concurrently(client: RedisClient, prefix: str) -> None:
    basket = RedisBasket(client, PressurePolicy(), prefix=prefix)
    cid = new_customer()
    decisions = await asyncio.gather(*(basket.gate(req(cid, "the-one", "commercial", "sms")) for _ in range(50)))
    assert sum(not d.replayed for d in decisions) == 1
    assert {d.model_copy(update={"replayed": False}) for d in decisions} == {decisions[0].model_copy(update={"replayed": False})}
    assert (await basket.show(cid, decisions[0].retry_at or req(cid, "x").now)).balance == 15.0


async def test_lost_script_is_reloaded(client: RedisClient, prefix: str) -> None:
    basket = RedisBasket(client, PressurePolicy(), prefix=prefix)
    cid = new_customer()
    basket._sha = "0" * 40  # as if the server had been restarted / SCRIPT FLUSHed
    assert (await basket.gate(req(cid, "a"))).outcome == "approved"
    assert basket._sha != "0" * 40
    basket._sha = "0" * 40
    answers = await basket.gate_many([req(cid, "b", "service"), req(cid, "a")])
    ds = [d for d in answers if isinstance(d, Decision)]  # without return_exceptions an error raises
    assert [(d.outcome, d.replayed, d.balance) for d in ds] == [("approved", False, 12.0), ("approved", True, 10.0)]


async def test_records_already_in_redis_replay_with_their_public_code(client: RedisClient, prefix: str) -> None:
    """Stored records keep the internal code 'suppressed' (records already in Redis included); decoded, they carry 'unsubscribed'."""
    basket = RedisBasket(client, PressurePolicy(), prefix=prefix)
    cid = new_customer()
    old = ["suppressed", "suppressed", 1000, 0, 2500, 2500, 0, "email@brand-a", "2026-11"]
    await client.set(basket.key(cid, "sent", "old"), json.dumps(old, separators=(",", ":")))
    d = await basket.gate(req(cid, "old", brand="brand-a"))
    assert (d.outcome, d.code, d.replayed, d.reason) == (
        "suppressed",
        "unsubscribed",
        True,
        "unsubscribed from email for brand brand-a (email@brand-a)",
    )
    await basket.set_consent(cid, "sms", None, False, req(cid, "x").now)
    fresh = await basket.gate(req(cid, "new", channel="sms"))
    assert (fresh.outcome, fresh.code) == ("suppressed", "unsubscribed")
    raw = await client.get(basket.key(cid, "sent", "new"))
    assert raw is not None
    stored = json.loads(raw)
    assert stored[:2] == ["suppressed", "suppressed"]  # the stored record format is unchanged


async def test_concurrent_consent_changes_all_land(client: RedisClient, prefix: str) -> None:
    basket = RedisBasket(client, PressurePolicy(), prefix=prefix)
    cid = new_customer()
    now = datetime(2026, 11, 1, tzinfo=UTC)
    await asyncio.gather(*(basket.set_consent(cid, ch, b, False, now) for ch in CHANNELS for b in BRANDS))
    view = await basket.show(cid, now)
    assert len(view.suppressions) == len(CHANNELS) * len(BRANDS)


# ---------------------------------------------------------------- keys: hash tag and TTLs


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes (between the first '{' and the next '}')."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


@pytest.mark.parametrize("period", [{"kind": "calendar_month"}, {"kind": "rolling", "days": 30}])
async def test_keys_carry_the_customer_tag_and_expire_after_their_period(client: RedisClient, prefix: str, period: dict[str, Any]) -> None:
    policy = PressurePolicy.model_validate({"period": period, "arbitration_window": "15m", "key_margin": "2d"})
    basket = RedisBasket(client, policy, prefix=prefix)
    cid = new_customer()
    now = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    await basket.gate(req(cid, "a", at=now, tz="Europe/Berlin"))
    await basket.gate(req(cid, "cal", "calamity", at=now, tz="Europe/Berlin"))
    await basket.set_consent(cid, "sms", None, False, now)
    keys = await customer_keys(client, basket.prefix, cid)
    assert len(keys) == 7, keys  # 2 decisions, suppressed, lock, arb, spent/window, spends
    assert all(hash_tag(k) == cid for k in keys)

    info = period_info(policy, now, "Europe/Berlin")
    margin = 2 * 86_400_000
    period_ttl = (info.window_ms if info.kind == "rolling" else info.end_ms - to_ms(now)) + margin
    expected = {
        basket.key(cid, "suppressed"): -1,  # consent does not expire
        basket.key(cid, "lock"): 72 * 3_600_000,
        basket.key(cid, "arb"): 15 * 60_000,
        basket.key(cid, "sent", "a"): period_ttl,
        basket.key(cid, "sent", "cal"): period_ttl,
        basket.key(cid, "spends", info.id): period_ttl,
        basket.key(cid, "window") if info.kind == "rolling" else basket.key(cid, "spent", info.id): period_ttl,
    }
    assert set(expected) == set(keys)
    for key, ttl in expected.items():
        actual = await client.pttl(key)
        if ttl == -1:
            assert actual == -1, key
        else:
            assert ttl - 10_000 < actual <= ttl, f"{key}: pttl {actual}, expected about {ttl}"


async def test_keys_really_expire_when_the_period_ends(client: RedisClient, prefix: str) -> None:
    basket = RedisBasket(client, PressurePolicy.model_validate({"key_margin": "0s"}), prefix=prefix)
    cid = new_customer()
    month_end = datetime(2026, 12, 1, tzinfo=UTC)
    await basket.gate(req(cid, "a", at=month_end - timedelta(milliseconds=300)))
    await basket.set_consent(cid, "sms", None, False, month_end)
    assert len(await customer_keys(client, basket.prefix, cid)) == 4
    await asyncio.sleep(0.6)
    assert await customer_keys(client, basket.prefix, cid) == [basket.key(cid, "suppressed")]


# ---------------------------------------------------------------- rebuilt from the decisions topic


def record_of(request: GateRequest, d: Decision) -> DecisionRecord:
    """The decision as the worker publishes it on the decisions topic (the fields a rebuild reads)."""
    return DecisionRecord(
        send_id=request.send_id, customer_id=request.customer_id, journey_id="j", journey_version=1, step_id="s",
        channel=request.channel, comm_type=request.comm_type, priority=request.priority, outcome=d.outcome,
        code=d.code, result="approved", reason=d.reason, cost=d.cost, balance=d.balance, capacity=d.capacity,
        period=d.period, retry_at=d.retry_at, decided_at=request.now, brand=request.brand, timezone=request.timezone,
    )  # fmt: skip


def _essentials(d: Decision) -> tuple[object, ...]:
    """What a journey acts on (the reason's wording of a rebuilt record may differ: see pressure/restore.py)."""
    return (d.outcome, d.code, d.cost, d.balance, d.capacity, d.period, d.retry_at, d.replayed)


async def test_a_basket_rebuilt_from_its_decisions_decides_as_if_nothing_was_lost(client: RedisClient, prefix: str) -> None:
    """Random sequences on Redis and on the twin; then Redis loses every key but the suppressions (consent is not on the
    decisions topic) and gets the decisions back: each customer's basket reads, replays and decides as the twin's."""
    rebuilt = 0
    for seed in range(60):
        policy = PressurePolicy.model_validate(POLICIES[seed % len(POLICIES)])
        redis_basket, twin = RedisBasket(client, policy, prefix=prefix), MemoryBasket(policy)
        rng = random.Random(10_000 + seed)
        customers = [new_customer(f"rb{seed}") for _ in range(rng.randint(1, 3))]
        tz_of = {c: rng.choice(ZONES) for c in customers}
        now = random_start(rng)
        published: list[DecisionRecord] = []
        requests: dict[str, GateRequest] = {}
        for n in range(rng.randint(5, 40)):
            now += rng.choice(STEPS)
            cid = rng.choice(customers)
            if rng.random() < 0.15:
                args = (cid, rng.choice([*CHANNELS, "all"]), rng.choice(BRANDS), rng.random() < 0.4, now)
                await redis_basket.set_consent(*args)
                await twin.set_consent(*args)
                continue
            send_id = rng.choice(list(requests)) if requests and rng.random() < 0.2 else f"s{n}"
            request = GateRequest(
                send_id=send_id, customer_id=requests[send_id].customer_id if send_id in requests else cid,
                comm_type=rng.choices(TYPES, weights=[4, 4, 6, 1])[0], channel=rng.choice(CHANNELS),
                brand=rng.choice(BRANDS), priority=rng.randint(1, 10), timezone=tz_of[cid], now=now,
            )  # fmt: skip
            requests.setdefault(send_id, request)
            decision = await redis_basket.gate(request)
            assert decision == await twin.gate(request)
            published.append(record_of(request, decision))

        now = max(r.decided_at for r in published)  # the sequence's clock may step back; a rebuild happens at its latest time
        for cid in customers:  # Redis loses the customers' data; the suppressions are given back by hand
            keys = [k for k in await customer_keys(client, prefix, cid) if not k.endswith(":suppressed")]
            if keys:
                await client.delete(*keys)
        calls = restore_calls(policy, published, now)
        rebuilt += await redis_basket.restore(calls, now)
        assert await redis_basket.restore(calls, now) == 0, "a second rebuild writes nothing"

        for cid in customers:
            assert await redis_basket.show(cid, now, tz_of[cid]) == await twin.show(cid, now, tz_of[cid]), f"seed {seed}: {cid}"
        for call in calls:  # a replayed send id gets its first answer again
            again = requests[call.send_id].model_copy(update={"now": now})
            assert _essentials(await redis_basket.gate(again)) == _essentials(await twin.gate(again)), f"seed {seed}: {call.send_id}"
        for cid in customers:  # and a new send is decided as if nothing had been lost
            for k in range(3):
                fresh = GateRequest(
                    send_id=f"new-{k}", customer_id=cid, comm_type=rng.choice(TYPES), channel=rng.choice(CHANNELS),
                    priority=rng.randint(1, 10), timezone=tz_of[cid], now=now + timedelta(minutes=k),
                )  # fmt: skip
                assert await redis_basket.gate(fresh) == await twin.gate(fresh), f"seed {seed}: {fresh!r}"
    assert rebuilt > 300, f"only {rebuilt} decisions rebuilt: the sequences prove little"

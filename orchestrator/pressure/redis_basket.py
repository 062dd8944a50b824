"""The production basket: one atomic Lua script (``gate.lua``) in Redis.

The script is loaded once and called by SHA (:class:`~orchestrator.pressure.scripts.LuaScript`,
which also covers a server that lost it). :meth:`RedisBasket.gate_many` sends several ``EVALSHA`` in one pipelined
round trip (on Redis Cluster: one round trip per master, in parallel). Every key of a
customer carries the ``{customer_id}`` hash tag, so each call, and the consent
transaction, touches one slot of one cluster node.

Key layout (``prefix`` defaults to ``pressure``)::

    pressure:{c42}:sent:<send_id>     decision record of a send id
    pressure:{c42}:suppressed         set of suppressions (sms, all, sms@brand, all@brand)
    pressure:{c42}:lock               calamity lock end (ms)
    pressure:{c42}:arb                priority -> last approval (ms), for arbitration
    pressure:{c42}:spent:2026-11      points spent in a calendar month   (rolling: :window zset)
    pressure:{c42}:spends:2026-11     send_id -> spend record             (rolling: :spends:rolling-30d)
    pressure:{marks}:<app id>         customer partition -> when Redis got it (one key per cluster master)

Redis is a cache of the decisions topic: :meth:`RedisBasket.restore` writes decisions back
(``restore.lua``) after a master lost its data, which :meth:`RedisBasket.unmarked` detects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import WatchError

from orchestrator.pressure.basket import BasketView, Decision, GateRequest
from orchestrator.pressure.connect import RedisClient, RedisMode, redis_client
from orchestrator.pressure.consent import apply_consent
from orchestrator.pressure.periods import period_info
from orchestrator.pressure.planner import GatePlan, GatePlanner
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.records import basket_view, decision_from_record, record_cost
from orchestrator.pressure.restore import RestoreCall
from orchestrator.pressure.scripts import LuaScript, script_source
from orchestrator.timeutil import to_ms

__all__ = ["RedisBasket", "gate_script"]


def gate_script() -> str:
    """The source of ``gate.lua``."""
    return script_source("gate.lua")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBasket:
    """A :class:`~orchestrator.pressure.basket.Basket` backed by Redis and ``gate.lua``."""

    def __init__(self, redis: RedisClient, policy: PressurePolicy, *, prefix: str = "pressure") -> None:
        self.redis = redis
        self.prefix = prefix
        self._gate = LuaScript("gate.lua")
        self._restore = LuaScript("restore.lua")
        self._planner = GatePlanner(policy)

    @property
    def policy(self) -> PressurePolicy:
        """The policy this basket decides by (make a new basket to change it)."""
        return self._planner.policy

    @classmethod
    def from_url(cls, url: str, policy: PressurePolicy, *, prefix: str = "pressure", mode: RedisMode = "single") -> RedisBasket:
        """A basket on a new client for ``url`` (e.g. ``redis://localhost:6379/0``; ``mode`` cluster: a seed node)."""
        return cls(redis_client(url, mode), policy, prefix=prefix)

    async def aclose(self) -> None:
        """Close the Redis client."""
        await self.redis.aclose()

    # -- keys

    def key(self, customer_id: str, *parts: str) -> str:
        """``<prefix>:{<customer_id>}:<parts...>`` — the hash tag keeps one customer in one cluster slot."""
        return ":".join((self.prefix, "{" + customer_id + "}", *parts))

    def _keys(self, plan: GatePlan) -> list[str]:
        c, p = plan.customer_id, plan.period
        spent = self.key(c, "window") if p.kind == "rolling" else self.key(c, "spent", p.id)
        return [
            self.key(c, "sent", plan.send_id),
            self.key(c, "suppressed"),
            self.key(c, "lock"),
            self.key(c, "arb"),
            spent,
            self.key(c, "spends", p.id),
        ]

    @staticmethod
    def _argv(plan: GatePlan) -> str:
        """ARGV[1] of ``gate.lua``: one JSON array (see the script's header for the order)."""
        p = plan.period
        return json.dumps([
            plan.now_ms, p.kind, p.id, p.end_ms, p.window_ms,
            plan.cost, plan.limit, plan.capacity,
            int(plan.is_calamity), int(plan.blocked_by_lock), int(plan.exempt),
            plan.lock_ms, plan.arbitration_ms, plan.priority,
            plan.comm_type, plan.channel, plan.brand, plan.ttl_ms,
            plan.spend_record, plan.send_id,
        ], separators=(",", ":"), ensure_ascii=False)  # fmt: skip

    # -- the gate

    @property
    def _sha(self) -> str | None:
        """The loaded gate script's SHA (tests set it to simulate a server that lost it)."""
        return self._gate.sha

    @_sha.setter
    def _sha(self, sha: str | None) -> None:
        self._gate.sha = sha

    async def load_script(self) -> str:
        """``SCRIPT LOAD`` the gate and remember its SHA (on a cluster: on every master)."""
        return await self._gate.load(self.redis)

    def _decision(self, request: GateRequest, reply: Sequence[Any]) -> Decision:
        replayed, record = reply
        return decision_from_record(request, json.loads(_text(record)), bool(int(replayed)))

    async def gate(self, request: GateRequest) -> Decision:
        """Decide one send atomically in Redis."""
        plan = self._planner.plan(request)
        return self._decision(request, await self._gate.call(self.redis, self._keys(plan), self._argv(plan)))

    async def gate_many(self, requests: Sequence[GateRequest], *, return_exceptions: bool = False) -> list[Decision | BaseException]:
        """Decide several sends in order, pipelined in one round trip (one per cluster master).

        Each call is atomic on its own; the batch is not a transaction (see
        :meth:`LuaScript.call_many`, which also covers a server that lost the script).
        An error reply (e.g. ``OOM``, ``READONLY``) for one call is raised, or with
        ``return_exceptions`` returned in that call's place; a lost connection raises.
        """
        plans = [self._planner.plan(r) for r in requests]
        replies = await self._gate.call_many(self.redis, [(self._keys(p), self._argv(p)) for p in plans])
        out: list[Decision | BaseException] = []
        for request, reply in zip(requests, replies, strict=True):
            if isinstance(reply, Exception):
                if not return_exceptions:
                    raise reply
                out.append(reply)
            else:
                out.append(self._decision(request, reply))
        return out

    # -- rebuilding from the decisions topic (pressure/restore.py)

    def mark_keys(self, scope: str) -> list[str]:
        """The keys recording which customer partitions of ``scope`` (an app id) Redis holds: one per master.

        A master that lost its data lost its mark too, so a missing field says: rebuild that
        partition. On a cluster each key's hash tag is chosen to fall on a different master.
        """
        if not isinstance(self.redis, RedisCluster):
            return [f"{self.prefix}:{{marks}}:{scope}"]
        masters = {n.name for n in self.redis.get_primaries()}
        keys: dict[str, str] = {}
        for i in range(100 * len(masters) + 100):
            key = f"{self.prefix}:{{marks-{i}}}:{scope}"
            node = self.redis.get_node_from_key(key)
            if node is not None:
                keys.setdefault(node.name, key)
            if len(keys) == len(masters):
                break
        return sorted(keys.values())

    async def check_permissions(self, scope: str) -> None:
        """Raise ``NoPermissionError`` now when the Redis user may not do what every batch does first
        (load the scripts, read the partition marks); what the scripts call is checked when they run."""
        await self._gate.load(self.redis)
        await self._restore.load(self.redis)
        await self.unmarked(scope, [0])

    async def _topology(self) -> None:
        """A cluster client that has not met the cluster yet (Redis was down at start) learns its masters now."""
        if isinstance(self.redis, RedisCluster) and not self.redis.get_primaries():
            await self.redis.initialize()

    async def unmarked(self, scope: str, partitions: Sequence[int]) -> list[int]:
        """The partitions some master does not hold the mark of (it lost its data, or never had them)."""
        if not partitions:
            return []
        await self._topology()
        fields = [str(p) for p in partitions]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.mark_keys(scope):
                pipe.hmget(key, fields)
            answers = await pipe.execute()
        return [p for i, p in enumerate(partitions) if any(a[i] is None for a in answers)]

    async def mark(self, scope: str, partitions: Sequence[int], now: datetime) -> None:
        """Record on every master that it holds ``partitions`` (after a rebuild, or for a new deployment)."""
        stamp = to_ms(now)
        await self._topology()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.mark_keys(scope):
                pipe.hset(key, mapping={str(p): stamp for p in partitions})
            await pipe.execute()

    async def restore(self, calls: Sequence[RestoreCall], now: datetime, chunk: int = 1000) -> int:
        """Write ``calls`` back with ``restore.lua``, ``chunk`` per round trip; returns how many Redis did not have.

        An error reply raises (the caller retries the whole rebuild: it is idempotent).
        """
        written = 0
        now_ms = to_ms(now)
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            replies = await self._restore.call_many(self.redis, [self._restore_call(c, now_ms) for c in part])
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
                written += int(reply)
        return written

    async def restore_suppressions(self, latest: Mapping[str, Sequence[str]], chunk: int = 1000) -> int:
        """Replace each customer's suppression set by ``latest[customer]`` (the last one published); returns the customers.

        Run while no consent change of these customers can be applied (the worker holds its batches).
        """
        items = list(latest.items())
        for start in range(0, len(items), chunk):
            async with self.redis.pipeline(transaction=False) as pipe:
                for customer_id, members in items[start : start + chunk]:
                    key = self.key(customer_id, "suppressed")
                    pipe.delete(key)
                    if members:
                        pipe.sadd(key, *members)
                await pipe.execute()
        return len(items)

    def _restore_call(self, c: RestoreCall, now_ms: int) -> tuple[list[str], str]:
        cid = c.customer_id
        spent = self.key(cid, "window") if c.rolling else self.key(cid, "spent", c.period)
        keys = [self.key(cid, "sent", c.send_id), spent, self.key(cid, "spends", c.period), self.key(cid, "lock"), self.key(cid, "arb")]
        argv = json.dumps([
            c.record, int(c.approved), int(c.rolling), c.at_ms, c.cost, c.spend_record, c.send_id,
            c.ttl_ms, now_ms, c.lock_until_ms, c.arbitration_priority, c.arbitration_until_ms,
        ], separators=(",", ":"), ensure_ascii=False)  # fmt: skip
        return keys, argv

    # -- consent and inspection

    async def set_consent(self, customer_id: str, channel: str, brand: str | None, subscribed: bool, at: datetime) -> list[str]:
        """Apply one consent change to the suppression set (optimistic WATCH/MULTI, retried on conflict).

        One key, so on a cluster the transaction runs on the one node of its slot.

        Changes apply in the order they arrive (one writer per customer partition);
        ``at`` is accepted for the interface and not stored.
        """
        key = self.key(customer_id, "suppressed")
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    current = {_text(m) for m in await pipe.smembers(key)}
                    wanted = apply_consent(current, channel, brand, subscribed)
                    pipe.multi()
                    if current - wanted:
                        pipe.srem(key, *(current - wanted))
                    if wanted - current:
                        pipe.sadd(key, *(wanted - current))
                    await pipe.execute()
                    return sorted(wanted)
                except WatchError:
                    continue

    async def show(self, customer_id: str, now: datetime, timezone: str = "UTC") -> BasketView:
        """The customer's basket in the period containing ``now`` (read-only)."""
        info = period_info(self.policy, now, timezone)
        c = customer_id
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key(c, "spends", info.id))
            if info.kind == "rolling":
                pipe.zrangebyscore(self.key(c, "window"), f"({info.start_ms}", "+inf")
            else:
                pipe.get(self.key(c, "spent", info.id))
            pipe.get(self.key(c, "lock"))
            pipe.smembers(self.key(c, "suppressed"))
            records, spent, lock, suppressed = await pipe.execute()
        records = {_text(k): _text(v) for k, v in records.items()}
        if info.kind == "rolling":
            records = {s: records[s] for s in map(_text, spent) if s in records}
            balance = sum(record_cost(r) for r in records.values())
        else:
            balance = int(spent or 0)
        return basket_view(self.policy, customer_id, info, records, balance, int(lock or 0), now, map(_text, suppressed))

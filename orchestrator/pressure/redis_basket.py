"""The production basket: one atomic Lua script (``gate.lua``) in Redis.

The script is loaded once (``SCRIPT LOAD``) and called by SHA (``EVALSHA``); when the
server has lost it (restart, ``SCRIPT FLUSH``) it is loaded again and the call
retried. :meth:`RedisBasket.gate_many` sends several ``EVALSHA`` in one pipelined
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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, WatchError

from orchestrator.pressure.basket import BasketView, Decision, GateRequest
from orchestrator.pressure.connect import RedisClient, RedisMode, redis_client
from orchestrator.pressure.consent import apply_consent
from orchestrator.pressure.periods import period_info
from orchestrator.pressure.planner import GatePlan, GatePlanner
from orchestrator.pressure.policy import PressurePolicy
from orchestrator.pressure.records import basket_view, decision_from_record, record_cost

__all__ = ["RedisBasket", "gate_script"]


def gate_script() -> str:
    """The source of ``gate.lua``."""
    return resources.files("orchestrator.pressure").joinpath("gate.lua").read_text(encoding="utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBasket:
    """A :class:`~orchestrator.pressure.basket.Basket` backed by Redis and ``gate.lua``."""

    def __init__(self, redis: RedisClient, policy: PressurePolicy, *, prefix: str = "pressure") -> None:
        self.redis = redis
        self.prefix = prefix
        self._script = gate_script()
        self._sha: str | None = None
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

    # -- the script

    async def load_script(self) -> str:
        """``SCRIPT LOAD`` the gate and remember its SHA (on a cluster: on every master)."""
        self._sha = _text(await self.redis.script_load(self._script))
        return self._sha

    def _decision(self, request: GateRequest, reply: Sequence[Any]) -> Decision:
        replayed, record = reply
        return decision_from_record(request, json.loads(_text(record)), bool(int(replayed)))

    async def gate(self, request: GateRequest) -> Decision:
        """Decide one send atomically in Redis."""
        plan = self._planner.plan(request)
        keys, argv = self._keys(plan), self._argv(plan)
        sha = self._sha or await self.load_script()
        try:
            reply = await self.redis.evalsha(sha, len(keys), *keys, argv)
        except NoScriptError:  # lost by the server: run the source this once, load it for the next call
            reply = await self.redis.eval(self._script, len(keys), *keys, argv)
            await self.load_script()
        return self._decision(request, reply)

    async def gate_many(self, requests: Sequence[GateRequest], *, return_exceptions: bool = False) -> list[Decision | BaseException]:
        """Decide several sends in order, pipelined in one round trip.

        Each ``EVALSHA`` is atomic on its own; the batch is not a transaction. If a
        server lost the script (restart, ``SCRIPT FLUSH``, a promoted cluster replica),
        the calls that failed with NOSCRIPT are sent again, in order, as ``EVAL`` (which
        needs no loaded script), and the script is loaded again for the next batch; the
        others are not repeated.
        An error reply (e.g. ``OOM``, ``READONLY``) for one call is raised, or with
        ``return_exceptions`` returned in that call's place; a lost connection raises.
        """
        if not requests:
            return []
        plans = [self._planner.plan(r) for r in requests]
        sha = self._sha or await self.load_script()
        replies = await self._pipeline(sha, plans)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for i, reply in zip(missing, await self._pipeline(None, [plans[i] for i in missing]), strict=True):
                replies[i] = reply
            await self.load_script()
        out: list[Decision | BaseException] = []
        for request, reply in zip(requests, replies, strict=True):
            if isinstance(reply, Exception):
                if not return_exceptions:
                    raise reply
                out.append(reply)
            else:
                out.append(self._decision(request, reply))
        return out

    async def _pipeline(self, sha: str | None, plans: Sequence[GatePlan]) -> list[Any]:
        """One pipelined round trip (per cluster master) of ``EVALSHA sha`` calls, or ``EVAL`` calls when ``sha`` is None.

        ``execute_command("EVALSHA", ...)`` rather than ``pipe.evalsha``: redis-py 8.1 refuses
        ``evalsha`` on a cluster pipeline (redis-py #2914), though it routes the command by
        its keys like any other; all keys of one call share a slot.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for plan in plans:
                keys = self._keys(plan)
                if sha is None:
                    pipe.execute_command("EVAL", self._script, len(keys), *keys, self._argv(plan))
                else:
                    pipe.execute_command("EVALSHA", sha, len(keys), *keys, self._argv(plan))
            return list(await pipe.execute(raise_on_error=False))

    # -- consent and inspection

    async def set_consent(self, customer_id: str, channel: str, brand: str | None, subscribed: bool, at: datetime) -> None:
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
                    return
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

"""A Lua script of the basket, called by SHA, on one Redis or a Redis Cluster.

The script is loaded once (``SCRIPT LOAD``, on a cluster on every master) and called by
SHA. A server that lost it (restart, ``SCRIPT FLUSH``, a promoted replica, which never
got the master's script cache) answers NOSCRIPT: the call is sent again as ``EVAL``
(which needs nothing loaded) and the script loaded again for the next call.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from orchestrator.pressure.connect import RedisClient

__all__ = ["LuaCall", "LuaScript", "script_source"]

LuaCall = tuple[Sequence[str], str]
"""The keys of one call and its one ARGV (a JSON array)."""


def script_source(name: str) -> str:
    """The source of ``orchestrator/pressure/<name>``."""
    return resources.files("orchestrator.pressure").joinpath(name).read_text(encoding="utf-8")


class LuaScript:
    """One script, its SHA once loaded, and the two ways to call it (one call, a pipelined batch)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = script_source(name)
        self.sha: str | None = None

    async def load(self, redis: RedisClient) -> str:
        """``SCRIPT LOAD`` (on a cluster: every master) and remember the SHA."""
        sha = await redis.script_load(self.source)
        self.sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        return self.sha

    async def call(self, redis: RedisClient, keys: Sequence[str], argv: str) -> Any:
        """One call; its error reply is raised."""
        sha = self.sha or await self.load(redis)
        try:
            return await redis.evalsha(sha, len(keys), *keys, argv)
        except NoScriptError:
            reply = await redis.eval(self.source, len(keys), *keys, argv)
            await self.load(redis)
            return reply

    async def call_many(self, redis: RedisClient, calls: Sequence[LuaCall]) -> list[Any]:
        """All ``calls`` in one pipelined round trip (on a cluster: one per master, in parallel), in order.

        Each call is atomic on its own; the batch is not a transaction. An error reply is
        returned in its call's place (an exception object); a lost connection raises. Calls
        answered NOSCRIPT are sent again, in order, as ``EVAL``; the others are not repeated.
        """
        if not calls:
            return []
        sha = self.sha or await self.load(redis)
        replies = await self._pipeline(redis, sha, calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            again = await self._pipeline(redis, None, [calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
            await self.load(redis)
        return replies

    async def _pipeline(self, redis: RedisClient, sha: str | None, calls: Sequence[LuaCall]) -> list[Any]:
        """``EVALSHA sha`` calls, or ``EVAL`` calls when ``sha`` is None, in one pipeline.

        ``execute_command("EVALSHA", ...)`` rather than ``pipe.evalsha``: redis-py 8.1 refuses
        ``evalsha`` on a cluster pipeline (redis-py #2914), though it routes the command by
        its keys like any other; all keys of one call share a slot.
        """
        async with redis.pipeline(transaction=False) as pipe:
            for keys, argv in calls:
                if sha is None:
                    pipe.execute_command("EVAL", self.source, len(keys), *keys, argv)
                else:
                    pipe.execute_command("EVALSHA", sha, len(keys), *keys, argv)
            return list(await pipe.execute(raise_on_error=False))

"""The one place a Redis client is built and checked: one node or a Redis Cluster, TLS, timeouts.

Every Redis user (the worker, ``orchestrator basket show``, tests, benchmarks) gets its
client from :func:`redis_client`, and a long-lived one is checked once with
:func:`check_redis` before it is used: it says, in one line and with what to change, when
the URL names a cluster node but ``ORCH_REDIS_MODE`` is ``single`` (or the other way
round), or when Redis refuses the user and password. A wrong mode is a configuration
error, never a per-message failure: a single-mode client on a cluster gets ``MOVED`` for
every key of another master.

Cluster mode uses redis-py's asyncio :class:`~redis.asyncio.cluster.RedisCluster` with
``REDIS_URL`` naming one seed node; the client learns the others from it.
:func:`check_redis` initialises it before the first burst of concurrent calls (redis-py
issue #3935: concurrent first calls on an uninitialised cluster client race).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.cluster import RedisCluster

__all__ = ["RedisClient", "RedisMode", "RedisSetupError", "check_redis", "redacted_url", "redis_client", "setup_hint"]

RedisMode = Literal["single", "cluster"]
RedisClient: TypeAlias = aioredis.Redis | RedisCluster


class RedisSetupError(RuntimeError):
    """Redis is reachable but set up differently from what the settings say; the message says what to change."""


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redis_client(
    url: str,
    mode: RedisMode = "single",
    *,
    ca_file: Path | None = None,
    timeout: float = 5.0,
    max_connections: int | None = None,
) -> RedisClient:
    """A client for ``url`` (``redis://`` or ``rediss://``, user and password in the URL).

    ``ca_file``: the CA that signed the server's certificate for ``rediss://`` (system CAs
    when unset). ``timeout`` bounds connecting and every reply, so a frozen Redis is a
    transient error the caller retries, not a hang. ``max_connections``: per node.
    """
    kw: dict[str, object] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if url.startswith("rediss://") and ca_file is not None:
        kw["ssl_ca_certs"] = str(ca_file)
    if mode == "cluster":
        if max_connections is not None:
            kw["max_connections"] = max_connections
        return RedisCluster.from_url(url, **kw)
    kw["health_check_interval"] = 15
    if max_connections is not None:
        kw["max_connections"] = max_connections
    return aioredis.Redis.from_url(url, **kw)  # type: ignore[arg-type]


async def check_redis(client: RedisClient, mode: RedisMode, url: str) -> None:
    """Raise :class:`RedisSetupError` when Redis refuses the credentials or runs in the other mode.

    Unreachable Redis raises redis-py's ``ConnectionError`` / ``TimeoutError`` (transient:
    the caller may start anyway and retry). A cluster client is initialised here.
    """
    where = redacted_url(url)
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()
        await client.ping()
        info = await client.info("cluster")
    except rex.AuthenticationError as exc:
        raise RedisSetupError(f"Redis at {where} refused the user or password ({exc}); check the user:password in REDIS_URL") from exc
    except rex.NoPermissionError as exc:
        raise RedisSetupError(f"Redis at {where}: the user may not run PING or INFO ({exc}); see the ACL in the README") from exc
    except rex.RedisClusterException as exc:
        text = str(exc).lower()
        if "username-password" in text or "invalid password" in text:  # the seed node refused the login
            raise RedisSetupError(f"Redis at {where} refused the user or password ({exc}); check the user:password in REDIS_URL") from exc
        if "cluster mode is not enabled" in text:
            raise RedisSetupError(
                f"ORCH_REDIS_MODE=cluster, but Redis at {where} is not a cluster node; set ORCH_REDIS_MODE=single"
            ) from exc
        raise rex.ConnectionError(f"Redis Cluster at {where} unreachable: {exc}") from exc
    enabled = _cluster_enabled(info)
    if mode == "single" and enabled:
        raise RedisSetupError(
            f"Redis at {where} is a Redis Cluster node (cluster_enabled:1), but ORCH_REDIS_MODE=single; set ORCH_REDIS_MODE=cluster"
        )
    if mode == "cluster" and not enabled:
        raise RedisSetupError(f"ORCH_REDIS_MODE=cluster, but Redis at {where} is not a cluster node; set ORCH_REDIS_MODE=single")


def _cluster_enabled(info: object) -> bool:
    """``cluster_enabled`` of ``INFO cluster`` (a cluster client answers per node: any node counts)."""
    if isinstance(info, dict):
        if "cluster_enabled" in info:
            return bool(int(info["cluster_enabled"]))
        return any(_cluster_enabled(v) for v in info.values() if isinstance(v, dict))
    return False


def setup_hint(exc: BaseException, mode: RedisMode) -> str:
    """A hint for a retry warning when the failure is Redis's set-up, not a passing fault.

    A single-mode client answered ``MOVED``/``ASK`` talks to a cluster; ``NOPERM``: the Redis
    user lacks a command or key the basket needs.
    """
    if mode == "single" and isinstance(exc, rex.AskError):
        return " (Redis answered MOVED/ASK: REDIS_URL names a Redis Cluster; set ORCH_REDIS_MODE=cluster)"
    if isinstance(exc, rex.NoPermissionError):
        return " (the Redis user may not do this: give it the README's ACL SETUSER rules)"
    return ""

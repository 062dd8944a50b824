"""Which Redis failures the worker retries, the hint for a wrong mode, and URLs without passwords."""

from __future__ import annotations

import redis.exceptions as rex

from orchestrator.pressure.connect import redacted_url, redis_client, setup_hint
from orchestrator.runtime.context import dependency_of, is_suspect, is_transient


def test_a_cluster_in_failover_is_retried_not_dead_lettered() -> None:
    # redis-py strips the CLUSTERDOWN word from the reply text: the class must decide, not the text
    down = rex.ClusterDownError("The cluster is down")
    assert "CLUSTERDOWN" not in str(down)
    for exc in (
        down,
        rex.MasterDownError("Link with MASTER is down"),
        rex.TryAgainError("Multiple keys request during rehashing of slot"),
        rex.MovedError("3999 127.0.0.1:7001"),
        rex.AskError("3999 127.0.0.1:7001"),
        rex.SlotNotCoveredError("no node for slot 3999"),
        rex.RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node"),
    ):
        assert is_transient(exc), exc
        assert not is_suspect(exc)
        assert dependency_of(exc) == "redis"


def test_a_cross_slot_bug_is_not_retried_forever() -> None:
    assert not is_transient(rex.CrossSlotTransactionError("All keys involved in a cluster transaction must map to the same slot"))
    assert is_suspect(rex.CrossSlotTransactionError("x"))


def test_moved_in_single_mode_says_to_set_the_cluster_mode() -> None:
    moved = rex.MovedError("3999 127.0.0.1:7001")
    assert "ORCH_REDIS_MODE=cluster" in setup_hint(moved, "single")
    assert setup_hint(moved, "cluster") == ""
    assert setup_hint(rex.ConnectionError("refused"), "single") == ""


def test_a_missing_acl_permission_waits_with_a_hint_and_dead_letters_nothing() -> None:
    noperm = rex.NoPermissionError("this user has no permissions to run the 'hmget' command")
    assert is_transient(noperm) and dependency_of(noperm) == "redis"
    assert "ACL SETUSER" in setup_hint(noperm, "single")


def test_passwords_never_reach_a_message() -> None:
    assert redacted_url("rediss://orchestrator:s3cret@10.0.0.1:6380/0") == "rediss://orchestrator:***@10.0.0.1:6380/0"
    assert redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_one_factory_for_both_modes() -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    single = redis_client("redis://127.0.0.1:1/0", "single", timeout=1.5)
    cluster = redis_client("redis://127.0.0.1:1/0", "cluster")
    assert isinstance(single, Redis) and isinstance(cluster, RedisCluster)
    assert single.connection_pool.connection_kwargs["socket_timeout"] == 1.5

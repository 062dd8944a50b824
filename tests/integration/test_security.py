"""A worker whose every connection is secured, on a private ``stack/stack up --secure``.

The settings are exactly the README's ("Running against an existing cluster"): Kafka over
SASL_SSL with SCRAM-SHA-512 and the stack's CA, Redis over ``rediss://`` as the ACL user
``orchestrator`` (keys ``~pressure:*`` only) with ``ORCH_REDIS_CA_FILE``. The harness itself
produces and consumes on the plaintext listener.

- a cart journey end to end: an event in, the send request out, the basket charged in Redis
  (read back as the ACL user);
- the ACL user cannot touch a key outside ``pressure:*``;
- a wrong Redis password, a wrong Kafka SASL password: ``orchestrator worker`` exits non-zero
  with one line on stderr naming what to fix, and no traceback.

The Redis user has the README's ``ACL SETUSER`` rules (``WORKER_ACL_COMMANDS``; the tests hold the
README and the ACL ``stack/stack up --secure`` writes to them). One stack for the module, one worker
start; the refused starts are short-lived processes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from orchestrator.dev.private_stack import PrivateStack, StackError
from orchestrator.pressure.basket import BasketView
from orchestrator.pressure.connect import redis_client
from orchestrator.pressure.policy import load_policy
from orchestrator.pressure.redis_basket import RedisBasket
from tests.integration.helpers import ROOT, Deployment, cart, install_journey, metric, wait_until

pytestmark = pytest.mark.integration


WORKER_ACL_KEYS = "~pressure:*"
WORKER_ACL_COMMANDS = (
    # connection checks (orchestrator worker's start, /ready)
    "ping", "info",
    # the basket's Lua scripts, and the commands they call (gate.lua, restore.lua)
    "script|load", "evalsha", "eval",
    "get", "set", "pttl", "pexpire", "incrby", "hget", "hmget", "hset", "smismember",
    "zadd", "zrange", "zrangebyscore", "zremrangebyscore",
    # which customer partitions Redis holds (HMGET/HSET above); consent: a WATCH/MULTI transaction
    "smembers", "sadd", "srem", "watch", "multi", "exec", "discard", "unwatch",
    # a basket rebuild replaces a customer's suppression set (DEL, then SADD)
    "del",
    # orchestrator basket show (with get, zrangebyscore, smembers above)
    "hgetall",
)  # fmt: skip
"""What the worker's Redis user may do: the README's ``ACL SETUSER`` line (``test_the_readme_documents_this_acl``)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """One ``stack/stack up --secure`` for the module; stopped and wiped at the end.

    The stack's ACL user ``orchestrator`` has the README's rules (checked here), so what the tests
    prove is what the README documents.
    """
    try:
        stack = PrivateStack.up(tmp_path_factory.mktemp("secure-stack"), "--secure")
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        with redis.Redis.from_url(stack.redis, decode_responses=True) as admin:
            # Redis folds rules into categories (+@transaction ...): compare with a user given the README's rules
            version = tuple(int(x) for x in str(admin.info("server")["redis_version"]).split(".")[:2])
            extra = ["+client|setinfo"] if version >= (7, 2) else []  # the README's note for 7.2 and later
            rules = [*(f"+{c}" for c in WORKER_ACL_COMMANDS), *extra]
            admin.execute_command("ACL", "SETUSER", "readme", "reset", WORKER_ACL_KEYS, "resetchannels", "-@all", *rules)
            readme, ours = admin.acl_getuser("readme"), admin.acl_getuser("orchestrator")
            admin.acl_deluser("readme")
        assert (ours["commands"], ours["keys"], ours["channels"]) == (readme["commands"], readme["keys"], readme["channels"]), (
            f"stack/stack's ACL differs from the README's: {ours} vs {readme}"
        )
        yield stack
    finally:
        stack.down()


def test_the_readme_documents_this_acl() -> None:
    [line] = [ln.strip() for ln in (ROOT / "README.md").read_text().splitlines() if ln.strip().startswith("ACL SETUSER orchestrator ")]
    words = line.split()
    assert WORKER_ACL_KEYS in words and "-@all" in words and "resetchannels" in words, line
    assert sorted(w[1:] for w in words if w.startswith("+")) == sorted(WORKER_ACL_COMMANDS), line


def secured(stack: PrivateStack, *, kafka_password: str | None = None, redis_url: str | None = None) -> dict[str, str]:
    """The worker's settings for the secured stack, as the README documents them."""
    ex = stack.exports
    return {
        "KAFKA_BOOTSTRAP_SERVERS": ex["KAFKA_SECURE_BOOTSTRAP_SERVERS"],
        "ORCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ORCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "ORCH_KAFKA_SASL_USERNAME": ex["KAFKA_SASL_USERNAME"],
        "ORCH_KAFKA_SASL_PASSWORD": kafka_password or ex["KAFKA_SASL_PASSWORD"],
        "ORCH_KAFKA_SSL_CAFILE": ex["STACK_CA_FILE"],
        "REDIS_URL": redis_url or ex["REDIS_TLS_URL"],
        "ORCH_REDIS_CA_FILE": ex["STACK_CA_FILE"],
    }


@pytest.fixture
def dep(stack: PrivateStack, unique: str, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment on the private stack; the harness's own clients use its plaintext ports."""
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    shutil.copy(ROOT / "journeys" / "pressure.yaml", journeys / "pressure.yaml")
    shutil.copy(ROOT / "journeys" / "profile.yaml", journeys / "profile.yaml")
    deployment = Deployment(prefix=unique, kafka=stack.kafka, redis=stack.redis, journeys_dir=journeys, tmp=tmp_path)
    install_journey(deployment, timeout="1h")  # the first mail only: no reminder within the test
    try:
        yield deployment
    finally:
        for worker in deployment.workers:
            if worker.stop() not in (0, None, -15):
                print(worker.log_tail())


def test_a_fully_secured_worker_runs_a_cart_journey(stack: PrivateStack, dep: Deployment) -> None:
    worker = dep.start_worker(True, **secured(stack))
    customer = f"{dep.prefix}-c1"
    dep.publish("web", cart(customer))

    sends = dep.read("sends", until=lambda rs: any(r.key == customer for r in rs), timeout=60)
    [send] = [r.json() for r in sends if r.key == customer]
    assert (send["template"], send["channel"], send["journey_id"]) == ("cart_reminder", "email", "abandoned_cart")
    assert send["basket_balance"] == 10

    # the basket in Redis was charged: read back as the worker's own ACL user over TLS
    view = asyncio.run(basket_of(stack, dep, customer))
    assert view.balance == 10
    assert [s.send_id for s in view.spends] == [send["send_id"]]

    # ready: partitions held, the lag probe read the group's lag over SASL_SSL, Redis answers PING over TLS
    assert wait_until(lambda: (worker.ready() or {}).get("kafka") is True, timeout=30), worker.ready()
    assert worker.ready() == {**(worker.ready() or {}), "assigned": True, "kafka": True, "redis": True}
    assert metric(worker.metrics(), "orchestrator_consumer_lag_read_timestamp_seconds") > 0


async def basket_of(stack: PrivateStack, dep: Deployment, customer: str) -> BasketView:
    """The customer's basket as ``orchestrator basket show`` reads it, as the worker's ACL user over TLS."""
    ca = Path(stack.exports["STACK_CA_FILE"])
    basket = RedisBasket(redis_client(stack.exports["REDIS_TLS_URL"], ca_file=ca), load_policy(dep.journeys_dir / "pressure.yaml"))
    try:
        return await basket.show(customer, datetime.now(UTC))
    finally:
        await basket.aclose()


async def test_the_worker_redis_user_reaches_only_pressure_keys(stack: PrivateStack, unique: str) -> None:
    client = redis_client(stack.exports["REDIS_TLS_URL"], ca_file=Path(stack.exports["STACK_CA_FILE"]))
    try:
        assert await client.set(f"pressure:{{{unique}}}:k", "v", ex=60)
        with pytest.raises(NoPermissionError):
            await client.set(f"other:{{{unique}}}:k", "v", ex=60)
        with pytest.raises(NoPermissionError):
            await client.get(f"other:{{{unique}}}:k")
    finally:
        await client.aclose()


def refused_start(dep: Deployment, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``orchestrator worker`` with ``env`` that must refuse to start: its exit code and output."""
    full = {**dep.env(ORCH_DATA_DIR=str(dep.tmp / "refused"), ORCH_PSEUDONYM_KEY="test-key"), **env}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "worker"], env=full, capture_output=True, text=True, timeout=90, cwd=ROOT
    )


def assert_one_clear_line(run: subprocess.CompletedProcess[str], *names: str) -> str:
    assert run.returncode != 0, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    print(lines[0])  # shown with -rP: what an operator reads
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_a_wrong_redis_password_refuses_the_start_in_one_line(stack: PrivateStack, dep: Deployment) -> None:
    good = stack.exports["REDIS_TLS_URL"]
    password = good.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    run = refused_start(dep, secured(stack, redis_url=good.replace(f":{password}@", ":not-the-password@")))
    line = assert_one_clear_line(run, "REDIS_URL", "orchestrator")
    assert "not-the-password" not in line and password not in line


def test_a_wrong_kafka_password_refuses_the_start_in_one_line(stack: PrivateStack, dep: Deployment) -> None:
    run = refused_start(dep, secured(stack, kafka_password="not-the-password"))
    line = assert_one_clear_line(run, "ORCH_KAFKA_SASL_PASSWORD", stack.exports["KAFKA_SECURE_BOOTSTRAP_SERVERS"])
    assert "not-the-password" not in line


def test_a_redis_user_without_the_basket_commands_refuses_the_start_in_one_line(stack: PrivateStack, dep: Deployment) -> None:
    """A user the ACL left short (here: no HMGET, which the partition marks need) is a set-up error, not a per-batch one."""
    good = stack.exports["REDIS_TLS_URL"]
    short = [c for c in WORKER_ACL_COMMANDS if c != "hmget"]
    with redis.Redis.from_url(stack.redis) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "short", "reset", "on", ">short-pw", WORKER_ACL_KEYS, "resetchannels", "-@all", *(f"+{c}" for c in short)
        )
    try:
        url = good.replace(good.split("://", 1)[1].split("@", 1)[0], "short:short-pw")
        run = refused_start(dep, secured(stack, redis_url=url))
        assert_one_clear_line(run, "ACL SETUSER", "hmget")
    finally:
        with redis.Redis.from_url(stack.redis) as admin:
            admin.acl_deluser("short")

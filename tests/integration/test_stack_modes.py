"""The opt-in modes of ``stack/stack up`` on private stacks: ``--redis-cluster`` and ``--secure``, and Redis's AOF.

- ``--redis-cluster``: six nodes, ``cluster_state:ok`` on each, 3 masters each with one replica,
  a key set through ``RedisCluster`` reads back; AOF is on; the export lines name the first node.
- ``--secure``: an aiokafka round trip over SASL_SSL with SCRAM-SHA-512 and the stack's CA, a
  wrong password is refused; the Redis ACL user over ``rediss://`` may use ``pressure:*`` keys
  (also as KEYS of EVAL) and nothing else, nor FLUSHALL; AOF is on (default user, plain port).
- A stack without flags still prints exactly the two export lines it always did.

Each mode gets one private stack, class-scoped so that only one runs at a time.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError

from orchestrator.dev.private_stack import STACK, PrivateStack, StackError

pytestmark = pytest.mark.integration


def _private_stack(home: Path, *flags: str) -> Iterator[PrivateStack]:
    try:
        stack = PrivateStack.up(home, *flags)
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        yield stack
    finally:
        stack.down()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_plain_mode_prints_the_two_export_lines(tmp_path: Path) -> None:
    """Without a mode ``env`` (as ``up``) prints the same two lines as always (no stack needed for the format)."""
    env = {"PATH": "/usr/bin:/bin", "STACK_HOME": str(tmp_path), "STACK_KAFKA_PORT": "19092", "STACK_REDIS_PORT": "16379"}
    out = subprocess.run([str(STACK), "env"], env=env, capture_output=True, text=True, check=True).stdout
    assert out == "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092\nexport REDIS_URL=redis://127.0.0.1:16379/0\n"


@pytest.fixture(scope="class")
def cluster_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """``stack/stack up --redis-cluster``, for the tests of one class."""
    yield from _private_stack(tmp_path_factory.mktemp("cluster-mode"), "--redis-cluster")


@pytest.fixture(scope="class")
def secure_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """``stack/stack up --secure``, for the tests of one class."""
    yield from _private_stack(tmp_path_factory.mktemp("secure-mode"), "--secure")


class TestRedisCluster:
    @pytest.fixture
    def stack(self, cluster_mode: PrivateStack) -> PrivateStack:
        return cluster_mode

    def test_exports(self, stack: PrivateStack) -> None:
        first = int(stack.env["STACK_REDIS_CLUSTER_PORT"])
        assert stack.exports == {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{stack.env['STACK_KAFKA_PORT']}",
            "REDIS_URL": f"redis://127.0.0.1:{first}/0",
            "ORCH_REDIS_MODE": "cluster",
        }
        assert stack.redis == stack.exports["REDIS_URL"]

    def test_three_masters_each_with_a_replica(self, stack: PrivateStack) -> None:
        first = int(stack.env["STACK_REDIS_CLUSTER_PORT"])
        ports = list(range(first, first + 6))
        for port in ports:
            with redis.Redis(port=port) as node:
                info = node.cluster("INFO")
                assert info["cluster_state"] == "ok", (port, info)
                assert int(info["cluster_slots_assigned"]) == 16384
                assert node.config_get("appendonly") == {"appendonly": "yes"}
        with redis.Redis(port=first) as node:
            nodes = node.cluster("NODES")
        masters = {n["node_id"]: addr for addr, n in nodes.items() if "master" in n["flags"]}
        replicas = {addr: n["master_id"] for addr, n in nodes.items() if "slave" in n["flags"]}
        assert len(masters) == 3 and len(replicas) == 3, nodes
        assert set(replicas.values()) == set(masters), nodes
        assert {int(addr.split(":")[1]) for addr in nodes} == set(ports)

    async def test_a_key_set_through_the_cluster_client_reads_back(self, stack: PrivateStack) -> None:
        client = RedisCluster.from_url(stack.redis, decode_responses=True)
        try:
            keys = {f"stack-modes:{uuid.uuid4().hex}": str(i) for i in range(12)}  # spread over the slots
            for key, value in keys.items():
                await client.set(key, value, ex=60)
            assert {key: await client.get(key) for key in keys} == keys
            assert len({client.keyslot(k) for k in keys}) > 1
        finally:
            await client.aclose()


class TestSecure:
    @pytest.fixture
    def stack(self, secure_mode: PrivateStack) -> PrivateStack:
        return secure_mode

    def test_exports(self, stack: PrivateStack) -> None:
        ex, env = stack.exports, stack.env
        assert set(ex) == {
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "KAFKA_SECURE_BOOTSTRAP_SERVERS",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD",
            "STACK_CA_FILE",
            "REDIS_TLS_URL",
        }
        assert ex["KAFKA_SECURE_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{env['STACK_KAFKA_SECURE_PORT']}"
        assert ex["KAFKA_SASL_USERNAME"] == "orchestrator"
        assert Path(ex["STACK_CA_FILE"]) == Path(env["STACK_HOME"]) / "tls" / "ca.pem"
        assert ex["REDIS_TLS_URL"].startswith("rediss://orchestrator:")
        assert ex["REDIS_TLS_URL"].endswith(f"@127.0.0.1:{env['STACK_REDIS_TLS_PORT']}/0")
        for name in ("kafka.password", "redis.password", "server.key"):
            assert (Path(env["STACK_HOME"]) / "tls" / name).stat().st_mode & 0o077 == 0, name

    def _kafka_security(self, stack: PrivateStack, password: str) -> dict[str, object]:
        return {
            "bootstrap_servers": stack.exports["KAFKA_SECURE_BOOTSTRAP_SERVERS"],
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": stack.exports["KAFKA_SASL_USERNAME"],
            "sasl_plain_password": password,
            "ssl_context": ssl.create_default_context(cafile=stack.exports["STACK_CA_FILE"]),
        }

    async def test_kafka_round_trip_over_sasl_ssl_scram(self, stack: PrivateStack) -> None:
        security = self._kafka_security(stack, stack.exports["KAFKA_SASL_PASSWORD"])
        topic = f"stack-modes-{uuid.uuid4().hex[:8]}"
        producer = AIOKafkaProducer(**security)
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, b"hello over TLS", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(**security, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, meta.partition)])
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        assert (record.key, record.value, record.offset) == (b"k", b"hello over TLS", meta.offset)

    async def test_a_wrong_kafka_password_is_refused(self, stack: PrivateStack) -> None:
        producer = AIOKafkaProducer(**self._kafka_security(stack, "not-the-password"), request_timeout_ms=10000)
        with pytest.raises(KafkaError):
            await asyncio.wait_for(producer.start(), timeout=30)
        await producer.stop()

    async def test_redis_acl_user_over_tls_only_reaches_pressure_keys(self, stack: PrivateStack) -> None:
        client = aioredis.Redis.from_url(stack.exports["REDIS_TLS_URL"], ssl_ca_certs=stack.exports["STACK_CA_FILE"])
        try:
            assert await client.set("pressure:{x}:k", "v", ex=60)
            assert await client.get("pressure:{x}:k") == b"v"
            # Redis 7 checks the KEYS of a script against the user's key patterns too
            assert await client.eval("return redis.call('GET', KEYS[1])", 1, "pressure:{x}:k") == b"v"
            with pytest.raises(NoPermissionError):
                await client.set("other:k", "v")
            with pytest.raises(NoPermissionError):
                await client.get("other:k")
            with pytest.raises(NoPermissionError):
                await client.eval("return redis.call('GET', KEYS[1])", 1, "other:k")
            for admin in (("FLUSHALL",), ("CONFIG", "GET", "appendonly"), ("KEYS", "*")):
                with pytest.raises(NoPermissionError):
                    await client.execute_command(*admin)
        finally:
            await client.aclose()

    def test_redis_tls_needs_the_stack_ca(self, stack: PrivateStack) -> None:
        client = redis.Redis.from_url(stack.exports["REDIS_TLS_URL"])  # system CAs only: our CA is unknown
        with pytest.raises(redis.ConnectionError):
            client.ping()
        client.close()

    def test_redis_default_user_on_the_plain_port_has_aof_on(self, stack: PrivateStack) -> None:
        with redis.Redis(port=_port(stack.redis)) as plain:
            assert plain.config_get("appendonly") == {"appendonly": "yes"}
            assert plain.config_get("appendfsync") == {"appendfsync": "everysec"}
            assert plain.config_get("save") == {"save": ""}

"""Where the integration tests get Kafka and Redis from.

In this order, for each of the two:
1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when set (a shared or CI broker);
2. testcontainers, when a Docker engine answers;
3. the project's own local stack (``stack/stack up``), which this session then stops
   again — unless it was already running, in which case it is left as found.

Unit tests request none of these fixtures and so never start a server. Every
integration test names its own topics / consumer groups / Redis keys (see
``unique``), so tests can share one broker.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "stack" / "stack"


@dataclass
class Endpoints:
    kafka: str | None = None
    redis: str | None = None
    source: str = ""
    _cleanup: list = field(default_factory=list)


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


def _from_testcontainers(ep: Endpoints, need_kafka: bool, need_redis: bool) -> None:
    if need_kafka:
        from testcontainers.kafka import KafkaContainer

        kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
        kafka.start()
        ep.kafka = kafka.get_bootstrap_server()
        ep._cleanup.append(kafka.stop)
    if need_redis:
        from testcontainers.redis import RedisContainer

        redis = RedisContainer("redis:7.0")
        redis.start()
        ep.redis = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        ep._cleanup.append(redis.stop)
    ep.source = "testcontainers"


def _from_local_stack(ep: Endpoints) -> None:
    already = subprocess.run([str(STACK), "status"], capture_output=True, text=True).returncode == 0
    up = subprocess.run([str(STACK), "up"], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        pytest.exit(f"local stack failed to start:\n{up.stdout}\n{up.stderr}", returncode=3)
    exports = dict(re.findall(r"export (\w+)=(\S+)", up.stdout))
    ep.kafka = ep.kafka or exports["KAFKA_BOOTSTRAP_SERVERS"]
    ep.redis = ep.redis or exports["REDIS_URL"]
    ep.source = "local stack (already running)" if already else "local stack"
    if not already:
        ep._cleanup.append(lambda: subprocess.run([str(STACK), "down"], capture_output=True, timeout=120))


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    ep = Endpoints(kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), redis=os.environ.get("REDIS_URL"))
    if ep.kafka and ep.redis:
        ep.source = "environment"
    elif _docker_answers():
        _from_testcontainers(ep, need_kafka=not ep.kafka, need_redis=not ep.redis)
    else:
        _from_local_stack(ep)
    try:
        yield ep
    finally:
        for stop in reversed(ep._cleanup):
            stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(endpoints: Endpoints) -> str:
    assert endpoints.kafka
    return endpoints.kafka


@pytest.fixture(scope="session")
def redis_url(endpoints: Endpoints) -> str:
    assert endpoints.redis
    return endpoints.redis


@pytest.fixture
def unique() -> str:
    """A short id for this test's topics, consumer groups and keys."""
    return "t" + uuid.uuid4().hex[:10]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        "brokers: KAFKA_BOOTSTRAP_SERVERS/REDIS_URL if set, else testcontainers if Docker answers, else stack/stack",
    ]

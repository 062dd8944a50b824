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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from orchestrator.dev.private_stack import PrivateStack

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "stack" / "stack"


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@pytest.fixture(scope="session")
def docker_engine() -> bool:
    return _docker_answers()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[dict[str, str]]:
    """``stack/stack up`` once per session; stopped at the end unless it was already running."""
    already = subprocess.run([str(STACK), "status"], capture_output=True, text=True).returncode == 0
    up = subprocess.run([str(STACK), "up"], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        pytest.exit(f"local stack failed to start:\n{up.stdout}\n{up.stderr}", returncode=3)
    exports = dict(re.findall(r"export (\w+)=(\S+)", up.stdout))
    try:
        yield exports
    finally:
        if not already:
            subprocess.run([str(STACK), "down"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, docker_engine: bool) -> Iterator[str]:
    """Kafka bootstrap servers: env, else testcontainers, else the local stack."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif docker_engine:
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        yield request.getfixturevalue("local_stack")["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, docker_engine: bool) -> Iterator[str]:
    """Redis URL: env, else testcontainers, else the local stack."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    elif docker_engine:
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7.0") as redis:
            yield f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
    else:
        yield request.getfixturevalue("local_stack")["REDIS_URL"]


@pytest.fixture(scope="session")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """A private Kafka + Redis Cluster (3 masters, 3 replicas; ``stack/stack up --redis-cluster``) for this session.

    Always private: the cluster tests kill a master. Stopped and wiped at the end.
    """
    from orchestrator.dev.private_stack import PrivateStack, StackError

    try:
        stack = PrivateStack.up(tmp_path_factory.mktemp("cluster-stack"), "--redis-cluster")
    except StackError as exc:
        pytest.exit(str(exc), returncode=3)
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def redis_cluster_url(request: pytest.FixtureRequest) -> str:
    """A Redis Cluster seed node: ``REDIS_CLUSTER_URL`` when set, else the private cluster stack's."""
    if os.environ.get("REDIS_CLUSTER_URL"):
        return os.environ["REDIS_CLUSTER_URL"]
    stack: PrivateStack = request.getfixturevalue("cluster_stack")
    return stack.redis


@pytest.fixture
def unique() -> str:
    """A short id for this test's topics, consumer groups and keys."""
    return "t" + uuid.uuid4().hex[:10]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        "brokers: KAFKA_BOOTSTRAP_SERVERS/REDIS_URL if set, else testcontainers if Docker answers, else stack/stack",
    ]

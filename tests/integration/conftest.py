"""Integration fixtures: one isolated deployment per test on the shared broker and Redis."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from orchestrator.dev.processes import free_port
from tests.conftest import STACK
from tests.integration.helpers import ROOT, Deployment


@pytest.fixture
def deployment(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Deployment]:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    shutil.copy(ROOT / "journeys" / "pressure.yaml", journeys / "pressure.yaml")
    shutil.copy(ROOT / "journeys" / "profile.yaml", journeys / "profile.yaml")
    dep = Deployment(prefix=unique, kafka=kafka_bootstrap, redis=redis_url, journeys_dir=journeys, tmp=tmp_path)
    try:
        yield dep
    finally:
        for worker in dep.workers:
            code = worker.stop()
            if code not in (0, None, -15):
                print(worker.log_tail())


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A Redis of this test's own, so it can be frozen or broken without disturbing other tests."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not on PATH (needed for a private Redis)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    os.kill(proc.pid, signal.SIGCONT)
    proc.terminate()
    proc.wait(timeout=10)


@dataclass
class PrivateStack:
    """A Kafka broker (and Redis) of this test's own, started with ``stack/stack`` under its own STACK_HOME."""

    env: dict[str, str]
    kafka: str
    redis: str

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def kafka_pid(self) -> int:
        return int((Path(self.env["STACK_HOME"]) / "run" / "kafka.pid").read_text().split()[0])

    def stop_kafka(self) -> None:
        """Kill the broker (SIGKILL: an outage, not a maintenance stop); its data stays."""
        pid = self.kafka_pid()
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)

    def start_kafka(self) -> None:
        up = self.run("up")
        assert up.returncode == 0, up.stderr


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    """Kafka + Redis on free ports, for tests that stop the broker. Stopped (and wiped) at the end."""
    home = tmp_path / "stack"
    env = {
        **os.environ,
        "STACK_HOME": str(home),
        "STACK_KAFKA_PORT": str(free_port()),
        "STACK_CONTROLLER_PORT": str(free_port()),
        "STACK_REDIS_PORT": str(free_port()),
        "STACK_KAFKA_HEAP": "-Xms128m -Xmx256m",
    }
    # reuse the jars the shared stack resolved, so this costs no Maven run
    shared = ROOT / ".stack"
    for libs in shared.glob("kafka-*"):
        if (libs / ".resolved").exists() and not (home / libs.name).exists():
            home.mkdir(parents=True, exist_ok=True)
            shutil.copytree(libs, home / libs.name)
    stack = PrivateStack(env=env, kafka="", redis="")
    up = stack.run("up")
    if up.returncode != 0:
        pytest.fail(f"private stack failed to start:\n{up.stdout}\n{up.stderr}")
    exports = dict(re.findall(r"export (\w+)=(\S+)", up.stdout))
    stack.kafka, stack.redis = exports["KAFKA_BOOTSTRAP_SERVERS"], exports["REDIS_URL"]
    try:
        yield stack
    finally:
        stack.run("down", timeout=120)

"""Integration fixtures: one isolated deployment per test on the shared broker and Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator.dev.private_stack import PrivateStack, StackError
from orchestrator.dev.processes import free_port
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


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[PrivateStack]:
    """Kafka + Redis on free ports, for tests that stop the broker. Stopped (and wiped) at the end."""
    try:
        stack = PrivateStack.up(tmp_path / "stack")
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        yield stack
    finally:
        stack.down()

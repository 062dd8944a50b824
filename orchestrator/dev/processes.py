"""Run a worker as a child process (used by the demo, the integration tests and the benchmarks).

The worker is started exactly as an SRE would start it — ``orchestrator worker`` with
``ORCH_*`` environment variables — and is stopped with SIGTERM (Faust's graceful
shutdown), SIGKILL only if it does not exit in time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def worker_env(
    kafka: str,
    redis: str,
    prefix: str,
    journeys: Path,
    data_dir: Path,
    partitions: int,
    **extra: str,
) -> dict[str, str]:
    """The ``ORCH_*`` environment of a worker of deployment ``prefix``: its topics are ``<prefix>.*``,
    its consumer group ``<prefix>-app``. ``extra`` (``ORCH_TIMER_TICK="0.1"``, ...) is added last and wins.

    The one place the demo, the tests and the benchmarks describe a worker, so a new
    required setting is added here once.
    """
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "REDIS_URL": redis,
        "ORCH_APP_ID": f"{prefix}-app",
        "ORCH_TOPIC_PREFIX": prefix,
        "ORCH_JOURNEYS_DIR": str(journeys),
        "ORCH_PARTITIONS": str(partitions),
        "ORCH_DATA_DIR": str(data_dir),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """A worker child process with its own log file and web port."""

    def __init__(self, env: dict[str, str], log_path: Path, web_port: int | None = None) -> None:
        self.web_port = web_port or free_port()
        self.env = {**os.environ, **env, "ORCH_WEB_PORT": str(self.web_port)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "worker", "--loglevel", "info"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def ready(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/ready", timeout=2) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until /ready answers 200 (tables recovered, Redis reachable)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready() is not None:
                return
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)

    def kill(self) -> None:
        """Crash the worker (no graceful shutdown), for recovery tests."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

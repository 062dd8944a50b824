"""A Kafka broker and a Redis of one's own, on free ports (fault tests and the outage benchmark stop the broker).

Started with ``stack/stack up`` under its own ``STACK_HOME``, reusing the Kafka jars the shared
stack already resolved (no Maven run), and stopped and wiped with :meth:`PrivateStack.down`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.dev.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stack" / "stack"


class StackError(RuntimeError):
    """``stack/stack up`` failed; the message holds what it printed."""


@dataclass
class PrivateStack:
    """A running private stack: its ``stack/stack`` environment and the brokers' addresses."""

    env: dict[str, str]
    kafka: str
    redis: str

    @classmethod
    def up(cls, home: Path) -> PrivateStack:
        """Start Kafka and Redis on free ports under ``home``; raises :class:`StackError` if they do not come up."""
        env = {
            **os.environ,
            "STACK_HOME": str(home),
            "STACK_KAFKA_PORT": str(free_port()),
            "STACK_CONTROLLER_PORT": str(free_port()),
            "STACK_REDIS_PORT": str(free_port()),
            "STACK_KAFKA_HEAP": "-Xms128m -Xmx256m",
        }
        for libs in (ROOT / ".stack").glob("kafka-*"):  # the jars the shared stack resolved: no Maven run
            if (libs / ".resolved").exists() and not (home / libs.name).exists():
                home.mkdir(parents=True, exist_ok=True)
                shutil.copytree(libs, home / libs.name)
        stack = cls(env=env, kafka="", redis="")
        up = stack.run("up")
        if up.returncode != 0:
            raise StackError(f"private stack failed to start:\n{up.stdout}\n{up.stderr}")
        exports = dict(re.findall(r"export (\w+)=(\S+)", up.stdout))
        stack.kafka, stack.redis = exports["KAFKA_BOOTSTRAP_SERVERS"], exports["REDIS_URL"]
        return stack

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
        if up.returncode != 0:
            raise StackError(f"private broker failed to start again:\n{up.stderr}")

    def down(self) -> None:
        """Stop both servers and wipe the broker's data."""
        self.run("down", timeout=120)

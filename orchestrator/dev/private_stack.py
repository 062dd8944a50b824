"""A Kafka broker and a Redis of one's own, on free ports (fault tests and the outage benchmark stop the broker).

Started with ``stack/stack up`` under its own ``STACK_HOME``, reusing the Kafka jars the shared
stack already resolved (no Maven run), and stopped and wiped with :meth:`PrivateStack.down`.
``PrivateStack.up(home, "--redis-cluster")`` / ``PrivateStack.up(home, "--secure")`` start the
stack's other modes; every ``export`` line ``stack/stack up`` printed is in :attr:`PrivateStack.exports`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.dev.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stack" / "stack"

CLUSTER_NODES = 6  # stack/stack --redis-cluster: ports base .. base+5
CLUSTER_BUS_OFFSET = 10000  # and their cluster bus ports, +10000 each


class StackError(RuntimeError):
    """``stack/stack up`` failed; the message holds what it printed."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_range(count: int = CLUSTER_NODES, offset: int = CLUSTER_BUS_OFFSET) -> int:
    """A base port with ``base .. base+count-1`` and the same ports ``+offset`` all free (a Redis Cluster's ports and bus ports)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 65535 - offset - count)
        ports = [base + i for i in range(count)]
        if all(_port_free(p) and _port_free(p + offset) for p in ports):
            return base
    raise StackError(f"no free range of {count} ports (and +{offset}) found")


@dataclass
class PrivateStack:
    """A running private stack: its ``stack/stack`` environment and the brokers' addresses."""

    env: dict[str, str]
    kafka: str
    redis: str
    exports: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    @classmethod
    def up(cls, home: Path, *flags: str) -> PrivateStack:
        """Start Kafka and Redis on free ports under ``home``; raises :class:`StackError` if they do not come up.

        ``flags`` go to ``stack/stack up`` (``"--redis-cluster"``, ``"--secure"``).
        """
        env = {
            **os.environ,
            "STACK_HOME": str(home),
            "STACK_KAFKA_PORT": str(free_port()),
            "STACK_CONTROLLER_PORT": str(free_port()),
            "STACK_REDIS_PORT": str(free_port()),
            "STACK_KAFKA_SECURE_PORT": str(free_port()),
            "STACK_REDIS_TLS_PORT": str(free_port()),
            "STACK_REDIS_CLUSTER_PORT": str(free_port_range()),
            "STACK_KAFKA_HEAP": "-Xms128m -Xmx256m",
        }
        for libs in (ROOT / ".stack").glob("kafka-*"):  # the jars the shared stack resolved: no Maven run
            if (libs / ".resolved").exists() and not (home / libs.name).exists():
                home.mkdir(parents=True, exist_ok=True)
                shutil.copytree(libs, home / libs.name)
        stack = cls(env=env, kafka="", redis="", flags=tuple(flags))
        up = stack.run("up", *flags)
        if up.returncode != 0:
            stack.down()  # what did start (a node of a cluster that never formed...) must not stay behind
            raise StackError(f"private stack failed to start:\n{up.stdout}\n{up.stderr}")
        stack.exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, flags=re.MULTILINE))
        stack.kafka, stack.redis = stack.exports["KAFKA_BOOTSTRAP_SERVERS"], stack.exports["REDIS_URL"]
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
        up = self.run("up", *self.flags)
        if up.returncode != 0:
            raise StackError(f"private broker failed to start again:\n{up.stderr}")

    def _kill(self, name: str) -> None:
        """SIGKILL the stack's process ``name`` (a pid file under run/) and wait until it is gone."""
        pid = int((Path(self.env["STACK_HOME"]) / "run" / f"{name}.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)

    def kill_redis(self, *, wipe: bool = False) -> None:
        """Kill the single Redis (SIGKILL); ``wipe``: delete its files too (AOF, RDB), as a lost disk would."""
        self._kill("redis")
        if wipe:
            home = Path(self.env["STACK_HOME"]) / "redis"
            shutil.rmtree(home / "appendonlydir", ignore_errors=True)
            (home / "dump.rdb").unlink(missing_ok=True)

    def kill_cluster_node(self, port: int) -> None:
        """Kill one Redis Cluster node (SIGKILL); its files stay, so :meth:`start_redis` brings it back into the cluster."""
        self._kill(f"redis-cluster-{port}")

    def start_redis(self) -> None:
        """Start what of Redis is not running (``stack up`` again; Kafka, if running, is left alone)."""
        up = self.run("up", *self.flags)
        if up.returncode != 0:
            raise StackError(f"private Redis failed to start again:\n{up.stderr}")

    def down(self) -> None:
        """Stop everything the stack started (Kafka, Redis or the cluster's nodes) and wipe their data."""
        self.run("down", timeout=180)

"""Integration helpers: an isolated deployment (own topics, app id, journeys dir) with a real worker process."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from orchestrator import kafka_io
from orchestrator.local import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Deployment:
    """One isolated orchestrator deployment: a topic prefix, an app id, a journeys dir, a worker."""

    prefix: str
    kafka: str
    redis: str
    journeys_dir: Path
    tmp: Path
    worker: WorkerProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "REDIS_URL": self.redis,
            "ORCH_APP_ID": f"{self.prefix}-app",
            "ORCH_TOPIC_PREFIX": self.prefix,
            "ORCH_JOURNEYS_DIR": str(self.journeys_dir),
            "ORCH_PARTITIONS": "2",
            "ORCH_STANDBY_REPLICAS": "0",
            "ORCH_STORE": "rocksdb://",
            "ORCH_DATA_DIR": str(self.tmp / "data"),
            "ORCH_TIMER_TICK": "0.1",
            "ORCH_RELOAD_INTERVAL": "0.5",
        }
        env.update(extra)
        return env

    def start_worker(self, wait: bool = True, **extra_env: str) -> WorkerProcess:
        """Start a worker process; like any worker it creates its topics before joining the group."""
        n = len(list(self.tmp.glob("worker*.log")))
        env = {"ORCH_DATA_DIR": str(self.tmp / f"data{n}"), **extra_env}  # each worker process has its own local store
        self.worker = WorkerProcess(self.env(**env), self.tmp / f"worker{n}.log").start()
        self.workers.append(self.worker)
        if wait:
            self.worker.wait_ready(timeout=120)
        return self.worker

    def publish(self, family: str, *events: dict[str, Any], raw: bytes | None = None, key: str | None = None) -> None:
        records = [(self.topic(f"in.{family}"), ev["customer_id"], json.dumps(ev).encode()) for ev in events]
        if raw is not None:
            records.append((self.topic(f"in.{family}"), key or "?", raw))
        asyncio.run(kafka_io.produce(self.kafka, records))

    def read(self, name: str, until: Callable[[list[kafka_io.Record]], bool], timeout: float) -> list[kafka_io.Record]:
        return asyncio.run(kafka_io.consume(self.kafka, [self.topic(name)], until=until, timeout=timeout))


def event(customer: str, type_: str, event_id: str, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
    """An inbound event document as an upstream team would publish it."""
    return {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": (at or datetime.now(timezone.utc)).isoformat(),
        "type": type_,
        **fields,
    }

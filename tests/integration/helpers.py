"""Integration helpers: an isolated deployment (own topics, app id, journeys dir) with a real worker process."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchestrator.dev import kafkatools
from orchestrator.dev.processes import WorkerProcess, worker_env
from orchestrator.pressure.connect import RedisMode
from orchestrator.pressure.policy import load_policy
from orchestrator.pressure.redis_basket import RedisBasket

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
        return worker_env(
            self.kafka,
            self.redis,
            self.prefix,
            self.journeys_dir,
            self.tmp / "data",
            partitions=2,
            ORCH_TIMER_TICK="0.1",
            ORCH_RELOAD_INTERVAL="0.5",
            **extra,
        )

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
        asyncio.run(kafkatools.produce(self.kafka, records))

    def read(self, name: str, until: Callable[[list[kafkatools.Record]], bool], timeout: float) -> list[kafkatools.Record]:
        return asyncio.run(kafkatools.consume(self.kafka, [self.topic(name)], until=until, timeout=timeout))


def event(customer: str, type_: str, event_id: str, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
    """An inbound event document as an upstream team would publish it."""
    return {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": (at or datetime.now(UTC)).isoformat(),
        "type": type_,
        **fields,
    }


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.3) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def install_journey(dep: Deployment, timeout: str = "3s", template: str | None = None, version: int | None = None) -> None:
    doc = yaml.safe_load((ROOT / "journeys" / "abandoned_cart.yaml").read_text())
    doc["steps"]["wait_open"]["timeout"] = timeout
    if template:
        doc["steps"]["send_first"]["template"] = template
    name = "abandoned_cart.yaml"
    if version:
        doc["version"] = version
        name = f"abandoned_cart.v{version}.yaml"
    (dep.journeys_dir / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    policy = yaml.safe_load((dep.journeys_dir / "pressure.yaml").read_text())
    policy["arbitration_window"] = None
    (dep.journeys_dir / "pressure.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


def cart(customer: str, n: int = 1) -> dict:
    return event(customer, "cart_abandoned", f"{customer}-cart-{n}", cart_id=f"k{n}", cart_value=99.0)


def send_ids_by_customer(dep: Deployment, until: int, timeout: float) -> dict[str, set[tuple[str, str]]]:
    """The send requests on ``<prefix>.sends`` once ``until`` send ids arrived (or the timeout): customer -> {(send id, template)}."""
    records = dep.read("sends", until=lambda rs: len({r.json()["send_id"] for r in rs}) >= until, timeout=timeout)
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in records:
        doc = r.json()
        out[doc["customer_id"]].add((doc["send_id"], doc["template"]))
    return out


async def basket_balances(url: str, customers: list[str], mode: RedisMode = "single") -> dict[str, float]:
    """Each customer's basket balance now, as ``orchestrator basket show`` reads it (the committed pressure.yaml)."""
    basket = RedisBasket.from_url(url, load_policy(ROOT / "journeys" / "pressure.yaml"), mode=mode)
    try:
        now = datetime.now(UTC)
        return {c: (await basket.show(c, now)).balance for c in customers}
    finally:
        await basket.aclose()

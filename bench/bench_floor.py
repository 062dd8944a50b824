"""What one worker cannot go below: the cost of each stage every event must pass, against the plain loop.

bench_worker.py's backlog target is "the worker ≥ 0.35 × the plain aiokafka loop" (issue 16).
This benchmark asks whether that is reachable at all with this design, by measuring, in one
run and on the backlog's own event mix, what each stage an event cannot skip costs per event:

  plain     the plain aiokafka loop (bench/baseline_aiokafka.py: fetch, json, dict state, one
            produce, commit) on the real broker: the yardstick, in µs of its loop per event;
  validate  ``events.parse_inbound`` (size, JSON with guards, depth, the family's schema);
  engine    ``engine.step`` through ``processor.run_message`` for every event, every send
            approved (no basket): the profile fold, scores, journeys;
  state     the state's JSON after each event that changed it (``fastmodel.fast_json``);
  records   the outbound records of each event (``outputs.result_records``: decisions, send
            requests, journey log, emit records, their JSON);
  basket    the event's sends gated on the real Redis (``RedisBasket.gate_many``, one pipelined
            round per 2,000-event batch, as the worker does): this process's CPU time, not the wait;
  produce   the records beyond the plain loop's one per event, and one state record per customer
            per batch, handed to the real broker and acknowledged (aiokafka, the worker's
            settings): this process's CPU time, not the wait for the acknowledgements.

The floor is plain + the rest: a worker with no shell cost at all (no grouping, no commit
bookkeeping, no metrics, no timer loop) would spend that per event. floor ratio = plain /
floor is the best "× the plain loop" this design can show; the target needs it ≥ 0.35.

    stack/with-stack .venv/bin/python bench/bench_floor.py [--events 60000] [--customers 5000] [--rounds 3]

Writes bench/results/floor.json and bench/results/floor.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_basket import cleanup as delete_redis_keys  # noqa: E402
from bench_worker import make_events  # noqa: E402

from orchestrator.actions import Send  # noqa: E402
from orchestrator.definitions import load_definitions  # noqa: E402
from orchestrator.dev import kafkatools  # noqa: E402
from orchestrator.dev.drive import decision  # noqa: E402
from orchestrator.events import CustomerEvent, parse_inbound  # noqa: E402
from orchestrator.fastmodel import fast_json  # noqa: E402
from orchestrator.metrics import Metrics  # noqa: E402
from orchestrator.pressure.connect import redis_client  # noqa: E402
from orchestrator.pressure.redis_basket import RedisBasket  # noqa: E402
from orchestrator.processor import Result, run_message  # noqa: E402
from orchestrator.runtime.outputs import BatchOutput, Topics, result_records  # noqa: E402
from orchestrator.runtime.preflight import ensure_topics  # noqa: E402
from orchestrator.state import CustomerState  # noqa: E402

BATCH = 2000


def per_event_us(seconds: float, events: int) -> float:
    return seconds / events * 1e6


def plain_loop(kafka: str, payloads: list[tuple[str, bytes]], partitions: int, tag: str) -> float:
    """µs per event of the plain aiokafka loop, one output per input."""
    topic, out = f"{tag}.plain", f"{tag}.plain-out"
    asyncio.run(ensure_topics(kafka, [topic, out], partitions=partitions))
    asyncio.run(kafkatools.produce(kafka, [(topic, k, v) for k, v in payloads]))
    line = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "baseline_aiokafka.py"),
            kafka,
            topic,
            out,
            f"{tag}-plain",
            str(len(payloads)),
            "per-message",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout.splitlines()[-1]
    return 1e6 / float(json.loads(line)["events_per_s"])


def run_engine(events: list[CustomerEvent], journeys: Any, now: datetime) -> tuple[list[Result], list[CustomerState | None], float]:
    """Every event through run_message, sends approved; the results, the changed states (None: unchanged), seconds."""
    states: dict[str, CustomerState] = {}
    results: list[Result] = []
    changed: list[CustomerState | None] = []
    started = time.perf_counter()
    for ev in events:
        before = states.get(ev.customer_id) or CustomerState.new(ev.customer_id)
        gen = run_message(before, ev, journeys, now)
        answer = None
        while True:
            try:
                call = gen.send(answer)
            except StopIteration as stop:
                result: Result = stop.value
                break
            answer = decision(call) if isinstance(call, Send) else None
        results.append(result)
        states[ev.customer_id] = result.state
        changed.append(result.state if result.state is not before else None)
    return results, changed, time.perf_counter() - started


async def gate_sends(url: str, prefix: str, results: list[Result], now: datetime) -> float:
    """CPU seconds (this process) to gate every send of ``results`` on Redis, one gate_many per batch of events."""
    policy = load_definitions(ROOT / "journeys").policy
    client = redis_client(url, "single")
    basket = RedisBasket(client, policy, prefix=prefix)
    try:
        batches = [
            [d.send.gate_request(now) for r in results[i : i + BATCH] for d in r.dispositions] for i in range(0, len(results), BATCH)
        ]
        started = time.process_time()
        for requests in batches:
            if requests:
                await basket.gate_many(requests)
        return time.process_time() - started
    finally:
        await client.aclose()


async def produce_extra(kafka: str, topic: str, outputs: list[BatchOutput], batches: list[tuple[int, int]]) -> tuple[float, int]:
    """CPU seconds (this process) to hand each batch's records beyond one per event to Kafka and have them acknowledged.

    A batch's records are its outputs plus one state record per customer it touched (~1.8 KB, the mean
    state of this mix); ``batches`` holds (events, customers) per batch.
    """
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True, linger_ms=2, max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    try:
        started = time.process_time()
        for out, (events, customers) in zip(outputs, batches, strict=True):
            values = [r.value for r in out.records] + [b"x" * 1800] * customers
            extra = values[events:]
            futures = [await producer.send(topic, v, key=b"k") for v in extra]
            for f in futures:
                await f
            sent += len(extra)
        return time.process_time() - started, sent
    finally:
        await producer.stop()


def measure(args: argparse.Namespace, kafka: str, redis_url: str) -> dict[str, Any]:
    tag = "fl" + uuid.uuid4().hex[:8]
    docs = make_events(args.events, args.customers)
    payloads = [(d["customer_id"], json.dumps(d).encode()) for d in docs]
    n = len(payloads)
    journeys = load_definitions(ROOT / "journeys").journeys
    now = datetime.now(UTC)
    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        plain = plain_loop(kafka, payloads, args.partitions, f"{tag}r{r}")
        gc.collect()
        gc.disable()  # the in-process stages without collections: each is a lower bound of what the worker pays
        started = time.perf_counter()
        events = [parse_inbound("web", raw, key=key.encode()) for key, raw in payloads]
        validate = per_event_us(time.perf_counter() - started, n)
        results, changed, engine_s = run_engine(events, journeys, now)
        started = time.perf_counter()
        for state in changed:
            if state is not None:
                fast_json(state)
        state_us = per_event_us(time.perf_counter() - started, n)
        topics = Topics(f"{tag}.ce", f"{tag}.sends", f"{tag}.decisions", f"{tag}.log", f"{tag}.dlq", lambda t: f"{tag}.out.{t}")
        metrics = Metrics()
        outputs: list[BatchOutput] = []
        batches: list[tuple[int, int]] = []
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            out = BatchOutput()
            for res in results[i : i + BATCH]:
                result_records(out, res, now, topics, metrics, lambda j, run: run)
            outputs.append(out)
        records_us = per_event_us(time.perf_counter() - started, n)
        gc.enable()
        for i in range(0, n, BATCH):
            batch = events[i : i + BATCH]
            batches.append((len(batch), len({e.customer_id for e in batch})))
        prefix = f"{tag}r{r}:pressure"
        basket_s = asyncio.run(gate_sends(redis_url, prefix, results, now))
        delete_redis_keys(redis_url, prefix)
        asyncio.run(ensure_topics(kafka, [f"{tag}.extra"], partitions=args.partitions))
        produce_s, extra = asyncio.run(produce_extra(kafka, f"{tag}.extra", outputs, batches))
        row = {
            "plain": plain,
            "validate": validate,
            "engine": per_event_us(engine_s, n),
            "state": state_us,
            "records": records_us,
            "basket": per_event_us(basket_s, n),
            "produce": per_event_us(produce_s, n),
            "extra_records_per_event": extra / n,
        }
        row["floor"] = sum(row[k] for k in ("plain", "validate", "engine", "state", "records", "basket", "produce"))
        row["floor_ratio"] = row["plain"] / row["floor"]
        print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
        rounds.append(row)
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "events": n,
        "customers": args.customers,
        "rounds": rounds,
        "median": median,
    }


STAGES = (
    ("plain", "the plain aiokafka loop (fetch, json, dict, one produce, commit)"),
    ("validate", "validating the inbound event"),
    ("engine", "the engine (profile, scores, journeys; sends approved)"),
    ("state", "the state's JSON after the event"),
    ("records", "building the outbound records"),
    ("basket", "gating the sends on Redis (CPU time)"),
    ("produce", "producing the records beyond one per event, and the states (CPU time)"),
)


def report(result: dict[str, Any]) -> str:
    m = result["median"]
    budget = m["plain"] / 0.35
    lines = [
        f"# The worker's floor ({result['when']})",
        "",
        (
            f"{result['machine']['cpus']} CPUs, Python {result['machine']['python']}; broker and Redis on this machine. "
            f"{result['events']:,} events of the backlog mix, {result['customers']:,} customers; medians of {len(result['rounds'])} "
            "rounds. The stages in this process are timed with the garbage collector off (a lower bound)."
        ),
        "",
        "| stage | µs per event |",
        "|---|---:|",
    ]
    lines += [f"| {text} | {m[key]:.1f} |" for key, text in STAGES]
    lines += [
        f"| **floor** (a worker with no shell cost at all) | **{m['floor']:.1f}** |",
        "",
        f"Records beyond one per event: {m['extra_records_per_event']:.2f} per event.",
        "",
        (
            f"Floor ratio (plain / floor): **{m['floor_ratio']:.3f}**. The target of 0.35 × the plain loop allows "
            f"{budget:.1f} µs per event; the stages alone take {m['floor']:.1f}."
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    result = measure(args, kafka, redis_url)
    out = ROOT / "bench" / "results"
    (out / "floor.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "floor.md").write_text(report(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Figures for the sizing guide (docs/operations.md), each against a baseline measured in the same run.

    env -u KAFKA_BOOTSTRAP_SERVERS -u REDIS_URL .venv/bin/python bench/bench_sizing.py

Starts one private stack of its own (``PrivateStack.up(home, "--secure")``: Kafka and one
Redis with a plain port and a TLS port with the ACL user), later adds the 6-node Redis
Cluster (3 masters + 3 replicas) to the same stack home (``stack/stack up --secure
--redis-cluster``), and stops and wipes all of it at the end (``down()`` in ``finally``).
Never touches the shared stack.

1. Worker scale-out (run first, before the cluster nodes exist): the backlog benchmark of
   bench/bench_worker.py (its event mix, its metrics, its ``poll_rate``) with 1 worker
   (baseline) and 2 workers of one consumer group on the same backlog size and partitions,
   interleaved (1, 2, 1, 2, ...), each run with its own topics and group. Both workers are
   ready (partitions assigned) before the backlog is published as fast as the producer can;
   timed from the first event accepted to the last processed.
2. Gate decisions/s with the worker's client path: ``redis_client(url, mode, ca_file=...)`` +
   ``RedisBasket.gate_many`` (batch 256, N batches in flight, one client process; requests from
   bench_basket.make_requests, built outside the timing): plain TCP to the single Redis
   (baseline) vs the same Redis over TLS as the ACL user vs the 3-master cluster; at 4 batches
   in flight and at 1 (one connection per node). Interleaved, median of ``--repeat``.
3. Basket rebuild rate: decision records (DecisionRecord JSON keyed by customer id, this
   month's, most approved) on a decisions topic, read back and written into Redis keys that
   do not exist yet by the worker's own code, ``BasketGuard._rebuild`` (Kafka read loop,
   ``restore_calls``, ``RedisBasket.restore``) over a minimal stand-in for its WorkerContext;
   into the single Redis and into the cluster, against the same loop with a basket whose
   ``restore`` writes nothing (the Kafka read + parse + restore_calls baseline).

Memory per customer and the state restore rate are not measured here: see
bench/results/timers_state.md and timers-issue16.md (quoted in sizing.md).

Writes bench/results/sizing.json and bench/results/sizing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_basket import drive_gates, make_requests  # noqa: E402
from bench_worker import PROCESSED, make_events, metric, poll_rate, rss_mib, worker_progress  # noqa: E402

from orchestrator.dev import kafkatools  # noqa: E402
from orchestrator.dev.private_stack import PrivateStack, free_port_range  # noqa: E402
from orchestrator.dev.processes import WorkerProcess, worker_env  # noqa: E402
from orchestrator.pressure.connect import RedisMode, check_redis, redis_client  # noqa: E402
from orchestrator.pressure.periods import period_info  # noqa: E402
from orchestrator.pressure.policy import PressurePolicy, load_policy  # noqa: E402
from orchestrator.pressure.redis_basket import RedisBasket  # noqa: E402
from orchestrator.pressure.restore import restore_calls  # noqa: E402
from orchestrator.records import DecisionRecord  # noqa: E402
from orchestrator.runtime.basket_guard import BasketGuard  # noqa: E402
from orchestrator.runtime.context import WorkerContext  # noqa: E402
from orchestrator.runtime.preflight import ensure_topics, prepare_topics  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f}s] {text}", flush=True)


def median_row(runs: list[float]) -> float:
    return round(statistics.median(runs), 1)


# ---------------------------------------------------------------- 1. worker scale-out


def _progress(workers: Sequence[WorkerProcess]) -> tuple[float, float]:
    """(processed, accepted) summed over the workers that answer (one still starting counts 0)."""
    done = started = 0.0
    for w in workers:
        try:
            d, s = worker_progress(w.web_port)
        except (urllib.error.URLError, OSError):
            continue
        done, started = done + d, started + s
    return done, started


async def _premark(url: str, app_id: str, partitions: int) -> None:
    """Mark the deployment's partitions as held by Redis, as for a deployment that runs already.

    A new deployment's first batch otherwise waits for a basket rebuild from its (empty)
    decisions topic, which is not what the backlog measures (the rebuild rate is part 3).
    """
    client = redis_client(url, "single")
    try:
        await RedisBasket(client, load_policy(ROOT / "journeys" / "pressure.yaml")).mark(app_id, range(partitions), datetime.now(UTC))
    finally:
        await client.aclose()


def scale_run(
    kafka: str, redis: str, args: argparse.Namespace, n_workers: int, payloads: list[tuple[str, bytes]], tmp: Path
) -> dict[str, Any]:
    """One backlog run with ``n_workers`` workers of one group; its own topics and consumer group."""
    prefix = "sz" + uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap_servers=kafka, app_id=f"{prefix}-app", topic_prefix=prefix, partitions=args.partitions)
    asyncio.run(prepare_topics(settings))
    asyncio.run(_premark(redis, settings.app_id, args.partitions))
    workers = [
        WorkerProcess(
            worker_env(kafka, redis, prefix, ROOT / "journeys", tmp / f"{prefix}-{i}", args.partitions, ORCH_LOG_LEVEL="warning"),
            tmp / f"{prefix}-{i}.log",
        )
        for i in range(n_workers)
    ]
    for w in workers:
        w.start()
    try:
        for w in workers:
            w.wait_ready(120)
        time.sleep(3)  # the group settles after the last join (rebalance delay is 0 on the stack)
        for w in workers:
            w.wait_ready(60)
        n = len(payloads)
        published: dict[str, float] = {}

        def publish() -> None:
            t = time.monotonic()
            asyncio.run(kafkatools.produce(kafka, [(f"{prefix}.in.web", k, v) for k, v in payloads]))
            published["seconds"] = time.monotonic() - t

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pub = pool.submit(publish)

            def progress() -> tuple[float, float]:
                if pub.done() and pub.exception() is not None:
                    raise RuntimeError("publishing the backlog failed") from pub.exception()
                return _progress(workers)

            try:
                rate = poll_rate(progress, n, workers[0].proc, args.timeout)
            except RuntimeError:
                for w in workers:
                    print(w.log_tail(30), file=sys.stderr)
                raise
            pub.result()
        shares = [metric(w.web_port, PROCESSED) for w in workers]
        rss = [round(rss_mib(cast(Any, w.proc).pid), 1) for w in workers]
    finally:
        for w in workers:
            w.stop()
    return {
        "workers": n_workers,
        "events_per_s": round(rate),
        "processed_per_worker": [int(s) for s in shares],
        "peak_rss_mib_per_worker": rss,
        "publish_seconds": round(published.get("seconds", float("nan")), 2),
    }


def scale_out(kafka: str, redis: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    events = make_events(args.events, args.customers)
    payloads = [(e["customer_id"], json.dumps(e).encode()) for e in events]
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for attempt in range(args.worker_repeat):
        for n_workers in (1, 2):
            r = scale_run(kafka, redis, args, n_workers, payloads, tmp)
            runs[n_workers].append(r)
            say(
                f"scale-out {attempt + 1}/{args.worker_repeat}: {n_workers} worker(s) {r['events_per_s']:,} events/s "
                f"(per worker {r['processed_per_worker']}, publish {r['publish_seconds']} s)"
            )
    one = statistics.median(r["events_per_s"] for r in runs[1])
    two = statistics.median(r["events_per_s"] for r in runs[2])
    return {
        "events": args.events,
        "customers": args.customers,
        "partitions": args.partitions,
        "runs": {str(k): v for k, v in runs.items()},
        "one_worker_events_per_s": round(one),
        "two_workers_events_per_s": round(two),
        "ratio_two_to_one": round(two / one, 3),
        "ratio_per_run": [round(b["events_per_s"] / a["events_per_s"], 3) for a, b in zip(runs[1], runs[2], strict=True)],
    }


# ---------------------------------------------------------------- 2. gate decisions/s


def _gate_process(job: dict[str, Any]) -> dict[str, Any]:
    """In the client process: ``gate_many`` batches, ``inflight`` at a time, through ``redis_client``."""
    policy = PressurePolicy.model_validate_json(job["policy"])
    requests = make_requests(job["decisions"], job["customers"], job["seed"], job["tag"])
    return asyncio.run(_gates(job, policy, requests))


async def _gates(job: dict[str, Any], policy: PressurePolicy, requests: list[Any]) -> dict[str, Any]:
    mode: RedisMode = job["mode"]
    ca = Path(job["ca_file"]) if job["ca_file"] else None
    client = redis_client(job["url"], mode, ca_file=ca, max_connections=job["inflight"] + 2)
    await check_redis(client, mode, job["url"])
    basket = RedisBasket(client, policy, prefix=job["prefix"])
    await basket.load_script()
    batch, inflight = job["batch"], job["inflight"]
    warm, timed = requests[: batch * inflight], requests[batch * inflight :]
    # warm-up (not timed): one batch per lane, so every lane's connection (TLS handshake included) exists
    await asyncio.gather(*(basket.gate_many(warm[i * batch : (i + 1) * batch]) for i in range(inflight)))
    elapsed, outcomes = await drive_gates(basket, timed, batch, inflight)
    await client.aclose()
    return {"decisions": len(timed), "seconds": round(elapsed, 3), "per_second": round(len(timed) / elapsed, 1), "outcomes": outcomes}


def gates(targets: dict[str, tuple[str, RedisMode, str | None]], args: argparse.Namespace, policy: PressurePolicy) -> dict[str, Any]:
    """Every (target, in-flight) pair, interleaved, ``--repeat`` times, in one long-lived client process."""
    variants = [(name, inflight) for inflight in (4, 1) for name in targets]
    runs: dict[str, list[dict[str, Any]]] = {}
    tag = uuid.uuid4().hex[:6]
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        for attempt in range(args.repeat):
            line = []
            for seed, (name, inflight) in enumerate(variants):
                url, mode, ca = targets[name]
                job = {
                    "url": url,
                    "mode": mode,
                    "ca_file": ca,
                    "policy": policy.model_dump_json(),
                    "prefix": f"pressure:sz{tag}{attempt}",  # the ACL user may touch ~pressure:* only
                    "decisions": args.decisions,
                    "customers": args.gate_customers,
                    "seed": attempt * 100 + seed,
                    "tag": f"g{attempt}{seed}",
                    "batch": args.batch,
                    "inflight": inflight,
                }
                r = pool.submit(_gate_process, job).result()
                runs.setdefault(f"{name}, {inflight} in flight", []).append(r)
                line.append(f"{name}/{inflight}: {r['per_second']:,.0f}")
            say(f"gates {attempt + 1}/{args.repeat}: " + ", ".join(line))
    rows = []
    for what, results in runs.items():
        rates = [r["per_second"] for r in results]
        rows.append({"what": what, "per_second": median_row(rates), "all_runs_per_second": rates, "outcomes": results[-1]["outcomes"]})
    by = {r["what"]: r for r in rows}
    for inflight in (4, 1):
        base = by[f"single plain TCP, {inflight} in flight"]["per_second"]
        base4 = by["single plain TCP, 4 in flight"]["per_second"]
        for name in targets:
            row = by[f"{name}, {inflight} in flight"]
            row["ratio_to_plain_same_inflight"] = round(row["per_second"] / base, 3)
            row["ratio_to_baseline"] = round(row["per_second"] / base4, 3)
    return {"batch": args.batch, "decisions_per_measurement": args.decisions, "customers": args.gate_customers, "rows": rows}


# ---------------------------------------------------------------- 3. basket rebuild


def make_decisions(policy: PressurePolicy, n: int, customers: int, now: datetime, seed: int = 11) -> list[DecisionRecord]:
    """``n`` decisions of this month for ``customers`` customers, in time order: approved while the basket has room, else capped."""
    rnd = random.Random(seed)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max((now - month_start).total_seconds() - 60, 60.0)
    times = sorted(month_start + timedelta(seconds=rnd.uniform(0, span)) for _ in range(n))
    balance: dict[str, float] = {}
    out = []
    for i, at in enumerate(times):
        c = f"rb-c{rnd.randrange(customers):07d}"
        channel, comm_type = rnd.choice([("email", "commercial"), ("email", "editorial"), ("push", "commercial"), ("sms", "service")])
        cost = policy.points.model_dump().get(comm_type, 10) * {"email": 1, "push": 1, "sms": 1.5}[channel]
        spent = balance.get(c, 0.0)
        ok = spent + cost <= policy.capacity
        if ok:
            balance[c] = spent + cost
        info = period_info(policy, at, "UTC")
        out.append(
            DecisionRecord(
                send_id=f"{c}:abandoned_cart:1:send_{i}",
                customer_id=c,
                journey_id="abandoned_cart",
                journey_version=1,
                step_id="send_reminder",
                channel=channel,
                comm_type=comm_type,
                priority=rnd.randint(4, 8),
                template="cart_reminder",
                outcome="approved" if ok else "capped",
                code="fits" if ok else "capacity",
                result="approved" if ok else "capped",
                reason="fits" if ok else f"capacity {policy.capacity:g} exceeded: {spent:g} spent + {cost:g}",
                cost=cost if ok else 0.0,
                balance=balance.get(c, 0.0),
                capacity=float(policy.capacity),
                period=info.id,
                retry_at=None,
                decided_at=at,
                brand=None,
                timezone="UTC",
            )
        )
    return out


class _WriteNothing:
    """A basket whose restore writes nothing: the Kafka read + parse + restore_calls baseline of the same loop."""

    def __init__(self, policy: PressurePolicy) -> None:
        self.policy = policy

    async def restore(self, calls: Sequence[Any], now: datetime, chunk: int = 1000) -> int:
        return 0

    async def restore_suppressions(self, latest: Any, chunk: int = 1000) -> int:
        return 0


def _stand_in(kafka: str, topics: SimpleNamespace, partitions: int, basket: Any) -> WorkerContext:
    """What ``BasketGuard._rebuild`` reads of a WorkerContext, and nothing else."""
    settings = SimpleNamespace(kafka_bootstrap_servers=kafka, partitions=partitions, clock_speed=1.0, app_id="sizing")
    ctx = SimpleNamespace(settings=settings, live=SimpleNamespace(basket=basket), topics=topics, kafka_kw={}, now=lambda: datetime.now(UTC))
    return cast(WorkerContext, ctx)


async def _rebuild_once(kafka: str, topics: SimpleNamespace, partitions: int, basket: Any) -> tuple[int, int, float]:
    guard = BasketGuard(_stand_in(kafka, topics, partitions, basket))
    started = time.perf_counter()
    out = await guard._rebuild(list(range(partitions)))  # noqa: SLF001 - the worker's rebuild itself, no public entry without a worker
    return int(out[0]), int(out[1]), time.perf_counter() - started


async def _rebuild_into(
    kafka: str, topics: SimpleNamespace, partitions: int, url: str, mode: RedisMode, policy: PressurePolicy, prefix: str
) -> tuple[int, int, float, int | None]:
    """The rebuild into ``url``; with it the growth of Redis's ``used_memory`` (single Redis only)."""
    client = redis_client(url, mode)
    await check_redis(client, mode, url)
    basket = RedisBasket(client, policy, prefix=prefix)
    try:
        before = None if mode == "cluster" else int((await client.info("memory"))["used_memory"])
        read, written, secs = await _rebuild_once(kafka, topics, partitions, basket)
        grown = None if before is None else int((await client.info("memory"))["used_memory"]) - before
        return read, written, secs, grown
    finally:
        await client.aclose()


def rebuild(kafka: str, targets: dict[str, tuple[str, RedisMode]], args: argparse.Namespace, policy: PressurePolicy) -> dict[str, Any]:
    now = datetime.now(UTC)
    records = make_decisions(policy, args.rebuild_decisions, args.rebuild_customers, now)
    expected = len(restore_calls(policy, records, datetime.now(UTC)))
    approved = sum(1 for d in records if d.outcome == "approved")
    n_customers = len({d.customer_id for d in records})
    prefix = "szrb" + uuid.uuid4().hex[:6]
    decisions, consent = f"{prefix}.decisions", f"{prefix}.consent"
    asyncio.run(ensure_topics(kafka, {decisions: {}, consent: {"cleanup.policy": "compact"}}, partitions=args.partitions))
    t = time.monotonic()
    asyncio.run(kafkatools.produce(kafka, [(decisions, d.customer_id, d.model_dump_json().encode()) for d in records]))
    say(f"rebuild: {len(records):,} decisions ({approved:,} approved) published in {time.monotonic() - t:.1f} s")
    # the worker publishes decisions co-partitioned with the customers (same count, same murmur2 of the key)
    topics = SimpleNamespace(decisions=decisions, consent=consent, copartitioned=frozenset({decisions, consent}))
    runs: dict[str, list[dict[str, Any]]] = {}
    for attempt in range(args.rebuild_repeat):
        line: list[str] = []
        for name in ("Kafka read + parse + restore_calls only (writes nothing)", *targets):
            if name in targets:
                url, mode = targets[name]
                read, written, secs, grown = asyncio.run(
                    _rebuild_into(kafka, topics, args.partitions, url, mode, policy, f"pressure:rb{attempt}{len(line)}")
                )
            else:
                read, written, secs = asyncio.run(_rebuild_once(kafka, topics, args.partitions, _WriteNothing(policy)))
                grown = None
            if read != len(records):
                raise RuntimeError(f"{name}: read {read} of {len(records)} decisions")
            if name in targets and written != expected:
                raise RuntimeError(f"{name}: wrote {written}, expected {expected} (the keys were new)")
            r = {"read": read, "written": written, "seconds": round(secs, 3), "decisions_per_s": round(read / secs, 1)}
            if grown is not None:
                r["redis_used_memory_grown_bytes"] = grown
            runs.setdefault(name, []).append(r)
            line.append(f"{name.split(' (')[0]}: {r['decisions_per_s']:,.0f}/s")
        say(f"rebuild {attempt + 1}/{args.rebuild_repeat}: " + "; ".join(line))
    rows = []
    base = None
    for name, results in runs.items():
        rate = median_row([r["decisions_per_s"] for r in results])
        base = base or rate
        rows.append(
            {
                "what": name,
                "decisions_per_s": rate,
                "all_runs": [r["decisions_per_s"] for r in results],
                "written": results[-1]["written"],
                "seconds": results[-1]["seconds"],
                "ratio_to_read_only": round(rate / base, 3),
            }
        )
        growth = [x["redis_used_memory_grown_bytes"] for x in results if "redis_used_memory_grown_bytes" in x]
        if growth:
            rows[-1]["redis_bytes_per_customer"] = round(statistics.median(growth) / n_customers)
            rows[-1]["redis_bytes_per_restored_decision"] = round(statistics.median(growth) / expected)
    by = {r["what"]: r for r in rows}
    if "single Redis" in by and "cluster (3 masters)" in by:
        by["cluster (3 masters)"]["ratio_to_single"] = round(
            by["cluster (3 masters)"]["decisions_per_s"] / by["single Redis"]["decisions_per_s"], 3
        )
    return {
        "decisions": len(records),
        "approved": approved,
        "customers": n_customers,
        "restore_calls": expected,
        "partitions": args.partitions,
        "rows": rows,
    }


# ---------------------------------------------------------------- report

FROM_RESULTS = {
    "state_bytes_per_customer_worker_rss": (
        1380,
        "timers_state.md: 1,000,000 customer states, 1380 B of worker RSS per customer (954 B on the changelog, p50 579, p99 1831)",
    ),
    "state_bytes_per_customer_store": (1243, "timers_state.md: StateStore alone 1243 B per customer (1185 MiB for 1,000,000)"),
    "bytes_per_pending_timer_incl_state": (
        3022,
        "timers-issue16.md: 3022 B of worker RSS per pending timer incl. its customer's state (1,000,000 timers, quiet run)",
    ),
    "state_restore_records_per_s": (105945, "timers_state.md: StateStore.restore alone 105,945 records/s (1,000,000 states in 9.44 s)"),
    "cold_start_1m_states_s": (
        14.18,
        "timers_state.md: worker ready 14.18 s cold with 1,000,000 states (empty baseline 2.27 s); 12.43 s after kill -9",
    ),
    "sustained_cart_journeys_per_s": (1000, "worker-issue16-ab.md: 1,000 cart journeys/s sustained for 30 s (p99 139 ms), 1,500/s not"),
}


def _join(values: Any) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def report_md(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Sizing figures ({result['when']})",
        "",
        f"Command: `{result['command']}` (wall time {result['wall_s']:.0f} s).",
        "",
        (
            f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, Python {m['python']}, {m['platform']}. "
            "**Everything shares the 2 cores**: the load generator / benchmark client, the Kafka broker, Redis (and the "
            "cluster's 6 nodes), and the worker(s). One private stack of the benchmark's own (`PrivateStack.up(home, \"--secure\")`, "
            "its Redis Cluster added to the same stack after the worker runs), wiped at the end."
        ),
        "",
    ]
    s = result.get("scale_out")
    if s:
        lines += [
            f"## Worker scale-out: backlog of {s['events']:,} mixed web events, {s['customers']:,} customers, {s['partitions']} partitions",
            "",
            (
                "bench_worker.py's event mix and metrics; one consumer group, both workers ready before the backlog is published "
                "(as fast as the producer can, in the same timing); first event accepted → last processed. Interleaved 1, 2, 1, 2, ... "
                "The partitions' basket marks are set in Redis before the workers start (a deployment whose Redis holds its baskets), "
                "so no run includes a new deployment's first rebuild. The producer runs during the timing, on the same cores: "
                "bench_worker.py's `backlog` (published before the worker starts) gave 9,290 events/s for one worker "
                "(worker-issue16-ab.md), this one about half of that."
            ),
            "",
            "| workers | events/s (median) | all runs | processed per worker (last run) | peak RSS MiB per worker (last run) | ratio |",
            "|---:|---:|---|---|---|---:|",
        ]
        for k, key in (("1", "one_worker_events_per_s"), ("2", "two_workers_events_per_s")):
            runs = s["runs"][k]
            ratio = 1.0 if k == "1" else s["ratio_two_to_one"]
            lines.append(
                f"| {k} | {s[key]:,} | {_join(r['events_per_s'] for r in runs)} | {runs[-1]['processed_per_worker']} | "
                f"{runs[-1]['peak_rss_mib_per_worker']} | **{ratio:.2f}** |"
            )
        lines += [
            "",
            (
                f"Ratio per interleaved pair: {s['ratio_per_run']}. On 2 cores a second worker process competes with the first and "
                "with the broker and Redis for the same cores: this is not the gain on machines with a core per worker."
            ),
            "",
        ]
    g = result.get("gates")
    if g:
        lines += [
            f"## Gate decisions/s: `RedisBasket.gate_many`, batch {g['batch']}, one client process",
            "",
            (
                f"{g['decisions_per_measurement']:,} decisions per measurement (the first batch per lane untimed), "
                f"{g['customers']:,} customers; client from `redis_client(url, mode, ca_file=...)`. Baseline: single Redis, plain TCP, "
                "4 batches in flight."
            ),
            "",
            "| target, batches in flight | decisions/s (median) | all runs | ratio to baseline | ratio to plain TCP, same in-flight |",
            "|---|---:|---|---:|---:|",
        ]
        for row in g["rows"]:
            lines.append(
                f"| {row['what']} | {row['per_second']:,.0f} | {_join(row['all_runs_per_second'])} | "
                f"**{row['ratio_to_baseline']:.2f}** | {row['ratio_to_plain_same_inflight']:.2f} |"
            )
        lines += [
            "",
            (
                "1 in flight = one connection per node: the per-connection rate. A worker gates one batch at a time "
                "(`process_batch` in rounds), so its own gate rate is the 1-in-flight row."
            ),
            "",
            (
                "The TLS rows run as the stack's ACL user (the README's `ACL SETUSER` rules). The machine is shared with other "
                "work: the spread between runs is as large as some differences between rows."
            ),
            "",
        ]
    r = result.get("rebuild")
    if r:
        lines += [
            (
                f"## Basket rebuild: {r['decisions']:,} decision records ({r['approved']:,} approved, {r['customers']:,} customers, "
                f"this month), {r['partitions']} partitions"
            ),
            "",
            (
                "`BasketGuard._rebuild` itself (the worker's Kafka read loop, `restore_calls`, `RedisBasket.restore` in chunks of "
                f"1000) over a stand-in for the WorkerContext holding only what it reads; every key new ({r['restore_calls']:,} "
                "restore calls written each run). Baseline: the same loop with a basket that writes nothing."
            ),
            "",
            "| target | decisions/s read + written (median) | all runs | ratio to read-only |",
            "|---|---:|---|---:|",
        ]
        for row in r["rows"]:
            lines.append(f"| {row['what']} | {row['decisions_per_s']:,.0f} | {_join(row['all_runs'])} | {row['ratio_to_read_only']:.2f} |")
        mem = next((row for row in r["rows"] if "redis_bytes_per_customer" in row), None)
        if mem:
            lines += [
                "",
                (
                    f"Redis memory (`used_memory` growth of the single Redis during its rebuild): **{mem['redis_bytes_per_customer']:,} B "
                    f"per customer** with {r['decisions'] / r['customers']:.1f} decisions this month, "
                    f"{mem['redis_bytes_per_restored_decision']:,} B per decision restored."
                ),
            ]
        cl = next((row for row in r["rows"] if "ratio_to_single" in row), None)
        if cl:
            lines += ["", f"Cluster vs single Redis: **{cl['ratio_to_single']:.2f}**."]
        lines.append("")
    lines += ["## Taken from earlier results (not re-measured)", ""]
    for _, (value, source) in FROM_RESULTS.items():
        lines.append(f"- {source} (bench/results/{source.split(':')[0]}); used: {value:,}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--customers", type=int, default=5_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--worker-repeat", type=int, default=2, help="interleaved pairs of 1-worker and 2-worker runs")
    ap.add_argument("--decisions", type=int, default=100_000, help="gate decisions per measurement")
    ap.add_argument("--gate-customers", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds of the gate measurements")
    ap.add_argument("--rebuild-decisions", type=int, default=100_000)
    ap.add_argument("--rebuild-customers", type=int, default=20_000)
    ap.add_argument("--rebuild-repeat", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: scale,gates,rebuild")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    policy = load_policy(ROOT / "journeys" / "pressure.yaml")
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "env -u KAFKA_BOOTSTRAP_SERVERS -u REDIS_URL .venv/bin/python bench/bench_sizing.py"
        + "".join(f" {a}" for a in (argv or sys.argv[1:])),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "from_results": {k: {"value": v, "source": s} for k, (v, s) in FROM_RESULTS.items()},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-sizing"))
    say(f"starting a private stack (--secure) under {tmp / 'stack'}")
    stack = PrivateStack.up(tmp / "stack", "--secure")
    try:
        kafka, plain = stack.kafka, stack.redis
        tls, ca = stack.exports["REDIS_TLS_URL"], stack.exports["STACK_CA_FILE"]
        say(f"stack up: kafka {kafka}, redis {plain} (+ TLS port)")
        if "scale" not in skip:
            result["scale_out"] = scale_out(kafka, plain, args, tmp)
        say("adding the Redis Cluster (3 masters + 3 replicas) to the stack")
        for _ in range(3):  # ports free when the stack started may be taken by now: a fresh range each try
            stack.env["STACK_REDIS_CLUSTER_PORT"] = str(free_port_range())
            up = stack.run("up", "--secure", "--redis-cluster")
            if up.returncode == 0:
                break
            say(f"the cluster did not come up, trying other ports: {up.stderr.strip().splitlines()[-1:]}")
        else:
            raise RuntimeError(f"the cluster did not come up:\n{up.stderr[-3000:]}")
        cluster = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, flags=re.MULTILINE))["REDIS_URL"]
        say(f"cluster up, seed {cluster}")
        if "gates" not in skip:
            result["gates"] = gates(
                {
                    "single plain TCP": (plain, "single", None),
                    "single TLS + ACL user": (tls, "single", ca),
                    "cluster (3 masters)": (cluster, "cluster", None),
                },
                args,
                policy,
            )
        if "rebuild" not in skip:
            result["rebuild"] = rebuild(
                kafka, {"single Redis": (plain, "single"), "cluster (3 masters)": (cluster, "cluster")}, args, policy
            )
    finally:
        say("stopping and wiping the private stack")
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)
    result["wall_s"] = time.monotonic() - T0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = report_md(result)
    (out / "sizing.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "sizing.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

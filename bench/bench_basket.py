"""How many gate decisions per second the Redis basket delivers, next to Redis's own EVALSHA rate.

    python bench/bench_basket.py [--redis-url URL] [--decisions 200000] [--batch 64] [--concurrency 8] [--processes 1,4]

In one run, against the same server:

1. ``redis-benchmark -q -n 200000 -P 16 -c 50 EVALSHA <sha> 0`` for a trivial script
   (``return 1``): the ceiling for any script call on this server and machine.
2. ``redis-benchmark`` calling ``gate.lua`` itself with random customers and send ids:
   what the gate costs inside Redis, without any Python.
3. The Python client's own ceiling: ``EVALSHA <return 1> 0`` through redis.asyncio pipelines of the
   same batch size and in-flight count as below, in 1 and more processes.
4. The worker's client: :class:`RedisBasket` from ``redis.asyncio``, ``gate_many`` batches
   pipelined in one round trip each, ``--concurrency`` batches in flight per process,
   many customers, in 1 and more worker processes. Timed: ``gate_many`` end to end
   (planning in Python, the round trip, the Lua, building the decisions); building the
   :class:`GateRequest` objects is not timed (the engine makes those anyway).

Writes ``bench/results/basket.json`` and ``bench/results/basket.md``. All keys live under a
fresh prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from orchestrator.pressure.basket import Decision, GateRequest  # noqa: E402
from orchestrator.pressure.planner import plan_gate  # noqa: E402
from orchestrator.pressure.policy import PressurePolicy, load_policy  # noqa: E402
from orchestrator.pressure.redis_basket import RedisBasket, gate_script  # noqa: E402

TYPES = ["service", "editorial", "commercial", "commercial", "calamity"]
CHANNELS = ["email", "sms", "push", "call_center", "direct_mail", "web_message", "in_app"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
TRIVIAL_CLIENT = "redis.asyncio EVALSHA trivial script (return 1), same client path as gate_many (pipelined),"


def redis_benchmark_args(url: str) -> list[str]:
    """``-h/-p/-a/--dbnum`` for redis-benchmark from a redis:// URL."""
    u = urlparse(url)
    args = ["-h", u.hostname or "127.0.0.1", "-p", str(u.port or 6379)]
    if u.password:
        args += ["-a", u.password]
    db = (u.path or "/0").lstrip("/") or "0"
    if db != "0":
        args += ["--dbnum", db]
    return args


def redact(url: str) -> str:
    """The URL without its password, fit for a results file."""
    u = urlparse(url)
    if not u.password:
        return url
    return u._replace(netloc=u.netloc.replace(f":{u.password}@", ":***@")).geturl()


def run_redis_benchmark(url: str, command: list[str], n: int, pipeline: int, clients: int, rand_range: int | None = None) -> float:
    """Requests/s that ``redis-benchmark`` reports for ``command``."""
    exe = shutil.which("redis-benchmark")
    if not exe:
        raise SystemExit("redis-benchmark is not on PATH (apt-get install redis-tools)")
    cmd = [exe, *redis_benchmark_args(url), "-q", "-n", str(n), "-P", str(pipeline), "-c", str(clients)]
    if rand_range:
        cmd += ["-r", str(rand_range)]
    out = subprocess.run(cmd + command, capture_output=True, text=True, check=True).stdout
    rates = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    if not rates:
        raise SystemExit(f"could not read redis-benchmark's output:\n{out}")
    return float(rates[-1])


def make_requests(n: int, customers: int, seed: int, tag: str) -> list[GateRequest]:
    rng = random.Random(seed)
    base = datetime(2026, 11, 3, tzinfo=UTC)
    return [
        GateRequest(
            send_id=f"{tag}-{i}",
            customer_id=f"{tag}-c{rng.randrange(customers)}",
            comm_type=rng.choice(TYPES),  # type: ignore[arg-type]
            channel=rng.choice(CHANNELS),  # type: ignore[arg-type]
            brand=rng.choice([None, "brand-a", "brand-b"]),
            priority=rng.randint(1, 10),
            timezone=rng.choice(ZONES),
            now=base + timedelta(seconds=i),
        )
        for i in range(n)
    ]


async def _trivial_worker(url: str, requests: list[GateRequest], batch: int, concurrency: int) -> tuple[int, float, dict[str, int]]:
    """The Python client's own ceiling: ``EVALSHA <return 1> 0`` through the same client path as
    :meth:`RedisBasket.gate_many` (one redis.asyncio pipeline per batch, ``concurrency`` in flight)."""
    client = aioredis.Redis.from_url(url, max_connections=concurrency + 2)
    sha = await client.script_load("return 1")
    sha = sha.decode() if isinstance(sha, bytes) else sha
    batches = [len(requests[i : i + batch]) for i in range(0, len(requests), batch)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    outcomes: dict[str, int] = {}

    async def lane() -> None:
        while not queue.empty():
            size = queue.get_nowait()
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(size):
                    pipe.evalsha(sha, 0)
                replies = await pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            outcomes["ok"] = outcomes.get("ok", 0) + len(replies)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return len(requests), elapsed, outcomes


async def drive_gates(basket: RedisBasket, requests: Sequence[GateRequest], batch: int, concurrency: int) -> tuple[float, dict[str, int]]:
    """``gate_many`` over ``requests`` in batches of ``batch``, ``concurrency`` in flight; (seconds, outcomes)."""
    queue: asyncio.Queue[Sequence[GateRequest]] = asyncio.Queue()
    for i in range(0, len(requests), batch):
        queue.put_nowait(requests[i : i + batch])
    outcomes: dict[str, int] = {}

    async def lane() -> None:
        while not queue.empty():
            # without return_exceptions an error is raised, so every item is a Decision
            for d in cast(list[Decision], await basket.gate_many(queue.get_nowait())):
                outcomes[d.outcome] = outcomes.get(d.outcome, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started, outcomes


async def _gate_worker(
    url: str, policy: PressurePolicy, prefix: str, requests: list[GateRequest], batch: int, concurrency: int
) -> tuple[int, float, dict[str, int]]:
    client = aioredis.Redis.from_url(url, max_connections=concurrency + 2)
    basket = RedisBasket(client, policy, prefix=prefix)
    await basket.load_script()
    elapsed, outcomes = await drive_gates(basket, requests, batch, concurrency)
    await client.aclose()
    return len(requests), elapsed, outcomes


def _process_main(args: tuple[str, str, str, int, int, int, int, int, Any, str]) -> tuple[int, float, float, dict[str, int]]:
    url, policy_json, prefix, n, customers, seed, batch, concurrency, barrier, mode = args
    policy = PressurePolicy.model_validate_json(policy_json)
    requests = make_requests(n, customers, seed, f"p{seed}")
    barrier.wait()
    t0 = time.time()
    if mode == "trivial":
        count, elapsed, outcomes = asyncio.run(_trivial_worker(url, requests, batch, concurrency))
    else:
        count, elapsed, outcomes = asyncio.run(_gate_worker(url, policy, prefix, requests, batch, concurrency))
    return count, t0, t0 + elapsed, outcomes


def measure_gates(
    url: str,
    policy: PressurePolicy,
    prefix: str,
    decisions: int,
    customers: int,
    batch: int,
    concurrency: int,
    processes: int,
    mode: str = "gate",
) -> dict[str, Any]:
    """Aggregate gate decisions/s of ``processes`` worker processes sharing ``decisions``.

    ``mode="trivial"`` sends ``EVALSHA <return 1> 0`` instead, through the same client path."""
    per = decisions // processes
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(processes)
        work = [
            (url, policy.model_dump_json(), prefix, per, customers, seed, batch, concurrency, barrier, mode) for seed in range(processes)
        ]
        with ctx.Pool(processes) as pool:
            results = pool.map(_process_main, work)
    total = sum(r[0] for r in results)
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    outcomes: dict[str, int] = {}
    for r in results:
        for k, v in r[3].items():
            outcomes[k] = outcomes.get(k, 0) + v
    return {
        "processes": processes,
        "batch": batch,
        "concurrency": concurrency,
        "decisions": total,
        "seconds": round(wall, 3),
        "per_second": round(total / wall, 1),
        "outcomes": outcomes,
    }


async def measure_single(url: str, policy: PressurePolicy, prefix: str, n: int) -> dict[str, Any]:
    """One ``gate`` at a time: the latency a lone decision sees."""
    client = aioredis.Redis.from_url(url)
    basket = RedisBasket(client, policy, prefix=prefix)
    await basket.load_script()
    requests = make_requests(n, 1000, 99, "single")
    started = time.perf_counter()
    for r in requests:
        await basket.gate(r)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return {
        "decisions": n,
        "seconds": round(elapsed, 3),
        "per_second": round(n / elapsed, 1),
        "mean_latency_us": round(elapsed / n * 1e6, 1),
    }


def lua_only_command(policy: PressurePolicy, sha: str, prefix: str) -> list[str]:
    """An EVALSHA of gate.lua for redis-benchmark, with random customers and send ids (``__rand_int__``).

    KEYS and ARGV come from :class:`RedisBasket` itself, so this row follows the script's layout.
    redis-benchmark replaces every ``__rand_int__`` on its own: fine on a single server."""
    request = GateRequest(
        send_id="s__rand_int__",
        customer_id="lua-__rand_int__",
        comm_type="commercial",
        channel="email",
        priority=7,
        now=datetime(2026, 11, 3, tzinfo=UTC),
    )
    plan = plan_gate(policy, request)
    basket = RedisBasket(None, policy, prefix=prefix)  # type: ignore[arg-type]  # keys and argv only
    keys = basket._keys(plan)  # noqa: SLF001 - the exact KEYS RedisBasket sends, no public accessor
    argv: str | list[str] = RedisBasket._argv(plan)  # noqa: SLF001 - the exact ARGV RedisBasket sends, no public accessor
    argv = [argv] if isinstance(argv, str) else argv  # one JSON argument, or several plain ones
    return ["EVALSHA", sha, str(len(keys)), *keys, *map(str, argv)]


def cleanup(url: str, prefix: str) -> int:
    r = redis.Redis.from_url(url)
    deleted = 0
    batch: list[bytes] = []
    for key in r.scan_iter(match=f"{prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += r.unlink(*batch)
            batch = []
    if batch:
        deleted += r.unlink(*batch)
    r.close()
    return deleted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--policy", default=str(ROOT / "journeys" / "pressure.yaml"))
    ap.add_argument("--decisions", type=int, default=200_000, help="gate decisions per measurement")
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256, help="requests per gate_many (one pipelined round trip)")
    ap.add_argument("--concurrency", type=int, default=4, help="batches in flight per process")
    ap.add_argument(
        "--processes", default=f"1,{max(2, min(4, (os.cpu_count() or 1) - 1))}", help="comma-separated worker process counts to measure"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="run every measurement this many times and report the median (shared machines are noisy)"
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    policy = load_policy(args.policy)
    url = args.redis_url
    sync = redis.Redis.from_url(url)
    server = sync.info("server")
    trivial_sha = sync.script_load("return 1")
    gate_sha = sync.script_load(gate_script())
    sync.close()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"

    rows: list[dict[str, Any]] = []
    print(f"redis {server['redis_version']} at {redact(url)}; {os.cpu_count()} CPUs; python {platform.python_version()}")
    procs_list = sorted({int(p) for p in args.processes.split(",") if p.strip()})
    try:
        runs: dict[str, list[dict[str, Any]]] = {}
        for attempt in range(args.repeat):
            # interleaved, so a noisy neighbour hurts every measurement alike
            measured: list[tuple[str, dict[str, Any]]] = [
                ("redis-benchmark EVALSHA trivial script (return 1), -P 16 -c 50",
                 {"per_second": run_redis_benchmark(url, ["EVALSHA", trivial_sha, "0"], 200_000, 16, 50)}),
                ("redis-benchmark EVALSHA trivial script (return 1), -P 1 -c 50 (not pipelined, for reference)",
                 {"per_second": run_redis_benchmark(url, ["EVALSHA", trivial_sha, "0"], 100_000, 1, 50)}),
                ("redis-benchmark EVALSHA gate.lua (random customers, no Python), -P 16 -c 50",
                 {"per_second": run_redis_benchmark(url, lua_only_command(policy, gate_sha, f"{prefix}-{attempt}"), 200_000, 16, 50,
                                                    rand_range=args.customers)}),
                ("RedisBasket.gate, one at a time, 1 process", asyncio.run(measure_single(url, policy, f"{prefix}-{attempt}", 5000))),
            ]  # fmt: skip
            for procs in procs_list:
                result = measure_gates(
                    url, policy, f"{prefix}-{attempt}", args.decisions, args.customers, args.batch, args.concurrency, procs, mode="trivial"
                )
                measured.append((f"{TRIVIAL_CLIENT} batch {args.batch}, {args.concurrency} in flight, {procs} process(es)", result))
            for procs in procs_list:
                result = measure_gates(
                    url, policy, f"{prefix}-{attempt}", args.decisions, args.customers, args.batch, args.concurrency, procs
                )
                measured.append((f"RedisBasket.gate_many, batch {args.batch}, {args.concurrency} in flight, {procs} process(es)", result))
            for what, result in measured:
                runs.setdefault(what, []).append(result)
            cleanup(url, f"{prefix}-{attempt}")
            print(f"run {attempt + 1}/{args.repeat}: " + ", ".join(f"{r['per_second']:,.0f}" for _, r in measured))
        for what, results in runs.items():
            ordered = sorted(results, key=lambda r: r["per_second"])
            median = ordered[len(ordered) // 2]
            rows.append({"what": what, **median, "all_runs_per_second": [r["per_second"] for r in results]})
    finally:
        cleanup(url, prefix)  # whatever an interrupted run left
    trivial = rows[0]["per_second"]
    client_trivial = {r["what"].rsplit(", ", 1)[-1]: r["per_second"] for r in rows if r["what"].startswith(TRIVIAL_CLIENT)}
    for row in rows:
        row["ratio_to_trivial"] = round(row["per_second"] / trivial, 3)
        if row["what"].startswith("RedisBasket.gate_many"):
            # against the Python client's own trivial-script rate with the same processes/batch/in-flight
            row["ratio_to_client_trivial"] = round(row["per_second"] / client_trivial[row["what"].rsplit(", ", 1)[-1]], 3)

    machine = {
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "redis_version": server["redis_version"],
        "redis_py": redis.__version__,
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    best = max((r for r in rows if r["what"].startswith("RedisBasket.gate_many")), key=lambda r: r["per_second"])
    best_trivial_client = max(client_trivial.values())
    lua_row = next(r for r in rows if "gate.lua" in r["what"])
    report = {
        "machine": machine,
        "redis_url": redact(url),
        "settings": {k: getattr(args, k) for k in ("decisions", "customers", "batch", "concurrency", "processes", "repeat")},
        "rows": rows,
        "target_ratio": 0.4,
        "target_baseline": rows[0]["what"],
        "best_client_ratio": best["ratio_to_trivial"],
        "best_client_ratio_to_client_trivial_same_processes": best["ratio_to_client_trivial"],
        "best_client_ratio_to_best_client_trivial": round(best["per_second"] / best_trivial_client, 3),
        "gate_lua_ratio": lua_row["ratio_to_trivial"],
        "client_vs_gate_lua": round(best["per_second"] / lua_row["per_second"], 3),
    }

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Basket gate throughput",
        "",
        (
            f"Machine: {machine['cpu_count']} CPUs ({machine['cpu']}), Python {machine['python']}, Redis {machine['redis_version']}, "
            f"redis-py {machine['redis_py']}; {machine['date']}."
        ),
        (
            "Redis server and the benchmark clients share this machine. Command: `python bench/bench_basket.py "
            f"--decisions {args.decisions} --batch {args.batch} --concurrency {args.concurrency} --processes {args.processes} "
            f"--repeat {args.repeat}`."
        ),
        "",
        f"Each figure is the median of {args.repeat} interleaved runs (all runs in basket.json).",
        "",
        (
            "Columns: **A** = vs `redis-benchmark` EVALSHA of the trivial script at **-P 16** -c 50 (the issue's baseline); "
            "**B** = vs the trivial script sent by the Python client (redis.asyncio) through the same pipelined path, "
            f"same batch ({args.batch}), in-flight ({args.concurrency}) and process count (gate_many rows only)."
        ),
        "",
        "| measurement | decisions/s (median) | A: vs redis-benchmark trivial -P16 | B: vs Python-client trivial | all runs |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        every = ", ".join(f"{v:,.0f}" for v in row["all_runs_per_second"])
        b_col = f"{row['ratio_to_client_trivial']:.1%}" if "ratio_to_client_trivial" in row else ""
        lines.append(f"| {row['what']} | {row['per_second']:,.0f} | {row['ratio_to_trivial']:.1%} | {b_col} | {every} |")
    met = "met" if best["ratio_to_trivial"] >= 0.4 else "not met"
    met_b = "met" if best["ratio_to_client_trivial"] >= 0.4 else "not met"
    lines += [
        "",
        (
            f"**Headline (the issue's target):** best worker-client rate {best['per_second']:,.0f}/s ({best['what']}) = "
            f"**{best['ratio_to_trivial']:.1%}** of redis-benchmark's trivial-script EVALSHA at -P 16 ({trivial:,.0f}/s); "
            f"target 40 %: **{met}**."
        ),
        "",
        (
            f"Against the Python client's own ceiling (trivial script, same client path, same process count): "
            f"**{best['ratio_to_client_trivial']:.1%}** (40 %: {met_b}); against the best Python-client trivial row "
            f"({best_trivial_client:,.0f}/s): {report['best_client_ratio_to_best_client_trivial']:.1%}."
        ),
        "",
        (
            f"Reading: the gate script alone, driven by redis-benchmark with no Python at all, runs at {lua_row['per_second']:,.0f}/s "
            f"({lua_row['ratio_to_trivial']:.1%} of the trivial script): that is the ceiling for any client of this server. "
            f"The worker's client reaches {best['per_second'] / lua_row['per_second']:.0%} of that ceiling."
        ),
        "",
    ]
    (out / "basket.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "basket.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

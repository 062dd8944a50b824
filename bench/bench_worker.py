"""Worker throughput and memory: the orchestrator worker vs a plain Faust agent, same broker, same run.

Both consume the same pre-published backlog of web events (page views, abandoned
carts, feature use, purchases for N customers). We time from the first processed
event to the last (start-up excluded) and read each process's peak RSS (VmHWM).
The orchestrator does strictly more per event: validate, re-key onto the customer
topic (a second hop), run the engine, gate sends in Redis, publish sends /
decisions / journey log, keep state and timers tables. The ratio says what that costs.

    stack/with-stack .venv/bin/python bench/bench_worker.py [--events 20000]

Writes bench/results/worker.json and bench/results/worker.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator import kafka_io  # noqa: E402
from orchestrator.runtime.preflight import prepare_topics  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.local import WorkerProcess, free_port  # noqa: E402


def make_events(n: int, customers: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    out = []
    for i in range(n):
        c = f"c{rnd.randrange(customers):06d}"
        at = (start + timedelta(milliseconds=i)).isoformat()
        r = rnd.random()
        base = {"event_id": f"e{i}", "customer_id": c, "occurred_at": at}
        if r < 0.70:
            out.append({**base, "type": "page_view", "url": f"/p/{rnd.randrange(500)}"})
        elif r < 0.82:
            out.append({**base, "type": "cart_abandoned", "cart_id": f"k{i}", "cart_value": round(rnd.uniform(10, 300), 2)})
        elif r < 0.94:
            out.append({**base, "type": "feature_used", "feature": rnd.choice(["export", "budget", "share"])})
        else:
            out.append({**base, "type": "purchase", "order_id": f"o{i}", "value": round(rnd.uniform(10, 300), 2)})
    return out


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(poll, total: int, proc, timeout: float) -> tuple[float, int, float]:
    """Poll a processed-count function; returns (events/s between first and last, processed, peak RSS MiB)."""
    deadline = time.monotonic() + timeout
    t0 = c0 = None
    done = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process exited during the benchmark")
        try:
            done = poll()
        except OSError:
            done = 0
        now = time.monotonic()
        if t0 is None and done > 0:
            t0, c0 = now, done
        if done >= total:
            break
        time.sleep(0.05)
    t1 = time.monotonic()
    rss = peak_rss_mib(proc.pid)
    if t0 is None or done < total:
        raise RuntimeError(f"only {done}/{total} processed before the timeout")
    return (done - c0) / max(t1 - t0, 1e-9), done, rss


def orchestrator_count(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    m = re.search(r'^orchestrator_processed_total\{kind="event"\} ([0-9.e+]+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def baseline_count(port: int) -> int:
    return int(json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=2).read())["processed"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    redis = os.environ["REDIS_URL"]
    tag = "bench" + uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix=tag))
    events = make_events(args.events, args.customers)
    payloads = [(e["customer_id"], json.dumps(e).encode()) for e in events]

    # --- baseline: plain Faust agent ---
    btopic = f"{tag}.baseline"
    asyncio.run(kafka_io.ensure_topics(kafka, [btopic], partitions=args.partitions))
    asyncio.run(kafka_io.produce(kafka, [(btopic, k, v) for k, v in payloads]))
    bport = free_port()
    benv = {
        **os.environ,
        "BASELINE_TOPIC": btopic,
        "BASELINE_APP_ID": f"{tag}-baseline",
        "BASELINE_PORT": str(bport),
        "BASELINE_DATA_DIR": str(tmp / "baseline"),
        "BASELINE_PARTITIONS": str(args.partitions),
    }
    with open(tmp / "baseline.log", "wb") as blog:
        bproc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "baseline_app", "worker", "-l", "warn"],
            cwd=ROOT / "bench", env=benv, stdout=blog, stderr=subprocess.STDOUT,
        )
    try:
        base_rate, base_n, base_rss = measure(lambda: baseline_count(bport), len(events), bproc, args.timeout)
    finally:
        bproc.terminate()
        bproc.wait(timeout=60)

    # --- the orchestrator worker, example journeys, real Redis basket ---
    prefix = f"{tag}o"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "REDIS_URL": redis,
        "ORCH_APP_ID": f"{prefix}-app",
        "ORCH_TOPIC_PREFIX": prefix,
        "ORCH_JOURNEYS_DIR": str(ROOT / "journeys"),
        "ORCH_PARTITIONS": str(args.partitions),
        "ORCH_STANDBY_REPLICAS": "0",
        "ORCH_DATA_DIR": str(tmp / "orch"),
        "ORCH_LOG_LEVEL": "warn",
    }
    # The backlog is published before the worker starts, so create its topics the way the worker does.
    settings = Settings(kafka_bootstrap_servers=kafka, app_id=f"{prefix}-app", topic_prefix=prefix, partitions=args.partitions)
    asyncio.run(prepare_topics(settings))
    asyncio.run(kafka_io.produce(kafka, [(f"{prefix}.in.web", k, v) for k, v in payloads]))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    try:
        orch_rate, orch_n, orch_rss = measure(lambda: orchestrator_count(worker.web_port), len(events), worker.proc, args.timeout)
    finally:
        worker.stop()

    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "events": len(events),
        "customers": args.customers,
        "partitions": args.partitions,
        "baseline_plain_faust": {"events_per_s": round(base_rate), "peak_rss_mib": round(base_rss, 1)},
        "orchestrator_worker": {"events_per_s": round(orch_rate), "peak_rss_mib": round(orch_rss, 1)},
        "throughput_ratio": round(orch_rate / base_rate, 3),
        "memory_ratio": round(orch_rss / base_rss, 3),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "worker.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (
        f"# Worker benchmark ({result['when']})\n\n"
        f"{len(events)} web events for {args.customers} customers, {args.partitions} partitions, one worker process each, "
        f"same local broker, {os.cpu_count()} CPUs, Python {platform.python_version()}.\n\n"
        "| | events/s | peak RSS MiB |\n|---|---:|---:|\n"
        f"| plain Faust agent (baseline) | {result['baseline_plain_faust']['events_per_s']} | {result['baseline_plain_faust']['peak_rss_mib']} |\n"
        f"| orchestrator worker | {result['orchestrator_worker']['events_per_s']} | {result['orchestrator_worker']['peak_rss_mib']} |\n"
        f"| ratio | {result['throughput_ratio']} | {result['memory_ratio']} |\n"
    )
    (out / "worker.md").write_text(md)
    print(md)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

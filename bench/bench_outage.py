"""An idle worker while the broker is away: CPU, readiness, retries, and a SIGTERM that closes every client.

On a Kafka + Redis of its own (``stack/stack`` under a temporary STACK_HOME, free ports), one
worker with the example journeys is started and left idle. Measured from ``/proc/<pid>/stat``
(user + system CPU seconds of the worker process over wall seconds):

1. baseline: the idle worker with the broker up (same run, same process);
2. outage: the broker killed (SIGKILL), the worker left alone for ``--outage`` seconds;

and, during the outage, how long ``/ready`` took to say 503, what the Kafka retry counter and
the lag read timestamp did, and, with the broker still away, how long SIGTERM took and which
clients did not close (from the worker's log).

    .venv/bin/python bench/bench_outage.py [--outage 30] [--idle 15]

Writes bench/results/outage.json and bench/results/outage.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.dev import kafkatools  # noqa: E402
from orchestrator.dev.private_stack import PrivateStack  # noqa: E402
from orchestrator.dev.processes import WorkerProcess, worker_env  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cores_over(pid: int, seconds: float) -> float:
    """Average cores the process used over the next ``seconds``."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def warm_up(bootstrap: str, carts: int) -> None:
    """Publish ``carts`` abandoned carts and wait until each entered its journey: the consumer then has positions and fetch sessions."""
    now = datetime.now(UTC).isoformat()
    docs = [
        {
            "type": "cart_abandoned",
            "customer_id": f"bo-{i}",
            "event_id": f"bo-{i}-cart",
            "occurred_at": now,
            "cart_id": "k",
            "cart_value": 99.0,
        }
        for i in range(carts)
    ]
    asyncio.run(kafkatools.produce(bootstrap, [("bo.in.web", str(d["customer_id"]), json.dumps(d).encode()) for d in docs]))

    def entered(rs: list[kafkatools.Record]) -> int:
        return sum(1 for r in rs if r.json().get("what") == "entered")

    got = asyncio.run(kafkatools.consume(bootstrap, ["bo.journey-log"], until=lambda rs: entered(rs) >= carts, timeout=60))
    assert entered(got) >= carts, f"{entered(got)} of {carts} carts entered before the outage"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outage", type=float, default=30.0, help="seconds the broker stays away")
    ap.add_argument("--idle", type=float, default=15.0, help="seconds of the idle baseline (broker up)")
    ap.add_argument("--warm", type=int, default=20, help="abandoned carts handled before the outage (0: a worker that never consumed)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    stack = PrivateStack.up(tmp / "stack")
    exports = {"KAFKA_BOOTSTRAP_SERVERS": stack.kafka, "REDIS_URL": stack.redis}
    worker: WorkerProcess | None = None
    try:
        worker = WorkerProcess(
            worker_env(exports["KAFKA_BOOTSTRAP_SERVERS"], exports["REDIS_URL"], "bo", ROOT / "journeys", tmp / "data", 2),
            tmp / "worker.log",
        ).start()
        worker.wait_ready(timeout=120)
        assert worker.proc is not None
        pid = worker.proc.pid
        if args.warm:
            warm_up(exports["KAFKA_BOOTSTRAP_SERVERS"], args.warm)
        time.sleep(5)  # let start-up work settle
        baseline = cores_over(pid, args.idle)
        retries_before = metric(worker.metrics(), 'orchestrator_dependency_retries_total{dependency="kafka"}')
        read_at_before = metric(worker.metrics(), "orchestrator_consumer_lag_read_timestamp_seconds")

        stack.stop_kafka()
        killed = time.monotonic()
        not_ready_after = None
        while time.monotonic() - killed < 60:
            if worker.ready() is None:
                not_ready_after = time.monotonic() - killed
                break
            time.sleep(0.25)
        rest = max(5.0, args.outage - (time.monotonic() - killed))
        outage = cores_over(pid, rest)
        text = worker.metrics()
        retries_during = metric(text, 'orchestrator_dependency_retries_total{dependency="kafka"}') - retries_before
        read_at = metric(text, "orchestrator_consumer_lag_read_timestamp_seconds")
        lag_age = time.time() - read_at

        started = time.monotonic()
        code = worker.stop(timeout=60)
        sigterm_s = time.monotonic() - started
        log = (tmp / "worker.log").read_text(errors="replace")
        unclosed = sorted(set(re.findall(r"shutdown: the (.+?) did not close cleanly", log)))
        never_awaited = len(re.findall(r"never awaited", log))
        warnings = sum(1 for line in log.splitlines() if "WARNING" in line or "ERROR" in line)
    finally:
        if worker is not None:
            worker.kill()
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)

    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "idle_cores_broker_up": round(baseline, 4),
        "idle_cores_broker_down": round(outage, 4),
        "ratio": round(outage / baseline, 2) if baseline else None,
        "not_ready_after_s": None if not_ready_after is None else round(not_ready_after, 1),
        "kafka_retries_counted": retries_during,
        "lag_read_timestamp_advanced_before": read_at > read_at_before,
        "lag_age_at_end_s": round(lag_age, 1),
        "sigterm_exit_s": round(sigterm_s, 1),
        "exit_code": code,
        "clients_not_closed": unclosed,
        "never_awaited_warnings": never_awaited,
        "warning_or_error_lines": warnings,
        "outage_s": args.outage,
        "warm_carts": args.warm,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "outage.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"# An idle worker while the broker is away ({result['at']})",
        "",
        f"{result['cpus']} CPUs, Python {result['python']}; Kafka and Redis of the benchmark's own on this machine,",
        f"{args.warm} abandoned carts handled first; broker killed (SIGKILL) for {args.outage:.0f} s.",
        f"Command: `.venv/bin/python bench/bench_outage.py --outage {args.outage:.0f} --warm {args.warm}`.",
        "",
        "| what | value |",
        "|---|---:|",
        f"| idle worker, broker up (baseline, same run) | {baseline:.3f} cores |",
        f"| idle worker, broker down | {outage:.3f} cores |",
        f"| ratio down / up | {result['ratio']} |",
        f"| `/ready` said 503 after | {result['not_ready_after_s']} s (ORCH_LAG_INTERVAL 5 s) |",
        f"| Kafka retries counted during the outage | {retries_during:.0f} |",
        f"| age of the lag gauge at the end of the outage | {lag_age:.0f} s |",
        f"| SIGTERM with the broker down: exited after | {sigterm_s:.1f} s (code {code}) |",
        f"| clients that did not close | {', '.join(unclosed) or 'none'} |",
        f"| 'never awaited' warnings | {never_awaited} |",
        f"| warning/error log lines in the whole run | {warnings} |",
        "",
    ]
    (args.out / "outage.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

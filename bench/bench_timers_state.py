"""Pending timers and customer state at scale: firing lateness, memory, bytes per customer, time to ready.

    stack/with-stack .venv/bin/python bench/bench_timers_state.py --timers 100000,1000000 --customers 1000000

(small smoke run, the default: ``--timers 5000 --customers 5000``; ``0`` skips a part).

Targets (issue): timers firing lateness p99 <= 1 s with 100,000 and 1,000,000 pending;
state <= 1 KB per customer and <= 60 s to ready after a restart with 1,000,000 customers.

How (real worker processes, started like the integration tests: ``orchestrator worker``
with ``ORCH_*`` environment, one per deployment, 4 partitions, own topic prefix and app id):

Seeding without running the engine N times (customer ids: ``<run><part>-0000042``, 16 chars). The pure engine
(``orchestrator.processor.process``, ``MemoryBasket``, the journeys in ``journeys/``) brings
a few template customers into realistic states; each template's state JSON and its
``timers`` header are cloned per customer id (the id replaced everywhere it occurs) and
written straight onto ``<app_id>-customer-state-changelog`` with a plain aiokafka
producer (acks=all, keyed by customer id, no explicit partition: the default murmur2
partitioner puts the state on the partition the worker itself uses for that customer on
``<prefix>.customer-events``, both topics having ``--partitions`` partitions).

Baseline (same run): a worker on an empty changelog (zero customers, zero timers):
time to ready on a cold start and after ``kill -9`` + restart, RSS at ready.

Timers (``--timers N[,N...]``): N customers who abandoned a cart and wait on the 24 h
"not opened" timeout; their due times are rewritten so that all N fall in a window of
``N / --timer-rate`` seconds (golden-ratio spread) starting ``--lead`` seconds after
seeding starts (enough for seeding + start-up + restore). A fresh worker restores them
(time to ready from process start, RSS at ready, ``orchestrator_timers_pending`` must be
N), then fires all of them: each TimerFired leads to the second reminder (engine, Redis
gate, outputs, state write). Lateness is exact, read back from Kafka afterwards:

- firing lateness: Kafka timestamp (CreateTime, set by the worker's producer) of each
  TimerFired on ``<prefix>.customer-events`` minus its ``due_at``;
- handling lateness: Kafka timestamp of the journey-log ``timeout`` record minus due
  (includes the worker's consume/process backlog).

Memory per pending timer: (RSS at ready - baseline RSS at ready) / N, which includes the
customer's state bytes; and, in a separate process, the heap alone: ``TimerHeap.rebuild``
of N entries built as ``StateStore.restore`` builds them (VmRSS delta / N).

State (``--customers N``): a mix of templates as in ``bench_engine.py`` (67 % profile
only, 12 % abandoned cart, 8 % loan documents, 8 % onboarding delay, 5 % churn apology;
their timers are hours to days away, none fires during the run). Bytes per customer =
state JSON value bytes / N (distribution too; key and header bytes reported apart).
A worker restores them (cold start: ready time, RSS), is killed (SIGKILL) and a new one
with a fresh data dir restores again (time to ready after a restart; this includes the
group waiting for the dead member's session timeout, as in the baseline). A separate
process times ``StateStore.restore`` alone on the changelog (records/s, RSS per customer).

Clean-up: the run's own topics (unique prefix) and its own Redis keys
(``pressure:{<tag>-*``) are deleted at the end unless ``--keep``; nothing shared is touched.

Writes bench/results/timers_state.json and bench/results/timers_state.md.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from bench_basket import cleanup as delete_redis_keys  # noqa: E402  (bench/ is the script's folder)

from orchestrator.dev.processes import WorkerProcess, worker_env  # noqa: E402
from orchestrator.events import CustomerEvent  # noqa: E402
from orchestrator.journey.loader import load_journeys  # noqa: E402
from orchestrator.pressure.memory import MemoryBasket  # noqa: E402
from orchestrator.pressure.policy import load_policy  # noqa: E402
from orchestrator.processor import process  # noqa: E402
from orchestrator.runtime.preflight import owned_topics, prepare_topics  # noqa: E402
from orchestrator.runtime.timers import encode_timers  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.state import CustomerState  # noqa: E402

JOURNEYS = ROOT / "journeys"
PHI = 0.6180339887498949
ID_DIGITS = 7


# ---------------------------------------------------------------- templates (the real engine, a few customers)


@dataclass
class Template:
    kind: str
    raw: bytes  # state JSON with the placeholder customer id
    timers: list[tuple[str, float]]  # (timer id with the placeholder, due epoch)
    due_json: bytes = b""  # the single timer's due_at as serialized in raw (timer templates only)

    def header(self) -> bytes:
        return encode_timers(self.timers)


def placeholder(tag: str) -> str:
    """A template customer id as long as the real ones (``<tag>-0000042``), that occurs nowhere else."""
    return f"{tag}-" + "Q" * ID_DIGITS


def cust(tag: str, i: int) -> str:
    return f"{tag}-{i:0{ID_DIGITS}d}"


def ev(eid: str, cid: str, etype: str, at: datetime, **data: Any) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id=cid, type=etype, occurred_at=at, data=data)


async def _template(kind: str, cid: str, pageviews: int, at: datetime, rng: random.Random) -> Template:
    journeys = load_journeys([JOURNEYS])
    basket = MemoryBasket(load_policy(JOURNEYS / "pressure.yaml"))
    events = [
        ev(
            f"{cid}-reg",
            cid,
            "crm.profile_updated",
            at,
            segment=rng.choice(["gold", "silver", None]),
            timezone=rng.choice(["Europe/Berlin", "UTC", "America/New_York"]),
            attributes={},
        )
    ]
    events += [ev(f"{cid}-pv{j}", cid, "web.page_view", at, url=f"/p/{rng.randrange(500)}", attributes={}) for j in range(pageviews)]
    if kind == "cart":
        events.append(
            ev(f"{cid}-cart", cid, "web.cart_abandoned", at, cart_id="k1", cart_value=80.0, items=2, currency="EUR", attributes={})
        )
    elif kind == "loan":
        events.append(ev(f"{cid}-loan", cid, "web.loan_approved", at, loan_id="L1", amount=9000.0, attributes={}))
    elif kind == "onboarding":
        events.append(ev(f"{cid}-new", cid, "crm.customer_registered", at, timezone="Europe/Berlin", segment=None, attributes={}))
    elif kind == "churn":
        events.append(ev(f"{cid}-churn", cid, "crm.churn_risk_scored", at, score=0.9, model="m", attributes={}))
    state = CustomerState.new(cid)
    for e in events:
        state = (await process(state, e, journeys, at, basket)).state
    timers = [(t.timer_id, t.due_at.timestamp()) for inst in state.instances for t in inst.timers]
    raw = state.model_dump_json().encode()
    return Template(kind, raw, timers)


STATE_MIX = [("profile", 0.67), ("cart", 0.12), ("loan", 0.08), ("onboarding", 0.08), ("churn", 0.05)]


def build_templates(tag: str, kinds: list[str], at: datetime, seed: int = 7) -> dict[str, list[Template]]:
    """Per kind, three templates (1, 2 or 3 page views before), run through the real engine."""
    rng = random.Random(seed)
    cid = placeholder(tag)

    async def go() -> dict[str, list[Template]]:
        return {k: [await _template(k, cid, pv, at, rng) for pv in (1, 2, 3)] for k in kinds}

    out = asyncio.run(go())
    for k in kinds:
        for t in out[k]:
            if k != "profile" and not t.timers:
                raise RuntimeError(f"template {k} has no pending timer: the journeys changed?")
    return out


def iso_z(epoch: float) -> bytes:
    """A datetime exactly as pydantic serializes it in the state JSON (``...Z``)."""
    return b'"' + datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z").encode() + b'"'


# ---------------------------------------------------------------- seeding the changelog


@dataclass
class SeedStats:
    records: int = 0
    value_bytes: int = 0
    key_bytes: int = 0
    header_bytes: int = 0
    seconds: float = 0.0


async def _seed(kafka: str, topic: str, records: Iterator[tuple[bytes, bytes, bytes]], sizes: array.array) -> SeedStats:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    st = SeedStats()
    started = time.perf_counter()
    try:
        pending = []
        for key, value, header in records:
            pending.append(await producer.send(topic, value, key=key, headers=[("timers", header)]))
            st.records += 1
            st.value_bytes += len(value)
            st.key_bytes += len(key)
            st.header_bytes += len(header) + len("timers")
            sizes.append(len(value))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    st.seconds = time.perf_counter() - started
    return st


def seed(kafka: str, topic: str, records: Iterator[tuple[bytes, bytes, bytes]]) -> tuple[SeedStats, array.array]:
    sizes = array.array("I")
    return asyncio.run(_seed(kafka, topic, records, sizes)), sizes


# ---------------------------------------------------------------- worker processes


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of a process, MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def start_ready(env: dict[str, str], log: Path, timeout: float) -> tuple[WorkerProcess, float]:
    """Start a worker; returns it and the seconds from process start to the first /ready 200."""
    w = WorkerProcess(env, log)
    t0 = time.monotonic()
    w.start()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        assert w.proc is not None
        if w.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{w.log_tail()}")
        if w.ready() is not None:
            return w, time.monotonic() - t0
        time.sleep(0.1)
    w.kill()
    raise TimeoutError(f"worker not ready after {timeout:.0f}s:\n{w.log_tail()}")


SLOW_SCRAPES: list[str] = []
"""Scrapes of /metrics that timed out during the run (each a stall of the worker's event loop of 5 s or more)."""


def metric_values(w: WorkerProcess) -> dict[str, float]:
    """The worker's metrics; a scrape that times out (the worker's event loop stalled for seconds) is tried again, and counted."""
    for attempt in range(12):
        try:
            text = w.metrics()
            break
        except OSError as exc:  # urllib's timeouts are OSErrors
            SLOW_SCRAPES.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}")
            if attempt == 11:
                raise
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def settle_rss(w: WorkerProcess, seconds: float = 2.0) -> dict[str, float]:
    time.sleep(seconds)
    assert w.proc is not None
    return proc_status(w.proc.pid)


# ---------------------------------------------------------------- reading topics back


async def _read_all(kafka: str, topic: str, each: Callable[[Any], None]) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024
    )
    await consumer.start()
    n = 0
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or await _parts(consumer, topic))]
        ends = await consumer.end_offsets(parts)
        todo = [tp for tp in parts if ends[tp] > 0]
        if not todo:
            return 0
        consumer.assign(todo)
        await consumer.seek_to_beginning(*todo)
        remaining = set(todo)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=20_000)
            for tp, recs in batch.items():
                for r in recs:
                    if r.offset < ends[tp]:
                        each(r)
                        n += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return n


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"topic {topic} not found")


def read_all(kafka: str, topic: str, each: Callable[[Any], None]) -> int:
    return asyncio.run(_read_all(kafka, topic, each))


def pct(sorted_values: list[float] | array.array, q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not len(sorted_values):
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[k])


def dist(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "p50": round(pct(v, 50), 4),
        "p99": round(pct(v, 99), 4),
        "max": round(v[-1], 4),
        "mean": round(sum(v) / len(v), 4),
    }


# ---------------------------------------------------------------- clean-up (only what this run created)


async def _delete_topics(kafka: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [n for n in names if n in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def cleanup(kafka: str, redis_url: str, settings: Settings, tag: str) -> None:
    try:
        asyncio.run(_delete_topics(kafka, list(owned_topics(settings))))
    except Exception as exc:  # noqa: BLE001 - clean-up is best effort
        print(f"  (could not delete topics of {settings.topic_prefix}: {exc})", flush=True)
    n = delete_redis_keys(redis_url, f"pressure:{{{tag}-")
    if n:
        print(f"  removed {n} Redis keys of this run (pressure:{{{tag}-*)", flush=True)


# ---------------------------------------------------------------- probes (separate processes: clean RSS deltas)


def _vmrss() -> float:
    gc.collect()
    return proc_status(os.getpid())["VmRSS"]


def probe_heap(n: int) -> dict[str, Any]:
    """RSS cost of N pending timers in TimerHeap, built exactly as StateStore.restore + rebuild build them."""
    from orchestrator.runtime.store import PartitionState, StateStore
    from orchestrator.runtime.timers import TimerHeap, decode_timers

    tag = "pq" + uuid.uuid4().hex[:6]
    due0 = time.time() + 86400
    # the keys and headers as they arrive from Kafka (bytes), held apart from what is measured
    raw = [
        (cust(tag, i).encode(), encode_timers([(f"{cust(tag, i)}:abandoned_cart@{cust(tag, i)}-cart:wait_open:timeout", due0 + i * 1e-3)]))
        for i in range(n)
    ]
    store = StateStore("probe")
    part = store.partitions[0] = PartitionState()
    base = _vmrss()
    for key, header in raw:
        part.timers[key.decode()] = decode_timers(header)
    after_store = _vmrss()
    heap = TimerHeap()
    t = time.perf_counter()
    heap.rebuild(store.due_timers([0]))
    rebuild_s = time.perf_counter() - t
    after_heap = _vmrss()
    assert len(heap) == n
    return {
        "timers": n,
        "store_timer_rows_bytes_per_timer": round((after_store - base) * 1048576 / n, 1),
        "heap_bytes_per_timer": round((after_heap - after_store) * 1048576 / n, 1),
        "rebuild_s": round(rebuild_s, 3),
        "note": "store rows include the customer id string (shared with the state dict key in the worker)",
    }


def probe_restore(kafka: str, topic: str, partitions: int) -> dict[str, Any]:
    """StateStore.restore alone (the worker's code) on a changelog, then the heap rebuild: time and RSS.

    (The heap's own memory is measured by :func:`probe_heap`: here it would reuse what restore freed.)
    """
    from orchestrator.runtime.store import StateStore
    from orchestrator.runtime.timers import TimerHeap

    store = StateStore(topic)
    base = _vmrss()
    t = time.perf_counter()
    read = asyncio.run(store.restore(set(range(partitions)), kafka))
    restore_s = time.perf_counter() - t
    after_store = _vmrss()
    heap = TimerHeap()
    t = time.perf_counter()
    heap.rebuild(store.due_timers(range(partitions)))
    rebuild_s = time.perf_counter() - t
    n = store.customers()
    records = sum(read.values())
    return {
        "records_read": records,
        "customers": n,
        "timers": len(heap),
        "restore_s": round(restore_s, 2),
        "restore_records_per_s": round(records / restore_s) if restore_s else None,
        "store_rss_mib": round(after_store - base, 1),
        "store_bytes_per_customer": round((after_store - base) * 1048576 / max(n, 1), 1),
        "rebuild_s": round(rebuild_s, 3),
    }


def run_probe(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the three parts


@dataclass
class Ctx:
    kafka: str
    redis: str
    partitions: int
    tmp: Path
    log_level: str
    ready_timeout: float
    keep: bool
    run_tag: str

    def deployment(self, name: str) -> tuple[str, str, Settings]:
        """A deployment of its own: topics, app id, and a customer-id tag (ids are ``<tag>-0000042``: 16 chars)."""
        tag = f"{self.run_tag}{name}"
        prefix = f"bts-{tag}"
        settings = Settings(kafka_bootstrap_servers=self.kafka, app_id=f"{prefix}-app", topic_prefix=prefix, partitions=self.partitions)
        asyncio.run(prepare_topics(settings))
        return tag, prefix, settings

    def env(self, prefix: str, data: str) -> dict[str, str]:
        return worker_env(self.kafka, self.redis, prefix, JOURNEYS, self.tmp / data, self.partitions, ORCH_LOG_LEVEL=self.log_level)


def run_baseline(c: Ctx) -> dict[str, Any]:
    print("baseline: empty changelog (0 customers, 0 timers)", flush=True)
    tag, prefix, settings = c.deployment("b")
    w, ready = start_ready(c.env(prefix, "b-data0"), c.tmp / "b-worker0.log", c.ready_timeout)
    rss = settle_rss(w)
    w.kill()
    w2, ready2 = start_ready(c.env(prefix, "b-data1"), c.tmp / "b-worker1.log", c.ready_timeout)
    rss2 = settle_rss(w2)
    w2.stop()
    if not c.keep:
        cleanup(c.kafka, c.redis, settings, tag)
    res = {
        "ready_s": round(ready, 2),
        "restart_ready_s": round(ready2, 2),
        "rss_mib": round(rss["VmRSS"], 1),
        "peak_rss_mib": round(rss["VmHWM"], 1),
        "restart_rss_mib": round(rss2["VmRSS"], 1),
    }
    print(f"  {res}", flush=True)
    return res


def auto_lead(n: int) -> float:
    """Seconds from the start of seeding to the first due time: seeding + start-up + restore, with margin."""
    return 30.0 + n * 200e-6


def run_timers(c: Ctx, k: int, n: int, rate: float, lead: float | None, window: float | None, baseline: dict[str, Any]) -> dict[str, Any]:
    tag, prefix, settings = c.deployment(f"t{k}")
    window = window if window is not None else max(5.0, n / rate)
    lead = lead if lead is not None else auto_lead(n)
    print(f"timers: {n} pending, due over {window:.0f}s starting {lead:.0f}s after seeding starts", flush=True)
    tpl = build_templates(tag, ["cart"], datetime.now(UTC).replace(microsecond=0))["cart"]
    ph = placeholder(tag).encode()
    for t in tpl:
        assert len(t.timers) == 1, t.timers
        t.due_json = iso_z(t.timers[0][1])
        assert t.raw.count(b'"due_at":' + t.due_json) == 1
    t0 = time.time() + lead

    def due(i: int) -> float:
        return round(t0 + window * ((i * PHI) % 1.0), 3)

    def records() -> Iterator[tuple[bytes, bytes, bytes]]:
        for i in range(n):
            t = tpl[i % 3]
            cid = cust(tag, i).encode()
            d = due(i)
            value = t.raw.replace(ph, cid).replace(b'"due_at":' + t.due_json, b'"due_at":' + iso_z(d))
            header = b'[["' + t.timers[0][0].encode().replace(ph, cid) + b'",' + repr(d).encode() + b"]]"
            if i < 3:  # the clone is a valid state whose timer agrees with the header
                s = CustomerState.model_validate_json(value)
                ((tid, hdue),) = json.loads(header)
                ((sid, sdue),) = [(x.timer_id, x.due_at.timestamp()) for inst in s.instances for x in inst.timers]
                assert tid == sid and abs(hdue - sdue) < 1e-3 and cid.decode() in tid, (tid, sid, hdue, sdue)
            yield cid, value, header

    st, _sizes = seed(c.kafka, f"{settings.app_id}-customer-state-changelog", records())
    print(
        f"  seeded {st.records} states in {st.seconds:.1f}s ({st.records / st.seconds:.0f}/s), "
        f"{st.value_bytes / n:.0f} value bytes per customer",
        flush=True,
    )
    w, ready = start_ready(c.env(prefix, "t-data"), c.tmp / f"t{n}-worker.log", c.ready_timeout)
    ready_at = time.time()
    rss = settle_rss(w, 1.0)
    pending = metric_values(w).get("orchestrator_timers_pending", -1)
    early = sum(1 for i in range(n) if due(i) < ready_at)
    print(
        f"  ready in {ready:.1f}s, RSS {rss['VmRSS']:.0f} MiB, timers pending {pending:.0f}; "
        f"first due in {t0 - ready_at:+.1f}s; due before ready: {early}",
        flush=True,
    )
    if early:
        print(f"  WARNING: {early} timers came due before the worker was ready; raise --lead", flush=True)
    fired, handled = wait_all_handled(w, n, deadline=t0 + window + max(300.0, 3 * window))
    done_at = time.time()
    assert w.proc is not None
    peak = settle_rss(w, 1.0)
    print(
        f"  fired {fired:.0f}, handled {handled:.0f}, {done_at - (t0 + window):+.1f}s after the last due time; "
        f"RSS {peak['VmRSS']:.0f} MiB, peak {peak['VmHWM']:.0f} MiB",
        flush=True,
    )
    w.stop()

    # exact lateness, from Kafka timestamps
    firing, dupes = firing_lateness(c.kafka, settings.topic("customer-events"))
    handling: list[float] = []

    def on_log(r: Any) -> None:
        if b'"what":"timeout"' not in r.value:
            return
        m = json.loads(r.value)
        handling.append(r.timestamp / 1000 - due(int(m["customer_id"][-ID_DIGITS:])))

    read_all(c.kafka, settings.topic("journey-log"), on_log)
    on_time = list(firing.values())
    heap = run_probe(["--probe-heap", str(min(n, 1_000_000))])
    if not c.keep:
        cleanup(c.kafka, c.redis, settings, tag)
    res = {
        "timers": n,
        "window_s": round(window, 1),
        "due_per_s": round(n / window),
        "lead_s": round(lead, 1),
        "seed": {
            "seconds": round(st.seconds, 1),
            "records_per_s": round(st.records / st.seconds),
            "value_bytes_per_customer": round(st.value_bytes / n, 1),
        },
        "ready_s": round(ready, 2),
        "ready_vs_baseline": round(ready / baseline["ready_s"], 2) if baseline else None,
        "timers_pending_at_ready": pending,
        "due_before_ready": early,
        "rss_mib": round(rss["VmRSS"], 1),
        "peak_rss_mib": round(peak["VmHWM"], 1),
        "rss_after_firing_mib": round(peak["VmRSS"], 1),
        "rss_bytes_per_timer_incl_state": round((rss["VmRSS"] - baseline["rss_mib"]) * 1048576 / n, 1) if baseline else None,
        "heap_probe": heap,
        "fired": len(firing),
        "duplicate_firings": dupes,
        "handled": len(handling),
        "firing_lateness_s": dist(on_time),
        "handling_lateness_s": dist(handling),
        "finished_after_last_due_s": round(done_at - (t0 + window), 1),
        "slow_scrapes": list(SLOW_SCRAPES),
        "complete": len(firing) >= n and len(handling) >= n,
    }
    print(
        f"  firing lateness {res['firing_lateness_s']}\n  handling lateness {res['handling_lateness_s']}\n  heap probe {heap}", flush=True
    )
    return res


def wait_all_handled(w: WorkerProcess, n: int, deadline: float) -> tuple[float, float]:
    """Poll the worker's metrics until ``n`` timers are fired and handled, or ``deadline``; returns (fired, handled)."""
    fired = handled = 0.0
    while time.time() < deadline:
        assert w.proc is not None
        if w.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{w.log_tail()}")
        m = metric_values(w)
        fired = m.get("orchestrator_timers_fired_total", 0.0)
        handled = m.get('orchestrator_processed_total{kind="timer"}', 0.0)
        if fired >= n and handled >= n:
            break
        time.sleep(1.0)
    return fired, handled


def firing_lateness(kafka: str, topic: str) -> tuple[dict[str, float], int]:
    """Per timer id: its first TimerFired's Kafka timestamp minus its due time; and how many firings were repeats."""
    firing: dict[str, float] = {}
    dupes = 0

    def on_fired(r: Any) -> None:
        nonlocal dupes
        m = json.loads(r.value)
        if m.get("kind") != "timer":
            return
        if m["timer_id"] in firing:
            dupes += 1
            return
        firing[m["timer_id"]] = r.timestamp / 1000 - datetime.fromisoformat(m["due_at"]).timestamp()

    read_all(kafka, topic, on_fired)
    return firing, dupes


def run_state(c: Ctx, k: int, n: int, baseline: dict[str, Any]) -> dict[str, Any]:
    tag, prefix, settings = c.deployment(f"s{k}")
    print(f"state: {n} customers", flush=True)
    at = datetime.now(UTC).replace(microsecond=0)
    tpls = build_templates(tag, [k for k, _ in STATE_MIX], at)
    soonest = min((d for ts in tpls.values() for t in ts for _, d in t.timers), default=None)
    if soonest is not None and soonest < time.time() + 3600:
        raise RuntimeError(
            f"a template timer is due within the hour ({datetime.fromtimestamp(soonest, UTC)}): it would fire during the run"
        )
    ph = placeholder(tag).encode()
    kinds = [k for k, _ in STATE_MIX]
    weights = [w for _, w in STATE_MIX]
    rng = random.Random(11)
    chosen = rng.choices(range(len(kinds)), weights, k=n)
    counts = dict.fromkeys(kinds, 0)
    for x in chosen:
        counts[kinds[x]] += 1
    size_by_kind: dict[str, list[int]] = {k: sorted({len(t.raw) for t in tpls[k]}) for k in kinds}

    def records() -> Iterator[tuple[bytes, bytes, bytes]]:
        for i in range(n):
            t = tpls[kinds[chosen[i]]][i % 3]
            cid = cust(tag, i).encode()
            yield cid, t.raw.replace(ph, cid), t.header().replace(ph, cid)

    st, sizes = seed(c.kafka, f"{settings.app_id}-customer-state-changelog", records())
    ssorted = sorted(sizes)
    print(
        f"  seeded {st.records} states in {st.seconds:.1f}s ({st.records / st.seconds:.0f}/s): "
        f"{st.value_bytes / n:.0f} value bytes per customer (p50 {pct(ssorted, 50):.0f}, p99 {pct(ssorted, 99):.0f}, "
        f"max {ssorted[-1]}), mix {counts}",
        flush=True,
    )
    w, ready = start_ready(c.env(prefix, "s-data0"), c.tmp / f"s{n}-worker0.log", c.ready_timeout)
    rss = settle_rss(w)
    pending = metric_values(w).get("orchestrator_timers_pending", -1)
    print(
        f"  cold start: ready in {ready:.1f}s, RSS {rss['VmRSS']:.0f} MiB (peak {rss['VmHWM']:.0f}), timers pending {pending:.0f}",
        flush=True,
    )
    w.kill()
    w2, ready2 = start_ready(c.env(prefix, "s-data1"), c.tmp / f"s{n}-worker1.log", c.ready_timeout)
    rss2 = settle_rss(w2)
    print(f"  after kill -9: ready in {ready2:.1f}s, RSS {rss2['VmRSS']:.0f} MiB (peak {rss2['VmHWM']:.0f})", flush=True)
    w2.stop()
    restore = run_probe(["--probe-restore", f"{settings.app_id}-customer-state-changelog", "--partitions", str(c.partitions)])
    print(f"  restore alone: {restore}", flush=True)
    if not c.keep:
        cleanup(c.kafka, c.redis, settings, tag)
    return {
        "customers": n,
        "mix": counts,
        "template_value_bytes": size_by_kind,
        "seed": {"seconds": round(st.seconds, 1), "records_per_s": round(st.records / st.seconds)},
        "value_bytes_per_customer": round(st.value_bytes / n, 1),
        "value_bytes": {"p50": pct(ssorted, 50), "p99": pct(ssorted, 99), "max": ssorted[-1]},
        "key_bytes_per_customer": round(st.key_bytes / n, 1),
        "header_bytes_per_customer": round(st.header_bytes / n, 1),
        "changelog_mib": round((st.value_bytes + st.key_bytes + st.header_bytes) / 1048576, 1),
        "ready_s": round(ready, 2),
        "restart_ready_s": round(ready2, 2),
        "ready_vs_baseline": round(ready / baseline["ready_s"], 2) if baseline else None,
        "restart_vs_baseline": round(ready2 / baseline["restart_ready_s"], 2) if baseline else None,
        "timers_pending_at_ready": pending,
        "rss_mib": round(rss["VmRSS"], 1),
        "peak_rss_mib": round(max(rss["VmHWM"], rss2["VmHWM"]), 1),
        "restart_rss_mib": round(rss2["VmRSS"], 1),
        "rss_bytes_per_customer": round((rss["VmRSS"] - baseline["rss_mib"]) * 1048576 / n, 1) if baseline else None,
        "restore_probe": restore,
    }


# ---------------------------------------------------------------- report


def fmt_lat(d: dict[str, Any]) -> str:
    return f"{d['p50']:.3f} / {d['p99']:.3f} / {d['max']:.3f}" if d.get("n") else "—"


def markdown(r: dict[str, Any]) -> str:
    b = r["baseline"]
    lines = [
        f"# Timers and state at scale ({r['when']})",
        "",
        (
            f"`{r['command']}` — wall time {r['wall_s']:.0f} s; {r['partitions']} partitions, one worker process, "
            f"same local broker and Redis, {r['machine']['cpus']} CPUs (shared), Python {r['machine']['python']}."
        ),
        "",
        (
            "| measurement | N | time to ready s (cold / after kill -9) | RSS MiB at ready (peak) | bytes per item "
            "| lateness p50 / p99 / max s | baseline | ratio |"
        ),
        "|---|---:|---:|---:|---:|---:|---|---:|",
        (
            f"| baseline: empty changelog | 0 | {b['ready_s']} / {b['restart_ready_s']} | {b['rss_mib']} ({b['peak_rss_mib']}) "
            "| — | — | — | — |"
        ),
    ]
    for t in r["timers"]:
        hp = t["heap_probe"].get("heap_bytes_per_timer", "?")
        lines.append(
            f"| timers pending (all fire, {t['due_per_s']}/s) | {t['timers']:,} | {t['ready_s']} / — "
            f"| {t['rss_mib']} ({t['peak_rss_mib']}) | "
            f"{t['rss_bytes_per_timer_incl_state']:.0f} per timer incl. its state; heap alone {hp} | "
            f"firing {fmt_lat(t['firing_lateness_s'])}; handled {fmt_lat(t['handling_lateness_s'])} | "
            f"ready {b['ready_s']} s, RSS {b['rss_mib']} MiB | ready ×{t['ready_vs_baseline']} |"
        )
    for s in r["state"]:
        lines.append(
            f"| customer states | {s['customers']:,} | {s['ready_s']} / {s['restart_ready_s']} "
            f"| {s['rss_mib']} ({s['peak_rss_mib']}) | "
            f"{s['value_bytes_per_customer']:.0f} on the changelog (p50 {s['value_bytes']['p50']:.0f}, p99 {s['value_bytes']['p99']:.0f}); "
            f"{s['rss_bytes_per_customer']:.0f} of worker RSS | — | ready {b['ready_s']} / {b['restart_ready_s']} s | "
            f"×{s['ready_vs_baseline']} / ×{s['restart_vs_baseline']} |"
        )
    lines += ["", "Targets: timer firing lateness p99 ≤ 1 s; state ≤ 1 KB per customer and ≤ 60 s to ready after a restart.", ""]
    for t in r["timers"]:
        lines.append(
            f"- timers {t['timers']:,}: due over {t['window_s']} s; seeding {t['seed']['seconds']} s; pending at ready "
            f"{t['timers_pending_at_ready']:.0f}, due before ready {t['due_before_ready']}; fired {t['fired']} "
            f"(duplicates {t['duplicate_firings']}), handled {t['handled']}, all handled {t['finished_after_last_due_s']} s "
            f"after the last due time; worker RSS after firing {t['rss_after_firing_mib']} MiB; heap probe {t['heap_probe']}."
        )
    for s in r["state"]:
        p = s["restore_probe"]
        lines.append(
            f"- restore rate, {s['customers']:,} states: `StateStore.restore` alone {p.get('restore_records_per_s')} records/s "
            f"({p.get('restore_s')} s); the worker's cold start took {s['ready_s'] - b['ready_s']:+.1f} s over the empty baseline."
        )
        lines.append(
            f"- state {s['customers']:,}: mix {s['mix']}; template state JSON bytes {s['template_value_bytes']}; "
            f"key {s['key_bytes_per_customer']} B + header {s['header_bytes_per_customer']} B per record; changelog "
            f"{s['changelog_mib']} MiB; timers pending at ready {s['timers_pending_at_ready']:.0f}; `StateStore.restore` alone: {p}."
        )
    return "\n".join(lines) + "\n"


def sizes_arg(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip() and int(x) > 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timers", type=sizes_arg, default=[5000], help="pending timer counts, comma-separated (0: skip)")
    ap.add_argument("--customers", type=sizes_arg, default=[5000], help="customer state counts, comma-separated (0: skip)")
    ap.add_argument("--timer-rate", type=float, default=1000.0, help="timers due per second: the window is N / rate")
    ap.add_argument("--window", type=float, default=None, help="seconds over which the N timers come due (overrides --timer-rate)")
    ap.add_argument(
        "--lead", type=float, default=None, help="seconds from the start of seeding to the first due time (default 30 s + 200 µs × N)"
    )
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--log-level", default="warning")
    ap.add_argument("--ready-timeout", type=float, default=900.0)
    ap.add_argument("--keep", action="store_true", help="keep this run's topics and Redis keys")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--probe-heap", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--probe-restore", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_heap:
        print(json.dumps(probe_heap(args.probe_heap)))
        return 0
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if args.probe_restore:
        print(json.dumps(probe_restore(kafka, args.probe_restore, args.partitions)))
        return 0

    started = time.monotonic()
    run_tag = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix=f"bts-{run_tag}-"))
    c = Ctx(kafka, redis_url, args.partitions, tmp, args.log_level, args.ready_timeout, args.keep, run_tag)
    command = " ".join(["stack/with-stack .venv/bin/python bench/bench_timers_state.py", *sys.argv[1:]]).strip()
    print(f"run {run_tag}, worker logs in {tmp}", flush=True)
    baseline = run_baseline(c)
    timers = [run_timers(c, k, n, args.timer_rate, args.lead, args.window, baseline) for k, n in enumerate(args.timers)]
    states = [run_state(c, k, n, baseline) for k, n in enumerate(args.customers)]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "argv": sys.argv[1:],
        "wall_s": round(time.monotonic() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "partitions": args.partitions,
        "baseline": baseline,
        "timers": timers,
        "state": states,
    }
    warnings = []
    for log in sorted(tmp.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "WARNING" in line or "ERROR" in line or "Traceback" in line:
                warnings.append(f"{log.name}: {line[:300]}")
    result["worker_log_warnings"] = warnings[:50]
    if warnings:
        print(f"{len(warnings)} warning/error lines in the worker logs, e.g.:\n  " + "\n  ".join(warnings[:5]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timers_state.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (out / "timers_state.md").write_text(md)
    print(md)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

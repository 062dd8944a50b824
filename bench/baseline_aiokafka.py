"""Baseline (b) for bench_worker.py: the plainest stateful Kafka loop in Python.

getmany -> json.loads -> update a per-customer dict state -> produce -> await the acks
-> commit. No validation, no engine, no Redis, one hop. Two ways to produce:

- ``per-message``: one output record per input record (a stream processor's map; the
  loop the issue measured at ~15,000 events/s);
- ``per-customer``: one record per customer touched in the batch (a state write, as the
  orchestrator writes states), so far fewer records than inputs.

    python bench/baseline_aiokafka.py BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP N [per-message|per-customer]
prints one JSON line: {"events_per_s": ..., "peak_rss_mib": ...}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def run(bootstrap: str, in_topic: str, out_topic: str, group: str, total: int, mode: str) -> float:
    consumer = AIOKafkaConsumer(
        in_topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        fetch_max_wait_ms=20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    state: dict[bytes, dict] = {}
    done = 0
    t0 = None
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batch:
                continue
            if t0 is None:
                t0 = time.monotonic()
            touched: dict[bytes, dict] = {}
            futures: list[asyncio.Future] = []
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for r in records:
                    doc = json.loads(r.value)
                    s = state.setdefault(r.key, {"n": 0})
                    s["n"] += 1
                    s["last"] = doc["type"]
                    touched[r.key] = s
                    done += 1
                    if mode == "per-message":
                        futures.append(await producer.send(out_topic, json.dumps(s).encode(), key=r.key))
                offsets[tp] = records[-1].offset + 1
            if mode == "per-customer":
                futures = [await producer.send(out_topic, json.dumps(s).encode(), key=k) for k, s in touched.items()]
            await asyncio.gather(*futures)
            await consumer.commit(offsets)
        assert t0 is not None
        return done / (time.monotonic() - t0)
    finally:
        await consumer.stop()
        await producer.stop()


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    bootstrap, in_topic, out_topic, group, n = sys.argv[1:6]
    mode = sys.argv[6] if len(sys.argv) > 6 else "per-message"
    rate = asyncio.run(run(bootstrap, in_topic, out_topic, group, int(n), mode))
    print(json.dumps({"events_per_s": round(rate), "peak_rss_mib": round(peak_rss_mib(), 1)}))

"""Baseline (b) for bench_worker.py: the plainest stateful Kafka loop in Python.

getmany -> json.loads -> update a per-customer dict state -> produce one JSON record
per customer touched (the "state" write) -> await the acks -> commit. No validation,
no engine, no Redis, one hop. What the orchestrator worker is measured against.

    python bench/baseline_aiokafka.py BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP N
prints one JSON line: {"events_per_s": ..., "peak_rss_mib": ...}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def run(bootstrap: str, in_topic: str, out_topic: str, group: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        in_topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=2000, fetch_max_wait_ms=20,
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
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for r in records:
                    doc = json.loads(r.value)
                    s = state.setdefault(r.key, {"n": 0})
                    s["n"] += 1
                    s["last"] = doc["type"]
                    touched[r.key] = s
                    done += 1
                offsets[tp] = records[-1].offset + 1
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
    rate = asyncio.run(run(bootstrap, in_topic, out_topic, group, int(n)))
    print(json.dumps({"events_per_s": round(rate), "peak_rss_mib": round(peak_rss_mib(), 1)}))

"""Baseline for bench_worker.py: a plain Faust agent on the same broker.

It does what any stateful Faust consumer does and nothing more: consume JSON,
decode it, update a per-customer table entry (in memory, changelogged). Configured by env:
BASELINE_TOPIC, BASELINE_APP_ID, KAFKA_BOOTSTRAP_SERVERS, BASELINE_PORT.
"""

from __future__ import annotations

import json
import os

import faust
from faust.web import Request, Response, View

app = faust.App(
    os.environ["BASELINE_APP_ID"],
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    store="memory://",  # the worker keeps states in memory too (durable in a changelog); rocksdict is no dependency
    datadir=os.environ.get("BASELINE_DATA_DIR", "/tmp/baseline-data"),
    topic_partitions=int(os.environ.get("BASELINE_PARTITIONS", "4")),
    table_standby_replicas=0,
    consumer_auto_offset_reset="earliest",
    key_serializer="raw",
    value_serializer="raw",
    web_port=int(os.environ["BASELINE_PORT"]),
    web_host="127.0.0.1",
    web_bind="127.0.0.1",
)
topic = app.topic(os.environ["BASELINE_TOPIC"], key_type=bytes, value_type=bytes)
counts = app.Table("counts", default=None, key_type=bytes, value_type=bytes)
processed = {"n": 0}


@app.agent(topic)
async def count(stream: faust.StreamT) -> None:
    async for key, value in stream.items():
        doc = json.loads(value)
        prev = json.loads(counts.get(key) or b'{"n": 0}')
        prev["n"] += 1
        prev["last"] = doc["type"]
        counts[key] = json.dumps(prev).encode()
        processed["n"] += 1


@app.page("/count")
async def get_count(self: View, request: Request) -> Response:
    return self.json({"processed": processed["n"]})

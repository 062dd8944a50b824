"""What the demo shows: its progress line, its journey maps, its summary and its per-run ids (no server needed)."""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from orchestrator.definitions import load_definitions
from orchestrator.designer.simulate import simulate_files
from orchestrator.designer.simulate_result import SimulationResult
from orchestrator.dev import demo
from orchestrator.dev.demo_maps import edge_counts, journey_maps, maps_markdown, write_maps
from orchestrator.dev.demo_progress import ProgressReporter, Snapshot, format_progress, parse_metrics
from orchestrator.dev.kafkatools import Record
from orchestrator.metrics import Metrics
from orchestrator.records import JourneyLogRecord

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
EVENTS = ROOT / "tests" / "fixtures" / "events"

LAG_LINES = """# HELP orchestrator_consumer_lag Messages not yet processed per input partition.
# TYPE orchestrator_consumer_lag gauge
orchestrator_consumer_lag{partition="0",topic="demo.in.web"} 4.0
orchestrator_consumer_lag{partition="1",topic="demo.in.web"} 3.0
# HELP orchestrator_consumer_lag_seconds How far behind real time the group is per input partition.
# TYPE orchestrator_consumer_lag_seconds gauge
orchestrator_consumer_lag_seconds{partition="0",topic="demo.in.web"} 0.25
orchestrator_consumer_lag_seconds{partition="1",topic="demo.in.web"} 1.5
"""


def _metrics_page() -> str:
    """A worker's metrics page: the real counters (names as the worker has them) plus two partitions' lag."""
    m = Metrics()
    m.processed.labels("event").inc(40)
    m.processed.labels("timer").inc(2)
    m.sends.labels("email", "commercial").inc(5)
    m.sends.labels("sms", "service").inc(1)
    m.timers_fired.inc(3)
    m.dead_letters.labels("schema").inc(2)
    return generate_latest(m.registry).decode() + LAG_LINES


# --- the progress line -------------------------------------------------------------------------


def test_progress_numbers_come_from_the_worker_metrics_page() -> None:
    snap = parse_metrics(_metrics_page())
    assert snap == Snapshot(processed=42, sends=6, timers_fired=3, dead_lettered=2, lag=7, lag_seconds=1.5)
    line = format_progress(12.2, 80, Counter(upstream=830, ccm=95), snap)
    assert line == (
        "[ 12s/80s] published 830 events + 95 CCM feedback | processed 42 | sends 6 | timers fired 3 | dead-lettered 2 | lag 7 (1.5 s)"
    )
    assert parse_metrics("") == Snapshot(0, 0, 0, 0, 0, None)
    assert format_progress(1, 80, {}, None) == "[  1s/80s] published 0 events + 0 CCM feedback | worker metrics: no answer"


def _run_reporter(tty: bool, fetch: Any, published: Counter[str], rounds: float = 0.35) -> str:
    out = io.StringIO()
    reporter = ProgressReporter(fetch, published, 80, out=out, tty=tty, tty_interval=0.1, plain_interval=0.1)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(reporter.run(stop))
        await asyncio.sleep(rounds)
        published["upstream"] += 10  # the publishers count while the line is shown
        stop.set()
        await task

    asyncio.run(go())
    assert "upstream" not in reporter.last and "published 10 events" in reporter.last
    return out.getvalue()


def test_progress_is_rewritten_in_place_on_a_tty_and_printed_as_lines_otherwise() -> None:
    page = _metrics_page()
    on_tty = _run_reporter(True, lambda: page, Counter())
    assert on_tty.startswith("\r[") and on_tty.endswith("\x1b[K\n")  # one line, rewritten, ended once at the end
    assert on_tty.count("\n") == 1 and on_tty.count("\r") >= 3
    plain = _run_reporter(False, lambda: page, Counter())
    assert "\r" not in plain and "\x1b" not in plain
    lines = plain.splitlines()
    assert len(lines) >= 3 and all(line.startswith("[") and "processed 42" in line for line in lines)


def test_progress_says_so_when_the_worker_does_not_answer() -> None:
    def down() -> str:
        raise ConnectionRefusedError("no worker")

    assert "worker metrics: no answer" in _run_reporter(False, down, Counter(), rounds=0.05)


# --- the journey maps --------------------------------------------------------------------------


def _journey_log(events: str) -> tuple[list[dict[str, Any]], SimulationResult]:
    """The journey-log records (as the demo reads them back) of a simulated run of the committed journeys, and the run."""
    result = simulate_files(JOURNEYS, EVENTS / events)
    return [json.loads(JourneyLogRecord.of(t).model_dump_json()) for t in result.traces], result


def test_edge_counts_from_the_journey_log_equal_the_simulators() -> None:
    log, result = _journey_log("abandoned_cart.jsonl")
    assert edge_counts(log, "abandoned_cart", 1) == result.edge_counts("abandoned_cart")
    assert edge_counts(log, "abandoned_cart", 1)[("start", "send_first")] == 3
    assert edge_counts(log, "abandoned_cart", 2) == Counter()  # another version: none of these customers


def test_journey_maps_are_mermaid_with_customers_on_the_edges_in_markdown(tmp_path: Path) -> None:
    log, _ = _journey_log("abandoned_cart.jsonl")
    log.append({"customer_id": "", "journey_id": "monthly_newsletter", "journey_version": 1, "what": "campaign_progress"})
    journeys = load_definitions(JOURNEYS).journeys
    maps = journey_maps(journeys, log)
    assert [(m.journey_id, m.version) for m in maps] == sorted((j.journey.id, j.journey.version) for j in journeys.live.values())
    cart = next(m for m in maps if m.journey_id == "abandoned_cart")
    assert cart.entered == 3
    lines = cart.mermaid.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  start -->|"3"| s_send_first' in lines
    assert '  s_wait_open -->|"timeout: 1"| s_send_reminder' in lines
    assert '  s_wait_open -.->|"1"| goal' in lines
    idle = next(m for m in maps if m.journey_id == "idle_cart")
    assert idle.entered == 0 and '  start -->|"0"|' in idle.mermaid  # every live journey has its map, customers or not
    path = write_maps(tmp_path / "build" / "maps.md", maps, "Journey maps of demo run x")
    text = path.read_text()
    assert text == maps_markdown(maps, "Journey maps of demo run x")
    assert text.startswith("# Journey maps of demo run x\n")
    assert "## abandoned_cart v1: " in text and "(3 entered)" in text
    assert text.count("```mermaid\nflowchart TD\n") == len(maps) and text.count("\n```\n") == len(maps)


# --- the summary -------------------------------------------------------------------------------


def _record(topic: str, value: dict[str, Any], **headers: str) -> Record:
    return Record(topic, value.get("customer_id"), json.dumps(value).encode(), headers, 0, 0)


def _trace(instance: str, what: str, step: str | None = None, edge: str | None = None, **detail: Any) -> dict[str, Any]:
    return {
        "customer_id": f"c-{instance}",
        "journey_id": "abandoned_cart",
        "journey_version": 1,
        "instance_id": instance,
        "step_id": step,
        "what": what,
        "edge": edge,
        "detail": detail,
        "at": "2026-12-02T10:00:00+00:00",
    }


REMINDER_LOG = [
    # a: the timeout's send goes out -> a reminder
    _trace("a", "entered", None, "send_first"),
    _trace("a", "send", "send_first", "wait_open", result="approved"),
    _trace("a", "waiting", "wait_open"),
    _trace("a", "timeout", "wait_open", "send_reminder"),
    _trace("a", "send", "send_reminder", "done", result="approved"),
    _trace("a", "exited", "done", outcome="completed"),
    # b: the timeout leads to another wait: nothing sent
    _trace("b", "timeout", "wait_open", "wait_more"),
    _trace("b", "waiting", "wait_more"),
    # c: falls back to sms, which goes out -> one reminder
    _trace("c", "timeout", "wait_open", "send_reminder"),
    _trace("c", "send", "send_reminder", "send_reminder", result="fallback"),
    _trace("c", "send", "send_reminder", "done", result="approved"),
    # d: capped: nothing sent, and its later send is not a reminder
    _trace("d", "timeout", "wait_open", "send_reminder"),
    _trace("d", "send", "send_reminder", "done", result="capped"),
    _trace("d", "send", "send_other", "done", result="approved"),
]


def test_a_timeout_is_a_reminder_only_when_a_send_request_follows() -> None:
    assert demo.timeouts_and_reminders(REMINDER_LOG) == (4, 2)


def test_summary_columns_say_what_they_count_and_reasons_are_whole() -> None:
    capacity = "capacity 10 exceeded: 8 spent + 4"
    lock = "calamity lock until 2026-12-05T10:00:00Z; not deferred: no retry time"
    decisions = [
        {"result": "approved", "comm_type": "commercial", "code": "fits", "reason": "fits: 0 spent + 4 = 4 of 10"},
        {"result": "capped", "comm_type": "commercial", "code": "capacity", "reason": capacity},
        {"result": "capped", "comm_type": "commercial", "code": "locked", "reason": lock},
    ]
    sends = [
        {"customer_id": "c-a", "journey_id": "abandoned_cart", "journey_version": 1, "template": t, "channel": "email"}
        for t in ("cart_reminder_1", "cart_reminder_2", "cart_reminder_2")
    ]
    bad = "invalid web event: cart_value: Input should be a valid number, unable to parse string as a number"
    records = {
        "journey-log": [_record("journey-log", t) for t in REMINDER_LOG],
        "decisions": [_record("decisions", d) for d in decisions],
        "sends": [_record("sends", s) for s in sends],
        "dead-letter": [_record("dead-letter", {}, **{"dlq.source.topic": "demo.in.web", "dlq.code": "schema", "dlq.reason": bad})],
        "out.sales": [],
        "out.webcare": [],
    }
    text = demo.summarise(records, 100, Counter(delivered=3), 43200, 80)
    lines = text.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("journey "))
    assert header.split() == ["journey", "entered", "sent", "not", "sent", "timeouts", "goals", "ended"]
    row = next(line for line in lines if line.lstrip().startswith("abandoned_cart v1"))
    assert row.split() == ["abandoned_cart", "v1", "1", "3", "1", "4", "0", "1"]  # sent = send requests, not send traces
    assert "sent: send requests published to the CCM platform" in text
    assert any(capacity in line and " capacity " in line for line in lines)  # the whole reason, colons and all
    assert any(lock in line for line in lines)
    assert f"  demo.in.web [schema]: {bad}" in lines
    assert "wait timeouts fired: 4; reminders (a send request after a timeout): 2; timeouts that sent nothing: 2" in text
    assert "reminders on inaction" not in text
    assert any(line.split() == ["cart_reminder_2", "email", "2"] for line in lines)


# --- each run its own ids ----------------------------------------------------------------------


def test_each_run_has_its_own_customers_and_event_ids() -> None:
    assert demo.run_tag(0) == "0" and demo.run_tag(35) == "z" and demo.run_tag(36**3 + 11) == "100b"
    clock = demo.Clock(43200)
    first, personas = demo.plan_events(30, clock, tag="aaa")
    second, _ = demo.plan_events(30, clock, tag="bbb")
    ids = [{p.doc["customer_id"] for p in plan} for plan in (first, second)]
    assert all(c.startswith("cust-aaa-") for c in ids[0]) and all(c.startswith("cust-bbb-") for c in ids[1])
    assert "cust-aaa-0007" in personas and not ids[0] & ids[1]
    events = [{p.doc["event_id"] for p in plan} for plan in (first, second)]
    assert len(events[0]) == len(first) and not events[0] & events[1]
    # the same stream (seeded) in both runs: only the ids differ
    assert [p.doc["type"] for p in first] == [p.doc["type"] for p in second]
    assert [p.doc["customer_id"].replace("aaa", "bbb") for p in first] == [p.doc["customer_id"] for p in second]

"""Where the report's records come from besides Kafka: ``simulate --json`` files; and the variants the journey files declare."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.records import JourneyLogRecord, read_records

_SIM_ENVELOPE = {"at", "customer", "kind", "journey", "version", "instance_id", "step_id", "edge", "what", "text"}


def simulate_to_log(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """One line of ``simulate --json`` as a journey-log record (a dict), or None when it is no trace.

    Trace lines (``kind`` trace, and send lines that stand for a ``send``/``delayed`` trace)
    become what the worker publishes: the top-level ``journey``/``version``/``customer`` back
    under the record's names, every other field into ``detail``. Events, timers, consent changes
    and dispositions without a trace (``what: disposition``) are not on the journey log: None.
    """
    if doc.get("kind") not in ("trace", "send"):
        return None
    what = doc.get("what")
    if not isinstance(what, str) or what == "disposition":
        return None
    return {
        "customer_id": doc.get("customer", doc.get("customer_id", "")),
        "journey_id": doc.get("journey", doc.get("journey_id", "")) or "",
        "journey_version": doc.get("version", doc.get("journey_version", 0)) or 0,
        "instance_id": doc.get("instance_id") or "",
        "step_id": doc.get("step_id"),
        "what": what,
        "edge": doc.get("edge"),
        "detail": {k: v for k, v in doc.items() if k not in _SIM_ENVELOPE},
        "at": doc.get("at"),
    }


def read_simulate_file(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The journey-log records of a ``simulate --json`` file, and ``file:line: reason`` per unreadable line."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{lineno}: not valid JSON: {exc.msg}")
                continue
            if not isinstance(doc, dict):
                problems.append(f"{path}:{lineno}: not a JSON object")
                continue
            record = simulate_to_log(doc)
            if record is not None:
                records.append(record)
    return records, problems


def log_records(items: Iterable[JourneyLogRecord | Mapping[str, Any] | bytes]) -> tuple[list[JourneyLogRecord], int]:
    """Validate journey-log records (models, dicts or JSON bytes from the topic); returns them and how many were invalid."""
    return read_records(JourneyLogRecord, items)


def variant_order(journeys_dir: str | Path) -> tuple[dict[tuple[str, int, str], list[tuple[str, int]]], str | None]:
    """``(journey, version, split step) -> [(variant, weight), ...]`` as declared in the journey files.

    Returns the mapping and, when the files cannot be loaded, why (the mapping is then empty).
    """
    from orchestrator.errors import DefinitionError
    from orchestrator.journey.loader import load_journeys
    from orchestrator.journey.model import SplitStep

    path = Path(journeys_dir)
    if not path.exists():
        return {}, f"{path}: no such directory"
    try:
        journeys = load_journeys([path])
    except DefinitionError as exc:
        return {}, f"{path}: {len(exc.problems)} problem(s) loading the journeys"
    order: dict[tuple[str, int, str], list[tuple[str, int]]] = {}
    for compiled in journeys:
        for step_id, step in compiled.journey.steps.items():
            if isinstance(step, SplitStep):
                order[(compiled.id, compiled.version, step_id)] = [(v.name, v.weight) for v in step.variants]
    return order, None

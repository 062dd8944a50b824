"""The outbound records are built without validating again (records.py uses fast_new): their JSON must be
exactly what the validated models give, field order and number types included."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.actions import Disposition, Trace
from orchestrator.definitions import load_definitions
from orchestrator.dev.drive import drive
from orchestrator.events import InvalidEvent, parse_inbound
from orchestrator.fastmodel import fast_json
from orchestrator.records import DecisionRecord, JourneyLogRecord, SendRequest
from orchestrator.state import CustomerState

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 12, 1, 10, tzinfo=UTC)


def _actions(seen_states: list[CustomerState] | None = None) -> list[Disposition | Trace]:
    js = load_definitions(ROOT / "journeys", None).journeys
    out: list[Disposition | Trace] = []
    for path in sorted((ROOT / "tests" / "fixtures" / "events").glob("*.jsonl")):
        states: dict[str, CustomerState] = {}
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            doc = json.loads(line)
            family = doc.pop("family", None)
            if family is None:
                continue
            try:
                event = parse_inbound(family, json.dumps(doc).encode())
            except InvalidEvent:  # the fixtures hold some on purpose
                continue
            state, actions = drive(states.get(event.customer_id) or CustomerState.new(event.customer_id), event, js, event.occurred_at)
            states[event.customer_id] = state
            if seen_states is not None:
                seen_states.append(state)
            out += [a for a in actions if isinstance(a, Disposition | Trace)]
    return out


def test_fast_records_serialize_as_the_validated_models_do() -> None:
    actions = _actions()
    dispositions = [a for a in actions if isinstance(a, Disposition)]
    traces = [a for a in actions if isinstance(a, Trace)]
    assert len(dispositions) > 20 and len(traces) > 100
    for d in dispositions:
        fast = DecisionRecord.of(d, AT)
        assert fast.model_dump_json() == DecisionRecord.model_validate(fast.model_dump()).model_dump_json()
        if d.result == "approved":
            send = SendRequest.of(d, AT)
            assert send.model_dump_json() == SendRequest.model_validate(send.model_dump()).model_dump_json()
    for t in traces:
        fast_log = JourneyLogRecord.of(t)
        assert fast_log.model_dump_json() == JourneyLogRecord(**t.model_dump(exclude={"kind", "run_id"})).model_dump_json()


def test_fast_json_gives_the_bytes_model_dump_json_gives() -> None:
    """The worker writes states and records with fastmodel.fast_json (pydantic-core's serializer called directly)."""
    states: list[CustomerState] = []
    actions = _actions(states)
    records = [DecisionRecord.of(a, AT) if isinstance(a, Disposition) else JourneyLogRecord.of(a) for a in actions]
    assert len(states) > 100
    for obj in [*states, *records]:
        assert fast_json(obj) == obj.model_dump_json().encode()

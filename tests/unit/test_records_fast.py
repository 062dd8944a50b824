"""The outbound records are built without validating again (records.py uses fast_new): their JSON must be
exactly what the validated models give, field order and number types included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from pydantic import BaseModel, Field, field_serializer

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
    """The worker writes states and records with fastmodel.fast_json (orjson, pydantic's fields): the same bytes."""
    states: list[CustomerState] = []
    actions = _actions(states)
    dispositions = [a for a in actions if isinstance(a, Disposition)]
    records: list[BaseModel] = [JourneyLogRecord.of(a) for a in actions if isinstance(a, Trace)]
    records += [DecisionRecord.of(d, AT) for d in dispositions] + [SendRequest.of(d, AT) for d in dispositions if d.result == "approved"]
    assert len(states) > 100 and len(records) > 100
    assert any(inst.timers for s in states for inst in s.instances)  # nested models, datetimes, the excluded `gating`
    for obj in [*states, *records]:
        assert fast_json(obj) == obj.model_dump_json().encode()


class _Shaped(BaseModel):
    """Models whose JSON pydantic shapes itself, and values orjson writes otherwise: fast_json leaves them to pydantic."""

    at: datetime
    tags: set[str] = Field(default_factory=set)
    big: int = 0
    renamed: str = Field(default="x", serialization_alias="name")

    @field_serializer("at")
    def _at(self, at: datetime) -> str:
        return at.strftime("%d.%m.%Y")


class _Plain(BaseModel):
    at: datetime
    n: float
    inner: list[_Shaped] = Field(default_factory=list)
    hidden: str = Field(default="secret", exclude=True)


def test_fast_json_falls_back_to_pydantic_where_it_would_differ() -> None:
    shaped = _Shaped(at=AT, tags={"b", "a"}, big=2**70)
    cases = [
        shaped,
        _Plain(at=AT, n=float("inf"), inner=[shaped]),  # a shaped model nested in a plain one
        _Plain(at=datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))), n=0.1),
        _Plain(at=AT, n=2.5),
    ]
    for obj in cases:
        assert fast_json(obj) == obj.model_dump_json().encode()
    assert b"secret" not in fast_json(cases[-1])

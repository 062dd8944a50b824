"""The committed schemas/pressure.json must equal the one generated from the policy model."""

from __future__ import annotations

from pathlib import Path

from orchestrator.pressure.policy import policy_json_schema, policy_json_schema_text

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "pressure.json"


def test_committed_pressure_schema_is_current() -> None:
    committed = SCHEMA.read_text() if SCHEMA.exists() else "(missing)"
    assert committed == policy_json_schema_text(), (
        "schemas/pressure.json differs from the PressurePolicy model; regenerate it with\n"
        "    python -m orchestrator.pressure.policy > schemas/pressure.json"
    )


def test_pressure_schema_documents_every_setting() -> None:
    schema = policy_json_schema()
    undocumented = [
        f"{owner}.{name}"
        for owner, props in [("PressurePolicy", schema["properties"])] + [(k, d.get("properties", {})) for k, d in schema["$defs"].items()]
        for name, prop in props.items()
        if not prop.get("description")
    ]
    assert undocumented == []
    assert schema["additionalProperties"] is False

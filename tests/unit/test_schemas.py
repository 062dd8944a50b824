"""The committed JSON Schemas in schemas/ are generated from the models; they must not drift."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.designer.schemas import ROOT, all_schemas, write_schemas


def test_committed_schemas_match_the_models(tmp_path: Path) -> None:
    drift = write_schemas(check=True)
    assert drift == [], f"schemas differ from the models: {[str(p) for p in drift]}; run `orchestrator schemas`"


def test_every_family_and_outbound_record_has_a_schema() -> None:
    names = set(all_schemas())
    assert {
        "events/web.json",
        "events/ccm.json",
        "outbound/send_request.json",
        "journey.json",
        "pressure.json",
        "simulate-record.json",
    } <= names
    web = json.loads((ROOT / "events" / "web.json").read_text())
    assert "cart_abandoned" in json.dumps(web)


def test_check_mode_reports_a_changed_file(tmp_path: Path) -> None:
    write_schemas(root=tmp_path)
    assert write_schemas(check=True, root=tmp_path) == []
    victim = tmp_path / "events" / "geo.json"
    victim.write_text("{}\n")
    assert write_schemas(check=True, root=tmp_path) == [victim]


def test_simulate_record_schema_describes_every_kind_and_the_send_code() -> None:
    schema = json.loads((ROOT / "simulate-record.json").read_text())
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]}
    assert kinds == {
        "EventRecord",
        "TimerRecord",
        "AudienceRecord",
        "ConsentRecord",
        "TraceRecord",
        "SendRecord",
        "TimerArmedRecord",
        "TimerCancelledRecord",
        "EmitLine",
        "DeployRecord",
        "RetireRecord",
        "CampaignRunRecord",
    }
    assert schema["discriminator"]["propertyName"] == "kind"
    send = schema["$defs"]["SendRecord"]
    assert "code" in send["required"] and {t["type"] for t in send["properties"]["code"]["anyOf"]} == {"string", "null"}


def test_simulate_record_schema_describes_campaign_runs() -> None:
    schema = json.loads((ROOT / "simulate-record.json").read_text())
    run = schema["$defs"]["CampaignRunRecord"]
    assert {"journey", "run_id", "evaluated", "in_audience", "entered", "throttle_per_second", "throttle_seconds"} <= set(run["required"])
    assert run["properties"]["kind"]["const"] == "campaign_run"
    assert {"run_id", "due_at", "customer"} <= set(schema["$defs"]["AudienceRecord"]["required"])

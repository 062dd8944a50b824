"""`orchestrator simulate` with versions: deploy and retire lines in the event file (issue 9, item 9).

In-flight customers finish on the version they entered; new entrants take the newest
live version at their time. Deploy/retire problems are refused before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.designer.simulate import (
    RECORD_ADAPTER,
    Deploy,
    EventFileError,
    format_json_lines,
    format_text,
    read_events,
    simulate_files,
)
from tests.unit.test_simulate import WAIT, cli

ROOT = Path(__file__).resolve().parents[2]

W2 = WAIT.replace("version: 1", "version: 2").replace("template: t,", "template: t2,")


def form(cid: str, at: str) -> str:
    return json.dumps(
        {"family": "web", "type": "form_submitted", "event_id": f"{cid}-f", "customer_id": cid, "occurred_at": at, "form_id": "x"}
    )


def page(cid: str, at: str) -> str:
    return json.dumps({"family": "web", "type": "page_view", "event_id": f"{cid}-p", "customer_id": cid, "occurred_at": at, "url": "/"})


def scenario(tmp_path: Path, *lines: str, v2: str = W2, v2_name: str = "w.v2.yaml") -> tuple[Path, Path]:
    """journeys/ with w v1 and a policy; scenario/ with the v2 file and the event file; returns (journeys, events)."""
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "w.yaml").write_text(WAIT)
    (journeys / "pressure.yaml").write_text("capacity: 25\n")
    sc = tmp_path / "scenario"
    sc.mkdir()
    (sc / v2_name).write_text(v2)
    events = sc / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    return journeys, events


def versions(result, cid: str) -> set[int]:
    return {r.journey_version for r in result.for_customer(cid) if r.journey_version is not None}


def templates(result, cid: str) -> list[str]:
    return [d.send.template for d in result.sends(cid)]


DEPLOY = '{"deploy": "w.v2.yaml", "at": "2026-01-02T12:00:00Z"}'


def test_in_flight_customers_finish_on_v1_and_new_ones_take_v2(tmp_path):
    journeys, events = scenario(
        tmp_path,
        form("c1", "2026-01-01T10:00:00Z"),  # before the deploy: v1
        DEPLOY,
        form("c2", "2026-01-03T10:00:00Z"),  # after: v2
        page("c1", "2026-01-04T10:00:00Z"),  # c1 still on v1, finishes there
    )
    r = simulate_files(journeys, events)
    assert versions(r, "c1") == {1} and versions(r, "c2") == {2}
    assert r.path("c1") == ["s", "w", "done"] and templates(r, "c1") == ["t"]
    assert r.path("c2") == ["s", "w", "late"] and templates(r, "c2") == ["t2", "late"]
    assert [d.send.send_id.split(":")[2] for d in r.sends("c2")] == ["v2", "v2"]
    [change] = r.versions
    assert change.to_json() == {
        "at": "2026-01-02T12:00:00Z",
        "kind": "deploy",
        "journey": "w",
        "version": 2,
        "live_version": 2,
        "where": f"{events}:2:2",
        "file": str(events.parent / "w.v2.yaml"),
        "text": f"deployed w v2 from {events.parent / 'w.v2.yaml'} ({events}:2:2): new entries take v2",
    }
    text = format_text(r)
    assert text.startswith(f"journey versions\n  2026-01-02T12:00:00Z  deployed w v2 from {events.parent / 'w.v2.yaml'}")
    lines = [json.loads(line) for line in format_json_lines(r).splitlines()]
    assert lines[0]["kind"] == "deploy" and all("customer" in line for line in lines[1:])
    for line in lines:
        RECORD_ADAPTER.validate_python(line)
    assert {line["version"] for line in lines if line.get("customer") == "c2" and "version" in line} == {2}


def test_a_deployed_file_in_the_journeys_directory_is_held_back_until_its_time(tmp_path):
    deploy = '{"deploy": "../journeys/w.v2.yaml", "at": "2026-01-02T12:00:00Z"}'
    journeys, events = scenario(tmp_path, form("c1", "2026-01-01T10:00:00Z"), deploy)
    (journeys / "w.v2.yaml").write_text(W2)  # committed next to v1, as the designer's guide says
    r = simulate_files(journeys, events)
    assert versions(r, "c1") == {1}  # loaded at the start, v2 (newest live) would have taken c1
    assert [v.version for v in r.versions] == [2]


def test_retire_stops_new_entries_into_that_version(tmp_path):
    journeys, events = scenario(
        tmp_path,
        form("c1", "2026-01-01T10:00:00Z"),
        DEPLOY,
        form("c2", "2026-01-03T10:00:00Z"),
        '{"retire": "w", "version": 2, "at": "2026-01-04T00:00:00Z"}',  # back to v1 for new entries
        form("c3", "2026-01-05T10:00:00Z"),
        '{"retire": "w", "version": 1, "at": "2026-01-06T00:00:00Z"}',  # nothing live: no new entries
        form("c4", "2026-01-07T10:00:00Z"),
    )
    r = simulate_files(journeys, events)
    assert versions(r, "c2") == {2} and r.path("c2") == ["s", "w", "late"]  # in flight: finishes on retired v2
    assert versions(r, "c3") == {1} and r.path("c3") == ["s", "w", "late"]
    assert r.path("c4") == [] and versions(r, "c4") == set()
    assert [v.text for v in r.versions][1:] == [
        f"retired w v2 ({events}:4:2): new entries take v1",
        f"retired w v1 ({events}:6:2): no version takes new entries",
    ]


def test_cli_runs_the_rollout_example():
    code, out, err = cli("simulate", "--journeys", str(ROOT / "journeys"), str(ROOT / "journeys" / "examples" / "cart_v2_rollout.jsonl"))
    assert code == 0 and err == ""
    assert "deployed abandoned_cart v2 from" in out
    blocks = {b.split("\n", 1)[0]: b for b in out.split("\n\n")}
    assert "abandoned_cart v1 wait_open: timed out" in blocks["customer c1"] and "2026-03-03T10:00:00Z" in blocks["customer c1"]
    assert "abandoned_cart v2 wait_open: timed out" in blocks["customer c2"] and "2026-03-03T01:00:00Z" in blocks["customer c2"]
    assert "abandoned_cart v2 wait_open: got ccm.opened -> done" in blocks["customer c3"]


# ------------------------------------------------------------------ refused before the run


def refused(journeys: Path, events: Path) -> list[str]:
    code, out, err = cli("simulate", "--journeys", str(journeys), str(events))
    assert (code, out) == (1, "")
    with pytest.raises(EventFileError) as info:
        simulate_files(journeys, events)
    assert err.splitlines() == info.value.problems
    return info.value.problems


def test_an_invalid_deployed_file_is_reported_with_file_line_col(tmp_path):
    journeys, events = scenario(tmp_path, form("c1", "2026-01-01T10:00:00Z"), DEPLOY, v2=W2.replace("timeout: 10d", "timeout: 0s"))
    [problem] = refused(journeys, events)
    v2 = events.parent / "w.v2.yaml"
    assert problem.startswith(f"{v2}:9:") and "steps.w.timeout: bad duration '0s'" in problem
    assert problem.endswith(f"(deployed by {events}:2:2)")


def test_a_missing_deployed_file_is_reported_at_its_line(tmp_path):
    journeys, events = scenario(tmp_path, form("c1", "2026-01-01T10:00:00Z"), '{"deploy": "nope.yaml", "at": "2026-01-02T12:00:00Z"}')
    assert refused(journeys, events) == [
        (
            f"{events}:2:2: deploy: no such journey file 'nope.yaml' (looked for {events.parent / 'nope.yaml'}; "
            "a deploy path is relative to the event file)"
        )
    ]


def test_a_version_already_loaded_is_refused(tmp_path):
    journeys, events = scenario(tmp_path, DEPLOY, v2=WAIT)
    [problem] = refused(journeys, events)
    v2 = events.parent / "w.v2.yaml"
    assert problem.startswith(f"{v2}:3:")  # the version line of the deployed file
    assert f": journey 'w' version 1 is already loaded from {journeys / 'w.yaml'}: bump the version number" in problem


def test_bad_deploy_and_retire_lines_are_refused(tmp_path):
    journeys, events = scenario(
        tmp_path,
        '{"deploy": "w.v2.yaml"}',
        '{"deploy": "w.v2.yaml", "at": "2026-01-02T12:00:00"}',
        '{"retire": "w", "at": "2026-01-02T12:00:00Z", "verison": 1}',
    )
    assert refused(journeys, events) == [
        f"{events}:1:2: deploy line: at: Field required",  # a missing key: at the line's first key
        f"{events}:2:25: deploy line: at: Input should have timezone info",
        f"{events}:3:2: retire line: version: Field required",
        f"{events}:3:47: retire line: verison: Extra inputs are not permitted",
    ]


def test_retiring_a_version_that_is_not_loaded_then_is_refused(tmp_path):
    journeys, events = scenario(
        tmp_path,
        '{"retire": "w", "version": 2, "at": "2026-01-01T00:00:00Z"}',  # v2 is deployed only later
        DEPLOY,
        '{"retire": "w", "version": 3, "at": "2026-01-03T00:00:00Z"}',
    )
    assert refused(journeys, events) == [
        f"{events}:1:2: retire: journey 'w' version 2 is not loaded at 2026-01-01T00:00:00Z",
        f"{events}:3:2: retire: journey 'w' version 3 is not loaded at 2026-01-03T00:00:00Z",
    ]


def test_read_events_returns_deploy_lines_in_place(tmp_path):
    _, events = scenario(tmp_path, form("c1", "2026-01-01T10:00:00Z"), DEPLOY)
    items, errors = read_events(events)
    assert errors == [] and [i.line for i in items] == [1, 2]
    assert isinstance(items[1], Deploy) and items[1].path == events.parent / "w.v2.yaml" and items[1].journey is None


def test_render_counts_customers_of_both_versions(tmp_path):
    journeys, events = scenario(tmp_path, form("c1", "2026-01-01T10:00:00Z"), DEPLOY, form("c2", "2026-01-03T10:00:00Z"))
    code, out, err = cli("render", str(journeys / "w.yaml"), "--events", str(events))
    assert code == 0 and err == ""
    assert 'start -->|"2"| s_s' in out and 's_w -->|"timeout: 2"| s_late' in out  # c1 on v1 and c2 on v2

"""`orchestrator render`: Mermaid flowcharts, with customers counted per edge from a simulation."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from orchestrator.designer import cli as designer_cli
from orchestrator.designer.render import counts_from_json_lines, render_mermaid
from orchestrator.journey.loader import load_journeys

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
EVENTS = ROOT / "tests" / "fixtures" / "events"


def cli(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    designer_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    return args.func(args, out, err), out.getvalue(), err.getvalue()


def test_render_abandoned_cart_structure():
    code, out, _ = cli("render", str(JOURNEYS / "abandoned_cart.yaml"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    assert "  start --> s_send_first" in lines
    assert "  s_send_first --> s_wait_open" in lines
    assert '  s_wait_open -->|"ccm.opened"| s_done' in lines
    assert '  s_wait_open -->|"timeout"| s_send_reminder' in lines
    assert '  s_wait_open{{"wait_open<br/>wait for ccm.opened of send_first<br/>timeout 1d"}}' in lines
    assert '  goal((("goal: purchased (web.purchase)")))' in lines


def test_render_with_simulated_counts():
    code, out, _ = cli("render", str(JOURNEYS / "abandoned_cart.yaml"), "--events", str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 0
    lines = out.splitlines()
    assert '  start -->|"3"| s_send_first' in lines
    assert '  s_send_first -->|"3"| s_wait_open' in lines
    assert '  s_wait_open -->|"ccm.opened: 1"| s_done' in lines
    assert '  s_wait_open -->|"timeout: 1"| s_send_reminder' in lines
    assert '  s_send_reminder -->|"1"| s_done' in lines
    assert '  s_wait_open -.->|"1"| goal' in lines


def test_render_counts_from_simulate_json_output(tmp_path):
    code, sim, _ = cli("simulate", "--json", "--journeys", str(JOURNEYS), str(EVENTS / "churn_apology.jsonl"))
    assert code == 0
    counts = counts_from_json_lines(sim.splitlines(), "churn_apology")
    assert counts[("start", "offer_test")] == 5
    assert counts[("offer_test", "apology_10")] == 4 and counts[("offer_test", "apology_20")] == 1
    assert counts[("wait_click", "goal")] == 1
    f = tmp_path / "sim.jsonl"
    f.write_text(sim)
    code, out, _ = cli("render", str(JOURNEYS / "churn_apology.yaml"), "--counts", str(f), "--markdown")
    assert out.startswith("```mermaid\nflowchart TD\n") and out.endswith("```\n")
    assert '  s_offer_test -->|"ten_percent (50): 4"| s_apology_10' in out.splitlines()


def test_render_every_example_and_every_step_appears():
    for cj in load_journeys([JOURNEYS]):
        text = render_mermaid(cj.journey)
        for sid in cj.steps:
            assert f"  s_{sid}" in text, (cj.id, sid)


def test_render_invalid_file_reports_errors():
    code, out, err = cli("render", str(ROOT / "tests" / "fixtures" / "invalid" / "loop.yaml"))
    assert code == 1 and out == "" and "loop without a wait" in err


def test_labels_are_escaped():
    from orchestrator.journey.loader import load_text

    js = load_text("""
id: q
version: 1
name: 'Say "hi" <now>'
entry: {event: web.page_view}
start: e
steps:
  e: {type: end}
""")
    q = js.newest("q")
    assert q is not None
    text = render_mermaid(q.journey)
    assert "Say #quot;hi#quot; #lt;now#gt;" in text

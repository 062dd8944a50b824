"""`simulate --compare-policy`: what a policy change does (orchestrator/designer/whatif.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.designer.simulate import SimulationResult, simulate_files
from orchestrator.designer.whatif import PolicyComparison, compare, format_comparison
from tests.unit.test_simulate import ROOT, cli

COMMITTED_POLICY = ROOT / "journeys" / "pressure.yaml"

# three sends in a row for everyone who submits a form; priority 10: above every priority_reserve rule of the committed policy
TRIO_SENDS = [("a", "commercial", "email"), ("b", "commercial", "email"), ("c", "editorial", "email")]
TRIO = """
id: trio
version: 1
name: Three sends in a row
entry: {event: web.form_submitted}
start: a
steps:
  a: {type: send, channel: email, template: offer, comm_type: commercial, priority: 10, next: b}
  b: {type: send, channel: email, template: offer_2, comm_type: commercial, priority: 10, next: c}
  c: {type: send, channel: email, template: tips, comm_type: editorial, priority: 10}
"""
# one service email for a page view: cheap, fits under both policies
SOLO = """
id: solo
version: 1
name: One service email
entry: {event: web.page_view}
start: s
steps:
  s: {type: send, channel: email, template: receipt, comm_type: service, priority: 10}
"""
TRIO_CUSTOMERS = ["t1", "t2", "t3"]


def _points(policy: dict, comm_type: str, channel: str) -> int:
    """A send's cost in hundredths of a point, from the policy file as written: points[type] x channel_weights[channel]."""
    return round(policy["points"][comm_type] * policy["channel_weights"][channel] * 100)


def _approved_in_a_row(policy: dict, sends: list[tuple[str, str, str]], priority: int = 10) -> list[str]:
    """The steps of ``sends`` (one customer, one empty basket) that fit: each fits while spent + cost stays within its limit."""
    reserve = [r["fill_up_to"] for r in policy.get("priority_reserve", []) if priority <= r["max_priority"]]
    limit = round(min(reserve, default=policy["capacity"]) * 100)
    spent, fits = 0, []
    for step, comm_type, channel in sends:
        cost = _points(policy, comm_type, channel)
        if spent + cost <= limit:
            spent += cost
            fits.append(step)
    return fits


@pytest.fixture
def scenario(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Journeys next to the committed policy, the same policy with capacity 20, and an event file."""
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "trio.yaml").write_text(TRIO)
    (journeys / "solo.yaml").write_text(SOLO)
    text = COMMITTED_POLICY.read_text()
    assert "\ncapacity: 25\n" in text
    (journeys / "pressure.yaml").write_text(text)
    lower = tmp_path / "pressure.capacity20.yaml"
    lower.write_text(text.replace("\ncapacity: 25\n", "\ncapacity: 20\n"))
    events = tmp_path / "events.jsonl"
    lines = [
        {
            "family": "web",
            "type": "form_submitted",
            "event_id": f"{c}-f",
            "customer_id": c,
            "occurred_at": "2026-03-02T10:00:00Z",
            "form_id": "x",
        }
        for c in TRIO_CUSTOMERS
    ]
    lines.append(
        {"family": "web", "type": "page_view", "event_id": "s1-p", "customer_id": "s1", "occurred_at": "2026-03-02T11:00:00Z", "url": "/"}
    )
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return journeys, lower, events


def _run(journeys: Path, events: Path, policy: Path | None = None) -> SimulationResult:
    return simulate_files(journeys, events, policy)


def test_a_lower_capacity_caps_the_sends_that_no_longer_fit(scenario):
    journeys, lower, events = scenario
    current_policy, proposed_policy = yaml.safe_load(COMMITTED_POLICY.read_text()), yaml.safe_load(lower.read_text())
    fits_now, fits_then = _approved_in_a_row(current_policy, TRIO_SENDS), _approved_in_a_row(proposed_policy, TRIO_SENDS)
    lost = [step for step, _, _ in TRIO_SENDS if step in fits_now and step not in fits_then]
    assert lost  # the scenario is only worth running when the lower capacity makes a difference
    n = len(TRIO_CUSTOMERS)

    c = compare(_run(journeys, events), _run(journeys, events, lower))

    assert c.changed and c.customers == n + 1
    assert (c.results["approved"].current, c.results["approved"].proposed) == (n * len(fits_now) + 1, n * len(fits_then) + 1)
    capped = c.results["capped"]
    assert (capped.current, capped.proposed, capped.change) == (n * (3 - len(fits_now)), n * (3 - len(fits_then)), n * len(lost))
    assert c.codes["capacity"].change == n * len(lost)
    steps = {(s.journey, s.step): s for s in c.steps}
    for step, _, _ in TRIO_SENDS:
        s = steps[("trio", step)]
        assert s.results["approved"].proposed - s.results["approved"].current == -n * (step in lost)
        assert s.changed == (step in lost)
    assert not steps[("solo", "s")].changed
    # who loses messages: every trio customer, one send each; the solo customer keeps theirs
    assert (c.contacted_less, c.contacted_more, c.more) == (n, 0, [])
    assert [(x.customer, x.current, x.proposed, x.lost, x.gained) for x in c.less] == [
        (cid, len(fits_now), len(fits_then), [f"trio.{step}" for step in lost], []) for cid in TRIO_CUSTOMERS
    ]
    # points: the cost of the sends that no longer go
    lost_points: dict[str, float] = {}
    for step, comm_type, channel in TRIO_SENDS:
        if step in lost:
            lost_points[comm_type] = lost_points.get(comm_type, 0) + n * _points(current_policy, comm_type, channel) / 100
    assert c.points.total.change == -sum(lost_points.values())
    assert {t: -p.change for t, p in c.points.by_comm_type.items() if p.change} == lost_points


def test_the_same_policy_changes_nothing(scenario):
    journeys, _, events = scenario
    current, again = _run(journeys, events), _run(journeys, events, journeys / "pressure.yaml")
    c = compare(current, again)
    assert not c.changed and c.customers == len(TRIO_CUSTOMERS) + 1
    counts = [*c.results.values(), *c.codes.values(), *(x for s in c.steps for x in [*s.results.values(), *s.codes.values()])]
    assert counts and all(x.change == 0 and x.current == x.proposed for x in counts)
    assert (c.contacted_more, c.contacted_less, c.more, c.less) == (0, 0, [], [])
    assert c.points.total.change == 0 and c.points.total.current > 0
    assert "no change: the proposed policy decides every send as the current one does" in format_comparison(c)


def test_the_text_puts_the_summary_first_and_names_who_loses(scenario):
    journeys, lower, events = scenario
    c = compare(_run(journeys, events), _run(journeys, events, lower), examples=2)
    text = format_comparison(c)
    lines = text.splitlines()
    assert lines[3] == "summary (what changes)"
    assert text.index("summary") < text.index("per journey and send step")
    assert "  customers: 4 with sends; 3 contacted less, 0 contacted more" in lines
    assert "    less: t1 3 -> 2 (lost trio.c); t2 3 -> 2 (lost trio.c) (and 1 more)" in lines
    assert "  trio c: approved 3 -> 0 (-3), capped 0 -> 3 (+3)" in lines
    assert "  solo s: no change (approved 1)" in lines
    # changed steps first
    assert lines.index("  trio c: approved 3 -> 0 (-3), capped 0 -> 3 (+3)") < lines.index("  trio a: no change (approved 3)")


def test_compare_policy_on_the_command_line(scenario):
    journeys, lower, events = scenario
    code, out, _ = cli("simulate", str(events), "--journeys", str(journeys), "--compare-policy", str(lower))
    assert code == 0
    assert out.startswith(f"current policy:  {journeys / 'pressure.yaml'} (capacity 25 points per calendar month;")
    assert out.splitlines()[1].startswith(f"proposed policy: {lower} (capacity 20 points per calendar month;")
    code, out, _ = cli("simulate", str(events), "--journeys", str(journeys), "--compare-policy", str(lower), "--json")
    c = PolicyComparison.model_validate_json(out)
    assert code == 0 and c.contacted_less == len(TRIO_CUSTOMERS) and c.results["capped"].change == len(TRIO_CUSTOMERS)
    code, out, _ = cli("simulate", str(events), "--journeys", str(journeys), "--compare-policy", str(lower), "--customer", "s1", "--json")
    assert code == 0 and not PolicyComparison.model_validate_json(out).changed


def test_a_missing_proposed_policy_is_refused_with_its_path(scenario, tmp_path):
    journeys, _, events = scenario
    missing = tmp_path / "nope.yaml"
    code, out, err = cli("simulate", str(events), "--journeys", str(journeys), "--compare-policy", str(missing))
    assert code == 1 and out == "" and f"{missing}:1:1: no such policy file" in err

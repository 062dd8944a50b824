"""`orchestrator report`: the statistics against published values, the counting, a real simulate run, the command."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.designer import report as rp
from orchestrator.designer.simulate import format_json_lines, simulate_files
from orchestrator.records import JourneyLogRecord

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
EVENTS = ROOT / "tests" / "fixtures" / "events"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def approx4(bounds: tuple[float, float] | None) -> tuple[float, float]:
    assert bounds is not None
    return round(bounds[0], 4), round(bounds[1], 4)


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("x", "n", "expected"),
    [  # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, Wilson score method without continuity correction
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        (29, 29, (0.8830, 1.0)),
        (5, 10, (0.2366, 0.7634)),
    ],
)
def test_wilson_interval_matches_published_values(x: int, n: int, expected: tuple[float, float]) -> None:
    assert approx4(rp.wilson_interval(x, n)) == expected


def test_wilson_interval_edges() -> None:
    assert rp.wilson_interval(0, 0) is None
    low, high = rp.wilson_interval(0, 1) or (1.0, 0.0)
    assert low == 0.0 and 0.79 < high < 0.80  # one instance says almost nothing
    low, high = rp.wilson_interval(1000, 1000) or (0.0, 0.0)
    assert high == 1.0 and low > 0.996


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "expected"),
    [  # Newcombe (1998), Statistics in Medicine 17:873-890, method 10 (hybrid score), examples (a), (b), (g), (h)
        (56, 70, 48, 80, (0.0524, 0.3339)),
        (9, 10, 3, 10, (0.1705, 0.8090)),
        (5, 56, 0, 29, (-0.0381, 0.1926)),
        (0, 10, 0, 20, (-0.1611, 0.2775)),
    ],
)
def test_newcombe_difference_matches_published_values(x1: int, n1: int, x0: int, n0: int, expected: tuple[float, float]) -> None:
    assert approx4(rp.newcombe_difference(x1, n1, x0, n0)) == expected


def test_relative_uplift_interval_is_the_katz_log_interval_minus_one() -> None:
    # 20/100 against 10/100: ratio 2, se of log ratio sqrt(1/20 - 1/100 + 1/10 - 1/100) = sqrt(0.13)
    low, high = rp.relative_uplift_interval(20, 100, 10, 100) or (0.0, 0.0)
    assert round(low, 4) == round(2 * 2.718281828459045 ** (-rp.Z95 * 0.13**0.5) - 1, 4) == -0.0134
    assert round(high, 4) == 3.0545
    assert rp.relative_uplift_interval(0, 100, 10, 100) is None  # no conversion: the log ratio is undefined
    assert rp.relative_uplift_interval(10, 100, 0, 100) is None


@pytest.mark.parametrize(
    ("x", "df"),
    [(3.841458820694124, 1), (5.991464547107979, 2), (7.814727903251179, 3), (9.487729036781154, 4), (11.070497693516351, 5)],
)
def test_chi2_survival_at_the_five_percent_critical_values(x: float, df: int) -> None:
    assert rp.chi2_sf(x, df) == pytest.approx(0.05, abs=1e-9)


def test_chi2_survival_other_points() -> None:
    assert rp.chi2_sf(0.0, 3) == 1.0
    assert rp.chi2_sf(10.827566170662733, 1) == pytest.approx(0.001, abs=1e-9)
    assert rp.chi2_sf(2.0, 2) == pytest.approx(0.36787944117144233)  # exp(-1)


def test_sample_ratio_check() -> None:
    assert rp.sample_ratio_p([500, 500], [50, 50]) == pytest.approx(1.0)
    assert rp.sample_ratio_p([600, 400], [1, 1]) == pytest.approx(rp.chi2_sf(40.0, 1))
    assert (rp.sample_ratio_p([600, 400], [1, 1]) or 1.0) < rp.SRM_ALPHA
    assert rp.sample_ratio_p([300, 100], [75, 25]) == pytest.approx(1.0)  # weights need not be equal
    assert rp.sample_ratio_p([3, 1], [1, 1]) is None  # expected counts below 5: the test does not apply
    assert rp.sample_ratio_p([10, 10], [1, 0]) is None  # only one variant has a weight


# ---------------------------------------------------------------- counting handcrafted records


def rec(customer: str, instance: str, what: str, at: datetime = T0, step: str | None = None, journey: str = "promo", **detail: Any) -> dict:
    return {
        "customer_id": customer,
        "journey_id": journey,
        "journey_version": 1,
        "instance_id": instance,
        "step_id": step,
        "what": what,
        "edge": None,
        "detail": detail,
        "at": at.isoformat(),
    }


def instance(customer: str, n: int, variant: str | None, converted: bool, ended: bool = True, at: datetime = T0) -> list[dict]:
    """The records of one instance: entered, (split,) an approved send, then goal / exit / nothing."""
    iid = f"promo@{customer}-{n}"
    out = [rec(customer, iid, "entered", at, event_type="web.cart_abandoned", event_id=f"{customer}-{n}")]
    if variant is not None:
        out.append(rec(customer, iid, "split", at, "ab", variant=variant, sticky=False))
        out.append(rec(customer, iid, "send", at, "mail", result="approved", send_id=f"{iid}:mail", channel="email"))
    if converted:
        out.append(rec(customer, iid, "goal", at + timedelta(hours=1), "wait", outcome="goal", goal="purchased"))
    elif ended:
        out.append(rec(customer, iid, "exited", at + timedelta(days=1), "done", outcome="completed"))
    return out


def ab_records() -> list[dict]:
    """Variant a: 40 instances, 10 converted; b: 40 instances, 20 converted (one still open), and the odd cases."""
    records: list[dict] = []
    for i in range(40):
        records += instance(f"a{i}", 1, "a", converted=i < 10)
        records += instance(f"b{i}", 1, "b", converted=i < 20, ended=i != 39)
    records += instance("x1", 1, None, converted=False, ended=False)  # entered, not split yet
    records += instance("x2", 1, None, converted=True)  # converted before the split
    return records


def test_counts_rates_and_uplift_per_variant() -> None:
    r = rp.build_report(ab_records())
    (j,) = r.journeys
    assert (j.journey_id, j.version, j.total.entered, j.total.converted, j.total.open) == ("promo", 1, 82, 31, 2)
    assert j.total.sends == {"approved": 80}
    (split,) = j.splits
    assert (split.step_id, split.baseline, split.baseline_from, split.not_split) == ("ab", "a", "name order", 2)
    a, b = split.variants
    assert (a.variant, a.entered, a.converted, a.open, a.rate) == ("a", 40, 10, 0, 0.25)
    assert (b.variant, b.entered, b.converted, b.open, b.rate) == ("b", 40, 20, 1, 0.5)
    assert a.uplift is None and a.interval is not None
    assert (round(a.interval.low, 4), round(a.interval.high, 4)) == approx4(rp.wilson_interval(10, 40))
    u = b.uplift
    assert u is not None
    assert u.baseline == "a" and u.relative == pytest.approx(1.0) and u.difference == pytest.approx(0.25)
    assert u.relative_interval is not None and approx4((u.relative_interval.low, u.relative_interval.high)) == approx4(
        rp.relative_uplift_interval(20, 40, 10, 40)
    )
    assert approx4((u.difference_interval.low, u.difference_interval.high)) == approx4(rp.newcombe_difference(20, 40, 10, 40))
    # the Wilson intervals overlap, yet the difference interval excludes 0: overlap is not "no difference"
    assert u.intervals_overlap and u.difference_interval.low > 0 and u.verdict == "higher"
    assert split.assignment_p is None  # no journey file: weights unknown


def test_baseline_and_weights_from_the_journey_file_order() -> None:
    r = rp.build_report(ab_records(), variants={("promo", 1, "ab"): [("b", 50), ("a", 50), ("c", 0)]})
    split = r.journeys[0].splits[0]
    assert (split.baseline, split.baseline_from) == ("b", "journey file")
    assert [v.variant for v in split.variants] == ["b", "a", "c"]  # declared order, empty variants included
    _, a, c = split.variants
    assert a.uplift is not None and a.uplift.verdict == "lower" and a.uplift.relative == pytest.approx(-0.5)
    assert c.entered == 0 and c.uplift is None and c.rate is None and c.interval is None
    assert split.assignment_p == pytest.approx(1.0) and not split.sample_ratio_mismatch


def test_sample_ratio_mismatch_is_flagged() -> None:
    records = [r for i in range(60) for r in instance(f"a{i}", 1, "a", converted=False)]
    records += [r for i in range(20) for r in instance(f"b{i}", 1, "b", converted=False)]
    r = rp.build_report(records, variants={("promo", 1, "ab"): [("a", 1), ("b", 1)]})
    split = r.journeys[0].splits[0]
    assert split.sample_ratio_mismatch and (split.assignment_p or 1) < rp.SRM_ALPHA
    assert "SAMPLE RATIO MISMATCH" in rp.format_report(r)


def test_small_samples_get_no_verdict() -> None:
    r = rp.build_report(ab_records(), min_n=41)
    a, b = r.journeys[0].splits[0].variants
    assert a.n_too_small and b.n_too_small
    assert b.uplift is not None and b.uplift.verdict == "n too small"
    text = rp.format_report(r)
    assert "b vs a: n too small to compare (fewer than 41 in a variant)" in text
    assert "n too small (< 41)" in text


def test_window_duplicates_orphans_and_refusals() -> None:
    late = T0 + timedelta(days=10)
    records = ab_records()
    records += records[:6]  # a redelivered stretch of the log counts once
    records += instance("early", 1, "a", converted=True, at=T0 - timedelta(days=1))  # entered before --since: left out
    records += instance("late", 1, "b", converted=False, at=late)  # entered at --until: left out
    records.append(rec("a15", "promo@a15-1", "goal", late, "wait", outcome="goal", goal="purchased"))  # converts after --until
    records.append(rec("gone", "promo@gone-1", "goal", T0, "wait", outcome="goal"))  # its entered record is gone
    records.append(rec("y", "", "not_entered", T0, reason="entry.when: entry.when[0] {field: data.value, gte: 20} is false"))
    records.append(rec("y", "", "not_entered", T0, reason="reentry: never, and the customer entered before (1 time)"))
    records.append(rec("y", "", "not_entered", T0, reason="reentry cooldown: last exit at ..., may enter again from ..."))
    records.append({**rec("z", "", "duplicate", T0, event_id="e"), "journey_id": "", "journey_version": 0})
    records.append({"what": "garbage"})
    r = rp.build_report(records, since=T0, until=late)
    (j,) = r.journeys
    assert (j.total.entered, j.total.converted) == (82, 31)  # as without the extra records
    assert j.splits[0].variants[0].converted == 10  # a15's goal after --until does not count
    assert j.not_entered == {"entry.when": 1, "reentry": 1, "reentry cooldown": 1}
    assert r.skipped == {"instance without its entered record": 1, "unreadable record": 1}
    assert any("retention" in n for n in r.notes)
    assert "not entered: 3 (entry.when 1, reentry 1, reentry cooldown 1)" in rp.format_report(r)


def test_unit_customer_counts_each_customer_once() -> None:
    records = instance("c1", 1, "a", converted=False) + instance("c1", 2, "a", converted=True)  # re-entered, converted the 2nd time
    records += instance("c2", 1, "a", converted=False) + instance("c3", 1, "b", converted=False, ended=False)
    by_instance = rp.build_report(records)
    a = by_instance.journeys[0].splits[0].variants[0]
    assert (a.entered, a.customers, a.converted) == (3, 2, 1)
    assert by_instance.journeys[0].reentries and any("--unit customer" in n for n in by_instance.notes)
    by_customer = rp.build_report(records, unit="customer")
    a, b = by_customer.journeys[0].splits[0].variants
    assert (a.entered, a.customers, a.converted, a.open) == (2, 2, 1, 0)
    assert (b.entered, b.converted, b.open) == (1, 0, 1)
    assert by_customer.journeys[0].total.entered == 3 and by_customer.journeys[0].total.sends == {"approved": 4}


def test_sends_by_result_once_per_send_id() -> None:
    iid = "promo@s-1"
    records = [
        rec("s", iid, "entered", event_type="t", event_id="e"),
        rec("s", iid, "send", T0, "mail", result="fallback", send_id="s1", channel="email", fallback_to="sms"),
        rec("s", iid, "send", T0, "mail", result="capped", send_id="s1:sms", channel="sms"),
        rec("s", iid, "send", T0, "mail", result="capped", send_id="s1:sms", channel="sms"),  # redelivered
        rec("s", iid, "delayed", T0, "mail2", reason="send deferred", send_id="s2", until="2026-04-01T00:00:00Z"),
        rec("s", iid, "delayed", T0, "wait", reason="delay", until="2026-04-01T00:00:00Z"),  # a delay step: no send
        rec("s", iid, "send", T0, "mail2", result="approved", send_id="s2:1", channel="email"),
    ]
    r = rp.build_report(records)
    assert r.journeys[0].total.sends == {"approved": 1, "capped": 1, "deferred": 1, "fallback": 1}
    assert "sends: approved 1, fallback 1, deferred 1, capped 1" in rp.format_report(r)


def test_text_report_shows_the_table_and_the_uplift_line() -> None:
    text = rp.format_report(rp.build_report(ab_records(), source="test"))
    assert text.splitlines()[0] == "journey report from test: 322 records; unit: instances (one per entry into a journey version)"
    assert "  entered 82 instances (82 customers), converted 31 = 37.8 % [28.1 %, 48.6 %], still open 2" in text
    assert "  split ab: baseline a (first variant with entries, in name order, journey file not at hand)" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("variant"))
    assert lines[header].split() == [
        "variant",
        "weight",
        "entered",
        "customers",
        "converted",
        "open",
        "rate",
        "95",
        "%",
        "interval",
        "sends",
    ]
    assert lines[header + 1].split()[:7] == ["a", "-", "40", "40", "10", "0", "25.0"]
    assert lines[header + 3] == (
        "    b vs a: relative uplift +100.0 % [+7.6 %, +271.7 %], difference +25.0 pp [+3.8 pp, +43.3 pp]: higher (their intervals overlap)"
    )
    assert "    not split (yet): 2" in lines


# ---------------------------------------------------------------- from a real simulate run


def sim_report(events: Path, **kw: Any) -> tuple[rp.Report, rp.Report, Any]:
    """The report from ``simulate --json`` output and from the simulation's traces as the worker publishes them."""
    result = simulate_files(JOURNEYS, events)
    lines = format_json_lines(result).splitlines()
    from_file = rp.build_report([r for line in lines if (r := rp.simulate_to_log(json.loads(line))) is not None], **kw)
    from_log = rp.build_report([JourneyLogRecord.of(t).model_dump(mode="json") for t in result.traces], **kw)
    return from_file, from_log, result


def test_churn_apology_example_counts_its_split(tmp_path: Path) -> None:
    order, why = rp.variant_order(JOURNEYS)
    assert why is None and order[("churn_apology", 1, "offer_test")] == [("ten_percent", 50), ("twenty_percent", 50)]
    from_file, from_log, result = sim_report(EVENTS / "churn_apology.jsonl", variants=order, journey="churn_apology")
    assert from_file.journeys == from_log.journeys  # the simulate file and the journey log say the same
    (j,) = from_file.journeys
    assert (j.journey_id, j.version, j.total.entered, j.total.converted, j.total.open) == ("churn_apology", 1, 5, 1, 0)
    variants = {t.customer_id: t.detail["variant"] for t in result.traces if t.what == "split"}
    assert set(variants) == {"h1", "h2", "h3", "h4", "h6"}
    (split,) = j.splits
    assert split.baseline == "ten_percent"
    rows = {v.variant: v for v in split.variants}
    for name in ("ten_percent", "twenty_percent"):
        assert rows[name].entered == sum(v == name for v in variants.values())
    assert rows[variants["h1"]].converted == 1  # h1 bought: the only goal
    assert all(v.n_too_small for v in split.variants)
    assert sum(v.sends.get("fallback", 0) for v in split.variants) == 1  # h6: email capped, fell back to a letter
    assert rows[variants["h6"]].sends.get("capped") == 1


def test_a_larger_simulated_ab_test(tmp_path: Path) -> None:
    """400 customers through the churn_apology split; every fourth buys, whatever the offer."""
    events = tmp_path / "ab.jsonl"
    lines = []
    for i in range(400):
        cid = f"ab{i}"
        lines.append(
            {
                "family": "crm",
                "type": "churn_risk_scored",
                "event_id": f"{cid}-s",
                "customer_id": cid,
                "occurred_at": T0.isoformat(),
                "score": 0.9,
            }
        )
        if i % 4 == 0:
            bought = (T0 + timedelta(days=2)).isoformat()
            lines.append(
                {
                    "family": "web",
                    "type": "purchase",
                    "event_id": f"{cid}-p",
                    "customer_id": cid,
                    "occurred_at": bought,
                    "order_id": "o",
                    "value": 30,
                }
            )
    events.write_text("".join(json.dumps(x) + "\n" for x in lines))
    order, _ = rp.variant_order(JOURNEYS)
    from_file, from_log, _ = sim_report(events, variants=order)
    assert from_file.journeys == from_log.journeys
    (j,) = from_file.journeys
    assert (j.total.entered, j.total.converted) == (400, 100)
    (split,) = j.splits
    ten, twenty = split.variants
    assert ten.entered + twenty.entered == 400 and not ten.n_too_small and not twenty.n_too_small
    assert split.assignment_p is not None and not split.sample_ratio_mismatch  # the hash splits 50/50 as declared
    assert twenty.uplift is not None and twenty.uplift.verdict in ("higher", "lower", "no clear difference")
    lo, hi = twenty.uplift.difference_interval.low, twenty.uplift.difference_interval.high
    assert (twenty.uplift.verdict == "no clear difference") == (lo <= 0 <= hi)


# ---------------------------------------------------------------- the command


def run(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    rp.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_command_reads_simulate_output(tmp_path: Path) -> None:
    sim = tmp_path / "sim.jsonl"
    sim.write_text(format_json_lines(simulate_files(JOURNEYS, EVENTS / "churn_apology.jsonl")) + "not json\n")
    code, out, err = run("report", "--from-simulate", str(sim), "--journeys", str(JOURNEYS), "--json")
    assert code == 0 and err == f"{sim}:{len(sim.read_text().splitlines())}: not valid JSON: Expecting value (line skipped)\n"
    doc = json.loads(out)
    assert doc["unit"] == "instance" and doc["source"] == str(sim)
    churn = next(j for j in doc["journeys"] if j["journey_id"] == "churn_apology")
    assert churn["total"]["entered"] == 5 and churn["splits"][0]["baseline"] == "ten_percent"
    rp.Report.model_validate(doc)

    code, out, _ = run("report", "--from-simulate", str(sim), "--journey", "churn_apology", "--journeys", str(tmp_path / "none"))
    assert code == 0 and "churn_apology v1" in out and "abandoned_cart" not in out
    assert "baselines by variant name, weights unknown" in out


def test_command_errors(tmp_path: Path) -> None:
    code, _, err = run("report", "--from-simulate", str(tmp_path / "missing.jsonl"))
    assert code == 1 and "No such file" in err
    with pytest.raises(SystemExit):
        run("report", "--since", "yesterday")
    with pytest.raises(SystemExit):
        run("report", "--min-n", "0")
    assert rp.parse_time("2026-03-02T10:00:00") == T0 and rp.parse_time("2026-03-02T10:00:00Z") == T0


def test_uplift_against_a_baseline_without_conversions_and_an_unclear_one() -> None:
    records = [r for i in range(40) for r in instance(f"a{i}", 1, "a", converted=False)]
    records += [r for i in range(40) for r in instance(f"b{i}", 1, "b", converted=i < 5)]
    records += [r for i in range(40) for r in instance(f"c{i}", 1, "c", converted=False, ended=i != 0)]
    r = rp.build_report(records)
    _, b, c = r.journeys[0].splits[0].variants
    assert b.uplift is not None and b.uplift.relative is None and b.uplift.relative_interval is None
    assert b.uplift.difference_interval.low > 0 and b.uplift.verdict == "higher"
    assert c.uplift is not None and c.uplift.verdict == "no clear difference" and c.open == 1
    text = rp.format_report(r)
    assert "    b vs a: relative uplift - (baseline rate 0), difference +12.5 pp [" in text
    assert (
        "    c vs a: relative uplift - (baseline rate 0), difference +0.0 pp [-8.8 pp, +8.8 pp]: no clear difference (intervals overlap)"
        in text
    )
    assert any("more than two variants" in n for n in r.notes)

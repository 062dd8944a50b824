"""The text output of ``orchestrator report`` (:func:`format_report`): a block per journey version, a table per split."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.designer.report_model import SRM_ALPHA, Interval, JourneyReport, Report, SplitReport, Unit, VariantRow
from orchestrator.timeutil import iso_utc


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x * 100:+.1f} %" if signed else f"{x * 100:.1f} %"


def _interval(iv: Interval | None, signed: bool = False, unit: str = "%") -> str:
    if iv is None:
        return "-"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"[{fmt.format(iv.low * 100)} {unit}, {fmt.format(iv.high * 100)} {unit}]"


def _sends(sends: Mapping[str, int]) -> str:
    order = ["approved", "fallback", "deferred", "capped", "suppressed", "cancelled"]
    keys = [k for k in order if k in sends] + sorted(k for k in sends if k not in order)
    return ", ".join(f"{k} {sends[k]}" for k in keys) or "none"


def _total_line(j: JourneyReport, unit: Unit, min_n: int) -> str:
    t = j.total
    who = _count(t.entered, "customer") if unit == "customer" else f"{_count(t.entered, 'instance')} ({_count(t.customers, 'customer')})"
    small = f", n too small (< {min_n})" if t.n_too_small else ""
    return f"  entered {who}, converted {t.converted} = {_pct(t.rate)} {_interval(t.interval)}{small}, still open {t.open}"


def _variant_table(s: SplitReport, min_n: int) -> list[str]:
    header = ("variant", "weight", "entered", "customers", "converted", "open", "rate", "95 % interval", "sends", "")
    cells = [
        (
            r.variant,
            "-" if r.weight is None else str(r.weight),
            str(r.entered),
            str(r.customers),
            str(r.converted),
            str(r.open),
            _pct(r.rate),
            _interval(r.interval),
            _sends(r.sends),
            f"n too small (< {min_n})" if r.n_too_small else "",
        )
        for r in s.variants
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    right = {1, 2, 3, 4, 5, 6}
    return [
        "    " + "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True))).rstrip()
        for c in [header, *cells]
    ]


def _uplift_line(r: VariantRow, min_n: int) -> str:
    u = r.uplift
    assert u is not None
    head = f"    {r.variant} vs {u.baseline}: "
    if u.verdict == "n too small":
        return head + f"n too small to compare (fewer than {min_n} in a variant)"
    rel = "relative uplift - (baseline rate 0)" if u.relative is None else f"relative uplift {_pct(u.relative, True)}"
    rel += f" {_interval(u.relative_interval, True)}" if u.relative_interval is not None else ""
    diff = f"difference {u.difference * 100:+.1f} pp {_interval(u.difference_interval, True, 'pp')}"
    overlap = " (their intervals overlap)" if u.intervals_overlap and u.verdict != "no clear difference" else ""
    overlap = " (intervals overlap)" if u.intervals_overlap and u.verdict == "no clear difference" else overlap
    return f"{head}{rel}, {diff}: {u.verdict}{overlap}"


def _split_lines(s: SplitReport, min_n: int) -> list[str]:
    order = "the journey file's order" if s.baseline_from == "journey file" else "name order, journey file not at hand"
    lines = [f"  split {s.step_id}: baseline {s.baseline} (first variant with entries, in {order})"]
    lines += _variant_table(s, min_n)
    lines += [_uplift_line(r, min_n) for r in s.variants if r.uplift is not None]
    if s.not_split:
        lines.append(f"    not split (yet): {s.not_split}")
    if s.sample_ratio_mismatch:
        lines.append(
            f"    SAMPLE RATIO MISMATCH: customers per variant do not follow the weights "
            f"(chi-square p = {s.assignment_p:.2g} < {SRM_ALPHA}): check the split and the log before trusting this comparison"
        )
    elif s.assignment_p is not None:
        lines.append(f"    assignment: customers per variant fit the weights (chi-square p = {s.assignment_p:.2f})")
    return lines


def format_report(report: Report) -> str:
    """The report as text: one block per journey version, a table per split, an uplift line per variant."""
    unit = "instances (one per entry into a journey version)" if report.unit == "instance" else "customers (once per row)"
    lines = [
        f"journey report from {report.source}: {report.records} records; unit: {unit}",
        (
            f"rates with {report.confidence * 100:.0f} % Wilson score intervals; 'n too small' below {report.min_n}; "
            "verdicts from the Newcombe interval of the difference"
        ),
    ]
    if report.since or report.until:
        start = iso_utc(report.since) if report.since else "the start"
        lines.append(f"entered from {start} until {iso_utc(report.until) if report.until else 'now'}")
    if not report.journeys:
        lines.append("no journey entries found")
    for j in report.journeys:
        lines += ["", f"{j.journey_id} v{j.version}", _total_line(j, report.unit, report.min_n), f"  sends: {_sends(j.total.sends)}"]
        if j.not_entered:
            lines.append(f"  not entered: {sum(j.not_entered.values())} ({', '.join(f'{k} {v}' for k, v in j.not_entered.items())})")
        for s in j.splits:
            lines += _split_lines(s, report.min_n)
    if report.skipped:
        lines += ["", "skipped: " + ", ".join(f"{v} {k}" for k, v in sorted(report.skipped.items()))]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)

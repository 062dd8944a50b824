"""``orchestrator report``: entries, conversions and A/B uplift per journey, version and split variant.

``orchestrator/cli.py`` calls :func:`register` on its subparsers::

    orchestrator report [--from-simulate FILE] [--since TIME] [--until TIME] [--journey ID]
                        [--unit instance|customer] [--min-n N] [--journeys DIR] [--json] [--timeout S]

Where the records come from: the journey-log topic ``<ORCH_TOPIC_PREFIX>.journey-log``, every
partition from its beginning to its end at the time of the call, then the command stops (brokers
and security from the worker's environment, :class:`~orchestrator.settings.Settings`); or, with
``--from-simulate FILE``, the output of ``orchestrator simulate --json``.

What is counted
---------------
The unit is the journey **instance**: one entry of one customer into one journey version, from
its ``entered`` record to its ``goal`` or ``exited`` record. A customer who enters a journey three
times counts three times. ``--unit customer`` counts each customer once per row instead (converted
when any of their instances reached a goal). Instances are the default because a journey's goal is
defined per entry (a cart abandoned twice is two chances to convert); customers are the unit the
split randomises (the variant is sticky per customer), so when customers re-enter, instance-level
intervals are too narrow: the report says so, and ``--unit customer`` is then the safer basis.

* **entered**: instances whose ``entered`` record lies in ``[--since, --until)`` (record time
  ``at``, the engine's clock). Records at or after ``--until`` are ignored: the report is as of
  ``--until``. An instance that entered before ``--since`` is left out with all its records;
  records of an instance whose ``entered`` record is missing (deleted by retention) are skipped
  and counted in a note.
* **variant**: ``detail.variant`` of the instance's ``split`` record, per split step. Instances
  that have not reached the split (yet) are in no variant ("not split").
* **converted**: the instance ended with a ``goal`` record. Instances still running count as
  entered and not converted (so far); the ``open`` column says how many.
* **conversion rate** = converted / entered, with a 95 % **Wilson score interval** (right for
  small samples and rates near 0 or 1, unlike the plain normal interval).
* **uplift** of a variant against its split's **baseline**, the first variant declared in the
  journey file (``--journeys``; by name when the file is not at hand): relative uplift = rate /
  baseline rate − 1 with a 95 % interval for the rate ratio (Katz log method; none when either
  side has no conversion), and the difference of the rates in percentage points with a 95 %
  Newcombe hybrid score interval (built from the two Wilson intervals). The **verdict** comes
  from the difference interval: ``higher`` or ``lower`` when it excludes 0, else ``no clear
  difference``. Overlapping Wilson intervals alone do not mean "no difference": the report
  shows the overlap but decides on the difference interval.
* **n too small**: a row with fewer than ``--min-n`` (default 30) instances (customers with
  ``--unit customer``) is marked so, and a comparison involving one gets no verdict.
* **assignment check**: with the variant weights from the journey file, the customers per
  variant are tested against the weights (chi-square). p < 0.001 is a sample ratio mismatch:
  the split does not assign as declared (or the log is incomplete), so do not trust its
  comparison.
* **sends**: the instances' ``send`` records by result (approved, fallback, capped, suppressed,
  cancelled) and their deferred sends (``delayed`` records with a send id), once per send id
  and result.

Each variant is compared with the baseline on its own at 95 %: with several variants, or when
the report is looked at every day until something "wins", one comparison in twenty of equal
variants looks different by chance. Fix the sample size before the test and read the verdict
once it is reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.records import JourneyLogRecord, read_records
from orchestrator.timeutil import iso_utc

if TYPE_CHECKING:
    from orchestrator.settings import Settings

__all__ = [
    "CONFIDENCE",
    "MIN_N",
    "Z95",
    "Interval",
    "JourneyReport",
    "KafkaReadError",
    "RawRecord",
    "Report",
    "SplitReport",
    "Uplift",
    "VariantRow",
    "build_report",
    "chi2_sf",
    "format_report",
    "log_records",
    "newcombe_difference",
    "parse_time",
    "read_simulate_file",
    "read_to_end",
    "register",
    "relative_uplift_interval",
    "sample_ratio_p",
    "simulate_to_log",
    "variant_order",
    "wilson_interval",
]

CONFIDENCE = 0.95
Z95 = 1.959963984540054
"""The two-sided 95 % standard normal quantile."""
MIN_N = 30
"""Rows with fewer instances (customers) than this are marked "n too small" and get no verdict."""
SRM_ALPHA = 0.001
"""An assignment check below this p-value is reported as a sample ratio mismatch."""
NO_SPLIT = "(all)"

Unit = Literal["instance", "customer"]
Verdict = Literal["higher", "lower", "no clear difference", "n too small"]

# ---------------------------------------------------------------- statistics


def wilson_interval(converted: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for ``converted`` successes in ``n`` trials (None for n = 0)."""
    if n <= 0:
        return None
    p = converted / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def newcombe_difference(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float] | None:
    """Interval for p1 − p0 by Newcombe's hybrid score method (his method 10) from the two Wilson intervals."""
    w1, w0 = wilson_interval(x1, n1, z), wilson_interval(x0, n0, z)
    if w1 is None or w0 is None:
        return None
    p1, p0 = x1 / n1, x0 / n0
    d = p1 - p0
    return d - math.hypot(p1 - w1[0], w0[1] - p0), d + math.hypot(w1[1] - p1, p0 - w0[0])


def relative_uplift_interval(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float] | None:
    """Interval for p1 / p0 − 1 from the Katz log interval of the rate ratio; None when x1 or x0 is 0."""
    if x1 <= 0 or x0 <= 0 or n1 <= 0 or n0 <= 0:
        return None
    ratio = (x1 / n1) / (x0 / n0)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x0 - 1 / n0)
    return ratio * math.exp(-z * se) - 1, ratio * math.exp(z * se) - 1


def chi2_sf(x: float, df: int) -> float:
    """P(X ≥ x) for a chi-square variable with ``df`` ≥ 1 degrees of freedom (closed forms for integer df)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total, term = math.erfc(math.sqrt(half)), math.sqrt(2 * x / math.pi) * math.exp(-half)
    for i in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * i + 1)
    return min(1.0, total)


def sample_ratio_p(observed: Sequence[int], weights: Sequence[float]) -> float | None:
    """Chi-square goodness-of-fit p-value of ``observed`` counts against ``weights``.

    None when the test does not apply: fewer than two variants with a weight, or an expected
    count below 5 (the chi-square approximation needs them).
    """
    pairs = [(o, w) for o, w in zip(observed, weights, strict=True) if w > 0]
    total, wsum = sum(o for o, _ in pairs), sum(w for _, w in pairs)
    if len(pairs) < 2 or total == 0:
        return None
    expected = [total * w / wsum for _, w in pairs]
    if min(expected) < 5:
        return None
    stat = sum((o - e) ** 2 / e for (o, _), e in zip(pairs, expected, strict=True))
    return chi2_sf(stat, len(pairs) - 1)


# ---------------------------------------------------------------- the report (the --json document)


class Interval(BaseModel):
    model_config = ConfigDict(frozen=True)

    low: float
    high: float

    @classmethod
    def of(cls, bounds: tuple[float, float] | None) -> Interval | None:
        return cls(low=bounds[0], high=bounds[1]) if bounds is not None else None


class Uplift(BaseModel):
    """One variant against its split's baseline."""

    baseline: str
    relative: float | None
    """rate / baseline rate − 1; None when the baseline rate is 0."""
    relative_interval: Interval | None
    """95 % Katz log interval of the rate ratio, minus 1; None when either side has no conversion."""
    difference: float
    """rate − baseline rate (a fraction: 0.05 = 5 percentage points)."""
    difference_interval: Interval
    """95 % Newcombe hybrid score interval of the difference."""
    intervals_overlap: bool
    """Whether the two Wilson intervals overlap (does not decide anything by itself)."""
    verdict: Verdict


class VariantRow(BaseModel):
    variant: str
    entered: int
    """Instances (customers with unit=customer) in this variant."""
    customers: int
    converted: int
    open: int
    """Entered and not ended yet (as of --until)."""
    rate: float | None
    interval: Interval | None
    n_too_small: bool
    sends: dict[str, int]
    weight: int | None = None
    uplift: Uplift | None = None


class SplitReport(BaseModel):
    step_id: str
    baseline: str
    baseline_from: Literal["journey file", "name order"]
    variants: list[VariantRow]
    not_split: int
    """Entered (instances or customers) that did not reach this split (yet)."""
    assignment_p: float | None = None
    """Chi-square p-value of customers per variant against the declared weights (None: weights unknown or too few)."""
    sample_ratio_mismatch: bool = False


class JourneyReport(BaseModel):
    journey_id: str
    version: int
    total: VariantRow
    not_entered: dict[str, int]
    """``not_entered`` records in the window by reason (the text before its first colon)."""
    splits: list[SplitReport]
    reentries: bool
    """Some customer entered this version more than once in the window."""


class Report(BaseModel):
    source: str
    records: int
    unit: Unit
    since: datetime | None
    until: datetime | None
    confidence: float = CONFIDENCE
    min_n: int = MIN_N
    method: str = (
        "rates: Wilson score interval; relative uplift: Katz log interval of the rate ratio; "
        "difference: Newcombe hybrid score interval; verdict from the difference interval; "
        "assignment: chi-square against the split weights"
    )
    journeys: list[JourneyReport]
    skipped: dict[str, int]
    """Records or instances left out, by why (no entered record, unreadable record, ...)."""
    notes: list[str]


# ---------------------------------------------------------------- input


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


# ---------------------------------------------------------------- counting


@dataclass
class _Instance:
    customer_id: str
    entered: bool = False
    before: bool = False
    converted: bool = False
    ended: bool = False
    variants: dict[str, str] = field(default_factory=dict)
    sends: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Collected:
    instances: dict[tuple[str, int], dict[tuple[str, str], _Instance]] = field(default_factory=lambda: defaultdict(dict))
    not_entered: dict[tuple[str, int], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    journeys: set[tuple[str, int]] = field(default_factory=set)


def _send_key(r: JourneyLogRecord) -> tuple[str, str] | None:
    send_id = r.detail.get("send_id")
    if r.what == "send" and send_id:
        return str(send_id), str(r.detail.get("result", "?"))
    if r.what == "delayed" and send_id:
        return str(send_id), "deferred"
    return None


def _apply(inst: _Instance, r: JourneyLogRecord, since: datetime | None) -> None:
    if r.what == "entered":
        if since is not None and r.at < since:
            inst.before = True
        else:
            inst.entered = True
    elif r.what == "split" and r.step_id:
        inst.variants.setdefault(r.step_id, str(r.detail.get("variant", "?")))
    elif r.what in ("goal", "exited"):
        inst.ended = True
        inst.converted = inst.converted or r.what == "goal"
    elif (key := _send_key(r)) is not None:
        inst.sends.add(key)


def _collect(records: Iterable[JourneyLogRecord], since: datetime | None, until: datetime | None, journey: str | None) -> _Collected:
    c = _Collected()
    for r in records:
        if (until is not None and r.at >= until) or not r.journey_id or (journey is not None and r.journey_id != journey):
            continue
        key = (r.journey_id, r.journey_version)
        if r.what == "not_entered":
            if since is None or r.at >= since:
                c.journeys.add(key)
                c.not_entered[key][str(r.detail.get("reason", "?")).split(":", 1)[0]] += 1
            continue
        if not r.instance_id:
            continue
        by_id = c.instances[key]
        inst = by_id.get((r.customer_id, r.instance_id))
        if inst is None:
            inst = by_id[(r.customer_id, r.instance_id)] = _Instance(r.customer_id)
        _apply(inst, r, since)
    return c


def _tally(insts: Sequence[_Instance], unit: Unit, min_n: int, name: str) -> VariantRow:
    sends = Counter(result for inst in insts for _, result in inst.sends)
    customers = {i.customer_id for i in insts}
    if unit == "customer":
        converted_customers = {i.customer_id for i in insts if i.converted}
        n, converted = len(customers), len(converted_customers)
        open_ = len({i.customer_id for i in insts if not i.ended} - converted_customers)
    else:
        n, converted, open_ = len(insts), sum(i.converted for i in insts), sum(not i.ended for i in insts)
    return VariantRow(
        variant=name,
        entered=n,
        customers=len(customers),
        converted=converted,
        open=open_,
        rate=converted / n if n else None,
        interval=Interval.of(wilson_interval(converted, n)),
        n_too_small=n < min_n,
        sends=dict(sorted(sends.items())),
    )


def _uplift(row: VariantRow, base: VariantRow) -> Uplift:
    x1, n1, x0, n0 = row.converted, row.entered, base.converted, base.entered
    diff = newcombe_difference(x1, n1, x0, n0)
    assert diff is not None and row.rate is not None and base.rate is not None  # both rows have entries
    verdict: Verdict = "no clear difference"
    if row.n_too_small or base.n_too_small:
        verdict = "n too small"
    elif diff[0] > 0:
        verdict = "higher"
    elif diff[1] < 0:
        verdict = "lower"
    a, b = row.interval, base.interval
    overlap = a is not None and b is not None and a.low <= b.high and b.low <= a.high
    return Uplift(
        baseline=base.variant,
        relative=row.rate / base.rate - 1 if base.rate > 0 else None,
        relative_interval=Interval.of(relative_uplift_interval(x1, n1, x0, n0)),
        difference=row.rate - base.rate,
        difference_interval=Interval(low=diff[0], high=diff[1]),
        intervals_overlap=overlap,
        verdict=verdict,
    )


def _split_report(step_id: str, insts: Sequence[_Instance], unit: Unit, min_n: int, declared: list[tuple[str, int]] | None) -> SplitReport:
    by_variant: dict[str, list[_Instance]] = defaultdict(list)
    for inst in insts:
        if step_id in inst.variants:
            by_variant[inst.variants[step_id]].append(inst)
    weights = dict(declared or [])
    names = [name for name, _ in declared or []]
    names += sorted(v for v in by_variant if v not in weights)
    rows = [_tally(by_variant.get(name, []), unit, min_n, name) for name in names]
    for row in rows:
        row.weight = weights.get(row.variant)
    base = next((r for r in rows if r.entered), rows[0])
    for row in rows:
        if row is not base and row.entered and base.entered:
            row.uplift = _uplift(row, base)
    not_split = [i for i in insts if step_id not in i.variants]
    report = SplitReport(
        step_id=step_id,
        baseline=base.variant,
        baseline_from="journey file" if declared else "name order",
        variants=rows,
        not_split=len(not_split) if unit == "instance" else len({i.customer_id for i in not_split}),
    )
    if declared:
        report.assignment_p = sample_ratio_p(
            [r.customers for r in rows if r.weight is not None], [r.weight or 0 for r in rows if r.weight is not None]
        )
        report.sample_ratio_mismatch = report.assignment_p is not None and report.assignment_p < SRM_ALPHA
    return report


def build_report(
    records: Iterable[JourneyLogRecord | Mapping[str, Any] | bytes],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    unit: Unit = "instance",
    min_n: int = MIN_N,
    journey: str | None = None,
    variants: Mapping[tuple[str, int, str], list[tuple[str, int]]] | None = None,
    source: str = "records",
) -> Report:
    """The report over journey-log records (see the module docstring for what is counted).

    ``variants`` gives each split's declared variants and weights (:func:`variant_order`):
    the first is the baseline. Without it the baseline is the first variant by name.
    """
    parsed, bad = log_records(records)
    c = _collect(parsed, since, until, journey)
    skipped: Counter[str] = Counter()
    if bad:
        skipped["unreadable record"] = bad
    out: list[JourneyReport] = []
    for key in sorted(set(c.instances) | c.journeys):
        insts = [i for i in c.instances.get(key, {}).values() if i.entered]
        orphans = sum(not i.entered and not i.before for i in c.instances.get(key, {}).values())
        if orphans:
            skipped["instance without its entered record"] += orphans
        if not insts and not c.not_entered.get(key):
            continue
        steps = sorted({s for i in insts for s in i.variants})
        per_customer = Counter(i.customer_id for i in insts)
        out.append(
            JourneyReport(
                journey_id=key[0],
                version=key[1],
                total=_tally(insts, unit, min_n, NO_SPLIT),
                not_entered=dict(sorted(c.not_entered.get(key, Counter()).items())),
                splits=[_split_report(s, insts, unit, min_n, (variants or {}).get((key[0], key[1], s))) for s in steps],
                reentries=any(n > 1 for n in per_customer.values()),
            )
        )
    return Report(
        source=source,
        records=len(parsed) + bad,
        unit=unit,
        since=since,
        until=until,
        min_n=min_n,
        journeys=out,
        skipped=dict(skipped),
        notes=_notes(out, unit, dict(skipped)),
    )


def _notes(journeys: Sequence[JourneyReport], unit: Unit, skipped: Mapping[str, int]) -> list[str]:
    notes: list[str] = []
    if unit == "instance" and any(j.reentries and j.splits for j in journeys):
        notes.append(
            "some customers entered a split journey more than once: their instances share a variant and are not independent, "
            "so the intervals are too narrow; compare with --unit customer"
        )
    if any(len(s.variants) > 2 for j in journeys for s in j.splits):
        notes.append(
            "splits with more than two variants: each is compared with the baseline on its own, no correction for multiple comparisons"
        )
    if skipped.get("instance without its entered record"):
        notes.append("instances without their entered record (deleted by retention, or before the log starts) are not counted")
    return notes


# ---------------------------------------------------------------- text


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


# ---------------------------------------------------------------- Kafka


class KafkaReadError(RuntimeError):
    """The topic could not be read to its end (no broker, no such topic, timeout); the message says which."""


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


PartitionChooser = Callable[[str, int], Sequence[int]]
"""``(topic, partition count) -> the partitions to read``."""


async def read_to_end(
    bootstrap: str,
    topics: Sequence[str],
    timeout: float,
    choose: PartitionChooser | None = None,
    **client_kw: Any,
) -> tuple[list[RawRecord], dict[str, list[int]]]:
    """Read partitions of ``topics`` from their beginning up to their end offsets taken at the start, then stop.

    ``choose`` picks the partitions per topic (default: all). No consumer group is joined and
    nothing is committed. Returns the records (per partition in offset order) and the partitions
    read. Raises :class:`KafkaReadError` when a topic does not exist or it all takes longer than
    ``timeout`` seconds.
    """
    try:
        return await asyncio.wait_for(_read_to_end(bootstrap, topics, choose, client_kw), timeout)
    except TimeoutError:
        raise KafkaReadError(f"could not read {', '.join(topics)} at {bootstrap} to the end within {timeout:g} s") from None


async def _partition_counts(bootstrap: str, topics: Sequence[str], client_kw: Mapping[str, Any]) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kw)
    await admin.start()
    try:  # every topic's metadata (asking for a missing topic by name could make the broker create it)
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics() if t.get("partitions")}
    finally:
        await admin.close()
    missing = [t for t in topics if t not in counts]
    if missing:
        raise KafkaReadError(f"topic {', '.join(missing)} does not exist at {bootstrap} (check ORCH_TOPIC_PREFIX)")
    return {t: counts[t] for t in topics}


async def _read_to_end(
    bootstrap: str, topics: Sequence[str], choose: PartitionChooser | None, client_kw: Mapping[str, Any]
) -> tuple[list[RawRecord], dict[str, list[int]]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    try:
        counts = await _partition_counts(bootstrap, topics, client_kw)
        chosen = {t: sorted(choose(t, n) if choose else range(n)) for t, n in counts.items()}
        parts = [TopicPartition(t, p) for t, ps in chosen.items() for p in ps]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **client_kw
        )
        await consumer.start()
    except KafkaError as exc:
        raise KafkaReadError(f"cannot read from Kafka at {bootstrap} ({type(exc).__name__}: {exc})") from None
    out: list[RawRecord] = []
    try:
        consumer.assign(parts)
        starts, ends = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
        for tp in parts:  # an explicit seek: seek_to_beginning can lose a race with the initial offset reset
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in parts if starts[tp] < ends[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                out.extend(RawRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in records if r.offset < ends[tp])
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return out, chosen


# ---------------------------------------------------------------- the command


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` allowed; naive = UTC) for ``--since`` / ``--until``."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time such as 2026-06-01T00:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


HELP = (
    "Per journey, version and split variant: entered, converted (ended with a goal), conversion rate with a 95 % Wilson "
    "score interval, uplift against the split's first variant (relative, with its interval, and the difference in "
    "percentage points with a Newcombe interval that decides the verdict), and sends by result. "
    "Counts journey instances (one per entry: a customer entering twice counts twice) unless --unit customer; "
    "an instance belongs to the variant of its split record; still-running instances count as not converted (so far). "
    "Rows with fewer than --min-n entries are marked 'n too small' and get no verdict. "
    "With the journey files at hand (--journeys), the baseline is the first variant declared and the customers per variant "
    "are checked against the weights (chi-square; p < 0.001 is reported as a sample ratio mismatch). "
    "--since/--until select instances by the time of their entered record (the engine's clock). "
    "Reads the journey-log topic (<ORCH_TOPIC_PREFIX>.journey-log, every partition from the beginning to its current end) "
    "or, with --from-simulate, the output of `orchestrator simulate --json`."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report [--from-simulate FILE] [--since T] [--until T] [--journey ID] [--unit U] [--min-n N] [--json]``."""
    p = sub.add_parser(
        "report", help="conversion and A/B uplift per journey, version and split variant, from the journey log", description=HELP
    )
    p.add_argument(
        "--from-simulate", default=None, metavar="FILE", help="read the output of `orchestrator simulate --json` instead of Kafka"
    )
    p.add_argument("--since", type=parse_time, default=None, metavar="TIME", help="count instances that entered at or after this ISO time")
    p.add_argument(
        "--until",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="count instances that entered before this ISO time; ignore later records",
    )
    p.add_argument("--journey", default=None, metavar="ID", help="only this journey")
    p.add_argument(
        "--unit",
        choices=("instance", "customer"),
        default="instance",
        help="what one entry counts: an instance (default) or a customer (once per row, converted if any instance was)",
    )
    p.add_argument(
        "--min-n", type=_positive_int, default=MIN_N, metavar="N", help=f"'n too small' below N entries per row (default {MIN_N})"
    )
    p.add_argument(
        "--journeys",
        default=None,
        metavar="DIR",
        help="journey files for the variants' order (baseline = first) and weights (default: $ORCH_JOURNEYS_DIR, else journeys)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="seconds to read the topic before giving up with exit 1 (default 60)"
    )
    p.set_defaults(func=_report_command)


@contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """Keep aiokafka's own connection errors off a command's terminal (the command says what failed, once).

    Only when nothing configured logging (a command line, not a worker or a test with handlers).
    """
    loggers = [logging.getLogger("aiokafka")] if not logging.getLogger().handlers else []
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def load_settings(command: str, err: TextIO) -> Settings | None:
    """The worker's settings from the environment, or None after saying on ``err`` what is wrong."""
    from orchestrator.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"orchestrator {command}: invalid configuration: {first['loc']}: {first['msg']}", file=err)
        return None


def _read_kafka(args: argparse.Namespace, settings: Settings, err: TextIO) -> tuple[list[bytes], str] | None:
    from orchestrator.runtime.preflight import aiokafka_kwargs

    topic = settings.topic("journey-log")
    try:
        with quiet_kafka_client():
            raw, _ = asyncio.run(read_to_end(settings.kafka_bootstrap_servers, [topic], args.timeout, **aiokafka_kwargs(settings)))
    except KafkaReadError as exc:
        print(f"orchestrator report: {exc}", file=err)
        return None
    return [r.value for r in raw if r.value is not None], topic


def _report_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = load_settings("report", err)
    if settings is None:
        return 1
    records: Sequence[Mapping[str, Any] | bytes]
    if args.from_simulate:
        try:
            records, problems = read_simulate_file(args.from_simulate)
        except OSError as exc:
            print(f"orchestrator report: {args.from_simulate}: {exc.strerror}", file=err)
            return 1
        for line in problems:
            print(f"{line} (line skipped)", file=err)
        source = args.from_simulate
    else:
        read = _read_kafka(args, settings, err)
        if read is None:
            return 1
        records, source = read
    order, why = variant_order(args.journeys or settings.journeys_dir)
    report = build_report(
        records, since=args.since, until=args.until, unit=args.unit, min_n=args.min_n, journey=args.journey, variants=order, source=source
    )
    if why is not None and any(j.splits for j in report.journeys):
        report.notes.append(f"baselines by variant name, weights unknown: {why}")
    out.write((report.model_dump_json(indent=2) if args.json else format_report(report)) + "\n")
    return 0

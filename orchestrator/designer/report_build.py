"""Counting journey-log records into a :class:`~orchestrator.designer.report_model.Report` (:func:`build_report`).

What is counted is described in :mod:`orchestrator.designer.report`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.designer.report_input import log_records
from orchestrator.designer.report_model import (
    MIN_N,
    NO_SPLIT,
    SRM_ALPHA,
    Interval,
    JourneyReport,
    Report,
    SplitReport,
    Unit,
    Uplift,
    VariantRow,
    Verdict,
)
from orchestrator.designer.report_stats import newcombe_difference, relative_uplift_interval, sample_ratio_p, wilson_interval
from orchestrator.records import JourneyLogRecord


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
    """The report over journey-log records (see :mod:`orchestrator.designer.report` for what is counted).

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

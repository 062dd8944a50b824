"""The output of ``orchestrator simulate``: the text (:func:`format_text`) and the JSON lines (:func:`format_json_lines`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from orchestrator.designer.simulate_result import SimRecord, SimulationResult
from orchestrator.engine.audience import AUDIENCE_EVENT_TYPE
from orchestrator.timeutil import iso_utc


def format_text(result: SimulationResult, customers: Iterable[str] | None = None) -> str:
    """Human-readable output: the journey version changes, the campaign runs (that reached someone; not with
    ``customers``), then per customer each event, step, send (with outcome and why) and timer.

    Linear in the records: they are grouped by customer once (:meth:`SimulationResult.by_customer`).
    """
    index = result.by_customer()
    wanted = list(customers) if customers is not None else list(index)
    lines: list[str] = []
    if result.versions:
        lines.append("journey versions")
        lines.extend(f"  {iso_utc(v.at)}  {v.text}" for v in result.versions)
        lines.append("")
    campaigns = [c for c in result.campaigns if c.evaluated] if customers is None else []
    if campaigns:
        lines.append("campaign runs")
        lines.extend(f"  {iso_utc(c.at)}  {c.text}" for c in campaigns)
        lines.append("")
    for cid in wanted:
        lines.append(f"customer {cid}")
        lines.extend(f"  {iso_utc(r.at)}  {text}" for r, text in customer_lines(index.get(cid, [])))
        lines.append("")
    return "\n".join(lines)


def _refusal_key(records: Sequence[SimRecord], i: int) -> tuple[str | None, int | None, str] | None:
    """(journey, version, reason) when ``records[i]`` is a campaign check that the engine kept out (the next record says why)."""
    if records[i].kind != "audience" or i + 1 >= len(records):
        return None
    why = records[i + 1]
    if why.kind != "trace" or why.data.get("what") != "not_entered" or why.data.get("event_type") != AUDIENCE_EVENT_TYPE:
        return None
    return why.journey_id, why.journey_version, str(why.data.get("reason", ""))


def customer_lines(records: Sequence[SimRecord]) -> list[tuple[SimRecord, str]]:
    """One customer's records and their text lines, as :func:`format_text` prints them.

    A campaign run that the re-entry rule (or anything else) keeps the customer out of for a
    reason already shown is left out: the first such line says how many runs followed it
    (``reentry: never`` on a daily run would otherwise repeat itself every day). The JSON
    output keeps every run's ``audience`` and ``not_entered`` record.
    """
    first: dict[tuple[str | None, int | None, str], int] = {}
    again: dict[int, list[datetime]] = {}
    skip: set[int] = set()
    for i in range(len(records)):
        key = _refusal_key(records, i)
        if key is None:
            continue
        if key in first:
            again[first[key]].append(records[i + 1].at)
            skip.update((i, i + 1))
        else:
            first[key] = i + 1
            again[i + 1] = []
    out: list[tuple[SimRecord, str]] = []
    for i, r in enumerate(records):
        if i in skip:
            continue
        text = r.text
        if again.get(i):
            later = again[i]
            text += f" (the same on {len(later)} later run{'s' if len(later) != 1 else ''}, the last at {iso_utc(later[-1])}; shown once)"
        out.append((r, text))
    return out


def format_json_lines(result: SimulationResult, customers: Iterable[str] | None = None) -> str:
    """One JSON object per line (:data:`SimulateRecord`): the version changes, the campaign runs (as in :func:`format_text`),
    then per customer in order of appearance.

    Linear in the records: they are grouped by customer once.
    """
    index = result.by_customer()
    wanted = list(customers) if customers is not None else list(index)
    out = [json.dumps(v.to_json()) for v in result.versions]
    if customers is None:
        out += [json.dumps(c.to_json()) for c in result.campaigns if c.evaluated]
    for cid in wanted:
        for r in index.get(cid, ()):
            out.append(json.dumps(r.to_json(), sort_keys=False, default=str))
    return "\n".join(out) + ("\n" if out else "")

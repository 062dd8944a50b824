"""The demo's journey maps: each journey's Mermaid flowchart with the customers of the run on its edges.

The counts come from the run's journey-log records (``records.JourneyLogRecord``: each
has ``journey_id``, ``journey_version``, ``customer_id``, ``step_id``, ``what``, ``edge``
and, on an exit, ``detail.outcome``), counted as ``orchestrator render --counts`` counts
simulated traces (:func:`orchestrator.designer.render.count_edges`: distinct customers per
edge). The Markdown file puts each map in a ```` ```mermaid ```` fence, which GitHub renders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.designer.render import count_edges, render_mermaid
from orchestrator.journey.loader import JourneySet

__all__ = ["JourneyMap", "edge_counts", "journey_maps", "maps_markdown", "write_maps"]


@dataclass(frozen=True)
class JourneyMap:
    """One journey version's map: its Mermaid text (edges counted) and how many customers entered it."""

    journey_id: str
    version: int
    name: str
    entered: int
    mermaid: str


def edge_counts(log: Iterable[Mapping[str, Any]], journey_id: str, version: int) -> Counter[tuple[str, str]]:
    """Distinct customers per edge ``(from, to)`` of one journey version, from journey-log records."""
    return count_edges(
        (
            {
                "customer": t.get("customer_id"),
                "journey": t.get("journey_id"),
                "what": t.get("what"),
                "step_id": t.get("step_id"),
                "edge": t.get("edge"),
                "outcome": (t.get("detail") or {}).get("outcome"),
            }
            for t in log
            if t.get("journey_version") == version
        ),
        journey_id,
    )


def journey_maps(journeys: JourneySet, log: Iterable[Mapping[str, Any]]) -> list[JourneyMap]:
    """A map for every live journey and for every other loaded version the log has customers in, by id and version."""
    records = [t for t in log if t.get("customer_id")]  # campaign progress records have no customer
    entered: Counter[tuple[str, int]] = Counter()
    for t in records:
        if t.get("what") == "entered":
            entered[(str(t.get("journey_id")), int(t.get("journey_version") or 0))] += 1
    wanted = {(cj.journey.id, cj.journey.version) for cj in journeys.live.values()} | set(entered)
    maps = []
    for jid, version in sorted(wanted):
        compiled = journeys.get(jid, version)
        if compiled is None:  # a version the worker ran that this directory no longer has
            continue
        text = render_mermaid(compiled.journey, edge_counts(records, jid, version))
        maps.append(JourneyMap(jid, version, compiled.journey.name, entered[(jid, version)], text))
    return maps


def maps_markdown(maps: Iterable[JourneyMap], title: str) -> str:
    """The maps as one Markdown document: a heading and a ```mermaid fence per journey."""
    parts = [f"# {title}\n", "Customers per edge: distinct customers of this run who took it (from the journey log).\n"]
    for jm in maps:
        parts.append(f"## {jm.journey_id} v{jm.version}: {jm.name} ({jm.entered} entered)\n")
        parts.append(f"```mermaid\n{jm.mermaid}```\n")
    return "\n".join(parts)


def write_maps(path: Path, maps: Iterable[JourneyMap], title: str) -> Path:
    """Write :func:`maps_markdown` to ``path`` (its directory created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(maps_markdown(maps, title), encoding="utf-8")
    return path

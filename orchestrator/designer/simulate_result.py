"""What a simulation produced: :class:`SimulationResult`, its records, journey version changes and campaign runs.

:mod:`~orchestrator.designer.simulate_records` builds the records, :mod:`~orchestrator.designer.simulate_output` prints them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from orchestrator.actions import Disposition, Trace
from orchestrator.journey.schedule import Run
from orchestrator.state import CustomerState
from orchestrator.timeutil import iso_utc

RecordKind = Literal["event", "timer", "audience", "trace", "send", "consent", "timer_armed", "timer_cancelled", "emit"]


@dataclass(frozen=True)
class SimRecord:
    """One line of simulation output."""

    at: datetime
    customer_id: str
    kind: RecordKind
    text: str
    journey_id: str | None = None
    journey_version: int | None = None
    instance_id: str | None = None
    step_id: str | None = None
    edge: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of ``simulate --json``; see :data:`SimulateRecord`)."""
        out: dict[str, Any] = {"at": iso_utc(self.at), "customer": self.customer_id, "kind": self.kind}
        for key, name in (
            ("journey_id", "journey"),
            ("journey_version", "version"),
            ("instance_id", "instance_id"),
            ("step_id", "step_id"),
            ("edge", "edge"),
        ):
            value = getattr(self, key)
            if value is not None:
                out[name] = value
        out.update(self.data)
        out["text"] = self.text
        return out


@dataclass(frozen=True)
class VersionChange:
    """A deploy or retire line, as it happened on the virtual clock."""

    at: datetime
    kind: Literal["deploy", "retire"]
    journey_id: str
    version: int
    live_version: int | None
    """The version new entrants take after the change (None: no live version)."""
    where: str
    """``file:line:col`` of the line in the event file."""
    file: str | None = None
    """The deployed journey file (deploy only)."""

    @property
    def text(self) -> str:
        takes = f"new entries take v{self.live_version}" if self.live_version is not None else "no version takes new entries"
        if self.kind == "deploy":
            return f"deployed {self.journey_id} v{self.version} from {self.file} ({self.where}): {takes}"
        return f"retired {self.journey_id} v{self.version} ({self.where}): {takes}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (a ``deploy`` or ``retire`` line of ``simulate --json``)."""
        out: dict[str, Any] = {
            "at": iso_utc(self.at),
            "kind": self.kind,
            "journey": self.journey_id,
            "version": self.version,
            "live_version": self.live_version,
            "where": self.where,
        }
        if self.file is not None:
            out["file"] = self.file
        out["text"] = self.text
        return out


def duration_text(seconds: float) -> str:
    """``0.05 s``, ``12 s``, ``4.2 min``, ``1.5 h``."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.2g} min"
    return f"{seconds / 3600:.2g} h"


@dataclass
class CampaignRun:
    """One run of a scheduled audience (a campaign), as it went on the virtual clock."""

    journey_id: str
    version: int
    """The live version when the run began."""
    run: Run
    per_second: float
    """The audience's throttle (not simulated: every customer is checked at their due time)."""
    evaluated: int = 0
    """Customers seen by their due time, whose audience conditions were evaluated."""
    in_audience: int = 0
    entered: int = 0
    not_entered: int = 0
    """In the audience, but kept out by the re-entry rule."""
    first_due: datetime | None = None
    """When the run reached its first customer."""
    bursts: Counter[datetime] = field(default_factory=Counter)
    """Customers in the audience per due time (a UTC run: one burst; a local run: one per UTC offset)."""

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def at(self) -> datetime:
        """When the run began: its instant, or (local) when it reached its first customer."""
        if not self.run.local:
            return self.run.moment
        return self.first_due or self.run.due_for(None)

    @property
    def throttle_seconds(self) -> float:
        """How long the run's largest burst takes at the throttle (each customer in the audience takes one token)."""
        return max(self.bursts.values(), default=0) / self.per_second

    @property
    def text(self) -> str:
        kept = f", {self.not_entered} kept out by re-entry" if self.not_entered else ""
        return (
            f"campaign {self.journey_id} run {self.run_id}: {self.evaluated} evaluated, {self.in_audience} in the audience, "
            f"{self.entered} entered{kept}; at {self.per_second:g}/s about {duration_text(self.throttle_seconds)} (throttle not simulated)"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (a ``campaign_run`` line of ``simulate --json``)."""
        return {
            "at": iso_utc(self.at),
            "kind": "campaign_run",
            "journey": self.journey_id,
            "version": self.version,
            "run_id": self.run_id,
            "local": self.run.local,
            "evaluated": self.evaluated,
            "in_audience": self.in_audience,
            "entered": self.entered,
            "not_entered": self.not_entered,
            "throttle_per_second": self.per_second,
            "throttle_seconds": round(self.throttle_seconds, 3),
            "text": self.text,
        }


@dataclass
class SimulationResult:
    """Everything a simulation produced."""

    records: list[SimRecord] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    dispositions: list[Disposition] = field(default_factory=list)
    states: dict[str, CustomerState] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """Input lines that were skipped: ``file:line: reason`` (invalid events, unresolved ``send_of``)."""
    versions: list[VersionChange] = field(default_factory=list)
    """Deploy and retire lines, in the order they took effect."""
    notices: list[str] = field(default_factory=list)
    """Things the designer should know about the run, e.g. that the built-in default policy was used."""
    campaigns: list[CampaignRun] = field(default_factory=list)
    """The runs of scheduled audiences, in the order they began (the output leaves out runs that reached nobody)."""

    def customers(self) -> list[str]:
        """Customer ids in order of first appearance."""
        return list(dict.fromkeys(r.customer_id for r in self.records))

    def by_customer(self) -> dict[str, list[SimRecord]]:
        """Each customer's records in order, customers in order of first appearance: one pass over the records."""
        index: dict[str, list[SimRecord]] = {}
        for r in self.records:
            bucket = index.get(r.customer_id)
            if bucket is None:
                index[r.customer_id] = bucket = []
            bucket.append(r)
        return index

    def for_customer(self, customer_id: str) -> list[SimRecord]:
        """One customer's records (a pass over all records: for many customers use :meth:`by_customer`)."""
        return [r for r in self.records if r.customer_id == customer_id]

    def sends(self, customer_id: str | None = None) -> list[Disposition]:
        """Final dispositions (one per gated send), optionally for one customer."""
        return [d for d in self.dispositions if customer_id is None or d.send.customer_id == customer_id]

    def path(self, customer_id: str, journey_id: str | None = None) -> list[str]:
        """The steps a customer went through (``step`` traces), optionally in one journey."""
        return [
            t.step_id or ""
            for t in self.traces
            if t.customer_id == customer_id and t.what == "step" and (journey_id is None or t.journey_id == journey_id)
        ]

    def edge_counts(self, journey_id: str) -> Counter[tuple[str, str]]:
        """Distinct customers per edge ``(from, to)`` of one journey: ``from`` is ``start`` for
        entries; ``to`` is ``goal`` / ``exit`` for goals and exits, ``finish`` for "the journey ends"."""
        from orchestrator.designer.render import count_edges

        return count_edges(
            (
                {
                    "customer": t.customer_id,
                    "journey": t.journey_id,
                    "what": t.what,
                    "step_id": t.step_id,
                    "edge": t.edge,
                    "outcome": t.detail.get("outcome"),
                }
                for t in self.traces
            ),
            journey_id,
        )

"""The console's aggregates, in memory and bounded: counts, not records.

:class:`ConsoleState` is fed one record at a time (:meth:`ConsoleState.apply_log`,
:meth:`ConsoleState.apply_decision`, :meth:`ConsoleState.apply_dead_letter`) by the Kafka reader
(:mod:`orchestrator.console.feed`), or by a test with hand-made records. What it keeps:

* per journey version: instances entered, converted (ended with a goal), ended otherwise, not
  entered; the count of each edge taken (``(from, to)``: ``start`` for the entry, ``finish`` for
  the end of a path, ``goal`` / ``exit`` for goals and exit rules), counted from the records that
  move an instance along an edge, as ``orchestrator render`` counts them; the basket's answers
  per send step (the decisions' ``result``); per split step and variant, instances split into it
  and how many of them converted;
* per **live** instance (entered, no goal or exit yet): its current step (the newest ``step``
  record) and its split variants. It is dropped when the instance ends, so the memory follows
  the customers in journeys now, not the history;
* per campaign run (``campaign_progress`` records): the newest progress per partition, the
  instances the run entered, the basket's answers on its sends; the newest ``MAX_RUNS`` runs;
* dead letters per hour (``MAX_HOURS`` hours) by code and reason (``MAX_REASONS`` reasons per
  code, the rest as ``(other reasons)``);
* the lag rows of the last read.

Several workers write the same topics, so the counts are the whole deployment's by construction.
A record written twice (a batch replayed after a worker crashed before committing) is counted
twice: the topics are at least once, and deduplicating would mean remembering every record.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from orchestrator.engine.ids import AUDIENCE_EVENT_PREFIX, run_of_instance
from orchestrator.records import CAMPAIGN_PROGRESS, CampaignProgress, JourneyLogRecord

if TYPE_CHECKING:
    from orchestrator.designer.explain import DeadLetterView, DecisionView
    from orchestrator.journey.loader import JourneySet

MAX_RUNS = 50
"""Campaign runs kept (the newest by their last record)."""
MAX_HOURS = 168
"""Hour buckets of dead letters kept (a week)."""
MAX_REASONS = 20
"""Distinct dead-letter reasons kept per code; further ones are counted as ``(other reasons)``."""
OTHER_REASONS = "(other reasons)"

EDGE_WHATS = frozenset({"branch", "split", "matched", "timeout", "quiet", "resumed", "send", "profile_updated", "emitted"})
"""Journey-log records that move an instance from ``step_id`` along ``edge`` (as ``designer/render.py: count_edges``)."""

VersionKey = tuple[str, int]
Edge = tuple[str, str]


@dataclass
class LiveInstance:
    """What the console keeps of one live journey instance: where it is now."""

    journey_id: str
    version: int
    step: str | None = None
    variants: dict[str, str] = field(default_factory=dict)


@dataclass
class VariantCounts:
    entered: int = 0
    converted: int = 0


@dataclass
class VersionStats:
    """The counts of one journey version since it was deployed (as far back as the topics go)."""

    entered: int = 0
    converted: int = 0
    ended: int = 0
    """Ended without a goal (an end step, an exit rule, aborted, version removed)."""
    not_entered: int = 0
    live: int = 0
    """Instances in the journey now (entered, not ended)."""
    at_step: Counter[str] = field(default_factory=Counter)
    """Step -> live instances whose current step it is (customers there now)."""
    edges: Counter[Edge] = field(default_factory=Counter)
    sends: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Send step -> the decisions' ``result`` -> count."""
    splits: dict[str, dict[str, VariantCounts]] = field(default_factory=lambda: defaultdict(dict))
    """Split step -> variant -> instances split into it, and of them converted."""
    first_at: datetime | None = None
    last_at: datetime | None = None


@dataclass
class CampaignStats:
    journey_id: str
    run: str
    versions: set[int] = field(default_factory=set)
    progress: dict[int, CampaignProgress] = field(default_factory=dict)
    """Partition -> the newest progress record of its pass."""
    entered: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    last_at: datetime | None = None

    def total(self, name: str) -> int:
        return sum(int(getattr(p, name)) for p in self.progress.values())

    @property
    def complete(self) -> bool:
        return bool(self.progress) and all(p.complete for p in self.progress.values())


@dataclass(frozen=True)
class LagRow:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    seconds: float | None


@dataclass
class ReadProgress:
    """How far the reader got on one topic: records read, and the end offsets when the console started."""

    records: int = 0
    skipped: int = 0
    """Records that were not what the topic should hold (not counted)."""
    target: dict[int, int] = field(default_factory=dict)
    """Partition -> end offset when reading started."""
    position: dict[int, int] = field(default_factory=dict)
    """Partition -> next offset to read."""

    @property
    def caught_up(self) -> bool:
        return all(self.position.get(p, 0) >= end for p, end in self.target.items())


def _hour(at: datetime) -> datetime:
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def run_of_send(journey_id: str, send_id: str) -> str | None:
    """The campaign run of a send, from its id ``customer:journey:vN:audience:journey:RUN:step...`` (None: not a campaign's)."""
    marker = f":{AUDIENCE_EVENT_PREFIX}{journey_id}:"
    at = send_id.find(marker)
    if at < 0:
        return None
    rest = send_id[at + len(marker) :]
    run = rest[:17]  # 2026-12-01T10:00Z / ...L (engine/ids.py: run_id)
    return run if len(run) == 17 and run[-1] in "ZL" and rest[17:18] in ("", ":") else None


class ConsoleState:
    """Every aggregate the pages show (see the module docstring)."""

    def __init__(self, journeys: JourneySet | None = None) -> None:
        self.journeys = journeys
        self.journeys_problem: str | None = None
        self.versions: dict[VersionKey, VersionStats] = {}
        self.instances: dict[tuple[str, str], LiveInstance] = {}
        self.campaigns: dict[tuple[str, str], CampaignStats] = {}
        self.dead_letters: dict[datetime, Counter[tuple[str, str]]] = {}
        self.dead_letter_codes: Counter[str] = Counter()
        self._reasons: dict[str, set[str]] = defaultdict(set)
        self.lag: list[LagRow] = []
        self.lag_problem: str | None = None
        self.lag_at: datetime | None = None
        self.group_state: str | None = None
        self.reading: dict[str, ReadProgress] = {}
        self.read_problem: str | None = None

    # ------------------------------------------------------------ feeding

    def stats(self, journey_id: str, version: int) -> VersionStats:
        key = (journey_id, version)
        got = self.versions.get(key)
        if got is None:
            got = self.versions[key] = VersionStats()
        return got

    def apply_log(self, r: JourneyLogRecord) -> None:
        """One journey-log record."""
        if r.what == CAMPAIGN_PROGRESS:
            self._progress(r)
            return
        if not r.journey_id:
            return  # a duplicate event: no journey
        vs = self.stats(r.journey_id, r.journey_version)
        vs.first_at = r.at if vs.first_at is None or r.at < vs.first_at else vs.first_at
        vs.last_at = r.at if vs.last_at is None or r.at > vs.last_at else vs.last_at
        if r.what == "not_entered":
            vs.not_entered += 1
            return
        if not r.instance_id:
            return
        key = (r.customer_id, r.instance_id)
        if r.what == "entered":
            self._entered(vs, key, r)
            return
        inst = self.instances.get(key)
        if r.what == "step" and inst is not None:
            self._move(vs, inst, r.step_id)
        elif r.what in ("goal", "exited"):
            self._ended(vs, key, inst, r)
        elif r.what in EDGE_WHATS and r.step_id and r.edge != r.step_id:
            vs.edges[(r.step_id, r.edge or "finish")] += 1
            if r.what == "split" and inst is not None and r.step_id not in inst.variants:
                variant = str(r.detail.get("variant", "?"))
                inst.variants[r.step_id] = variant
                counts = vs.splits[r.step_id].setdefault(variant, VariantCounts())
                counts.entered += 1

    def _entered(self, vs: VersionStats, key: tuple[str, str], r: JourneyLogRecord) -> None:
        vs.entered += 1
        if r.edge:
            vs.edges[("start", r.edge)] += 1
        old = self.instances.get(key)
        if old is not None:  # entered again under the same id (a replayed batch): one instance
            self._move(vs, old, None)
        else:
            vs.live += 1
        inst = self.instances[key] = LiveInstance(r.journey_id, r.journey_version)
        self._move(vs, inst, r.edge)
        run = run_of_instance(r.journey_id, r.instance_id)
        if run is not None:
            c = self._campaign(r.journey_id, run, r.journey_version, r.at)
            if c is not None:
                c.entered += 1

    def _ended(self, vs: VersionStats, key: tuple[str, str], inst: LiveInstance | None, r: JourneyLogRecord) -> None:
        outcome = str(r.detail.get("outcome", ""))
        if r.what == "goal":
            vs.converted += 1
            vs.edges[(r.step_id or "start", "goal")] += 1
            for step, variant in (inst.variants if inst is not None else {}).items():
                vs.splits[step].setdefault(variant, VariantCounts()).converted += 1
        else:
            vs.ended += 1
            if outcome.startswith("exit:"):
                vs.edges[(r.step_id or "start", "exit")] += 1
        if inst is not None:
            self._move(vs, inst, None)
            del self.instances[key]
            vs.live -= 1

    @staticmethod
    def _move(vs: VersionStats, inst: LiveInstance, step: str | None) -> None:
        if inst.step is not None:
            vs.at_step[inst.step] -= 1
            if vs.at_step[inst.step] <= 0:
                del vs.at_step[inst.step]
        inst.step = step
        if step is not None:
            vs.at_step[step] += 1

    def _campaign(self, journey_id: str, run: str, version: int, at: datetime) -> CampaignStats | None:
        key = (journey_id, run)
        c = self.campaigns.get(key)
        if c is None:
            if len(self.campaigns) >= MAX_RUNS:
                oldest = min(self.campaigns, key=lambda k: self.campaigns[k].last_at or at)
                if (self.campaigns[oldest].last_at or at) > at:
                    return None  # older than every run kept
                del self.campaigns[oldest]
            c = self.campaigns[key] = CampaignStats(journey_id, run)
        c.versions.add(version)
        c.last_at = at if c.last_at is None or at > c.last_at else c.last_at
        return c

    def _progress(self, r: JourneyLogRecord) -> None:
        try:
            p = CampaignProgress.model_validate(r.detail)
        except ValidationError:
            return
        c = self._campaign(r.journey_id, p.run, r.journey_version, r.at)
        if c is not None:
            c.progress[p.partition] = p  # the newest record per partition is the current one (a new owner passes again)

    def apply_decision(self, d: DecisionView) -> None:
        """One record of the decisions topic."""
        vs = self.stats(d.journey_id, d.journey_version)
        vs.sends[d.step_id][d.result] += 1
        run = run_of_send(d.journey_id, d.send_id)
        if run is not None:
            c = self._campaign(d.journey_id, run, d.journey_version, d.decided_at)
            if c is not None:
                c.decisions[d.result] += 1

    def apply_dead_letter(self, d: DeadLetterView) -> None:
        """One record of the dead-letter topic, in the hour it was dead-lettered."""
        at = d.dead_lettered_at or d.timestamp or d.occurred_at
        if at is None:
            return
        hour = _hour(at)
        if hour not in self.dead_letters:
            if len(self.dead_letters) >= MAX_HOURS:
                oldest = min(self.dead_letters)
                if oldest > hour:
                    return
                del self.dead_letters[oldest]
            self.dead_letters[hour] = Counter()
        reasons = self._reasons[d.code]
        reason = d.reason
        if reason not in reasons:
            if len(reasons) >= MAX_REASONS:
                reason = OTHER_REASONS
            else:
                reasons.add(reason)
        self.dead_letters[hour][(d.code, reason)] += 1
        self.dead_letter_codes[d.code] += 1

    def set_lag(self, rows: list[LagRow], at: datetime, group_state: str | None) -> None:
        self.lag, self.lag_at, self.group_state, self.lag_problem = rows, at, group_state, None

    # ------------------------------------------------------------ reading

    def now_at(self, journey_id: str, version: int) -> Counter[str]:
        """Step -> live instances of that version whose current step it is (customers there now)."""
        vs = self.versions.get((journey_id, version))
        return Counter(vs.at_step) if vs is not None else Counter()

    def version_keys(self) -> list[VersionKey]:
        """Every journey version loaded from the files or seen in the topics, by id then version."""
        keys = set(self.versions)
        if self.journeys is not None:
            keys |= {(j.id, j.version) for j in self.journeys}
        return sorted(keys)

    def caught_up(self) -> bool:
        """Every topic was read up to its end offsets as of the start."""
        return bool(self.reading) and all(p.caught_up for p in self.reading.values())

    def records_read(self) -> dict[str, int]:
        return {topic: p.records for topic, p in self.reading.items()}


__all__ = [
    "EDGE_WHATS",
    "MAX_HOURS",
    "MAX_REASONS",
    "MAX_RUNS",
    "CampaignStats",
    "ConsoleState",
    "LagRow",
    "LiveInstance",
    "ReadProgress",
    "VariantCounts",
    "VersionStats",
    "run_of_send",
]

"""Replay an event file offline: the real engine, the in-memory basket, a virtual clock.

``orchestrator simulate --journeys journeys/ events.jsonl`` calls :func:`simulate_files`.
Each event is processed at its ``occurred_at`` through
:func:`orchestrator.processor.process` (exactly the code the Faust worker runs) with
:class:`~orchestrator.pressure.memory.MemoryBasket`. Before each line, every armed
timer due at or before its time fires, in due order; after the last line the remaining
timers fire up to ``until`` (default: the last line + 90 days). Cancelled timers
never fire.

Campaign runs
=============

The runs of every live scheduled audience (``entry.audience.schedule``; the run semantics
are :func:`orchestrator.journey.schedule.open_runs` and ``Run.due_for``) happen on the
same clock, in time order with the timers (a timer first on a tie) and before an event
line of the same time. A run begins at the first instant it can reach a customer (a UTC
run at its instant, a local run 14 h before its wall-clock time, in UTC+14) with every
customer seen so far, as a worker's pass over its partitions does; each of them is
checked at their due time (``Run.due_for`` their time zone as it is then): when the
audience's conditions (``CompiledJourney.audience_when``) hold on their state, an
:class:`~orchestrator.events.AudienceCheck` goes through :func:`~orchestrator.processor.process`
like an event (the engine deduplicates the run, checks the audience and the re-entry
rule). Customers outside the audience leave no record. Each run is summed up as a
:class:`CampaignRun` (evaluated, in the audience, entered, kept out by re-entry, and how
long its largest burst would take at the throttle, which is not simulated). A deploy or
retire line plans the runs again: a run follows the journey's live version when it begins; the runs of a
deployed journey still open at the deploy (within their grace) begin then, as a worker carries them out.

The event file
==============

JSON lines, run in time order (lines with the same time in file order); blank lines
and lines starting with ``#`` are skipped. Three kinds of line:

* **An event**: the inbound message of a family (``schemas/events/<family>.json``)
  plus ``"family"``: ``{"family": "web", "type": "cart_abandoned", "event_id": "e1",
  "customer_id": "c1", "occurred_at": "2026-03-02T10:00:00Z", "cart_id": "k1",
  "cart_value": 80}``. An invalid event line is reported as ``file:line: reason`` and
  skipped (``--strict``: exit 1).

  A top-level field may be a placeholder ``{"send_of": STEP}`` or ``{"send_of": STEP,
  "journey": ID}`` (typically ``"send_id"`` of a ``ccm`` event): at the event's time it
  becomes the send id of the latest *approved* send of that send step for the event's
  customer (in any journey, or only in journey ID). When there is none, the line is
  reported as ``file:line: ...`` and skipped, like an invalid line.
* **A deploy**: ``{"deploy": "abandoned_cart.v2.yaml", "at": "2026-03-02T12:00:00Z"}``
  loads that journey file at ``at``. A relative path is relative to the directory of
  the event file. From then on the newest ``live`` version takes new entries; customers
  already in an older version finish on it. A deployed file that is also in the
  journeys directory is held back until its deploy line.
* **A retire**: ``{"retire": "abandoned_cart", "version": 1, "at": "..."}`` marks that
  version ``retired`` at ``at``: no new entries, in-flight customers finish on it.

Deploy and retire lines are checked before anything runs: a malformed line, a missing
or invalid file, a version that is already loaded, retiring a version that is not
loaded at that time raise :class:`EventFileError` (a
:class:`~orchestrator.errors.DefinitionError`) with every problem as
``file:line:col: message``.

The policy
==========

``--policy FILE`` must exist (else :class:`~orchestrator.pressure.policy.PolicyError`
naming it). Without it, ``pressure.yaml`` next to the journeys is used; when there is
none, the built-in default policy is used and :func:`choose_policy` returns a notice
saying so (the CLI prints it on stderr).

The result is structured (:class:`SimulationResult`): the records in the order they
happened, per customer, the journey version changes, the campaign runs, plus the final states; the CLI
prints it (``--json``: one line per record, described by ``schemas/simulate-record.json``)
and ``render`` counts customers per edge from its traces.

Timer records (armed, fired, cancelled) carry the journey instance that armed the timer. A
deferred send's ``retry_at`` is when the journey retries it (the send window's opening when
the basket's time falls outside the window); ``fits_at`` is the basket's time. The text
output states a campaign run that keeps a customer out for a reason already shown only once,
with how many runs followed (:func:`customer_lines`); the JSON keeps every record.
``orchestrator simulate --compare-policy`` runs the file twice and compares
(:mod:`orchestrator.designer.whatif`).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.actions import ArmTimer, CancelTimer, Disposition, Emit, Trace
from orchestrator.designer import effects
from orchestrator.engine.audience import AUDIENCE_EVENT_TYPE, run_event
from orchestrator.errors import DefinitionError
from orchestrator.events import AudienceCheck, Channel, CustomerEvent, InvalidEvent, TimerFired, parse_inbound
from orchestrator.journey import model as m
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.facts import Facts, facts_file_of, load_facts
from orchestrator.journey.loader import CompiledJourney, JourneySet, journey_files, load_journeys, parse_file, validate_paths
from orchestrator.journey.schedule import GRACE, Run, ScheduleSpec, open_runs
from orchestrator.journey.scores import EMPTY_SCORES, Scores, load_scores, scores_file_of
from orchestrator.pressure.basket import Basket, CommType
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import POLICY_FILE, PolicyError, PressurePolicy, load_policy
from orchestrator.processor import Result, process
from orchestrator.state import CustomerState
from orchestrator.timeutil import iso_utc
from orchestrator.yamlpos import load_yaml_with_positions, locate

DEFAULT_HORIZON = timedelta(days=90)

RecordKind = Literal["event", "timer", "audience", "trace", "send", "consent", "timer_armed", "timer_cancelled", "emit"]


class EventFileError(DefinitionError):
    """A deploy or retire line of a simulate event file, or a file it deploys, cannot be used; nothing ran.

    ``problems`` holds one ``file:line:col: message`` per problem.
    """

    what = "simulate event file"


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


# ------------------------------------------------------------------ the event file


@dataclass(frozen=True)
class SendOf:
    """A ``{"send_of": STEP, "journey": ID}`` placeholder in the top-level ``field`` of an event line."""

    field: str
    step: str
    journey: str | None = None


@dataclass(frozen=True)
class InputEvent:
    """One event line of an event file, validated."""

    line: int
    event: CustomerEvent
    send_of: tuple[SendOf, ...] = ()
    """Placeholders to resolve at the event's time (their fields hold a stand-in until then)."""
    source: str = "<events>"
    """The event file, for messages."""


@dataclass(frozen=True)
class Deploy:
    """A deploy line: load ``path`` into the journeys at ``at`` (``journey`` is set once the file is loaded)."""

    line: int
    at: datetime
    path: Path
    where: str = "<events>"
    """``file:line:col`` of the line, for messages."""
    journey: CompiledJourney | None = None


@dataclass(frozen=True)
class Retire:
    """A retire line: mark ``journey_id`` version ``version`` retired at ``at``."""

    line: int
    at: datetime
    journey_id: str
    version: int
    where: str = "<events>"


InputItem = InputEvent | Deploy | Retire


class _SkipLine(ValueError):
    """An event line that cannot be used: reported as ``file:line: reason`` and skipped."""


class _DeployLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deploy: str = Field(min_length=1)
    at: AwareDatetime


class _RetireLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retire: str = Field(min_length=1)
    version: int = Field(ge=1)
    at: AwareDatetime


_STAND_IN = "(send_of placeholder)"
"""What a placeholder field holds while the event is validated."""


def read_events(path: str | os.PathLike[str]) -> tuple[list[InputItem], list[str]]:
    """Parse an event file (see the module docstring): event, deploy and retire lines, in file order.

    Returns the usable lines and, for every skipped line, ``file:line: reason``. Raises
    :class:`EventFileError` when a deploy or retire line is malformed or deploys a missing
    file (those are never skipped: they change what every later line means).
    """
    name = os.fspath(path)
    base = Path(path).parent
    items: list[InputItem] = []
    errors: list[str] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                items.append(_parse_line(raw.rstrip("\r\n"), name, lineno, base))
            except _SkipLine as exc:
                errors.append(f"{name}:{lineno}: {exc}")
            except EventFileError as exc:
                problems.extend(exc.problems)
    if problems:
        raise EventFileError(problems)
    return items, errors


def _parse_line(raw: str, name: str, lineno: int, base: Path) -> InputItem:
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _SkipLine(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise _SkipLine('expected a JSON object with a "family" key')
    if "deploy" in doc or "retire" in doc:
        return _parse_change(doc, raw, name, lineno, base)
    family = doc.pop("family", None)
    if not isinstance(family, str):
        raise _SkipLine('missing "family" (one of ccm, web, callcenter, geo, consent, crm, ops)')
    send_of = _placeholders(doc)
    try:
        event = parse_inbound(family, doc)
    except InvalidEvent as exc:
        raise _SkipLine(exc.reason) from None
    return InputEvent(lineno, event, send_of, name)


def _placeholders(doc: dict[str, Any]) -> tuple[SendOf, ...]:
    """The ``send_of`` placeholders among the top-level fields; each is replaced by a stand-in in ``doc``."""
    found: list[SendOf] = []
    for key, value in doc.items():
        if not (isinstance(value, dict) and "send_of" in value):
            continue
        step, journey = value.get("send_of"), value.get("journey")
        if not isinstance(step, str) or not step or not isinstance(journey, str | None) or set(value) - {"send_of", "journey"}:
            raise _SkipLine(f'{key}: a placeholder is {{"send_of": STEP}} or {{"send_of": STEP, "journey": ID}}, got {json.dumps(value)}')
        found.append(SendOf(key, step, journey))
    for ph in found:
        doc[ph.field] = _STAND_IN
    return tuple(found)


def _col(raw: str, key: object) -> int:
    """1-based column of ``"key"`` in the raw line (1 when it is not there)."""
    return raw.find(json.dumps(str(key))) + 1 or 1


def _parse_change(doc: dict[str, Any], raw: str, name: str, lineno: int, base: Path) -> Deploy | Retire:
    kind = "deploy" if "deploy" in doc else "retire"
    where = f"{name}:{lineno}:{_col(raw, kind)}"
    try:
        if kind == "retire":
            retire = _RetireLine.model_validate(doc)
            return Retire(lineno, retire.at, retire.retire, retire.version, where)
        deploy = _DeployLine.model_validate(doc)
    except ValidationError as exc:
        raise EventFileError(_line_problems(exc, raw, f"{name}:{lineno}", kind)) from None
    given = Path(deploy.deploy)
    path = given if given.is_absolute() else base / given
    if not path.is_file():
        raise EventFileError(
            [f"{where}: deploy: no such journey file {deploy.deploy!r} (looked for {path}; a deploy path is relative to the event file)"]
        )
    return Deploy(lineno, deploy.at, path, where)


def _line_problems(exc: ValidationError, raw: str, where: str, kind: str) -> list[str]:
    """``file:line:col: message`` per problem of a deploy or retire line (a missing key: at the line's first key)."""
    problems = []
    for err in exc.errors(include_url=False):
        key = err["loc"][0] if err["loc"] else kind
        col = _col(raw, kind) if err["type"] == "missing" else _col(raw, key)
        problems.append(f"{where}:{col}: {kind} line: {key}: {err['msg']}")
    return problems


def _at(item: InputItem) -> datetime:
    return item.event.occurred_at if isinstance(item, InputEvent) else item.at


def prepare(journeys: JourneySet, items: Sequence[InputItem | CustomerEvent]) -> list[InputItem]:
    """The items in run order (time, then given order), every deployed file loaded, every deploy and retire checked.

    Raises :class:`EventFileError` with every problem (``file:line:col: message``): an
    invalid deployed file, a journey version that is already loaded, a retire of a
    version that is not loaded at that time.
    """
    ordered = sorted((i if not isinstance(i, CustomerEvent) else InputEvent(0, i) for i in items), key=_at)
    loaded: dict[tuple[str, int], str] = {(j.id, j.version): j.source or "the given journeys" for j in journeys}
    problems: list[str] = []
    out: list[InputItem] = []
    facts = journeys.facts if journeys.facts.source is not None else None
    for item in ordered:
        if isinstance(item, Deploy):
            out.append(_load_deploy(item, loaded, problems, facts, journeys.scores))
            continue
        if isinstance(item, Retire) and (item.journey_id, item.version) not in loaded:
            problems.append(f"{item.where}: retire: journey {item.journey_id!r} version {item.version} is not loaded at {iso_utc(item.at)}")
        out.append(item)
    if problems:
        raise EventFileError(problems)
    return out


def _load_deploy(
    item: Deploy, loaded: dict[tuple[str, int], str], problems: list[str], facts: Facts | None = None, scores: Scores = EMPTY_SCORES
) -> Deploy:
    compiled = item.journey
    if compiled is None:
        journey, errors = parse_file(item.path)
        if journey is not None:  # a deployed journey reads only what the facts file records, and only the scores defined
            errors = validate_paths([item.path], facts, scores)
        if journey is None or errors:
            problems.extend(f"{e} (deployed by {item.where})" for e in errors)
            return item
        compiled = CompiledJourney(journey, source=os.fspath(item.path))
    key = (compiled.id, compiled.version)
    if key in loaded:
        problems.append(
            f"{_version_position(item.path)}: journey {compiled.id!r} version {compiled.version} is already loaded from "
            f"{loaded[key]}: bump the version number (deployed by {item.where})"
        )
        return item
    loaded[key] = compiled.source or os.fspath(item.path)
    return replace(item, journey=compiled)


def _version_position(path: Path) -> str:
    """``file:line:col`` of the ``version`` key of a journey file."""
    try:
        _, positions = load_yaml_with_positions(path)
    except (OSError, yaml.YAMLError):
        return f"{os.fspath(path)}:1:1"
    line, col = locate(positions, ("version",))
    return f"{os.fspath(path)}:{line}:{col}"


def load_scenario(
    journey_paths: Sequence[str | os.PathLike[str]], events_path: str | os.PathLike[str], facts_dir: str | os.PathLike[str] | None = None
) -> tuple[JourneySet, list[InputItem], list[str]]:
    """The journeys at the start, the event file's lines ready to run, and the skipped lines.

    The profile facts: ``profile.yaml`` in ``facts_dir``, else in a directory of ``journey_paths``
    (recorded from the first line on); without one, the fields the journeys read. The lead scores:
    ``scores.yaml`` found the same way; without one, none.

    Journey files that the event file deploys are held back until their deploy line.
    Raises :class:`~orchestrator.errors.DefinitionError` for invalid journeys or an
    unusable deploy/retire line; ``OSError`` when a file cannot be read.
    """
    items, errors = read_events(events_path)
    held = {item.path.resolve() for item in items if isinstance(item, Deploy)}
    files = [f for f in journey_files([Path(p) for p in journey_paths]) if f.resolve() not in held]
    beside = [Path(p) for p in ([facts_dir] if facts_dir is not None else journey_paths)]
    facts_file = facts_file_of(beside)
    scores_file = scores_file_of(beside)  # journeys/scores.yaml, scored from the first line on
    scores = load_scores(scores_file) if scores_file is not None else EMPTY_SCORES
    journeys = load_journeys(files, load_facts(facts_file) if facts_file is not None else None, scores)
    return journeys, prepare(journeys, items), errors


# ------------------------------------------------------------------ the policy


@dataclass(frozen=True)
class PolicyChoice:
    """The policy a simulation runs with, where it came from, and what the designer should be told about it."""

    policy: PressurePolicy
    source: str | None
    """The policy file, or None for the built-in default policy."""
    notice: str | None = None


def describe_policy(policy: PressurePolicy) -> str:
    """The policy's capacity and period in words, e.g. ``capacity 25 points per calendar month``."""
    days = getattr(policy.period, "days", None)
    period = "calendar month" if days is None else f"rolling {days} days"
    text = f"capacity {policy.capacity:g} points per {period}"
    if policy.priority_reserve:
        text += "; priorities " + ", ".join(f"<= {r.max_priority} fill it up to {r.fill_up_to:g}" for r in policy.priority_reserve)
    return text


def choose_policy(journeys_dir: str | os.PathLike[str], policy_path: str | os.PathLike[str] | None = None) -> PolicyChoice:
    """The policy to simulate with: ``policy_path``, else ``pressure.yaml`` next to the journeys, else the default.

    A ``policy_path`` that does not exist raises :class:`~orchestrator.pressure.policy.PolicyError`
    naming it (never a silent default), as does an invalid policy file. When the journeys
    directory has no ``pressure.yaml``, the built-in default policy is used and the
    choice carries a notice saying so and what the default's capacity is.
    """
    if policy_path is not None:
        if not Path(policy_path).exists():
            raise PolicyError([f"{os.fspath(policy_path)}:1:1: no such policy file (the --policy file must exist)"])
        return PolicyChoice(load_policy(policy_path), os.fspath(policy_path))
    base = Path(journeys_dir)
    folder = base if base.is_dir() else base.parent
    candidate = folder / POLICY_FILE
    if candidate.exists():
        return PolicyChoice(load_policy(candidate), os.fspath(candidate))
    policy = PressurePolicy()
    notice = (
        f"notice: no {POLICY_FILE} in {folder}: using the built-in default policy ({describe_policy(policy)}); "
        f"add {candidate} or give --policy FILE to simulate with your own"
    )
    return PolicyChoice(policy, None, notice)


def default_basket(policy_path: str | os.PathLike[str] | None) -> Basket:
    """The in-memory basket with the policy file, or with the built-in default policy when ``policy_path`` is None.

    Raises :class:`~orchestrator.pressure.policy.PolicyError` when the file is missing or invalid.
    """
    if policy_path is None:
        return MemoryBasket(PressurePolicy())
    return MemoryBasket(choose_policy(Path(policy_path).parent, policy_path).policy)


# ------------------------------------------------------------------ the run


class _Clock:
    """Armed timers ordered by due time; cancelled ones are skipped."""

    def __init__(self) -> None:
        self.heap: list[tuple[datetime, int, str, str]] = []
        self.live: dict[tuple[str, str], datetime] = {}
        self.seq = 0

    def arm(self, op: ArmTimer) -> None:
        self.seq += 1
        self.live[(op.customer_id, op.timer_id)] = op.due_at
        heapq.heappush(self.heap, (op.due_at, self.seq, op.customer_id, op.timer_id))

    def cancel(self, op: CancelTimer) -> None:
        self.live.pop((op.customer_id, op.timer_id), None)

    def pop_due(self, until: datetime) -> TimerFired | None:
        while self.heap and self.heap[0][0] <= until:
            due, _, cid, tid = heapq.heappop(self.heap)
            if self.live.get((cid, tid)) == due:
                del self.live[(cid, tid)]
                return TimerFired(customer_id=cid, timer_id=tid, due_at=due)
        return None

    def next_at(self) -> datetime | None:
        """When the next armed timer is due (None: no timer armed)."""
        while self.heap:
            due, _, cid, tid = self.heap[0]
            if self.live.get((cid, tid)) == due:
                return due
            heapq.heappop(self.heap)
        return None


# ------------------------------------------------------------------ campaign runs on the virtual clock

_AHEAD = timedelta(hours=14)
"""How long before its wall-clock time a local run can reach a customer (UTC+14); ``open_runs`` reads its clock there."""
_BEHIND = timedelta(hours=12)
"""How long after it (UTC-12)."""
_PERIOD = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=31)}
"""From one occurrence, this far on is the next one and not yet the one after (months: days 1-28 are 28-31 days apart)."""


def reach(run: Run) -> tuple[datetime, datetime]:
    """The first and the last instant a run can reach a customer, whatever their time zone."""
    if not run.local:
        return run.moment, run.moment
    wall = run.moment.replace(tzinfo=UTC)
    return wall - _AHEAD, wall + _BEHIND


def runs_between(schedule: ScheduleSpec, start: datetime, end: datetime) -> list[Run]:
    """Every run of ``schedule`` that can reach a customer between ``start`` and ``end``, in the order they begin.

    Built on :func:`~orchestrator.journey.schedule.open_runs`, where the semantics live:
    from one run, the newest run a period later is the next one.
    """
    found: dict[str, Run] = {}
    if schedule.every is None:
        found = {r.run_id: r for r in open_runs(schedule, start)}
    else:
        probe = start - timedelta(days=2)
        shift = _AHEAD if schedule.local else timedelta(0)
        while True:
            newest = open_runs(schedule, probe)
            if newest[0].run_id in found:  # pragma: no cover - every period moves on by at least an occurrence
                break
            found.update((r.run_id, r) for r in newest)
            if reach(newest[0])[0] > end:
                break
            probe = newest[0].moment.replace(tzinfo=UTC) + _PERIOD[schedule.every] - shift
    runs = [r for r in found.values() if reach(r)[1] >= start and reach(r)[0] <= end]
    return sorted(runs, key=lambda r: reach(r)[0])


class _Campaigns:
    """The runs of the scheduled audiences, and the customers each run reaches, in due order.

    A run begins (:meth:`begin`) at the first instant it can reach a customer (a local run:
    14 h before its wall-clock time, in UTC+14), with the customers seen so far, as a
    worker's pass over its partitions does; each of them is checked at their due time
    (``Run.due_for`` their time zone, as it is then). Deploy and retire lines plan the runs
    again (:meth:`plan`): a run follows the journey's live version when it begins.
    """

    def __init__(self) -> None:
        self.planned: list[tuple[datetime, int, str, Run]] = []
        """Runs not begun yet: (first reach, seq, journey id, run)."""
        self.checks: list[tuple[datetime, int, CampaignRun, str]] = []
        """Customers to check: (due, seq, run, customer id)."""
        self.runs: dict[tuple[str, str], CampaignRun] = {}
        self.seq = 0

    def plan(self, journeys: JourneySet, start: datetime, end: datetime, deployed: str | None = None) -> None:
        """(Re)plan the runs of every live scheduled journey that begin between ``start`` and ``end``; for the journey
        ``deployed`` at ``start``, also its runs still open then (within their grace), which a worker carries out at once."""
        self.planned = []
        for journey in journeys.scheduled:
            schedule = journey.journey.entry.audience.schedule  # type: ignore[union-attr]
            late = journey.id == deployed
            for run in runs_between(schedule, start - GRACE if late else start, end):  # type: ignore[arg-type]
                if (journey.id, run.run_id) not in self.runs and (not late or reach(run)[1] + run.grace > start):
                    self.seq += 1
                    self.planned.append((max(reach(run)[0], start), self.seq, journey.id, run))
        heapq.heapify(self.planned)

    def next_at(self) -> datetime | None:
        times = [heap[0][0] for heap in (self.planned, self.checks) if heap]
        return min(times) if times else None

    def begin_due(self) -> bool:
        """Does a run begin before the next check is due?"""
        return bool(self.planned) and (not self.checks or self.planned[0][0] <= self.checks[0][0])

    def begin(self, journeys: JourneySet, states: dict[str, CustomerState], now: datetime) -> CampaignRun | None:
        """Begin the next planned run: queue every customer seen so far (None: its journey is no longer a live campaign)."""
        _, _, journey_id, run = heapq.heappop(self.planned)
        journey = journeys.live.get(journey_id)
        audience = journey.journey.entry.audience if journey is not None else None
        if journey is None or audience is None or audience.schedule is None:
            return None
        campaign = CampaignRun(journey_id, journey.version, run, audience.throttle.per_second)
        self.runs[(journey_id, run.run_id)] = campaign
        for cid, state in states.items():
            due = run.due_for(state.profile.timezone)
            if due >= now or run.open_for(state.profile.timezone, now):  # begun late (a deploy): the passed zones still open, now
                self.push(max(due, now), campaign, cid)
        return campaign

    def push(self, due: datetime, campaign: CampaignRun, cid: str) -> None:
        self.seq += 1
        heapq.heappush(self.checks, (due, self.seq, campaign, cid))

    def pop_check(self) -> tuple[datetime, CampaignRun, str]:
        due, _, campaign, cid = heapq.heappop(self.checks)
        return due, campaign, cid


class _Run:
    """One simulation under way: the journeys (changed by deploy and retire lines), states, clock and records."""

    def __init__(self, journeys: JourneySet, basket: Basket, until: datetime) -> None:
        self.journeys = journeys
        self.basket = basket
        self.until = until
        self.clock = _Clock()
        self.campaigns = _Campaigns()
        self.now: datetime | None = None
        self.states: dict[str, CustomerState] = {}
        self.result = SimulationResult()
        self.approved: dict[tuple[str, str | None, str], str] = {}
        """(customer, journey or None for any, step) -> the send id of the latest approved send."""
        self.timer_owners: dict[tuple[str, str], TimerOwner] = {}
        """(customer, timer id) -> the instance that armed the timer, while it is armed."""

    async def message(
        self, message: CustomerEvent | TimerFired | AudienceCheck, now: datetime, resolved: dict[str, str] | None = None
    ) -> Result:
        cid = message.customer_id
        state = self.states.get(cid) or CustomerState.new(cid)
        res = await process(state, message, self.journeys, now, self.basket)
        self.states[cid] = res.state
        scored = score_changes(state, res.state, message.occurred_at) if isinstance(message, CustomerEvent) else None
        _record(self.result, message, now, res, resolved, self._owners(message, res), scored)
        for d in res.sends:
            s = d.send
            self.approved[(cid, None, s.step_id)] = self.approved[(cid, s.journey_id, s.step_id)] = s.send_id
        for op in res.timer_ops:
            if isinstance(op, ArmTimer):
                self.clock.arm(op)
            else:
                self.clock.cancel(op)
        return res

    def _owners(self, message: CustomerEvent | TimerFired | AudienceCheck, res: Result) -> dict[str, TimerOwner]:
        """Timer id -> the instance it belongs to, for the timers this message fired, armed or cancelled."""
        cid = message.customer_id
        owners: dict[str, TimerOwner] = {}
        if isinstance(message, TimerFired) and (cid, message.timer_id) in self.timer_owners:
            owners[message.timer_id] = self.timer_owners.pop((cid, message.timer_id))
        for op in res.timer_ops:
            if isinstance(op, ArmTimer):
                owner = _armed_by(op, res)
                if owner is not None:
                    self.timer_owners[(cid, op.timer_id)] = owners[op.timer_id] = owner
            elif (cid, op.timer_id) in self.timer_owners:
                owners[op.timer_id] = self.timer_owners.pop((cid, op.timer_id))
        return owners

    def tick(self, at: datetime) -> datetime:
        """Move the virtual clock to ``at`` (never back) and return the time now."""
        self.now = at if self.now is None or at > self.now else self.now
        return self.now

    async def timers_until(self, until: datetime) -> None:
        """Fire the timers and carry out the campaign runs due at or before ``until``, in due order (timers first on a tie)."""
        while True:
            timer, campaign = self.clock.next_at(), self.campaigns.next_at()
            if timer is not None and timer <= until and (campaign is None or timer <= campaign):
                fired = self.clock.pop_due(until)
                if fired is not None:
                    await self.message(fired, self.tick(fired.due_at))
            elif campaign is not None and campaign <= until:
                await self._campaign_step(self.tick(campaign))
            else:
                return

    async def _campaign_step(self, now: datetime) -> None:
        if self.campaigns.begin_due():
            begun = self.campaigns.begin(self.journeys, self.states, now)
            if begun is not None:
                self.result.campaigns.append(begun)
            return
        due, campaign, cid = self.campaigns.pop_check()
        await self.audience_check(campaign, cid, due, now)

    async def audience_check(self, campaign: CampaignRun, cid: str, due: datetime, now: datetime) -> None:
        """The run reaches ``cid``: evaluate the audience on what we know now, and enter them through the engine if they are in it."""
        state = self.states[cid]
        timezone = state.profile.timezone
        due_now = campaign.run.due_for(timezone)
        if due_now > due:  # the customer moved west since they were queued
            self.campaigns.push(due_now, campaign, cid)
            return
        journey = self.journeys.live.get(campaign.journey_id)
        if journey is None or journey.journey.entry.audience is None or not campaign.run.open_for(timezone, now):
            return
        check = AudienceCheck(customer_id=cid, journey_id=campaign.journey_id, run_id=campaign.run_id, due_at=due_now)
        campaign.evaluated += 1
        campaign.first_due = min(campaign.first_due or due_now, due_now)
        entry = run_event(check)
        if not journey.audience_when(
            Ctx(entry.type, entry.event_id, entry.occurred_at, entry.data, state.profile, now, instances=state.instances)
        ):
            return
        campaign.in_audience += 1
        campaign.bursts[max(due_now, now)] += 1
        res = await self.message(check, now)
        campaign.entered += sum(t.what == "entered" for t in res.traces)
        campaign.not_entered += sum(t.what == "not_entered" for t in res.traces)

    async def event(self, item: InputEvent) -> None:
        """Process an event line, its ``send_of`` placeholders resolved now (or report and skip it)."""
        cid, at = item.event.customer_id, item.event.occurred_at
        resolved: dict[str, str] = {}
        for ph in item.send_of:
            send_id = self.approved.get((cid, ph.journey, ph.step))
            if send_id is None:
                self.result.errors.append(self._unresolved(item, ph))
                return
            resolved[ph.field] = send_id
        event = item.event.model_copy(update={"data": {**item.event.data, **resolved}}) if resolved else item.event
        await self.message(event, at, resolved or None)

    def _unresolved(self, item: InputEvent, ph: SendOf) -> str:
        scope = f" in journey {ph.journey!r}" if ph.journey else ""
        text = (
            f"{item.source}:{item.line}: {ph.field}: no approved send of step {ph.step!r}{scope} "
            f"for customer {item.event.customer_id!r} at or before {iso_utc(item.event.occurred_at)}"
        )
        if not any(isinstance(j.steps.get(ph.step), m.SendStep) for j in self.journeys if ph.journey in (None, j.id)):
            text += (
                f" (journey {ph.journey!r} has no send step {ph.step!r})" if ph.journey else f" (no journey has a send step {ph.step!r})"
            )
        return text

    def change(self, item: Deploy | Retire) -> None:
        """Apply a deploy or retire line to the journeys (and plan the campaign runs again)."""
        current: list[CompiledJourney] = list(self.journeys)
        facts = self.journeys.facts if self.journeys.facts.source is not None else None  # a facts file stays; implied ones follow
        if isinstance(item, Deploy):
            if item.journey is None:
                raise ValueError(f"{item.where}: deploy not loaded (call prepare first)")
            jid, version, file = item.journey.id, item.journey.version, os.fspath(item.path)
            self.journeys = JourneySet([*current, item.journey], facts, self.journeys.scores)
        else:
            jid, version, file = item.journey_id, item.version, None
            self.journeys = JourneySet(
                [_retired(j) if (j.id, j.version) == (jid, version) else j for j in current], facts, self.journeys.scores
            )
        self.campaigns.plan(self.journeys, item.at, self.until, jid if isinstance(item, Deploy) else None)
        live = self.journeys.newest(jid)
        kind: Literal["deploy", "retire"] = "deploy" if file is not None else "retire"
        self.result.versions.append(VersionChange(item.at, kind, jid, version, live.version if live else None, item.where, file))


@dataclass(frozen=True)
class TimerOwner:
    """The journey instance a timer belongs to (timer records carry it)."""

    journey_id: str
    version: int
    instance_id: str
    step_id: str | None = None
    """The step it was armed at (None when the instance ended in the same message)."""


def _armed_by(op: ArmTimer, res: Result) -> TimerOwner | None:
    """The instance that armed ``op``: the one holding the timer after the message, else the traced instance the timer id names."""
    for inst in res.state.instances:
        if any(t.timer_id == op.timer_id for t in inst.timers):
            return TimerOwner(inst.journey_id, inst.version, inst.instance_id, inst.step)
    for t in res.traces:  # armed and dropped in the same message (e.g. a deferral a calamity send cancelled)
        if t.instance_id and op.timer_id.startswith(f"{op.customer_id}:{t.instance_id}:"):
            return TimerOwner(t.journey_id, t.journey_version, t.instance_id)
    return None


def _retired(journey: CompiledJourney) -> CompiledJourney:
    return CompiledJourney(journey.journey.model_copy(update={"status": "retired"}), source=journey.source)


async def simulate_async(
    journeys: JourneySet,
    events: Sequence[InputItem | CustomerEvent],
    basket: Basket,
    until: datetime | None = None,
) -> SimulationResult:
    """Replay ``events`` (in time order, stable) through the processor with a virtual clock.

    Deploy and retire lines change the journeys at their time; scheduled audiences run on
    the same clock (see the module docs). Raises :class:`EventFileError` before anything
    runs when one of them cannot be used.
    """
    items = prepare(journeys, events)
    if until is None:
        until = (_at(items[-1]) if items else datetime.now(UTC)) + DEFAULT_HORIZON
    run = _Run(journeys, basket, until)
    if items:
        run.campaigns.plan(journeys, _at(items[0]), until)
    for item in items:
        await run.timers_until(_at(item))
        run.tick(_at(item))
        if isinstance(item, InputEvent):
            await run.event(item)
        else:
            run.change(item)
    await run.timers_until(until)
    run.result.states = run.states
    return run.result


def simulate(
    journeys: JourneySet,
    events: Sequence[InputItem | CustomerEvent],
    basket: Basket | None = None,
    until: datetime | None = None,
) -> SimulationResult:
    """Synchronous :func:`simulate_async` (default basket: in-memory with the built-in default policy)."""
    return asyncio.run(simulate_async(journeys, events, basket or MemoryBasket(PressurePolicy()), until))


def simulate_files(
    journeys_dir: str | os.PathLike[str],
    events_path: str | os.PathLike[str],
    policy_path: str | os.PathLike[str] | None = None,
    until: datetime | None = None,
) -> SimulationResult:
    """Load journeys and the event file and simulate; the policy is chosen by :func:`choose_policy`.

    Raises :class:`~orchestrator.errors.DefinitionError` for invalid journeys, a missing or
    invalid policy, or an unusable deploy/retire line; skipped lines are listed in
    ``result.errors``, a default-policy notice in ``result.notices``.
    """
    journeys, items, errors = load_scenario([journeys_dir], events_path)
    choice = choose_policy(journeys_dir, policy_path)
    result = asyncio.run(simulate_async(journeys, items, MemoryBasket(choice.policy), until))
    result.errors = errors + result.errors
    if choice.notice:
        result.notices.append(choice.notice)
    return result


# ------------------------------------------------------------------ records


def _timer_line(now: datetime, cid: str, kind: RecordKind, text: str, owner: TimerOwner | None, data: dict[str, Any]) -> SimRecord:
    """A timer record, with the journey instance the timer belongs to when it is known."""
    if owner is None:
        return SimRecord(now, cid, kind, text, data=data)
    return SimRecord(now, cid, kind, text, owner.journey_id, owner.version, owner.instance_id, owner.step_id, data=data)


def _message_record(
    message: CustomerEvent | TimerFired | AudienceCheck,
    now: datetime,
    resolved: dict[str, str] | None,
    owners: Mapping[str, TimerOwner] | None = None,
    scored: dict[str, tuple[float, float]] | None = None,
) -> SimRecord:
    cid = message.customer_id
    if isinstance(message, TimerFired):
        owner = (owners or {}).get(message.timer_id)
        return _timer_line(now, cid, "timer", f"timer fired {message.timer_id}", owner, {"timer_id": message.timer_id})
    if isinstance(message, AudienceCheck):
        return SimRecord(
            now,
            cid,
            "audience",
            f"campaign {message.journey_id} run {message.run_id}: in the audience",
            message.journey_id,
            data={"run_id": message.run_id, "due_at": iso_utc(message.due_at)},
        )
    text = f"event {message.type} ({message.event_id})"
    data: dict[str, Any] = {"event_id": message.event_id, "type": message.type}
    if resolved:
        text += "".join(f" {k}={v}" for k, v in resolved.items())
        data["resolved"] = dict(resolved)
    if scored:
        text += "".join(f"; score {name} {before:g} -> {after:g}" for name, (before, after) in scored.items())
        data["scores"] = {name: {"before": before, "after": after} for name, (before, after) in scored.items()}
    return SimRecord(now, cid, "event", text, data=data)


def score_changes(before: CustomerState, after: CustomerState, at: datetime) -> dict[str, tuple[float, float]]:
    """Per score the event changed: (its value just before the event, decayed to ``at``; its value after), rounded to 2 places."""
    old, new = before.profile.scores, after.profile.scores
    if old is new:
        return {}
    out: dict[str, tuple[float, float]] = {}
    for name, value in new.items():
        prior = old.get(name)
        if prior is None or prior.value != value.value or prior.at != value.at:
            out[name] = (round(prior.value_at(at), 2) if prior is not None else 0.0, round(value.value, 2))
    return out


def _record(
    result: SimulationResult,
    message: CustomerEvent | TimerFired | AudienceCheck,
    now: datetime,
    res: Result,
    resolved: dict[str, str] | None = None,
    owners: Mapping[str, TimerOwner] | None = None,
    scored: dict[str, tuple[float, float]] | None = None,
) -> None:
    cid = message.customer_id
    owners = owners or {}
    add = result.records.append
    add(_message_record(message, now, resolved, owners, scored))
    for c in res.consent_changes:
        verb = "resubscribed to" if c.subscribed else "unsubscribed from"
        add(
            SimRecord(
                now,
                cid,
                "consent",
                f"consent: {verb} {c.channel}" + (f" ({c.brand})" if c.brand else ""),
                data={"channel": c.channel, "brand": c.brand, "subscribed": c.subscribed},
            )
        )
    pending = list(res.dispositions)
    for t in res.traces:
        result.traces.append(t)
        disp = _disposition_of(t, pending)
        if disp is not None:
            add(_send_record(now, t, disp))
        else:
            add(
                _emit_record(now, t, res.emits)
                or SimRecord(
                    now,
                    cid,
                    "trace",
                    _trace_text(t),
                    t.journey_id or None,
                    t.journey_version or None,
                    t.instance_id or None,
                    t.step_id,
                    t.edge,
                    data={"what": t.what, **t.detail},
                )
            )
    result.dispositions.extend(res.dispositions)
    for d in pending:  # decided outside a send step, e.g. cancelled by a goal
        add(
            SimRecord(
                now,
                cid,
                "send",
                _send_text(d),
                d.send.journey_id,
                d.send.journey_version,
                d.send.instance_id,
                d.send.step_id,
                None,
                data={"what": "disposition", **_send_data(d)},
            )
        )
    for op in res.timer_ops:
        owner = owners.get(op.timer_id)
        if isinstance(op, ArmTimer):
            text = f"timer armed {op.purpose} {op.timer_id} due {iso_utc(op.due_at)}"
            data = {"timer_id": op.timer_id, "purpose": op.purpose, "due_at": iso_utc(op.due_at)}
            add(_timer_line(now, cid, "timer_armed", text, owner, data))
        else:
            add(_timer_line(now, cid, "timer_cancelled", f"timer cancelled {op.timer_id}", owner, {"timer_id": op.timer_id}))


def _emit_record(now: datetime, t: Trace, emits: list[Emit]) -> SimRecord | None:
    """The ``emit`` record an ``emitted`` trace stands for (None: the trace is no emit): the record as it is published."""
    if t.what != "emitted":
        return None
    e = next((e for e in emits if e.record_id == t.detail.get("record_id")), None)
    if e is None:
        return None
    head = f"{t.journey_id} v{t.journey_version}"
    return SimRecord(
        now,
        t.customer_id,
        "emit",
        effects.emit_text(head, t.step_id, e.topic, e.record, e.record_id, t.edge),
        t.journey_id,
        t.journey_version,
        t.instance_id,
        t.step_id,
        t.edge,
        data={"record_id": e.record_id, "topic": e.topic, "record": e.record, "truncated": e.truncated},
    )


def _disposition_of(t: Trace, pending: list[Disposition]) -> Disposition | None:
    """The disposition a ``send`` or ``delayed`` trace stands for, taken out of ``pending`` (None: the trace is no send).

    A send id can have two dispositions in one message (deferred, then cancelled by a calamity send that went out):
    a ``delayed`` trace stands for the deferral, a ``send`` trace for the disposition with its ``result``.
    """
    if t.what not in ("send", "delayed") or "send_id" not in t.detail:
        return None
    result = "deferred" if t.what == "delayed" else t.detail.get("result")
    for i, d in enumerate(pending):
        if d.send.send_id == t.detail["send_id"] and d.result == result:
            return pending.pop(i)
    return None


def _waiting_text(head: str, t: Trace, d: dict[str, Any]) -> str:
    """``waiting at STEP for EVENTS until T``; a quiet_for wait says how long the customer must be quiet."""
    awaiting = ", ".join(d.get("awaiting") or [])
    if d.get("quiet_for"):
        what = f"until quiet for {d['quiet_for']}" + (f" or {awaiting}" if awaiting else "")
        return f"{head} waiting at {t.step_id} {what}" + (f", at most until {d['until']}" if d.get("until") else "")
    return f"{head} waiting at {t.step_id} for {awaiting or '(nothing: timeout only)'} until {d.get('until')}"


def _note(d: Disposition) -> str:
    """Why, in words: the journey's note on the decision (a deferral's states its retry once), else the basket's reason."""
    return d.note or (d.decision.reason if d.decision is not None else "")


def _send_data(d: Disposition, retry_at: str | None = None) -> dict[str, Any]:
    """The send record's fields; ``retry_at``: when the journey retries a deferred send (default: the basket's retry time)."""
    s, dec = d.send, d.decision
    fits_at = iso_utc(dec.retry_at) if dec is not None and dec.retry_at else None
    return {
        "result": d.result,
        "send_id": s.send_id,
        "channel": s.channel,
        "template": s.template,
        "comm_type": s.comm_type,
        "priority": s.priority,
        "brand": s.brand,
        "variables": s.variables,
        "reason": _note(d),
        "code": getattr(dec, "code", None),
        # not asked (a send that expired while its send window held it): no cost, no basket
        "cost": dec.cost if dec is not None else 0.0,
        "balance": dec.balance if dec is not None else 0.0,
        "capacity": dec.capacity if dec is not None else 0.0,
        "period": dec.period if dec is not None else "",
        "retry_at": retry_at or fits_at,
        "fits_at": fits_at,
    }


def _send_text(d: Disposition) -> str:
    s, dec = d.send, d.decision
    basket = f"[basket {dec.balance:g}/{dec.capacity:g}]" if dec is not None else "[basket not asked]"
    return f"send {s.channel} {s.template} ({s.comm_type}, p{s.priority}) -> {d.result}: {_note(d)} {basket} {s.send_id}"


def _send_record(now: datetime, t: Trace, d: Disposition) -> SimRecord:
    retry_at = str(t.detail["until"]) if d.result == "deferred" and t.what == "delayed" and t.detail.get("until") else None
    return SimRecord(
        now,
        t.customer_id,
        "send",
        _send_text(d) + (f" -> {t.edge}" if t.edge and t.edge != t.step_id else ""),
        t.journey_id,
        t.journey_version,
        t.instance_id,
        t.step_id,
        t.edge,
        data={"what": t.what, **_send_data(d, retry_at)},
    )


_TRACE_TEXT: dict[str, Callable[[str, Trace, dict[str, Any]], str]] = {
    "entered": lambda head, t, d: f"{head} entered ({d.get('event_type')}) -> {t.edge}",
    "step": lambda head, t, d: f"{head} step {t.step_id} ({d.get('type')})",
    "branch": lambda head, t, d: f"{head} branch {t.step_id}: {d.get('case')} -> {t.edge or 'end'}",
    "split": lambda head, t, d: (
        f"{head} split {t.step_id}: variant {d.get('variant')}{' (sticky)' if d.get('sticky') else ''} -> {t.edge or 'end'}"
    ),
    "waiting": lambda head, t, d: _waiting_text(head, t, d),
    "matched": lambda head, t, d: f"{head} {t.step_id}: got {d.get('event_type')} -> {t.edge or 'end'}",
    "timeout": lambda head, t, d: f"{head} {t.step_id}: timed out -> {t.edge or 'end'}",
    "quiet": lambda head, t, d: f"{head} {t.step_id}: quiet since {d.get('quiet_since')} -> {t.edge or 'end'}",
    "delayed": lambda head, t, d: f"{head} {t.step_id}: {d.get('reason')} until {d.get('until')}",
    "resumed": lambda head, t, d: f"{head} {t.step_id}: resumed ({d.get('reason', 'delay over')}) -> {t.edge or 'end'}",
    "goal": lambda head, t, d: f"{head} GOAL {d.get('goal')} at {t.step_id}",
    "exited": lambda head, t, d: f"{head} ended at {t.step_id}: {d.get('outcome')}" + (f" ({d['reason']})" if "reason" in d else ""),
    "send": lambda head, t, d: f"{head} {t.step_id}: send {d.get('result')} -> {t.edge or 'end'}",
    "duplicate": lambda head, t, d: f"duplicate event {d.get('event_id')} ignored",
    "not_entered": lambda head, t, d: f"{head} not entered ({d.get('event_type')}): {d.get('reason')}",
    "profile_updated": lambda head, t, d: effects.profile_trace_text(head, t.step_id, d, t.edge),
    "emitted": lambda head, t, d: f"{head} {t.step_id}: emitted {d.get('record_id')} on out.{d.get('topic')} -> {t.edge or 'end'}",
}
"""One line of text per kind of journey-log trace."""


def _trace_text(t: Trace) -> str:
    head = f"{t.journey_id} v{t.journey_version}" if t.journey_id else "-"
    text = _TRACE_TEXT.get(t.what)
    return text(head, t, t.detail) if text is not None else f"{head} {t.what} {t.step_id or ''} {t.detail}"


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


# ------------------------------------------------------------------ the record schema (schemas/simulate-record.json)

if TYPE_CHECKING:
    SendResult = str
    TraceWhat = str
else:  # the models' own literals, so that the schema follows them (and the schema drift test says when to regenerate)
    SendResult = Disposition.model_fields["result"].annotation
    TraceWhat = Trace.model_fields["what"].annotation


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime = Field(description="Virtual time it happened, ISO 8601 UTC.")
    text: str = Field(description="The same line in the text output.")


class _CustomerLine(_Line):
    customer: str = Field(description="The customer id.")
    journey: str | None = Field(default=None, description="Journey id (traces, sends, campaign checks and timers).")
    version: int | None = Field(default=None, description="Journey version the customer's instance runs on.")
    instance_id: str | None = Field(default=None, description="The journey instance.")
    step_id: str | None = Field(default=None, description="The step it happened at.")
    edge: str | None = Field(default=None, description="The step taken next (render counts customers per edge).")


class EventRecord(_CustomerLine):
    """An event line of the event file was processed."""

    kind: Literal["event"]
    event_id: str
    type: str = Field(description="Qualified event type, e.g. web.cart_abandoned.")
    resolved: dict[str, str] | None = Field(
        default=None, description='Placeholders ({"send_of": STEP}) of this event and the values they resolved to: field -> value.'
    )
    scores: dict[str, dict[str, float]] | None = Field(
        default=None,
        description="Scores (journeys/scores.yaml) this event changed: name -> {before (decayed to the event's time), after}.",
    )


class TimerRecord(_CustomerLine):
    """A timer fired (journey, version, instance_id and step_id: the instance that armed it)."""

    kind: Literal["timer"]
    timer_id: str


class AudienceRecord(_CustomerLine):
    """A campaign run reached the customer and they were in its audience: the engine decides on their entry (traces follow)."""

    kind: Literal["audience"]
    run_id: str = Field(description="The run, e.g. 2026-12-01T10:00Z, or 2026-12-01T10:00L for a local run.")
    due_at: AwareDatetime = Field(description="When the run reached this customer (their local time for a local run).")


class ConsentRecord(_CustomerLine):
    """A consent event changed the basket's suppression lists."""

    kind: Literal["consent"]
    channel: str = Field(description="A channel or 'all'.")
    brand: str | None
    subscribed: bool


class TraceRecord(_CustomerLine):
    """Something happened in a journey instance; the trace's detail fields (outcome, reason, goal, variant ...) are added as they are."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["trace"]
    what: TraceWhat


class SendRecord(_CustomerLine):
    """A gated send and the basket's decision on it."""

    kind: Literal["send"]
    what: Literal["send", "delayed", "disposition"] = Field(
        description="send: decided at a send step; delayed: deferred; disposition: decided outside a step (e.g. cancelled by a goal)."
    )
    result: SendResult
    send_id: str
    channel: Channel
    template: str
    comm_type: CommType
    priority: int = Field(ge=1, le=10)
    brand: str | None
    variables: dict[str, Any]
    reason: str = Field(description="Why, in words.")
    code: str | None = Field(
        description=(
            "Why, as a stable code from the basket: fits, exempt, calamity, capacity, reserve, arbitration, locked, "
            "unsubscribed; null when the basket gives none."
        )
    )
    cost: float
    balance: float = Field(description="Points spent in the period after this decision.")
    capacity: float
    period: str
    retry_at: AwareDatetime | None = Field(
        description=(
            "deferred: when the journey retries the send (the send window's opening when the basket's time falls outside the "
            "window); capped/locked: the earliest time the send would fit."
        )
    )
    fits_at: AwareDatetime | None = Field(
        default=None, description="For capped/locked/deferred: the basket's earliest time the send would fit (null: never, or approved)."
    )


class EmitLine(_CustomerLine):
    """An emit step's record, as the worker publishes it on <prefix>.out.<topic> (not a message to the customer: never gated)."""

    kind: Literal["emit"]
    record_id: str = Field(description="Deterministic: customer, journey, version, entry event, step visit (the same on a replay).")
    topic: str = Field(description="The outbound topic's name: the record goes to <prefix>.out.<topic>.")
    record: dict[str, Any] = Field(description="The step's fields: literals and the values read from the event or profile.")
    truncated: list[str] = Field(description="Fields whose value was cut to 512 characters.")


class TimerArmedRecord(_CustomerLine):
    """A timer was armed (journey, version, instance_id and step_id: the instance that armed it)."""

    kind: Literal["timer_armed"]
    timer_id: str
    purpose: str = Field(description="timeout | delay | window | deferred_send ...")
    due_at: AwareDatetime


class TimerCancelledRecord(_CustomerLine):
    """A timer was cancelled: it will not fire (journey, version, instance_id and step_id: the instance that armed it)."""

    kind: Literal["timer_cancelled"]
    timer_id: str


class _VersionLine(_Line):
    journey: str
    version: int
    live_version: int | None = Field(description="The version new entrants take from now on; null when none is live.")
    where: str = Field(description="file:line:col of the line in the event file.")


class DeployRecord(_VersionLine):
    """A deploy line of the event file loaded a journey version (no customer: it comes before the customers' records)."""

    kind: Literal["deploy"]
    file: str = Field(description="The deployed journey file.")


class RetireRecord(_VersionLine):
    """A retire line of the event file retired a journey version (no customer: it comes before the customers' records)."""

    kind: Literal["retire"]


class CampaignRunRecord(_Line):
    """One run of a scheduled audience, summed up (no customer: it comes after the version changes, before the customers)."""

    kind: Literal["campaign_run"]
    journey: str
    version: int = Field(description="The live version when the run began.")
    run_id: str = Field(description="The run, e.g. 2026-12-01T10:00Z, or 2026-12-01T10:00L for a local run.")
    local: bool = Field(description="Each customer at that time in their time zone.")
    evaluated: int = Field(description="Customers seen by their due time, whose audience conditions were evaluated.")
    in_audience: int = Field(description="Of those, the customers the audience's conditions held for.")
    entered: int = Field(description="Of those, the customers the journey's re-entry rule let in.")
    not_entered: int = Field(description="In the audience, but kept out by the re-entry rule.")
    throttle_per_second: float = Field(description="The audience's throttle (not simulated: customers enter at their due time).")
    throttle_seconds: float = Field(
        description="How long the run's largest burst (customers in the audience due at the same time) takes at the throttle."
    )


SimulateRecord = Annotated[
    EventRecord
    | TimerRecord
    | AudienceRecord
    | ConsentRecord
    | TraceRecord
    | SendRecord
    | TimerArmedRecord
    | TimerCancelledRecord
    | EmitLine
    | DeployRecord
    | RetireRecord
    | CampaignRunRecord,
    Field(discriminator="kind"),
]
"""One line of ``simulate --json``."""

RECORD_ADAPTER: TypeAdapter[Any] = TypeAdapter(SimulateRecord)


def record_json_schema() -> dict[str, Any]:
    """The JSON Schema of one ``simulate --json`` line (committed as ``schemas/simulate-record.json``)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "simulate-record.json",
        "title": "simulate --json record",
        "description": (
            "One line of `orchestrator simulate --json`: the deploy/retire lines first, then the campaign runs, then per "
            "customer in order of appearance every event, campaign check, trace, send, consent change and timer, told apart by `kind`."
        ),
        **RECORD_ADAPTER.json_schema(),
    }

"""Load journey files into a :class:`JourneySet` the engine can run fast.

``load_journeys(["journeys/"])`` reads every ``*.yaml`` in a directory (except the
pressure policy :data:`~orchestrator.pressure.policy.POLICY_FILE`), validates each
against the model and the graph checks, and compiles conditions into predicates. Any
problem raises :class:`JourneyError` (a :class:`~orchestrator.errors.DefinitionError`)
whose ``problems`` are ``file:line:col: message`` strings; :func:`validate_paths`
returns the same strings without raising.

Versioning: several files may carry the same journey ``id`` with different
``version`` numbers. All versions are kept so that customers in flight finish on
the version they entered; new entrants take the newest version whose status is
``live`` (mark a version ``status: retired`` to stop new entries into it).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from orchestrator.errors import DefinitionError
from orchestrator.journey import model as m
from orchestrator.journey.conditions import (
    OPERATOR_SYNONYMS,
    All,
    AnyOf,
    Compare,
    Ctx,
    Not,
    Predicate,
    Seen,
    compile_all,
    compile_condition,
    condition_fields,
    field_getter,
    member_conditions,
    seen_conditions,
)
from orchestrator.journey.facts import FACTS_FILE, Facts, FactsError, facts_file_of, implied, load_facts
from orchestrator.journey.fields import check_fields
from orchestrator.journey.scores import EMPTY_SCORES, SCORES_FILE, Scores, crossings_of, score_problems, scores_beside
from orchestrator.pressure.policy import POLICY_FILE
from orchestrator.timeutil import iso_utc
from orchestrator.yamlpos import (
    DuplicateKey,
    Position,
    Positions,
    format_yaml_error,
    load_yaml_with_positions,
    loads_yaml_with_positions,
    locate,
)


class JourneyError(DefinitionError):
    """One or more journey files are invalid; ``problems`` (alias ``errors``) holds ``file:line:col: message`` lines."""

    what = "journey files"


@dataclass(frozen=True)
class CompiledMatcher:
    event_type: str
    send_step: str | None
    predicate: Predicate
    next: str | None
    index: int


@dataclass(frozen=True)
class CompiledRule:
    name: str
    event_type: str
    predicate: Predicate


@dataclass(frozen=True)
class ConditionPart:
    """One condition, compiled, with the text a designer wrote (``{field: data.cart_value, gte: 20}``)."""

    condition: Any
    predicate: Predicate
    text: str
    field: str | None
    """The field a ``{field: ..., op: ...}`` condition compares (None for the other kinds)."""
    value: Callable[[Ctx], Any] | None
    """Reads that field (to say what value the condition saw)."""

    @classmethod
    def of(cls, condition: Any, calendars: Mapping[str, m.Window] | None = None) -> ConditionPart:
        dumped = condition.model_dump(mode="json", by_alias=True, exclude_unset=True)
        text = json.dumps(dumped, separators=(", ", ": ")).replace('"', "")
        path = condition.field if isinstance(condition, Compare) else None
        return cls(condition, compile_condition(condition, calendars), text, path, field_getter(path) if path else None)


@dataclass
class CompiledJourney:
    """One journey version, ready to run: the model plus compiled predicates and indexes."""

    journey: m.Journey
    source: str = ""
    entry_when: Predicate = field(init=False)
    entry_profile: Predicate = field(init=False)
    entry_parts: dict[str, list[ConditionPart]] = field(init=False)
    """``entry.when`` and ``entry.profile`` one condition at a time, to say which one kept a customer out."""
    audience_when: Predicate = field(init=False)
    """The audience's conditions (always true without an audience: check ``journey.entry.audience`` first)."""
    goals: dict[str, list[CompiledRule]] = field(init=False)
    exits: dict[str, list[CompiledRule]] = field(init=False)
    matchers: dict[str, list[CompiledMatcher]] = field(init=False)
    cases: dict[str, list[tuple[Predicate, str, str]]] = field(init=False)
    windows: dict[str, m.Window] = field(init=False)
    """Per send step and window step: its window (a calendar named resolved)."""
    activity: dict[str, frozenset[str]] = field(init=False)
    """Per quiet_for wait: the event types that count as activity."""
    variables_from: dict[str, list[tuple[str, Callable[[Ctx], Any]]]] = field(init=False)
    listens: frozenset[str] = field(init=False)
    tracked: dict[str, set[str]] = field(init=False)
    reads_membership: bool = field(init=False)
    """Some condition is an in_journey/not_in_journey (it needs the customer's instances)."""
    id: str = field(init=False)
    version: int = field(init=False)
    steps: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        j = self.journey
        self.id, self.version, self.steps = j.id, j.version, j.steps
        cal = j.calendars
        self.entry_when = compile_all(j.entry.when, cal)
        self.entry_profile = compile_all(j.entry.profile, cal)
        self.entry_parts = {
            "entry.when": [ConditionPart.of(c, cal) for c in j.entry.when],
            "entry.profile": [ConditionPart.of(c, cal) for c in j.entry.profile],
        }
        self.audience_when = compile_all(j.entry.audience.when if j.entry.audience is not None else [], cal)
        self.goals = _rules(j.goals, "goal", cal)
        self.exits = _rules(j.exits, "exit", cal)
        self.matchers = {}
        self.cases = {}
        self.windows = {}
        self.variables_from = {}
        self.activity = {}
        for sid, step in j.steps.items():
            self._compile_step(sid, step)
        listens = set(self.goals) | set(self.exits)
        for ms in self.matchers.values():
            listens.update(mt.event_type for mt in ms)
        for types in self.activity.values():
            listens.update(types)
        self.listens = frozenset(listens)
        self.reads_membership = any(member_conditions(c) for c in _all_conditions(j))
        self.tracked = {}
        for cond in _all_conditions(j):
            for seen in seen_conditions(cond):
                for c in seen.where:
                    for f in condition_fields(c):
                        self.tracked.setdefault(seen.event_type, set()).add(f.split(".", 1)[1])

    def _compile_step(self, sid: str, step: Any) -> None:
        """A step's compiled parts: a wait's matchers and activity, a branch's cases, a send's window and variables."""
        j, cal = self.journey, self.journey.calendars
        if isinstance(step, m.WaitStep):
            self.matchers[sid] = [
                CompiledMatcher(
                    mt.event_type, mt.send_step, compile_all(mt.when, cal), mt.next if mt.next is not None else step.on_event, i
                )
                for i, mt in enumerate(step.matchers)
            ]
            if step.quiet_for is not None:
                self.activity[sid] = frozenset(step.activity)
        elif isinstance(step, m.BranchStep):
            self.cases[sid] = [(compile_all(c.when, cal), c.next, c.name or f"case {i + 1}") for i, c in enumerate(step.cases)]
        elif isinstance(step, (m.SendStep, m.WindowStep)):
            window = _window(step.window or j.send_window if isinstance(step, m.SendStep) else step.window, cal)
            if window is not None:
                self.windows[sid] = window
            if isinstance(step, m.SendStep) and step.variables_from:
                self.variables_from[sid] = [(k, field_getter(v)) for k, v in step.variables_from.items()]

    def __repr__(self) -> str:
        return f"CompiledJourney({self.journey.id!r}, v{self.journey.version}, {self.source!r})"


def _exclusive(live: Iterable[CompiledJourney]) -> dict[str, frozenset[str]]:
    """``entry.exclusive_with`` made symmetric: either journey saying it keeps a customer of one out of the other."""
    pairs: dict[str, set[str]] = {}
    for journey in live:
        for other in journey.journey.entry.exclusive_with:
            if other != journey.id:
                pairs.setdefault(journey.id, set()).add(other)
                pairs.setdefault(other, set()).add(journey.id)
    return {k: frozenset(v) for k, v in pairs.items()}


def _rules(rules: list[m.EventRule], kind: str, calendars: Mapping[str, m.Window]) -> dict[str, list[CompiledRule]]:
    out: dict[str, list[CompiledRule]] = {}
    for r in rules:
        out.setdefault(r.event, []).append(CompiledRule(r.name or f"{kind}:{r.event}", r.event, compile_all(r.when, calendars)))
    return out


def _window(window: m.Window | str | None, calendars: Mapping[str, m.Window]) -> m.Window | None:
    """A window, or the journey's calendar of that name (None for no window; check_graph refuses an unknown name)."""
    return calendars.get(window) if isinstance(window, str) else window


def _all_conditions(j: m.Journey) -> Iterable[Any]:
    yield from j.entry.when
    yield from j.entry.profile
    if j.entry.audience is not None:
        yield from j.entry.audience.when
    for r in (*j.goals, *j.exits):
        yield from r.when
    for step in j.steps.values():
        if isinstance(step, m.WaitStep):
            for mt in step.matchers:
                yield from mt.when
        elif isinstance(step, m.BranchStep):
            for c in step.cases:
                yield from c.when


class JourneySet:
    """All loaded journeys, all versions, indexed for the engine."""

    def __init__(
        self, journeys: Iterable[CompiledJourney | m.Journey] = (), facts: Facts | None = None, scores: Scores | None = None
    ) -> None:
        """``facts``: what profiles record (``journeys/profile.yaml``); None: exactly the fields these journeys read.

        ``scores``: the scores every profile keeps (``journeys/scores.yaml``); None: none.
        """
        self.versions: dict[str, dict[int, CompiledJourney]] = {}
        for item in journeys:
            journey = item if isinstance(item, CompiledJourney) else CompiledJourney(item)
            self.versions.setdefault(journey.id, {})[journey.version] = journey
        self.live: dict[str, CompiledJourney] = {}
        for jid, by_version in sorted(self.versions.items()):
            live = [v for v in sorted(by_version) if by_version[v].journey.status == "live"]
            if live:
                self.live[jid] = by_version[live[-1]]
        self.by_trigger: dict[str, list[CompiledJourney]] = {}
        for journey in self.live.values():
            for etype in dict.fromkeys(journey.journey.entry.events):
                self.by_trigger.setdefault(etype, []).append(journey)
        audiences = [j for j in self.live.values() if j.journey.entry.audience is not None]
        self.scheduled: list[CompiledJourney] = [j for j in audiences if j.journey.entry.audience.schedule is not None]  # type: ignore[union-attr]
        """Live journeys whose audience runs on a schedule (campaigns)."""
        self.qualifying: list[CompiledJourney] = [j for j in audiences if j.journey.entry.audience.qualify == "on_change"]  # type: ignore[union-attr]
        """Live journeys a customer enters as soon as an event makes them qualify (segments)."""
        read = (
            (etype, f) for by_version in self.versions.values() for j in by_version.values() for etype, fs in j.tracked.items() for f in fs
        )
        self.facts: Facts = facts if facts is not None else implied(read)
        """What every profile records (the engine folds each event with ``facts.tracked``), whatever journeys are loaded."""
        self.tracked = self.facts.tracked
        self.exclusive: dict[str, frozenset[str]] = _exclusive(self.live.values())
        self.scores: Scores = scores if scores is not None else EMPTY_SCORES
        """What every profile scores (``journey/scores.py``), whatever journeys are loaded."""
        self.score_rules = self.scores.by_event
        """Event type -> the scores it changes: the engine's one lookup per event (``engine/scores.py``)."""
        self.crossings = crossings_of(self.live.values())
        """Score name -> the live journeys entered when it crosses a threshold (``entry.score``)."""
        """Journey id -> the journeys a customer in which may not enter it (``entry.exclusive_with``, both ways)."""
        # every event type some loaded version (live or retired) listens to (goals, exits, awaited events):
        # the engine skips the per-instance check for any other type
        self.listened: frozenset[str] = frozenset(
            t for by_version in self.versions.values() for journey in by_version.values() for t in journey.listens
        )

    def get(self, journey_id: str, version: int) -> CompiledJourney | None:
        """The given version of a journey (live or retired), or None when it is not loaded."""
        by_version = self.versions.get(journey_id)
        return by_version.get(version) if by_version else None

    def newest(self, journey_id: str) -> CompiledJourney | None:
        """The version new entrants take (newest live), or None."""
        return self.live.get(journey_id)

    def triggered_by(self, event_type: str) -> list[CompiledJourney]:
        """Live journeys whose entry trigger is this event type (sorted by journey id)."""
        return self.by_trigger.get(event_type, [])

    def __iter__(self):  # type: ignore[no-untyped-def]
        for jid in sorted(self.versions):
            for v in sorted(self.versions[jid]):
                yield self.versions[jid][v]

    def __len__(self) -> int:
        return sum(len(v) for v in self.versions.values())

    def ids(self) -> list[str]:
        return sorted(self.versions)


# ------------------------------------------------------------------ loading


NOT_JOURNEYS = frozenset({POLICY_FILE, FACTS_FILE, SCORES_FILE})
"""The files of a journeys directory that are not journeys: the pressure policy and the profile facts."""


def journey_files(paths: Sequence[Path | str]) -> list[Path]:
    """Expand directories to their ``*.yaml``/``*.yml`` files (except ``pressure.yaml`` and ``profile.yaml``), keep files as given."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml") and f.name not in NOT_JOURNEYS and f.is_file()))
        else:
            out.append(path)
    return out


def parse_file(path: Path | str) -> tuple[m.Journey | None, list[str]]:
    """Read and check one journey file; return the model (or None) and its errors."""
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        return None, [f"{name}:1:1: can not read file: {exc.strerror or exc}"]
    return parse_text(text, name)


Located = tuple[Position, str]
"""A problem's position (for the order) and its ``file:line:col: message`` text."""


def parse_text(text: str, name: str = "<journey>") -> tuple[m.Journey | None, list[str]]:
    """Check one journey given as YAML text; ``name`` prefixes the ``name:line:col:`` errors.

    One run reports every problem it can, in file order: repeated keys, what the model
    rejects together with bad step references, the event field checks
    (:func:`~orchestrator.journey.fields.check_fields`, on a repaired copy when the model
    rejects the file: :func:`_repaired`) and, once the model accepts the file, the graph
    checks (:func:`~orchestrator.journey.model.check_graph`).
    """
    duplicates: list[DuplicateKey] = []
    try:
        data, positions = loads_yaml_with_positions(text, duplicates)
    except yaml.YAMLError as exc:
        return None, [format_yaml_error(name, exc)]
    found: list[Located] = [(d.position, f"{name}:{d.position[0]}:{d.position[1]}: {d.message}") for d in duplicates]
    journey: m.Journey | None = None
    if isinstance(data, dict):
        journey, problems = _check(name, data, positions)
        found += problems
    else:
        found.append(((1, 1), f"{name}:1:1: a journey file must be a mapping with id, version, name, entry, start and steps"))
    found.sort(key=lambda f: f[0])
    return (journey if not found else None), [text for _, text in found]


def _check(name: str, data: dict[str, Any], positions: Positions) -> tuple[m.Journey | None, list[Located]]:
    """The model (None when it rejects the mapping) and every problem of one journey mapping."""
    try:
        journey = m.Journey.model_validate(data)
    except ValidationError as exc:
        references = [_at(name, positions, loc, message) for loc, message in m.raw_reference_problems(data)]
        audience = [_at(name, positions, loc, f"{_dotted(loc)}: {message}") for loc, message in _audience_condition_problems(data)]
        found = _format_validation(name, data, positions, exc) + references + audience
        said = {text for _, text in found}
        fields = (_at(name, positions, loc, message) for loc, message in _field_problems_despite(data, exc))
        return None, found + [f for f in fields if f[1] not in said]
    problems = m.check_graph(journey) + check_fields(journey)
    return journey, [_at(name, positions, loc, message) for loc, message in problems]


_REPAIR_ROUNDS = 3
"""How often :func:`_repaired` validates its copy of a rejected mapping (new errors can show once others are gone)."""


def _repaired(data: dict[str, Any], exc: ValidationError) -> tuple[m.Journey, list[m.Loc]] | None:
    """The model of a copy of a rejected journey mapping in which each rejected part is neutralised, and those parts.

    A condition of a ``when``/``profile`` list becomes ``{all: []}`` (always true: as if removed from
    its list, and the others keep their index), a step ``{type: end}`` (its id stays, so references
    still resolve), a goal or exit a rule without conditions. None when some rejected part is none
    of those (the entry, ``start``, a step id ...) or the copy is still rejected after
    :data:`_REPAIR_ROUNDS` rounds.
    """
    copy = deepcopy(data)
    parts: list[m.Loc] = []
    for _ in range(_REPAIR_ROUNDS):
        errors = [e for e in exc.errors(include_url=False) if not _is_audience_path_error(e)]
        locs = [_clean_loc(copy, tuple(e["loc"]), keep_last=e["type"] == "missing") for e in errors]
        locs += [loc for loc, _ in _audience_condition_problems(copy)]
        found: dict[m.Loc, Any] = {}
        for loc in locs:
            where = next((loc[: k + 2] for k in range(len(loc) - 1) if loc[k] in ("when", "profile") and isinstance(loc[k + 1], int)), None)
            if where is not None:
                found[where] = {"all": []}
            elif len(loc) >= 2 and (loc[0] == "steps" or (loc[0] in ("goals", "exits") and isinstance(loc[1], int))):
                found[loc[:2]] = {"type": "end"} if loc[0] == "steps" else {"event": min(m.known_event_types())}
            else:
                return None
        for part in sorted(found, key=len):  # outer parts first: a step's conditions go with the step
            if not any(part[: len(p)] == p for p in parts):
                parts.append(part)
                container: Any = copy
                for key in part[:-1]:
                    container = container[key]
                container[part[-1]] = found[part]
        try:
            return m.Journey.model_validate(copy), parts
        except ValidationError as again:
            exc = again
    return None


def _field_problems_despite(data: dict[str, Any], exc: ValidationError) -> list[tuple[m.Loc, str]]:
    """:func:`check_fields`' problems of a journey mapping the model rejects (``exc``), read from its :func:`_repaired` copy.

    None inside a repaired part, nor in a step a repaired step leads to (in the file: any step it
    names, and on): what can reach such a step changed with the repair, and with it what ``data.``
    holds there. ``[]`` when the mapping can not be repaired.
    """
    repaired = _repaired(data, exc)
    if repaired is None:
        return []
    journey, parts = repaired
    steps = data["steps"] if isinstance(data.get("steps"), dict) else {}
    todo: list[Any] = [steps[p[1]] for p in parts if p[0] == "steps" and len(p) == 2]
    while todo:  # every string in a repaired step (and in the steps it names, and on) that names a step
        node = todo.pop()
        if isinstance(node, (dict, list)):
            todo += node.values() if isinstance(node, dict) else node
        elif isinstance(node, str) and node in steps and ("steps", node) not in parts:
            parts.append(("steps", node))
            todo.append(steps[node])
    return [(loc, message) for loc, message in check_fields(journey) if not any(loc[: len(p)] == p for p in parts)]


def _audience_condition_problems(data: dict[str, Any]) -> list[tuple[m.Loc, str]]:
    """Audience conditions that read an event payload, each at its field (the model names only the first, at the audience).

    Read from the raw mapping, so that they are reported next to the audience's other
    problems (a bad schedule keeps the model from looking at the conditions at all).
    """
    entry = data.get("entry")
    audience = entry.get("audience") if isinstance(entry, dict) else None
    conditions = audience.get("when") if isinstance(audience, dict) else None
    problems: list[tuple[m.Loc, str]] = []
    for i, cond in enumerate(conditions if isinstance(conditions, list) else ()):
        try:
            m.Audience.model_validate({"when": [cond], "qualify": "on_change"})
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                path = (err.get("ctx") or {}).get("path")
                if _is_audience_path_error(err) and isinstance(path, str):
                    problems.append((("entry", "audience", "when", i, *_where_in(cond, path)), err["msg"]))
    return problems


def _is_audience_path_error(err: ErrorDetails) -> bool:
    """The model's "audience conditions read the profile, not data.X" error (reported per condition instead)."""
    return err["type"] == "audience" and "path" in (err.get("ctx") or {})


def _where_in(cond: Any, path: str) -> m.Loc:
    """The location of the first ``field:``/``since:`` reading ``path`` inside a raw condition (``()``: the condition)."""
    if not isinstance(cond, dict):
        return ()
    for key in ("field", "since"):
        if cond.get(key) == path:
            return (key,)
    inner = [(key, j, c) for key in ("all", "any") if isinstance(cond.get(key), list) for j, c in enumerate(cond[key])]
    for key, j, c in inner:
        found = _where_in(c, path)
        if found:
            return (key, j, *found)
    found = _where_in(cond.get("not"), path)
    return ("not", *found) if found else ()


def _dotted(loc: m.Loc) -> str:
    return ".".join(str(p) for p in loc)


def _at(name: str, positions: Positions, loc: m.Loc, message: str) -> Located:
    line, col = locate(positions, loc)
    return (line, col), f"{name}:{line}:{col}: {message}"


def load_text(*texts: str, facts: Facts | None = None, scores: Scores | None = None) -> JourneySet:
    """A JourneySet from YAML texts (tests, notebooks). Raises :class:`JourneyError` on any problem.

    ``facts``: the profile facts to check the journeys against and record; None: the fields the journeys read.
    ``scores``: the scores to check ``profile.scores.X`` against and keep; None: none kept, nothing checked.
    """
    compiled, errors = [], []
    for i, text in enumerate(texts):
        name = f"<journey {i + 1}>"
        journey, errs = parse_text(text, name)
        errors.extend(errs)
        if journey is not None:
            if facts is not None:
                _, positions = loads_yaml_with_positions(text)
                errors.extend(_at(name, positions, loc, msg)[1] for loc, msg in facts_problems(journey, facts))
            if scores is not None:
                _, positions = loads_yaml_with_positions(text)
                errors.extend(_at(name, positions, loc, msg)[1] for loc, msg in score_problems(journey, scores))
            compiled.append(CompiledJourney(journey, source=name))
    errors.extend(membership_problems(compiled))
    if errors:
        raise JourneyError(errors)
    return JourneySet(compiled, facts, scores)


def validate_paths(paths: Sequence[Path | str], facts: Facts | None = None, scores: Scores | None = None) -> list[str]:
    """Every problem in the journey files under ``paths`` (and the facts and scores files beside them) as ``file:line:col: message``.

    ``scores``: given, else ``scores.yaml`` beside the journeys, else none (``profile.scores.X`` is then refused).
    """
    problems: list[str] = []
    scores = scores if scores is not None else scores_beside(paths, problems)
    _, _, errors = _load(paths, facts, scores)
    return problems + errors


def load_journeys(paths: Sequence[Path | str], facts: Facts | None = None, scores: Scores | None = None) -> JourneySet:
    """Load, check and compile journey files (directories: all ``*.yaml`` except ``pressure.yaml`` and ``profile.yaml``).

    The profile facts: ``facts`` when given, else ``profile.yaml`` in a directory of ``paths``
    (:func:`~orchestrator.journey.facts.facts_file_of`), else the fields the journeys read
    (no file: tests and single files). With a facts file, a journey that reads a payload field
    the file does not declare is refused. Raises :class:`JourneyError` listing every problem
    when any file is invalid (the facts file's problems included). The scores: ``scores`` when given,
    else ``scores.yaml`` beside the journeys (:func:`~orchestrator.journey.scores.scores_beside`), else none.
    """
    problems: list[str] = []
    scores = scores if scores is not None else scores_beside(paths, problems)
    compiled, loaded, errors = _load(paths, facts, scores)
    if problems or errors:
        raise JourneyError(problems + errors)
    return JourneySet(compiled, loaded, scores)


def facts_problems(journey: m.Journey, facts: Facts) -> list[tuple[m.Loc, str]]:
    """Each ``seen``/``not_seen ... where`` of ``journey`` on a payload field the facts do not record, at its field."""
    out: list[tuple[m.Loc, str]] = []
    for loc, seen in _seen_conditions_at(journey):
        recorded = facts.fields_of(seen.event_type)
        for i, cond in enumerate(seen.where):
            for path in condition_fields(cond):
                inner = path.split(".", 1)[1] if path.startswith("data.") else path
                if inner not in recorded:
                    message = (
                        f"{seen.event_type} {path} is not recorded by the profile facts, so the profile cannot "
                        f"know its history: {facts.where_to_add(seen.event_type, inner)}"
                    )
                    out.append(((*loc, "where", i), message))
    return out


def history_notes(journeys: JourneySet, started: Mapping[tuple[str, str], datetime], now: datetime) -> list[str]:
    """Where a live journey looks back further than its field's recorded history, one ``file:line:col: note`` each.

    ``started``: since when each (event type, ``data.X``) has been recorded (the facts registry,
    ``runtime/facts_registry.py``; for a simulation, the start of its event file).
    """
    notes: list[str] = []
    for journey in journeys.live.values():
        positions: Positions | None = None
        for loc, seen in _seen_conditions_at(journey.journey):
            look_back = now - seen.within if seen.within is not None else None
            for path in sorted({f for c in seen.where for f in condition_fields(c)}):
                since = started.get((seen.event_type, path))
                if since is None or (look_back is not None and since <= look_back):
                    continue
                if positions is None:
                    positions = _positions_of(journey.source)
                line, col = locate(positions, loc)
                wanted = "ever" if look_back is None else f"since {iso_utc(look_back)}"
                notes.append(
                    f"{journey.source}:{line}:{col}: journey {journey.id} v{journey.version} looks back {wanted}, but the "
                    f"history of {seen.event_type} {path} starts at {iso_utc(since)}: customers who had {seen.event_type} "
                    f"before are not known (not_seen leaves them out, seen finds only what came after)"
                )
    return notes


def _positions_of(source: str) -> Positions:
    try:
        return load_yaml_with_positions(source)[1]
    except (OSError, yaml.YAMLError):
        return {}


def _seen_conditions_at(journey: m.Journey) -> Iterable[tuple[m.Loc, Any]]:
    """Every seen/not_seen condition of a journey with its location."""
    for loc, cond in m.conditions_at(journey):
        yield from _seen_in(cond, loc)


def _seen_in(cond: Any, loc: m.Loc) -> Iterable[tuple[m.Loc, Any]]:
    if isinstance(cond, Seen):
        yield loc, cond
    elif isinstance(cond, All):
        for i, c in enumerate(cond.all):
            yield from _seen_in(c, (*loc, "all", i))
    elif isinstance(cond, AnyOf):
        for i, c in enumerate(cond.any):
            yield from _seen_in(c, (*loc, "any", i))
    elif isinstance(cond, Not):
        yield from _seen_in(cond.not_, (*loc, "not"))


def _load_facts(paths: Sequence[Path | str], errors: list[str]) -> Facts | None:
    path = facts_file_of(paths)
    if path is None:
        return None
    try:
        return load_facts(path)
    except FactsError as exc:
        errors.extend(exc.problems)
        return None


def _load(
    paths: Sequence[Path | str], facts: Facts | None = None, scores: Scores | None = None
) -> tuple[list[CompiledJourney], Facts | None, list[str]]:
    compiled: list[CompiledJourney] = []
    errors: list[str] = []
    facts = facts if facts is not None else _load_facts(paths, errors)
    seen: dict[tuple[str, int], str] = {}
    for path in journey_files(paths):
        journey, errs = parse_file(path)
        errors.extend(errs)
        if journey is None:
            continue
        key = (journey.id, journey.version)
        if key in seen:
            _, positions = load_yaml_with_positions(path)
            line, col = locate(positions, ("version",))
            errors.append(
                f"{os.fspath(path)}:{line}:{col}: journey {journey.id!r} version {journey.version} is already defined in "
                f"{seen[key]}: bump the version number"
            )
            continue
        seen[key] = os.fspath(path)
        if facts is not None:
            missing = facts_problems(journey, facts)
            if missing:
                _, positions = load_yaml_with_positions(path)
                errors.extend(_at(os.fspath(path), positions, loc, msg)[1] for loc, msg in missing)
        unknown = score_problems(journey, scores) if scores is not None else []
        if unknown:
            _, positions = load_yaml_with_positions(path)
            errors.extend(_at(os.fspath(path), positions, loc, msg)[1] for loc, msg in unknown)
        compiled.append(CompiledJourney(journey, source=os.fspath(path)))
    errors.extend(membership_problems(compiled))
    return compiled, facts, errors


def membership_problems(compiled: Sequence[CompiledJourney]) -> list[str]:
    """``in_journey``/``not_in_journey`` and ``entry.exclusive_with`` naming a journey (or a step of it) not loaded."""
    steps: dict[str, set[str]] = {}
    for journey in compiled:
        steps.setdefault(journey.id, set()).update(journey.steps)
    out: list[str] = []
    for journey in compiled:
        refs: list[tuple[m.Loc, str, list[str] | None]] = [
            (("entry", "exclusive_with", i), other, None) for i, other in enumerate(journey.journey.entry.exclusive_with)
        ]
        for loc, cond in m.conditions_at(journey.journey):
            refs += [((*loc, *inner), member.journey_id, member.at) for inner, member in member_conditions(cond)]
        problems = [(loc, msg) for loc, other, at in refs if (msg := _member_problem(other, at, steps)) is not None]
        if problems:
            positions = _positions_of(journey.source)
            out.extend(_at(journey.source, positions, loc, msg)[1] for loc, msg in problems)
    return out


def _member_problem(other: str, at: list[str] | None, steps: Mapping[str, set[str]]) -> str | None:
    if other not in steps:
        close = difflib.get_close_matches(other, list(steps), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (loaded: {', '.join(sorted(steps)) or 'none'})"
        return f"no journey {other!r} is loaded{hint}"
    unknown = [s for s in at or () if s not in steps[other]]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(steps[other]), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (its steps: {', '.join(sorted(steps[other]))})"
        return f"journey {other!r} has no step {unknown[0]!r}{hint}"
    return None


# ------------------------------------------------------------------ error formatting

_CUSTOM_ERRORS = {
    "bad_field",
    "no_operator",
    "no_bound",
    "seen_type",
    "seen_where",
    "seen_count",
    "bad_condition",
    "unknown_event_type",
    "unknown_channel",
    "unknown_comm_type",
    "unknown_timezone",
    "bad_time",
    "empty_window",
    "fallback_channels",
    "on_expired",
    "bad_matcher",
    "split_weights",
    "split_names",
    "bad_step_type",
    "bad_duration",
    "bad_value",
    "bad_name",
    "update_profile",
    "wait_needs",
    "member_type",
    "in_calendar",
}


def _keys_at(loc: Sequence[Any]) -> list[str]:
    """The keys valid in the mapping that holds the last element of a pydantic error ``loc`` (union tags included)."""
    node: Any = m.Journey
    for element in loc[:-1]:
        node = _step_into(node, element)
        if node is None:
            return []
    model = _as_model(node)
    return [info.alias or name for name, info in model.model_fields.items()] if model is not None else []


def _strip(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple[Any, ...]:
    """The members of a union type (``()`` for any other type)."""
    return get_args(tp) if get_origin(tp) in (Union, UnionType) else ()


def _as_model(tp: Any) -> type[BaseModel] | None:
    tp = _strip(tp)
    members = [a for a in _members(tp) if a is not type(None)]
    if len(members) == 1:
        tp = _strip(members[0])
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _step_into(tp: Any, element: Any) -> Any:
    """The type that one element of a pydantic error ``loc`` leads to from ``tp`` (None when it leads nowhere known)."""
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return next((info.annotation for name, info in tp.model_fields.items() if element in (name, info.alias)), None)
    origin = get_origin(tp)
    if origin is list:
        return get_args(tp)[0] if isinstance(element, int) else None
    if origin is dict:
        return get_args(tp)[1]
    tagged = _tagged_member(tp, element)
    if tagged is not None:
        return tagged
    model = _as_model(tp)
    return _step_into(model, element) if model is not None else None


def _tagged_member(tp: Any, element: Any) -> Any:
    """When ``tp`` is a tagged union (steps, conditions) and ``element`` one of its tags: that member's type."""
    for member in _members(_strip(tp)):
        if get_origin(member) is Annotated and any(isinstance(x, Tag) and x.tag == element for x in get_args(member)[1:]):
            return get_args(member)[0]
    return None


def _suggest_key(key: str, loc: Sequence[Any]) -> str:
    """`` (did you mean 'channel'?)`` among the keys valid at ``loc``, or the list of those keys."""
    valid = _keys_at(loc)
    if not valid:
        return ""
    synonym = OPERATOR_SYNONYMS.get(key.lower().replace("_", "").replace("-", "").replace(" ", ""))
    close = [synonym] if synonym in valid else difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (keys here: {', '.join(valid)})"


def _clean_loc(data: Any, loc: tuple[Any, ...], keep_last: bool) -> tuple[Any, ...]:
    """Follow ``loc`` through the data, dropping the union tags pydantic inserts.

    The model's types are followed alongside, so that a tag spelled like a key of the
    data (``{since: ..., older_then: 1d}`` is tagged ``since``) is dropped as a tag.
    """
    node = data
    tp: Any = m.Journey
    out: list[Any] = []
    for i, el in enumerate(loc):
        member = _tagged_member(tp, el)
        if member is not None:
            tp = member
            continue
        tp = _step_into(tp, el) if tp is not None else None
        if (isinstance(node, dict) and el in node) or (isinstance(node, list) and isinstance(el, int) and 0 <= el < len(node)):
            out.append(el)
            node = node[el]
        elif keep_last and i == len(loc) - 1:
            out.append(el)
    return tuple(out)


def _format_validation(name: str, data: Any, positions: Positions, exc: ValidationError) -> list[Located]:
    out: list[Located] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        if _is_audience_path_error(err):
            continue  # located at the condition by _audience_condition_problems
        loc = _clean_loc(data, tuple(err["loc"]), keep_last=err["type"] == "missing")
        if err["type"] == "missing":
            parent = ".".join(str(p) for p in loc[:-1]) or "the journey"
            line, col = locate(positions, loc[:-1])
            text = f"{name}:{line}:{col}: missing required key {loc[-1]!r} in {parent}"
        else:
            line, col = locate(positions, loc)
            text = f"{name}:{line}:{col}: {'.'.join(str(p) for p in loc) or '(top level)'}: {_message(err, loc)}"
        if text not in seen:
            seen.add(text)
            out.append(((line, col), text))
    return out


def _message(err: ErrorDetails, loc: tuple[Any, ...]) -> str:
    """The designer's message for one pydantic error (other than a missing key) at the cleaned ``loc``."""
    etype = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if etype == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        return f"unknown key {key!r}" + _suggest_key(key, tuple(err["loc"]))
    if etype == "string_pattern_mismatch":
        what = "journey id" if loc == ("id",) else "name"
        case = "lowercase letters, digits and _" if loc == ("id",) else "letters, digits and _"
        return f"{err.get('input')!r} is not a valid {what}: use {case}, starting with a letter"
    if etype not in _CUSTOM_ERRORS and isinstance(err.get("input"), (str, int, float, bool)):
        return f"{msg} (got {err.get('input')!r})"
    return msg

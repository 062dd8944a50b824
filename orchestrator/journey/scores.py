"""Lead scores: named scores every profile keeps, from rules committed in ``journeys/scores.yaml``.

Designers declare the scores once, in ``journeys/scores.yaml`` (:data:`SCORES_FILE`, JSON Schema
``schemas/scores.json``), beside the journeys::

    scores:
      lead:
        half_life: 30d          # optional: the value halves every 30 days without new points
        floor: 0                # optional bounds, applied after every scoring event
        cap: 100
        rules:                  # every rule whose event and conditions match adds its points
          - {event: web.page_view, points: 1}
          - {event: web.page_view, when: [{field: data.url, contains: /pricing}], points: 5}
          - {event: web.form_submitted, points: 15}
          - {event: consent.unsubscribed, points: -30}
      churn_risk:               # a value computed elsewhere (a model), published as crm.score_updated
        rules:
          - {event: crm.score_updated, when: [{field: data.score, eq: churn_risk}], set_from: data.value}

Semantics (the fold is in :mod:`orchestrator.engine.scores`)
-------------------------------------------------------------
* For **every** event, whatever journeys are loaded, each score with a rule for the event's
  type adds the ``points`` of every matching rule (negative points subtract); a ``set_from``
  rule sets the score to that payload number instead (points of later matching rules are
  added to it). Then ``floor``/``cap`` clamp the result.
* The profile keeps each score as ``(value, time)`` (:class:`~orchestrator.state.ScoreValue`),
  so decay needs no timer: ``profile.scores.lead`` in a condition reads the value halved once
  per ``half_life`` since then, at the time of the evaluation. A score decays toward 0, so a
  decaying score needs ``floor <= 0 <= cap``.
* The time of a scoring event is its ``occurred_at``: an event that arrives late adds its
  points decayed by its age; a late ``set_from`` older than the stored value is ignored.
* A customer who never scored has no value: ``profile.scores.lead`` is *missing* for them
  (a comparison is false; ``exists: false`` is true), like any absent field.
* A journey can enter when a score crosses a threshold upward
  (``entry: {score: {name: lead, crosses: 50, hysteresis: 10}}``, :class:`ScoreCrossing`): see
  :mod:`orchestrator.engine.scores`.

Limits: at most :data:`MAX_SCORES` scores and :data:`MAX_RULES` rules per score. In the stored
state a score costs about 90 bytes per customer who has it.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.durations import Duration
from orchestrator.errors import DefinitionError
from orchestrator.events import event_types
from orchestrator.journey.conditions import (
    All,
    AnyOf,
    Compare,
    Condition,
    Ctx,
    FieldPath,
    Not,
    Predicate,
    Seen,
    Since,
    check_field_path,
    compile_all,
    field_getter,
)
from orchestrator.yamlpos import locate, parse_definition, read_definition

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.journey.loader import CompiledJourney
    from orchestrator.journey.model import Entry, Journey

SCORES_FILE = "scores.yaml"
"""The scores file's name in the journeys directory (optional: without it no score is kept)."""
MAX_SCORES = 32
MAX_RULES = 64
MAX_LATCHED = 16
"""Crossings one score of one customer remembers as passed (the engine keeps only those of loaded journeys)."""
SCORE_UPDATED = "crm.score_updated"
"""The inbound event an outside model publishes a score with (``score`` name, ``value``, optional ``model``)."""

ScoreName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", description="A score name: lowercase letters, digits and _.")]
Loc = tuple[str | int, ...]


class ScoresError(DefinitionError):
    """The scores file is invalid; ``problems`` holds one ``file:line:col: message`` per problem."""

    what = "lead scores"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_EVENT_ENUM: dict[str, Any] = {"enum": sorted(event_types())}


class ScoreRule(_Model):
    """One rule: an event type, optional conditions on it, and the points it adds (or the payload number it sets)."""

    event: str = Field(description="Qualified inbound event type, e.g. web.page_view.", json_schema_extra=_EVENT_ENUM)
    when: list[Condition] = Field(
        default_factory=list, description="Conditions on the event (data.X, event.X) and the profile (profile.X); all must hold."
    )
    points: float | None = Field(default=None, allow_inf_nan=False, description="Points added when the rule matches; negative subtract.")
    set_from: FieldPath | None = Field(
        default=None, description="Instead of points: set the score to this numeric payload field, e.g. data.value."
    )

    @field_validator("set_from")
    @classmethod
    def _set_from(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("data.") or check_field_path(value) != value):
            raise PydanticCustomError("bad_field", f"set_from reads the event's payload: write data.X (e.g. data.value), not {value!r}")
        return value

    @model_validator(mode="after")
    def _one_effect(self) -> ScoreRule:
        if (self.points is None) == (self.set_from is None):
            raise PydanticCustomError("score_rule", "a rule needs exactly one of points: N or set_from: data.X")
        return self


class ScoreDefinition(_Model):
    """One named score: its rules, optional decay and bounds."""

    description: str | None = None
    half_life: Duration | None = Field(default=None, description="The value halves every this long without new points (e.g. 30d).")
    floor: float | None = Field(default=None, allow_inf_nan=False, description="The score never goes below this.")
    cap: float | None = Field(default=None, allow_inf_nan=False, description="The score never goes above this.")
    rules: list[ScoreRule] = Field(min_length=1, max_length=MAX_RULES)

    @model_validator(mode="after")
    def _bounds(self) -> ScoreDefinition:
        if self.floor is not None and self.cap is not None and self.floor > self.cap:
            raise PydanticCustomError("score_bounds", f"floor {self.floor:g} is above cap {self.cap:g}")
        if self.half_life is not None and ((self.floor or 0) > 0 or (self.cap if self.cap is not None else 0) < 0):
            raise PydanticCustomError(
                "score_bounds", "a score with half_life decays toward 0: its floor must be 0 or less and its cap 0 or more"
            )
        return self


class ScoresFile(_Model):
    """``journeys/scores.yaml``: named scores every profile keeps (``profile.scores.NAME``), whatever journeys are loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Lead scores (journeys/scores.yaml)")

    scores: dict[ScoreName, ScoreDefinition] = Field(default_factory=dict, description="Per score name (lead, churn_risk): its rules.")

    @field_validator("scores")
    @classmethod
    def _count(cls, value: dict[str, ScoreDefinition]) -> dict[str, ScoreDefinition]:
        if len(value) > MAX_SCORES:
            raise ValueError(f"at most {MAX_SCORES} scores, got {len(value)}")
        return value


class ScoreCrossing(_Model):
    """``entry.score``: enter when a score crosses a threshold upward (once per crossing)."""

    name: ScoreName = Field(description="A score of journeys/scores.yaml.")
    crosses: float = Field(allow_inf_nan=False, description="Enter when a scoring event takes the score from below this to this or more.")
    hysteresis: float = Field(
        default=0,
        ge=0,
        allow_inf_nan=False,
        description="After a crossing, enter again only once the score was seen below crosses - hysteresis (default 0).",
    )

    @property
    def rearm_below(self) -> float:
        return self.crosses - self.hysteresis


# ------------------------------------------------------------------ compiled form (what the engine reads)


@dataclass(frozen=True, slots=True)
class CompiledScoreRule:
    """One rule, compiled: its predicate and either ``points`` or the getter of ``set_from``."""

    predicate: Predicate
    points: float
    set_from: Callable[[Ctx], Any] | None


@dataclass(frozen=True, slots=True)
class CompiledScore:
    """One score as the fold reads it."""

    name: str
    half_life_s: float | None
    floor: float | None
    cap: float | None


EventScoring = tuple[tuple[CompiledScore, tuple[CompiledScoreRule, ...]], ...]
"""For one event type: each score that has rules for it, with those rules (in file order)."""


@dataclass(frozen=True)
class Scores:
    """Loaded scores: what the engine folds, and where the file said so (for messages)."""

    defs: dict[str, CompiledScore] = field(default_factory=dict)
    by_event: dict[str, EventScoring] = field(default_factory=dict)
    """Event type -> the scores it changes (only types with rules: the engine's one lookup per event)."""
    source: str | None = None
    """The scores file (None: none, no score is kept)."""
    checked: bool = True
    """False for an invalid file (its problems are reported): journeys are then not checked against it."""

    def names(self) -> list[str]:
        return sorted(self.defs)

    def unknown(self, name: str) -> str:
        """Why ``name`` is not a score, with a did-you-mean or where to define it."""
        close = difflib.get_close_matches(name, list(self.defs), n=1)
        if close:
            return f"unknown score {name!r} (did you mean {close[0]!r}?)"
        if self.source is None:
            return f"unknown score {name!r}: there is no {SCORES_FILE} beside the journeys; define it there under scores:"
        known = ", ".join(self.names()) or "none"
        return f"unknown score {name!r}: {self.source} defines {known}; add it under scores: there"


EMPTY_SCORES = Scores()
"""No scores file: nothing is scored, ``profile.scores.X`` is refused."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """The live journeys entered when ``score`` crosses ``threshold`` upward, re-armed below ``rearm_below``."""

    threshold: float
    rearm_below: float
    journeys: tuple[CompiledJourney, ...]

    @property
    def key(self) -> tuple[float, float]:
        """How a customer's state remembers this crossing as passed (``ScoreValue.latched``)."""
        return (self.threshold, self.rearm_below)


def crossings_of(journeys: Iterable[CompiledJourney]) -> dict[str, tuple[Crossing, ...]]:
    """Score name -> its crossings (journeys with the same threshold and hysteresis share one), for live journeys."""
    acc: dict[str, dict[tuple[float, float], list[CompiledJourney]]] = {}
    for journey in journeys:
        crossing = journey.journey.entry.score
        if crossing is not None:
            acc.setdefault(crossing.name, {}).setdefault((crossing.crosses, crossing.rearm_below), []).append(journey)
    return {name: tuple(Crossing(k[0], k[1], tuple(js)) for k, js in sorted(by.items())) for name, by in sorted(acc.items())}


def crossing_text(entry: Entry) -> str | None:
    """``score lead crosses 50 (re-armed below 40)`` for ``render``; None without ``entry.score``."""
    crossing = entry.score
    if crossing is None:
        return None
    text = f"score {crossing.name} crosses {crossing.crosses:g}"
    return text + (f" (re-armed below {crossing.rearm_below:g})" if crossing.hysteresis else "")


# ------------------------------------------------------------------ loading


def load_scores(path: str | os.PathLike[str]) -> Scores:
    """Read and check a scores file; raises :class:`ScoresError` listing every problem as ``file:line:col: message``."""
    return loads_scores(read_definition(path, ScoresError, "scores"), os.fspath(path))


def loads_scores(text: str, name: str = SCORES_FILE) -> Scores:
    """:func:`load_scores` from text; ``name`` prefixes the errors."""
    data, positions, problems = parse_definition(text, name, ScoresError, "the scores file must be a mapping with scores:")
    model: ScoresFile | None = None
    try:
        model = ScoresFile.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _clean(data, tuple(err["loc"]))
            line, col = locate(positions, loc)
            problems.append(((line, col), f"{name}:{line}:{col}: {'.'.join(str(p) for p in loc) or '(top level)'}: {_message(err)}"))
    else:
        for loc, msg in _meaning_problems(model):
            line, col = locate(positions, loc)
            problems.append(((line, col), f"{name}:{line}:{col}: {'.'.join(str(p) for p in loc)}: {msg}"))
    if problems:
        raise ScoresError([text for _, text in sorted(problems)])
    assert model is not None
    return compile_scores(model, name)


def _clean(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without the union tags pydantic inserts (those that are not keys or indexes of the data)."""
    node, out = data, []
    for el in loc:
        if (isinstance(node, dict) and el in node) or (isinstance(node, list) and isinstance(el, int) and 0 <= el < len(node)):
            out.append(el)
            node = node[el]
    return tuple(out)


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key (see schemas/scores.json: scores: NAME: {description, half_life, floor, cap, rules: [{event, when, points}]})"
    if err["type"] == "string_pattern_mismatch":
        return f"{err.get('input')!r} is not a valid score name: use lowercase letters, digits and _, starting with a letter"
    if err["type"] == "too_short" and err["loc"][-1] == "rules":
        return "a score needs at least one rule, e.g. - {event: web.page_view, points: 1}"
    if err["type"] == "missing":
        return f"missing required key {err['loc'][-1]!r}"
    return msg


def compile_scores(model: ScoresFile, source: str | None = None) -> Scores:
    """The engine's form of a checked scores file."""
    defs: dict[str, CompiledScore] = {}
    by_event: dict[str, list[tuple[CompiledScore, tuple[CompiledScoreRule, ...]]]] = {}
    for name, score in sorted(model.scores.items()):
        half = score.half_life.total_seconds() if score.half_life is not None else None
        compiled = defs[name] = CompiledScore(name, half, score.floor, score.cap)
        per_type: dict[str, list[CompiledScoreRule]] = {}
        for rule in score.rules:
            getter = field_getter(rule.set_from) if rule.set_from is not None else None
            per_type.setdefault(rule.event, []).append(CompiledScoreRule(compile_all(rule.when), rule.points or 0.0, getter))
        for etype, rules in per_type.items():
            by_event.setdefault(etype, []).append((compiled, tuple(rules)))
    return Scores(defs, {t: tuple(v) for t, v in sorted(by_event.items())}, source)


def _meaning_problems(model: ScoresFile) -> Iterator[tuple[Loc, str]]:
    """Unknown event types, fields the event does not carry, ``set_from`` of a non-number, unknown scores read."""
    from orchestrator.journey.fields import event_condition_problems, number_field_problem

    known = set(event_types())
    names = list(model.scores)
    for name, score in model.scores.items():
        for i, rule in enumerate(score.rules):
            base: Loc = ("scores", name, "rules", i)
            if rule.event not in known:
                close = difflib.get_close_matches(rule.event, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ": write family.type, e.g. web.page_view"
                yield (*base, "event"), f"unknown event type {rule.event!r}{hint}"
                continue
            for loc, path in _fields_at(rule.when, (*base, "when")):
                if path.startswith("entry."):
                    yield (
                        loc,
                        f"{path}: a score rule reads its event (data.X, event.X) and the profile (profile.X); there is no entry event",
                    )
                elif path.startswith("profile.scores.") and path.split(".")[2] not in names:
                    yield loc, _unknown_name(path.split(".")[2], names)
            yield from event_condition_problems(rule.event, rule.when, (*base, "when"))
            if rule.set_from is not None:
                problem = number_field_problem(rule.event, rule.set_from)
                if problem is not None:
                    yield (*base, "set_from"), problem
            if rule.event == SCORE_UPDATED and not any(p == "data.score" for _, p in _fields_at(rule.when, ())):
                why = f"{SCORE_UPDATED} carries every model's scores: say which one this rule takes"
                yield (*base, "event"), f"{why}, e.g. when: [{{field: data.score, eq: {name}}}]"


def _unknown_name(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"unknown score {name!r}" + (f" (did you mean {close[0]!r}?)" if close else f": scores here are {', '.join(names)}")


def _fields_at(conds: Sequence[Any], loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every field path the conditions read, at the key that names it (``field``/``since``), seen/not_seen where excluded."""
    for i, cond in enumerate(conds):
        yield from _fields_in(cond, (*loc, i))


def _fields_in(cond: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(cond, Compare):
        yield (*loc, "field"), cond.field
    elif isinstance(cond, Since):
        yield (*loc, "since"), cond.since
    elif isinstance(cond, All):
        yield from _fields_at(cond.all, (*loc, "all"))
    elif isinstance(cond, AnyOf):
        yield from _fields_at(cond.any, (*loc, "any"))
    elif isinstance(cond, Not):
        yield from _fields_in(cond.not_, (*loc, "not"))
    elif isinstance(cond, Seen):
        return


def scores_file_of(paths: Sequence[Path | str]) -> Path | None:
    """The scores file beside the journeys: ``scores.yaml`` in the first directory of ``paths`` that has one."""
    for p in paths:
        path = Path(p)
        if path.is_dir() and (path / SCORES_FILE).is_file():
            return path / SCORES_FILE
    return None


def scores_beside(paths: Sequence[Path | str], problems: list[str]) -> Scores:
    """The scores of ``scores.yaml`` beside the journeys (:func:`scores_file_of`); :data:`EMPTY_SCORES` without one.

    When the file is invalid its problems are added to ``problems`` and the result scores nothing
    and checks no journey against it (``checked`` is False).
    """
    path = scores_file_of(paths)
    if path is None:
        return EMPTY_SCORES
    try:
        return load_scores(path)
    except ScoresError as exc:
        problems.extend(exc.problems)
        return Scores(source=os.fspath(path), checked=False)


def scores_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``journeys/scores.yaml`` (committed as ``schemas/scores.json``)."""
    schema = ScoresFile.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "scores.json", **schema}


# ------------------------------------------------------------------ journeys that read scores


def score_problems(journey: Journey, scores: Scores) -> list[tuple[Loc, str]]:
    """Each ``profile.scores.X`` (and ``entry.score.name``) of ``journey`` naming a score ``scores`` does not define, at its key."""
    out: list[tuple[Loc, str]] = []
    if not scores.checked:
        return out
    crossing = journey.entry.score
    if crossing is not None and crossing.name not in scores.defs:
        out.append((("entry", "score", "name"), scores.unknown(crossing.name)))
    for loc, path in _journey_fields(journey):
        parts = path.split(".")
        if parts[:2] == ["profile", "scores"] and len(parts) == 3 and parts[2] not in scores.defs:
            out.append((loc, f"{path}: {scores.unknown(parts[2])}"))
    return out


def _journey_fields(journey: Journey) -> Iterator[tuple[Loc, str]]:
    """Every field path a journey reads (its conditions, wherever they are, and its sends' variables_from), at its key."""
    from orchestrator.journey import model as m

    for sid, step in journey.steps.items():
        if isinstance(step, m.SendStep):
            yield from ((("steps", sid, "variables_from", k), v) for k, v in step.variables_from.items())
    for loc, cond in m.conditions_at(journey):
        yield from _fields_in(cond, loc)


def describe(scores: Scores) -> str:
    """``1 scores file (2 scores)`` for ``validate``'s summary; ``""`` without a file."""
    if scores.source is None:
        return ""
    n = len(scores.defs)
    return f"1 scores file ({n} score{'s' if n != 1 else ''})"


def scores_json_schema_text() -> str:
    return json.dumps(scores_json_schema(), indent=2, sort_keys=True) + "\n"


__all__ = [
    "EMPTY_SCORES",
    "SCORES_FILE",
    "CompiledScore",
    "CompiledScoreRule",
    "Crossing",
    "ScoreCrossing",
    "ScoreDefinition",
    "ScoreRule",
    "Scores",
    "ScoresError",
    "ScoresFile",
    "crossing_text",
    "crossings_of",
    "load_scores",
    "loads_scores",
    "score_problems",
    "scores_beside",
    "scores_file_of",
    "scores_json_schema",
]

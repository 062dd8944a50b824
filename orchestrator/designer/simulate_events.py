"""The event file of ``orchestrator simulate``: reading its lines, and checking its deploy and retire lines against the journeys.

The file's format is described in :mod:`orchestrator.designer.simulate`; :func:`load_scenario` loads a whole scenario.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import DefinitionError
from orchestrator.events import CustomerEvent, InvalidEvent, parse_inbound
from orchestrator.journey.facts import Facts, facts_file_of, load_facts
from orchestrator.journey.loader import CompiledJourney, JourneySet, journey_files, load_journeys, parse_file, validate_paths
from orchestrator.journey.scores import EMPTY_SCORES, Scores, load_scores, scores_file_of
from orchestrator.timeutil import iso_utc
from orchestrator.yamlpos import load_yaml_with_positions, locate


class EventFileError(DefinitionError):
    """A deploy or retire line of a simulate event file, or a file it deploys, cannot be used; nothing ran.

    ``problems`` holds one ``file:line:col: message`` per problem.
    """

    what = "simulate event file"


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
    """Parse an event file (see :mod:`orchestrator.designer.simulate`): event, deploy and retire lines, in file order.

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

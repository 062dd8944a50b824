"""Profile facts: what every customer's profile remembers, whatever journeys are loaded.

Designers declare the facts once, in ``journeys/profile.yaml`` (:data:`FACTS_FILE`, JSON
Schema ``schemas/profile.json``), beside the journeys::

    events:
      web.feature_used:
        fields:
          data.feature: {values: 32, keep: 400d}
      geo.store_entered:
        fields:
          data.store_id: {}

What is recorded
----------------
* For **every** event type, whatever this file says: how many events of that type the
  customer had, and the first and last time (``profile.seen``; ``seen``/``not_seen``
  conditions without ``where`` read these).
* For the **fields declared here**: the last ``values`` distinct values of that payload
  field (default 32, at most 256), each with the last time it was seen; a value not seen
  for ``keep`` (default: kept until evicted by newer values) is forgotten. ``seen``/``not_seen``
  conditions with ``where`` read these, and only fields declared here may be used there
  (``validate`` refuses a journey or audience that reads another one, naming the line to add).

Recording starts when the worker first runs with the field declared and goes on whatever
journeys are loaded, deployed or retired: an audience "never used export" deployed later
reads the history recorded since.

Where history is incomplete
---------------------------
Each customer's profile knows, per declared field, from when its values are complete
(``TypeSeen.complete_after``): from the customer's first event of that type when the field
was declared before it, else only for events after the last one that was not recorded (an
event of that type before the field was declared, or while it was not declared, or a value
evicted by ``values`` or ``keep``). A ``seen``/``not_seen ... where`` that needs history from
before that point is **unknown** for that customer, and an unknown condition is false both
ways: such a customer neither "has seen" nor "has never seen" export, so a "never used
export" campaign does not reach them (it cannot know). ``not: {seen: ...}`` is true for them:
write ``not_seen`` for "never". The worker's start and every reload say, for each condition
that looks back before its field's history began (from the facts registry,
``runtime/facts_registry.py``), "history of web.feature_used data.feature starts at ...".

Memory
------
Per customer, per declared field of a type the customer has had: at most ``values`` entries,
each the value and a time (in the stored JSON about 30 bytes plus the value: a 10-character
value costs about 42 bytes; 32 of them about 1.4 KB), plus one time for ``complete_after``
(about 40 bytes). Fields of types the customer never had cost nothing. At most
:data:`MAX_FIELDS_PER_TYPE` fields per type and :data:`MAX_FIELDS` in all.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.durations import Duration
from orchestrator.errors import DefinitionError
from orchestrator.yamlpos import Positions, locate, parse_definition, read_definition

FACTS_FILE = "profile.yaml"
"""The facts file's name in the journeys directory."""
DEFAULT_VALUES = 32
"""Distinct values of one field a profile remembers when the facts file does not say."""
MAX_VALUES = 256
MAX_FIELDS_PER_TYPE = 16
MAX_FIELDS = 64


class FactsError(DefinitionError):
    """The facts file is invalid; ``problems`` holds one ``file:line:col: message`` per problem."""

    what = "profile facts"


class FieldFacts(BaseModel):
    """How much of one payload field the profile remembers."""

    model_config = ConfigDict(extra="forbid")

    values: int = Field(
        default=DEFAULT_VALUES,
        ge=1,
        le=MAX_VALUES,
        description=f"How many distinct values to remember (the oldest-seen is forgotten first); default {DEFAULT_VALUES}.",
    )
    keep: Duration | None = Field(
        default=None, description="Forget a value not seen for this long (e.g. 400d); default: until evicted by newer values."
    )


class EventFacts(BaseModel):
    """The payload fields remembered for one event type."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, FieldFacts | None] = Field(
        default_factory=dict,
        description="Payload fields as conditions name them (data.feature), each with {values, keep} or {} for the defaults.",
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, FieldFacts | None]) -> dict[str, FieldFacts | None]:
        if len(value) > MAX_FIELDS_PER_TYPE:
            raise ValueError(f"at most {MAX_FIELDS_PER_TYPE} fields per event type, got {len(value)}")
        return value


class ProfileFacts(BaseModel):
    """``journeys/profile.yaml``: the payload fields every profile records (counts and times are kept for every type)."""

    model_config = ConfigDict(extra="forbid", title="Profile facts (journeys/profile.yaml)")

    events: dict[str, EventFacts] = Field(default_factory=dict, description="Per event type (web.feature_used): the fields to remember.")


@dataclass(frozen=True, slots=True)
class TrackedField:
    """One declared field, as the engine reads it: ``path`` inside ``data`` (``feature``), its limits."""

    path: str
    values: int = DEFAULT_VALUES
    keep: timedelta | None = None


Tracked = dict[str, tuple[TrackedField, ...]]
"""Event type -> the fields the profile records for it (sorted by path)."""


@dataclass(frozen=True)
class Facts:
    """Loaded profile facts: what the engine records, and where the file said so (for messages)."""

    tracked: Tracked
    source: str | None = None
    """The facts file (None: implied by the journeys, for tests and notebooks: see :func:`implied`)."""
    lines: tuple[tuple[str, int], ...] = ()
    """(event type, line) of each ``events.TYPE`` entry, to point at where a field goes."""

    def fields_of(self, event_type: str) -> frozenset[str]:
        return frozenset(f.path for f in self.tracked.get(event_type, ()))

    def where_to_add(self, event_type: str, path: str) -> str:
        """What to write where, for a field a condition reads that the file does not declare."""
        name = self.source or FACTS_FILE
        line = dict(self.lines).get(event_type)
        if line is not None:
            return f"add `data.{path}: {{}}` under events.{event_type}.fields in {name} (line {line})"
        return f"add `{event_type}: {{fields: {{data.{path}: {{}}}}}}` under events: in {name}"

    def count(self) -> int:
        return sum(len(v) for v in self.tracked.values())


def implied(fields: Iterable[tuple[str, str]]) -> Facts:
    """Facts that record exactly the given (event type, path) pairs with the defaults (no file: tests, notebooks)."""
    acc: dict[str, set[str]] = {}
    for etype, path in fields:
        acc.setdefault(etype, set()).add(path)
    return Facts({t: tuple(TrackedField(p) for p in sorted(ps)) for t, ps in sorted(acc.items())})


# ------------------------------------------------------------------ loading


def load_facts(path: str | os.PathLike[str]) -> Facts:
    """Read and check a facts file; raises :class:`FactsError` listing every problem as ``file:line:col: message``."""
    return loads_facts(read_definition(path, FactsError, "profile facts"), os.fspath(path))


def loads_facts(text: str, name: str = FACTS_FILE) -> Facts:
    """:func:`load_facts` from text; ``name`` prefixes the errors."""
    data, positions, problems = parse_definition(text, name, FactsError, "the profile facts must be a mapping with events:")
    model: ProfileFacts | None = None
    try:
        model = ProfileFacts.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.endswith("]")))
            line, col = locate(positions, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (see schemas/profile.json: events: TYPE: fields: data.X: {values, keep})"
            problems.append(((line, col), f"{name}:{line}:{col}: {'.'.join(str(p) for p in loc)}: {msg}"))
    problems += [((line, col), f"{name}:{line}:{col}: {msg}") for (line, col), msg in _meaning_problems(data, positions)]
    if problems:
        raise FactsError([text for _, text in sorted(problems)])
    assert model is not None
    return _compile(model, name, positions)


def _compile(model: ProfileFacts, name: str, positions: Positions) -> Facts:
    tracked: Tracked = {}
    for etype, facts in sorted(model.events.items()):
        fields = [
            TrackedField(p.removeprefix("data."), (f or FieldFacts()).values, (f or FieldFacts()).keep) for p, f in facts.fields.items()
        ]
        if fields:
            tracked[etype] = tuple(sorted(fields, key=lambda f: f.path))
    lines = tuple((etype, positions.get(("events", etype), (0, 0))[0]) for etype in sorted(model.events))
    return Facts(tracked, name, lines)


def _meaning_problems(data: dict[str, Any], positions: Positions) -> Iterator[tuple[tuple[int, int], str]]:
    """Unknown event types, fields the event does not carry or that hold no single value, too many fields.

    Read from the raw mapping, so that they come with the model's own problems in one run.
    """
    from orchestrator.journey.fields import payloads, scalar_field_problem

    total = 0
    known = payloads()
    events = data.get("events")
    for etype, facts in events.items() if isinstance(events, dict) else ():
        if etype not in known or "." not in str(etype):
            close = difflib.get_close_matches(str(etype), [t for t in known if "." in t and " " not in t], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ": write family.type, e.g. web.feature_used"
            yield locate(positions, ("events", etype)), f"events.{etype}: unknown event type {etype!r}{hint}"
            continue
        fields = facts.get("fields") if isinstance(facts, dict) else None
        for path in fields if isinstance(fields, dict) else ():
            path = str(path)
            total += 1
            where = locate(positions, ("events", etype, "fields", path))
            if not path.startswith("data.") or path == "data.":
                yield where, f"events.{etype}.fields.{path}: write the payload field as conditions do, e.g. data.{path}"
                continue
            problem = scalar_field_problem(etype, path)
            if problem is not None:
                yield where, f"events.{etype}.fields.{path}: {problem}"
    if total > MAX_FIELDS:
        yield (1, 1), f"at most {MAX_FIELDS} fields in all, got {total}"


def facts_file_of(paths: Sequence[Path | str]) -> Path | None:
    """The facts file beside the journeys: ``profile.yaml`` in the first directory of ``paths`` that has one."""
    for p in paths:
        path = Path(p)
        if path.is_dir() and (path / FACTS_FILE).is_file():
            return path / FACTS_FILE
    return None


def facts_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``journeys/profile.yaml`` (committed as ``schemas/profile.json``)."""
    schema = ProfileFacts.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "profile.json", **schema}


def facts_json_schema_text() -> str:
    return json.dumps(facts_json_schema(), indent=2, sort_keys=True) + "\n"


__all__ = [
    "FACTS_FILE",
    "Facts",
    "FactsError",
    "ProfileFacts",
    "TrackedField",
    "facts_file_of",
    "facts_json_schema",
    "implied",
    "load_facts",
    "loads_facts",
]

"""Schema-aware checks: the payload fields a journey reads exist in the events it will see.

A condition on a field the event does not carry is simply false at run time (nobody
enters, a goal never fires), a ``variables_from`` of such a field leaves the variable
out, and a literal of the wrong type (``gte: "50"`` on a number) never compares true.
None of that fails loudly, so ``orchestrator validate`` checks every ``data.`` and
``entry.`` path against the JSON Schemas of the inbound events (the ones in
``schemas/events/``, generated from :mod:`orchestrator.events`):

* ``data.`` in ``entry.when`` / ``entry.profile``: the entry event(s); in a goal or
  exit: its ``event``; in an awaited event's ``when``: that event; in a ``seen`` /
  ``not_seen`` ``where``: the seen event type; in a branch case or ``variables_from``:
  the event that last moved the instance (also a ``{from: data.X}`` of ``update_profile`` and
  ``emit``), that is every event type that can bring the
  instance to that step (the entry events, and the awaited events of the waits on the
  way; a wait's timeout keeps the event it had). ``entry.`` always means the entry events.
* With several possible events a path must exist in at least one of them (a branch may
  guard it with ``event.type``). Entry conditions are stricter: a field that a condition
  needs (any operator except ``ne``, ``not_in`` and ``exists: false``, outside ``any`` and
  ``not``) must be in *every* entry event, because the entry events without it never enter.
* ``data.attributes.X`` (a free mapping in every event) accepts any ``X``.
* A journey entered by its audience (``entry.audience``) has more entry "events": a
  campaign run enters with :data:`AUDIENCE_RUN` (payload ``journey`` and ``run``, so
  ``entry.run`` and ``entry.journey`` are known), and ``qualify: on_change`` with the
  event that made the customer qualify, which can be of any type (only
  ``attributes``, which every event has, is known). A ``data.``/``entry.`` field that
  only such an entry could bring is reported with what to read instead (``profile.``,
  or wait for an event first). ``entry.when`` and ``entry.profile`` apply to trigger
  events only: in a journey without ``entry.event`` they are reported.
* Literals: ``gt gte lt lte`` need a number for a number field and a string for a string
  field; ``eq ne in not_in`` need a literal of the field's JSON type (an integer for a
  number field is fine) and, for a field with a fixed set of values, one of those values;
  ``contains`` needs a string or list field; ``since`` needs a string (time) field.

Event types the schemas do not know (``seen: TYPE`` is not checked against them) are
not checked. Every problem is ``(location, message)`` like :func:`~orchestrator.journey.model.check_graph`'s.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Any

from orchestrator.events import FAMILIES, family_json_schema
from orchestrator.journey import model as m
from orchestrator.journey.conditions import All, AnyOf, Compare, Not, Seen, Since

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

AUDIENCE_RUN = "audience.run"
"""The type of a campaign run's entry event (``orchestrator.engine.audience.AUDIENCE_EVENT_TYPE``)."""
QUALIFYING = "any event (qualify: on_change)"
"""Stands for the event that makes a customer qualify for a ``qualify: on_change`` audience: any type."""
AUDIENCE_ENTRIES = frozenset({AUDIENCE_RUN, QUALIFYING})

ENVELOPE = frozenset({"event_id", "customer_id", "occurred_at", "type"})
"""Fields of an inbound event that are not in ``data`` (see :func:`orchestrator.events.parse_inbound`)."""
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean", "null"})
_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean", "null": "null"}
_TYPE_WORDS |= {"object": "an object", "array": "a list"}


@dataclass(frozen=True, eq=False)
class FieldType:
    """What one payload field can hold, read from the JSON Schema of its event."""

    types: frozenset[str]
    """JSON types: string integer number boolean null object array."""
    enum: tuple[Any, ...] | None = None
    """The only values it takes (besides null), when the schema fixes them."""
    time: bool = False
    """A string holding an ISO date/time."""
    fields: Mapping[str, FieldType] | None = None
    """An object with known fields."""
    values: FieldType | None = None
    """An object with free keys (``attributes``): the type of every value."""

    def child(self, name: str) -> FieldType | None:
        """The type of ``self.name``, or None when there is no such field."""
        if self.fields is not None and name in self.fields:
            return self.fields[name]
        return self.values

    def merge(self, other: FieldType) -> FieldType:
        """The type of a value that is of this type or of ``other`` (``anyOf``, or the same path in several events)."""
        enum = None
        if self._restricted() and other._restricted():
            enum = tuple(dict.fromkeys((*(self.enum or ()), *(other.enum or ()))))
        fields = {**(other.fields or {}), **(self.fields or {})} if self.fields is not None or other.fields is not None else None
        values = self.values.merge(other.values) if self.values and other.values else self.values or other.values
        return FieldType(self.types | other.types, enum, self.time or other.time, fields, values)

    def _restricted(self) -> bool:
        return self.enum is not None or self.types <= {"null"}

    def describe(self) -> str:
        """``a number``, ``a string or null`` ..."""
        types = self.types - {"integer"} if "number" in self.types else self.types
        names = [("a time" if t == "string" and self.time else _TYPE_WORDS.get(t, t)) for t in sorted(types, key=_type_order)]
        return " or ".join(names) or "anything"


ANY = FieldType(SCALAR_TYPES | {"object", "array"})


def _type_order(name: str) -> int:
    order = ("string", "number", "integer", "boolean", "object", "array", "null")
    return order.index(name) if name in order else len(order)


# ---------------------------------------------------------------- the event schemas


def _field_type(schema: Mapping[str, Any] | bool, defs: Mapping[str, Any]) -> FieldType:
    """A :class:`FieldType` from one property's JSON Schema."""
    if not isinstance(schema, Mapping):
        return ANY
    if "$ref" in schema:
        return _field_type(defs[str(schema["$ref"]).rsplit("/", 1)[-1]], defs)
    members = schema.get("anyOf") or schema.get("oneOf")
    if members:
        return reduce(FieldType.merge, (_field_type(s, defs) for s in members))
    enum = (schema["const"],) if "const" in schema else tuple(schema["enum"]) if "enum" in schema else None
    declared = schema.get("type")
    types = frozenset([declared] if isinstance(declared, str) else declared or [])
    if not types:
        types = frozenset(_json_type(v) for v in enum) if enum is not None else ANY.types
    fields, values = None, None
    if "object" in types:
        props = schema.get("properties")
        fields = {k: _field_type(v, defs) for k, v in props.items()} if isinstance(props, Mapping) else None
        extra = schema.get("additionalProperties", fields is None)
        values = _field_type(extra, defs) if extra is not False else None
    return FieldType(types, enum, schema.get("format") in ("date-time", "date", "time"), fields, values)


def _json_type(value: Any) -> str:
    """The JSON type of a literal (``True`` is a boolean, not a number)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object" if isinstance(value, Mapping) else "string"


@lru_cache(maxsize=1)
def payloads() -> dict[str, FieldType]:
    """The payload (``data``) of every known event type as an object :class:`FieldType`, e.g. ``payloads()["web.purchase"]``."""
    out: dict[str, FieldType] = {}
    for family in FAMILIES:
        schema = family_json_schema(family)
        defs = schema.get("$defs", {})
        for name, ref in sorted(schema.get("discriminator", {}).get("mapping", {}).items()):
            event = defs[str(ref).rsplit("/", 1)[-1]]
            props = {k: _field_type(v, defs) for k, v in event.get("properties", {}).items() if k not in ENVELOPE}
            out[f"{family}.{name}"] = FieldType(frozenset({"object"}), fields=props)
    text = FieldType(frozenset({"string"}))
    out[AUDIENCE_RUN] = FieldType(frozenset({"object"}), fields={"journey": text, "run": text})
    attributes = next(p.fields["attributes"] for p in out.values() if p.fields and "attributes" in p.fields)
    out[QUALIFYING] = FieldType(frozenset({"object"}), fields={"attributes": attributes})
    return out


# ---------------------------------------------------------------- resolving one path


@dataclass(frozen=True)
class _Miss:
    """Where a path leaves its event's payload: ``parts[depth]`` is not a field of ``parent``."""

    depth: int
    parent: FieldType


def _resolve(payload: FieldType, parts: Sequence[str]) -> FieldType | _Miss:
    cur = payload
    for i, part in enumerate(parts):
        nxt = cur.child(part)
        if nxt is None:
            return _Miss(i, cur)
        cur = nxt
    return cur


@dataclass(frozen=True)
class Events:
    """The event types one root (``data.`` or ``entry.``) can refer to at one place, and how messages name them."""

    types: tuple[str, ...]
    one: str = "{}"
    """How a message names a single type, e.g. ``the entry event {}``."""
    many: str = "{}"
    """How a message names several, e.g. ``the events that can reach step 'route' ({})``."""
    reach: str = "come there without an event payload"
    """What customers who enter by the audience find at this place, e.g. ``reach step 'route' without an event payload``."""

    def describe(self, types: Sequence[str] | None = None) -> str:
        """``the entry event web.cart_abandoned``, ``the entry events geo.store_entered, geo.geofence_entered`` ..."""
        types = self.types if types is None else types
        return (self.one if len(types) == 1 else self.many).format(", ".join(types))

    def known(self) -> bool:
        """Can the path be checked? (no types: an unreachable step; an unknown type: nothing to check against)"""
        return bool(self.types) and all(t in payloads() for t in self.types)


@dataclass(frozen=True)
class Scope:
    """What ``data.`` and ``entry.`` mean at one place; ``strict``: entry conditions (see the module docs)."""

    data: Events
    entry: Events
    strict: bool = False

    def events(self, root: str) -> Events | None:
        return self.data if root == "data" else self.entry if root == "entry" else None


@dataclass(frozen=True)
class _Found:
    """A path resolved in each possible event: its merged type where it exists, the events that lack it."""

    path: str
    events: Events
    ftype: FieldType | None
    missing: dict[str, _Miss]

    @property
    def where(self) -> str:
        have = [t for t in self.events.types if t not in self.missing]
        return ", ".join(have)


def _find(path: str, scope: Scope) -> _Found | None:
    root, *parts = path.split(".")
    events = scope.events(root)
    if events is None or not events.known():
        return None
    found: list[FieldType] = []
    missing: dict[str, _Miss] = {}
    for etype in events.types:
        got = _resolve(payloads()[etype], parts)
        if isinstance(got, _Miss):
            missing[etype] = got
        else:
            found.append(got)
    return _Found(path, events, reduce(FieldType.merge, found) if found else None, missing)


def _hint(path: str, misses: Sequence[_Miss]) -> str:
    """`` (did you mean 'data.cart_value'?)`` or the fields there are, or a note that the parent has no fields."""
    root, *parts = path.split(".")
    miss = misses[0]
    names = sorted({n for x in misses if x.depth == miss.depth for n in (x.parent.fields or {})})
    if not names:
        parent = ".".join([root, *parts[: miss.depth]])
        return f" ({parent} is {miss.parent.describe()}: it has no fields)"
    close = difflib.get_close_matches(parts[miss.depth], names, n=1)
    if close:
        return f" (did you mean {'.'.join([root, *parts[: miss.depth], close[0], *parts[miss.depth + 1 :]])!r}?)"
    return f" (fields: {', '.join(names)})"


def number_field_problem(event_type: str, path: str) -> str | None:
    """Why ``path`` (``data.value``) of ``event_type`` cannot set a score (None: it is a number field).

    A score rule's ``set_from`` (``journey/scores.py``) reads one number from the event's payload.
    """
    found = _find(path, Scope(Events((event_type,), one="the event {}"), Events(())))
    if found is None:
        return None  # not a data. path or an unknown type: the caller says so
    if found.ftype is None:
        return _unknown(found)
    if not found.ftype.types & {"number", "integer"}:
        return f"{path} is {found.ftype.describe()}: set_from needs a number field"
    return None


def event_condition_problems(event_type: str, conds: Sequence[Any], loc: Loc) -> list[Problem]:
    """The ``data.`` paths and literals of conditions on one event (a score rule's ``when``) against its payload."""
    return list(_conditions(conds, loc, Scope(Events((event_type,), "the event {}"), Events(()))))


def scalar_field_problem(event_type: str, path: str) -> str | None:
    """Why ``path`` (``data.feature``) of ``event_type`` cannot be remembered by the profile (None: it can).

    The profile facts (``journey/facts.py``) remember single values: a string, number or boolean field.
    """
    found = _find(path, Scope(Events((event_type,), one="the event {}"), Events(())))
    if found is None:
        return None  # not a data. path or an unknown type: the caller says so
    if found.ftype is None:
        return _unknown(found)
    if not found.ftype.types & (SCALAR_TYPES - {"null"}):
        return f"{path} is {found.ftype.describe()}: only single values (strings, numbers, booleans) can be remembered"
    return None


def _audience_only(found: _Found) -> str:
    """Unknown where only an audience entry can bring the customer: there is no event payload to read."""
    root = found.path.split(".", 1)[0]
    types = set(found.events.types)
    why = []
    if AUDIENCE_RUN in types:
        why.append(f"a campaign run's entry event {AUDIENCE_RUN} has only {root}.journey and {root}.run")
    if QUALIFYING in types:
        why.append("the event that makes them qualify (qualify: on_change) can be of any type")
    hint = _hint(found.path, [found.missing[t] for t in found.events.types])
    close = hint if hint.startswith(" (did you mean") else ""
    return (
        f"unknown field {found.path!r}: customers who enter by the audience {found.events.reach} "
        f"({'; '.join(why)}): read what we know about the customer (profile.X, seen/not_seen, since) or wait for an event first" + close
    )


def _unknown(found: _Found) -> str:
    if set(found.events.types) <= AUDIENCE_ENTRIES:
        return _audience_only(found)
    parts = found.path.split(".")[1:]
    misses = [found.missing[t] for t in found.events.types]
    part = parts[misses[0].depth]
    hint = _hint(found.path, misses)
    if len(found.events.types) == 1:
        return f"unknown field {found.path!r}: {found.events.describe()} has no {part!r}{hint}"
    return f"unknown field {found.path!r}: none of {found.events.describe()} has {part!r}{hint}"


def _not_everywhere(found: _Found) -> str:
    lacking = [t for t in found.events.types if t in found.missing]
    return (
        f"field {found.path!r} is not in {found.events.describe(lacking)} (only in {found.where}): "
        f"the condition needs it, so {', '.join(lacking)} events never enter"
    )


def _path_problem(found: _Found, needed: bool) -> str | None:
    """Unknown everywhere, or (``needed`` by a strict condition) missing from some events."""
    if found.ftype is None:
        return _unknown(found)
    if needed and found.missing:
        return _not_everywhere(found)
    return None


# ---------------------------------------------------------------- literals


def _fits(value: Any, ftype: FieldType) -> bool:
    """Can a field of ``ftype`` equal ``value`` (the engine's ``_eq``: bools only equal bools, 1 == 1.0)?"""
    kind = _json_type(value)
    if kind == "integer":
        return bool(ftype.types & {"integer", "number"})
    if kind == "number":
        return "number" in ftype.types or ("integer" in ftype.types and float(value).is_integer())
    return kind in ftype.types


def _as_number(value: str) -> str | None:
    """``"50"`` -> ``50`` (for a hint), or None when the string is no number."""
    try:
        number = float(value)
    except ValueError:
        return None
    return str(int(number)) if number.is_integer() and "." not in value else str(number)


def _number(value: float) -> str:
    """``5.0`` -> ``5`` (order operators read every number as a float)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _where(found: _Found) -> str:
    return f"{found.path} ({found.where}) is {found.ftype.describe() if found.ftype else 'missing'}"


def _order_problem(op: str, value: Any, found: _Found, ftype: FieldType) -> str | None:
    """``gt gte lt lte``: numbers compare with numbers, strings with strings (and times)."""
    numeric = bool(ftype.types & {"integer", "number"})
    if not numeric and "string" not in ftype.types:
        return f"{op} compares numbers, strings or times, but {_where(found)}: the comparison is always false"
    if isinstance(value, str) and not numeric:
        return None
    if isinstance(value, str) and "string" not in ftype.types:
        number = _as_number(value)
        hint = f"; write {op}: {number}" if number is not None else ""
        return f"{op}: {value!r} is a string but {_where(found)}: the comparison is always false{hint}"
    if not isinstance(value, str) and not numeric:
        return f"{op}: {_number(value)} is a number but {_where(found)}: the comparison is always false"
    return None


def _equality_problem(op: str, value: Any, found: _Found, ftype: FieldType) -> str | None:
    """``eq ne in not_in`` (one element): the literal's JSON type, and the field's fixed values."""
    outcome = "it always holds" if op in ("ne", "not_in") else "it never matches"
    if not _fits(value, ftype):
        hint = ""
        if isinstance(value, str) and ftype.types & {"integer", "number"} and _as_number(value) is not None:
            hint = f"; write {_as_number(value)} without quotes"
        elif not isinstance(value, (str, bool)) and value is not None and "string" in ftype.types:
            hint = f'; quote it: "{value}"'
        return f"{op}: {value!r} is {_TYPE_WORDS[_json_type(value)]} but {_where(found)}: {outcome}{hint}"
    if isinstance(value, str) and ftype.enum is not None and value not in ftype.enum:
        close = difflib.get_close_matches(value, [str(v) for v in ftype.enum], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        values = ", ".join(str(v) for v in ftype.enum)
        return f"{op}: {value!r} is not a value of {found.path} ({found.where}), which is one of {values}: {outcome}{hint}"
    return None


def _contains_problem(value: Any, found: _Found, ftype: FieldType) -> str | None:
    if "array" in ftype.types:
        return None
    if "string" not in ftype.types:
        return f"contains needs a string or list field, but {_where(found)}: it never holds"
    if not isinstance(value, str):
        return f"contains: {value!r} is {_TYPE_WORDS[_json_type(value)]} but {_where(found)}: it never holds"
    return None


def _literal_problems(cond: Compare, loc: Loc, found: _Found) -> Iterator[Problem]:
    ftype = found.ftype
    if ftype is None:
        return
    for op in sorted(cond.model_fields_set - {"field"}):
        value = getattr(cond, op)
        key = "in" if op == "in_" else op
        if op in ("gt", "gte", "lt", "lte"):
            problem = _order_problem(key, value, found, ftype)
        elif op in ("eq", "ne"):
            problem = _equality_problem(key, value, found, ftype)
        elif op == "contains":
            problem = _contains_problem(value, found, ftype)
        else:
            if op in ("in_", "not_in"):
                for i, item in enumerate(value or ()):
                    item_problem = _equality_problem(key, item, found, ftype)
                    if item_problem is not None:
                        yield (*loc, key, i), item_problem
            continue
        if problem is not None:
            yield (*loc, key), problem


# ---------------------------------------------------------------- conditions


def _needs_field(cond: Compare) -> bool:
    """Is the condition false when the field is missing? (every operator but ``ne``, ``not_in``, ``exists: false``)"""
    ops = cond.model_fields_set - {"field", "ne", "not_in"}
    return bool(ops - {"exists"}) or ("exists" in ops and bool(cond.exists))


def _compare(cond: Compare, loc: Loc, scope: Scope, and_level: bool) -> Iterator[Problem]:
    found = _find(cond.field, scope)
    if found is None:
        return
    problem = _path_problem(found, scope.strict and and_level and _needs_field(cond))
    if problem is not None:
        yield (*loc, "field"), problem
    yield from _literal_problems(cond, loc, found)


def _since(cond: Since, loc: Loc, scope: Scope, and_level: bool) -> Iterator[Problem]:
    found = _find(cond.since, scope)
    if found is None:
        return
    problem = _path_problem(found, scope.strict and and_level)
    if problem is None and found.ftype is not None and "string" not in found.ftype.types:
        problem = f"since needs a time, but {_where(found)}: the condition is always false"
    if problem is not None:
        yield (*loc, "since"), problem


def _seen(cond: Seen, loc: Loc, scope: Scope) -> Iterator[Problem]:
    """``where`` reads the seen event's payload."""
    inner = Scope(Events((cond.event_type,)), scope.entry)
    for i, c in enumerate(cond.where):
        yield from _condition(c, (*loc, "where", i), inner, and_level=True)


def _condition(cond: Any, loc: Loc, scope: Scope, and_level: bool) -> Iterator[Problem]:
    """Problems of one condition at ``loc``; ``and_level``: it must hold for the whole list to hold."""
    if isinstance(cond, Compare):
        yield from _compare(cond, loc, scope, and_level)
    elif isinstance(cond, Since):
        yield from _since(cond, loc, scope, and_level)
    elif isinstance(cond, Seen):
        yield from _seen(cond, loc, scope)
    elif isinstance(cond, All):
        for i, c in enumerate(cond.all):
            yield from _condition(c, (*loc, "all", i), scope, and_level)
    elif isinstance(cond, AnyOf):
        for i, c in enumerate(cond.any):
            yield from _condition(c, (*loc, "any", i), scope, and_level=False)
    elif isinstance(cond, Not):
        yield from _condition(cond.not_, (*loc, "not"), scope, and_level=False)


def _conditions(conds: Sequence[Any], loc: Loc, scope: Scope) -> Iterator[Problem]:
    for i, cond in enumerate(conds):
        yield from _condition(cond, (*loc, i), scope, and_level=True)


# ---------------------------------------------------------------- the journey


def entry_types(journey: m.Journey) -> list[str]:
    """Every type the entry event of an instance can have: the trigger events, :data:`AUDIENCE_RUN`, :data:`QUALIFYING`."""
    types = list(journey.entry.events)
    audience = journey.entry.audience
    if audience is not None and audience.schedule is not None:
        types.append(AUDIENCE_RUN)
    if (audience is not None and audience.qualify is not None) or journey.entry.score is not None:
        types.append(QUALIFYING)  # entry.score: the scoring event that made the score cross, of any type
    return types


def arrivals(journey: m.Journey) -> dict[str, frozenset[str]]:
    """For each reachable step, the event types the instance's context (``data.`` in branches and sends) can hold there.

    The entry events (:func:`entry_types`) at ``start``; an awaited event that arrives replaces the context
    on its edge; every other edge (a wait's timeout too) passes the context on.
    """
    steps = journey.steps
    if journey.start not in steps:
        return {}
    reach: dict[str, set[str]] = {journey.start: set(entry_types(journey))}
    todo = [journey.start]
    while todo:
        sid = todo.pop()
        for target, types in _moves(steps[sid], frozenset(reach[sid])):
            if target is None or target not in steps:
                continue
            have = reach.setdefault(target, set())
            if not types <= have:
                have |= types
                todo.append(target)
    return {sid: frozenset(types) for sid, types in reach.items()}


def _moves(step: Any, here: frozenset[str]) -> Iterator[tuple[str | None, frozenset[str]]]:
    if isinstance(step, m.WaitStep):
        for mt in step.matchers:
            yield (mt.next if mt.next is not None else step.on_event), frozenset({mt.event_type})
        yield step.on_timeout, here
        return
    for _loc, target, _label in m.edges("", step):
        yield target, here


def _step_problems(sid: str, step: Any, here: frozenset[str] | None, entry: Events) -> Iterator[Problem]:
    base: Loc = ("steps", sid)
    arriving = Events(
        tuple(sorted(here or ())),
        f"the event that reaches step {sid!r} ({{}})",
        f"the events that can reach step {sid!r} ({{}})",
        f"reach step {sid!r} without an event payload",
    )
    if isinstance(step, m.WaitStep):
        for i, mt in enumerate(step.matchers):
            awaited = Scope(Events((mt.event_type,), "the awaited event {}"), entry)
            yield from _conditions(mt.when, (*base, "for", i, "when"), awaited)
    elif isinstance(step, m.BranchStep):
        for i, case in enumerate(step.cases):
            yield from _conditions(case.when, (*base, "cases", i, "when"), Scope(arriving, entry))
    elif isinstance(step, m.SendStep):
        scope = Scope(arriving, entry)
        for name, path in step.variables_from.items():
            found = _find(path, scope)
            problem = _path_problem(found, needed=False) if found is not None else None
            if problem is not None:
                yield (*base, "variables_from", name), problem
    elif isinstance(step, (m.UpdateProfileStep, m.EmitStep)):  # {from: FIELD} values, read like variables_from
        scope = Scope(arriving, entry)
        for where, path in step.field_paths():
            found = _find(path, scope)
            problem = _path_problem(found, needed=False) if found is not None else None
            if problem is not None:
                yield (*base, *where), problem


def _entry_problems(journey: m.Journey, entry: Events) -> Iterator[Problem]:
    """``entry.when`` / ``entry.profile`` against the trigger events; the audience's ``seen`` conditions."""
    triggers = Events(tuple(journey.entry.events), "the entry event {}", "the entry events {}")
    at_entry = Scope(triggers, triggers, strict=True)
    for key in ("when", "profile"):
        conds = getattr(journey.entry, key)
        if conds and not journey.entry.events and not (key == "profile" and journey.entry.score is not None):
            why = f"entry.{key} applies to the trigger event, and this journey has none (it enters by its audience)"
            yield ("entry", key), why + ": move these conditions to entry.audience.when"
            continue
        yield from _conditions(conds, ("entry", key), at_entry)
    if journey.entry.audience is not None:  # profile conditions only (the model says so); a seen's where reads its event
        yield from _conditions(journey.entry.audience.when, ("entry", "audience", "when"), Scope(Events(()), entry))


def check_fields(journey: m.Journey) -> list[Problem]:
    """Every ``data.``/``entry.`` path and literal in the journey checked against the event schemas (see the module docs)."""
    entry = Events(tuple(entry_types(journey)), "the entry event {}", "the entry events {}", "have no trigger event")
    problems: list[Problem] = list(_entry_problems(journey, entry))
    for kind, rules in (("goals", journey.goals), ("exits", journey.exits)):
        for i, rule in enumerate(rules):
            problems += _conditions(rule.when, (kind, i, "when"), Scope(Events((rule.event,)), entry))
    here = arrivals(journey)
    for sid, step in journey.steps.items():
        problems += _step_problems(sid, step, here.get(sid), entry)
    return problems

"""Declarative conditions: data in the journey file, compiled to plain predicates.

A condition is one of these YAML shapes (a list of conditions means *all of them*):

``{field: data.cart_value, gte: 20}``
    Compare a field. Operators: ``eq ne gt gte lt lte in not_in exists contains``;
    several operators in one condition must all hold (``{field: x, gte: 1, lt: 5}``).
``{all: [...]}`` / ``{any: [...]}`` / ``{not: {...}}``
    Combine conditions.
``{since: profile.registered_at, older_than: 30d}`` (or ``younger_than``)
    Time elapsed between a timestamp field and *now* (the processing time).
``{seen: web.feature_used, where: [{field: data.feature, eq: export}], within: 30d}``
``{not_seen: web.feature_used, where: [...]}``
    Whether the customer has (not) had an event of that type, optionally with a
    payload condition on **one** data field, optionally within a period, and
    optionally at least ``min_count`` times (without ``where``). A ``where`` reads the
    values the profile keeps for the fields declared in ``journeys/profile.yaml``
    (``journey/facts.py``); where the customer's history of that field does not reach
    back far enough, the condition is unknown and false both ways (:func:`history_complete`).

Fields are dotted paths with one of three roots:

* ``data.X`` — the payload of the event being evaluated (the trigger, the awaited
  event, or — in a branch — the event that last moved the instance), e.g.
  ``data.cart_value``, ``data.sentiment``, ``data.attributes.tier``.
* ``entry.X`` — the payload of the event that started the instance (same as
  ``data.X`` in entry conditions), e.g. ``entry.cart_value`` after a wait.
* ``event.type``, ``event.id``, ``event.occurred_at`` — the envelope of that event.
* ``profile.X`` — what the orchestrator knows about the customer:
  ``profile.timezone``, ``profile.segment``, ``profile.registered_at``,
  ``profile.first_seen_at``, ``profile.last_seen_at``, ``profile.attributes.X``
  (from CRM events and ``update_profile`` steps), ``profile.lists``, ``profile.tags``
  (set by ``update_profile`` steps), ``profile.scores.X`` (``journeys/scores.yaml``: the
  value decayed to the evaluation's ``now``; missing for a customer who never scored).

Nothing here is ever executed as code: :func:`compile_condition` turns the data
into closures over a fixed set of operators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.durations import Duration

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.state import Instance, Profile, TypeSeen

FIELD_ROOTS = ("data", "entry", "event", "profile")
PROFILE_FIELDS = ("timezone", "segment", "registered_at", "first_seen_at", "last_seen_at", "attributes", "lists", "tags", "scores")
PROFILE_MAPS = ("attributes", "scores")
"""Profile fields read with a third part: ``profile.attributes.NAME``, ``profile.scores.NAME`` (``journeys/scores.yaml``)."""
EVENT_FIELDS = ("type", "id", "occurred_at")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "contains")
_OPERATOR_WORDS = {
    "eq": ("equals", "equal", "equalto", "is", "eql", "=="),
    "ne": ("notequal", "notequals", "notequalto", "neq", "isnot", "!="),
    "gt": ("greaterthan", "greater", "morethan", "above", "over", "after", ">"),
    "gte": ("greaterthanorequal", "greaterorequal", "greaterequal", "ge", "atleast", "min", "minimum", ">="),
    "lt": ("lessthan", "less", "smallerthan", "below", "under", "before", "<"),
    "lte": ("lessthanorequal", "lessorequal", "lessequal", "le", "atmost", "max", "maximum", "<="),
    "in": ("oneof", "anyof", "isin", "among"),
    "not_in": ("notin", "notoneof", "noneof", "nin"),
    "exists": ("exist", "present", "isset", "defined"),
    "contains": ("contain", "includes", "include", "has"),
}
OPERATOR_SYNONYMS: dict[str, str] = {word: op for op, words in _OPERATOR_WORDS.items() for word in words}
"""Other spellings of the comparison operators (lowercase, without ``_``/``-``/spaces): ``lessthan`` -> ``lt``, for "did you mean"."""

Scalar = str | int | float | bool | None


def check_field_path(path: str) -> str:
    """Validate a dotted field path (``data.x``, ``event.type``, ``profile.segment``)."""
    parts = path.split(".")
    if len(parts) < 2 or any(not p for p in parts):
        raise PydanticCustomError(
            "bad_field",
            f"bad field {path!r}: write a dotted path starting with data., entry., event. or profile. (e.g. data.cart_value)",
        )
    root = parts[0]
    if root not in FIELD_ROOTS:
        raise PydanticCustomError(
            "bad_field",
            f"unknown field root {root!r} in {path!r}: fields start with data. (event payload), "
            "entry. (payload of the entry event), event. (type, id, occurred_at) or profile.",
        )
    if root == "event" and (len(parts) != 2 or parts[1] not in EVENT_FIELDS):
        raise PydanticCustomError("bad_field", f"unknown event field {path!r}: use event.type, event.id or event.occurred_at")
    if root == "profile":
        if parts[1] not in PROFILE_FIELDS:
            raise PydanticCustomError(
                "bad_field",
                f"unknown profile field {path!r}: use one of "
                + ", ".join(f"profile.{p}" for p in PROFILE_FIELDS)
                + " (profile.attributes.X, profile.scores.X)",
            )
        if (parts[1] in PROFILE_MAPS) != (len(parts) == 3) or len(parts) > 3:
            raise PydanticCustomError(
                "bad_field", f"bad profile field {path!r}: only profile.attributes.NAME and profile.scores.NAME have a third part"
            )
    return path


FieldPath = Annotated[str, Field(description="Dotted path: data.X, entry.X, event.type|id|occurred_at, profile.X")]


class _Cond(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)


class Compare(_Cond):
    """Compare one field with a value; all given operators must hold."""

    field: FieldPath
    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: float | str | None = None
    gte: float | str | None = None
    lt: float | str | None = None
    lte: float | str | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    exists: bool | None = None
    contains: Scalar | None = None

    @field_validator("field")
    @classmethod
    def _field(cls, v: str) -> str:
        return check_field_path(v)

    @model_validator(mode="after")
    def _one_operator(self) -> Compare:
        if not (self.model_fields_set - {"field"}):
            raise PydanticCustomError(
                "no_operator",
                f"condition on {self.field!r} has no operator: add one of " + ", ".join(OPERATORS) + " (e.g. eq: value)",
            )
        return self


class All(_Cond):
    """True when every condition holds (an empty list is true)."""

    all: list[Condition]


class AnyOf(_Cond):
    """True when at least one condition holds."""

    any: list[Condition] = Field(min_length=1)


class Not(_Cond):
    """True when the inner condition does not hold."""

    not_: Condition = Field(alias="not")


class Since(_Cond):
    """Time since a timestamp field: ``{since: profile.registered_at, older_than: 30d}``."""

    since: FieldPath
    older_than: Duration | None = None
    younger_than: Duration | None = None

    @field_validator("since")
    @classmethod
    def _field(cls, v: str) -> str:
        return check_field_path(v)

    @model_validator(mode="after")
    def _bound(self) -> Since:
        if self.older_than is None and self.younger_than is None:
            raise PydanticCustomError(
                "no_bound", f"time condition on {self.since!r} needs older_than or younger_than (e.g. older_than: 30d)"
            )
        return self


class Seen(_Cond):
    """The customer has (``seen``) or has not (``not_seen``) had an event of a type."""

    seen: str | None = Field(default=None, description="Event type, e.g. web.feature_used")
    not_seen: str | None = Field(default=None, description="Event type, e.g. web.feature_used")
    where: list[Condition] = Field(
        default_factory=list, description="Conditions on ONE data field of that event type, e.g. [{field: data.feature, eq: export}]"
    )
    within: Duration | None = Field(default=None, description="Only count occurrences in this period before now.")
    min_count: int = Field(default=1, ge=1, description="At least this many occurrences (not combinable with where).")

    @model_validator(mode="after")
    def _check(self) -> Seen:
        if (self.seen is None) == (self.not_seen is None):
            raise PydanticCustomError("seen_type", "write exactly one of seen: TYPE or not_seen: TYPE", {})
        fields = {f for c in self.where for f in condition_fields(c)}
        if len(fields) > 1 or any(not f.startswith("data.") for f in fields):
            raise PydanticCustomError(
                "seen_where",
                f"where: in a seen/not_seen condition may only test ONE payload field (data.X), got {', '.join(sorted(fields))}",
            )
        if self.where and self.min_count > 1:
            raise PydanticCustomError("seen_count", "min_count can not be combined with where", {})
        return self

    @property
    def event_type(self) -> str:
        return self.seen or self.not_seen or ""


class Member(_Cond):
    """The customer is (``in_journey``) or is not (``not_in_journey``) in a journey now, optionally at one of some steps."""

    in_journey: str | None = Field(default=None, description="Journey id, e.g. abandoned_cart")
    not_in_journey: str | None = Field(default=None, description="Journey id, e.g. abandoned_cart")
    at: list[str] | None = Field(
        default=None, description="Only when the customer is at one of these steps of it (a step id or a list), e.g. wait_open."
    )

    @field_validator("at", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> Member:
        if (self.in_journey is None) == (self.not_in_journey is None):
            raise PydanticCustomError("member_type", "write exactly one of in_journey: JOURNEY or not_in_journey: JOURNEY", {})
        return self

    @property
    def journey_id(self) -> str:
        return self.in_journey or self.not_in_journey or ""


class InCalendar(_Cond):
    """Now is inside one of the journey's calendars (``calendars:``), e.g. ``{in_calendar: service_hours}``."""

    in_calendar: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="A calendar of the journey, e.g. service_hours")


_TAG_OF_KEY = (
    ("in_calendar", "calendar"),
    ("in_journey", "member"),
    ("not_in_journey", "member"),
    ("all", "all"),
    ("any", "any"),
    ("not", "not"),
    ("since", "since"),
    ("seen", "seen"),
    ("not_seen", "seen"),
    ("field", "compare"),
)


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = value.keys()
    elif isinstance(value, BaseModel):
        tags = {Compare: "compare", All: "all", AnyOf: "any", Not: "not", Since: "since", Seen: "seen", Member: "member"}
        return tags.get(type(value)) or ("calendar" if isinstance(value, InCalendar) else None)
    else:
        return None
    for key, tag in _TAG_OF_KEY:
        if key in keys:
            return tag
    return None


Condition = Annotated[
    Annotated[Compare, Tag("compare")]
    | Annotated[All, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[Not, Tag("not")]
    | Annotated[Since, Tag("since")]
    | Annotated[Seen, Tag("seen")]
    | Annotated[Member, Tag("member")]
    | Annotated[InCalendar, Tag("calendar")],
    Discriminator(
        _tag,
        custom_error_type="bad_condition",
        custom_error_message=(
            "not a condition: write {field: ..., eq: ...}, {all: [...]}, {any: [...]}, {not: ...}, "
            "{since: ..., older_than: ...}, {seen|not_seen: TYPE}, {in_journey|not_in_journey: JOURNEY} or {in_calendar: NAME}"
        ),
    ),
]

for _m in (All, AnyOf, Not, Seen):
    _m.model_rebuild()


def condition_fields(cond: Any) -> list[str]:
    """All field paths a condition reads (for validation and profile tracking)."""
    if isinstance(cond, Compare):
        return [cond.field]
    if isinstance(cond, All):
        return [f for c in cond.all for f in condition_fields(c)]
    if isinstance(cond, AnyOf):
        return [f for c in cond.any for f in condition_fields(c)]
    if isinstance(cond, Not):
        return condition_fields(cond.not_)
    if isinstance(cond, Since):
        return [cond.since]
    return []


def walk(cond: Any, loc: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Any]]:
    """``cond`` and every condition nested in it (all, any, not), each with its place inside ``cond``."""
    out: list[tuple[tuple[str | int, ...], Any]] = [(loc, cond)]
    if isinstance(cond, All):
        for i, c in enumerate(cond.all):
            out += walk(c, (*loc, "all", i))
    elif isinstance(cond, AnyOf):
        for i, c in enumerate(cond.any):
            out += walk(c, (*loc, "any", i))
    elif isinstance(cond, Not):
        out += walk(cond.not_, (*loc, "not"))
    return out


def calendar_names(journey: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, name) of every ``in_calendar`` condition of a journey model."""
    from orchestrator.journey.model import conditions_at

    return [
        ((*loc, *inner, "in_calendar"), c.in_calendar)
        for loc, cond in conditions_at(journey)
        for inner, c in walk(cond)
        if isinstance(c, InCalendar)
    ]


def member_conditions(cond: Any) -> list[tuple[tuple[str | int, ...], Member]]:
    """Every in_journey/not_in_journey condition nested in ``cond``, with its place inside it."""
    if isinstance(cond, Member):
        return [((), cond)]
    nested: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(cond, All):
        nested = [(("all", i), c) for i, c in enumerate(cond.all)]
    elif isinstance(cond, AnyOf):
        nested = [(("any", i), c) for i, c in enumerate(cond.any)]
    elif isinstance(cond, Not):
        nested = [(("not",), cond.not_)]
    return [((*where, *loc), m) for where, c in nested for loc, m in member_conditions(c)]


def seen_conditions(cond: Any) -> list[Seen]:
    """Every seen/not_seen condition nested in ``cond``."""
    if isinstance(cond, Seen):
        return [cond]
    if isinstance(cond, All):
        return [s for c in cond.all for s in seen_conditions(c)]
    if isinstance(cond, AnyOf):
        return [s for c in cond.any for s in seen_conditions(c)]
    if isinstance(cond, Not):
        return seen_conditions(cond.not_)
    return []


# ---------------------------------------------------------------- evaluation


class Ctx:
    """What a condition can see: one event (type, id, time, payload), the profile, now, and the live journey instances."""

    __slots__ = ("data", "entry", "event_id", "event_type", "instances", "now", "occurred_at", "profile")

    def __init__(
        self,
        event_type: str | None,
        event_id: str | None,
        occurred_at: datetime | None,
        data: dict[str, Any],
        profile: Profile,
        now: datetime,
        entry: dict[str, Any] | None = None,
        instances: Iterable[Instance] | None = None,
    ) -> None:
        self.event_type = event_type
        self.instances = instances  # the live journey instances (in_journey conditions); None where not known
        self.event_id = event_id
        self.occurred_at = occurred_at
        self.data = data
        self.profile = profile
        self.now = now
        self.entry = data if entry is None else entry


Predicate = Callable[[Ctx], bool]
MISSING: Any = object()


def field_getter(path: str) -> Callable[[Ctx], Any]:
    """A function reading a dotted field from a :class:`Ctx` (returns :data:`MISSING` when absent)."""
    parts = path.split(".")
    root, rest = parts[0], tuple(parts[1:])
    if root in ("data", "entry"):
        attr = root
        if len(rest) == 1:
            key = rest[0]
            if attr == "data":
                return lambda ctx: ctx.data.get(key, MISSING)
            return lambda ctx: ctx.entry.get(key, MISSING)

        def dig(ctx: Ctx) -> Any:
            cur: Any = getattr(ctx, attr)
            for p in rest:
                if not isinstance(cur, dict) or p not in cur:
                    return MISSING
                cur = cur[p]
            return cur

        return dig
    if root == "event":
        attr = {"type": "event_type", "id": "event_id", "occurred_at": "occurred_at"}[rest[0]]
        return lambda ctx: _none_missing(getattr(ctx, attr))
    name = rest[0]
    if name == "attributes":
        key = rest[1]
        return lambda ctx: ctx.profile.attributes.get(key, MISSING)
    if name == "scores":  # the decayed value at the evaluation's time (state.ScoreValue)
        score = rest[1]
        return lambda ctx: _score_at(ctx, score)
    return lambda ctx: _none_missing(getattr(ctx.profile, name))


def _score_at(ctx: Ctx, name: str) -> Any:
    kept = ctx.profile.scores.get(name)
    return MISSING if kept is None else kept.value_at(ctx.now)


def _none_missing(value: Any) -> Any:
    return MISSING if value is None else value


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _cmp(op: str, a: Any, b: Any) -> bool:
    """Order comparison: numbers with numbers, strings with strings, else both as times; anything else is false."""
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if (isinstance(a, (int, float)) and isinstance(b, (int, float))) or (isinstance(a, str) and isinstance(b, str)):
        return _ORDER[op](a, b)
    ta, tb = _as_time(a), _as_time(b)
    if ta is not None and tb is not None:
        return _ORDER[op](ta.timestamp(), tb.timestamp())
    return False


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


Test = Callable[[Any], bool]


def _test_eq(b: Any) -> Test:
    return lambda v: v is not MISSING and _eq(v, b)


def _test_ne(b: Any) -> Test:
    return lambda v: v is MISSING or not _eq(v, b)


def _test_order(op: str) -> Callable[[Any], Test]:
    return lambda b: lambda v: v is not MISSING and _cmp(op, v, b)


def _test_in(values: Any) -> Test:
    vals = list(values or [])
    return lambda v: v is not MISSING and any(_eq(v, x) for x in vals)


def _test_not_in(values: Any) -> Test:
    vals = list(values or [])
    return lambda v: v is MISSING or not any(_eq(v, x) for x in vals)


def _test_exists(value: Any) -> Test:
    want = bool(value)
    return lambda v: (v is not MISSING) == want


def _test_contains(b: Any) -> Test:
    return lambda v: (isinstance(v, str) and isinstance(b, str) and b in v) or (isinstance(v, (list, tuple)) and any(_eq(x, b) for x in v))


_TESTS: dict[str, Callable[[Any], Test]] = {
    "eq": _test_eq,
    "ne": _test_ne,
    "gt": _test_order("gt"),
    "gte": _test_order("gte"),
    "lt": _test_order("lt"),
    "lte": _test_order("lte"),
    "in_": _test_in,
    "not_in": _test_not_in,
    "exists": _test_exists,
    "contains": _test_contains,
}
"""One test builder per comparison operator of a ``field:`` condition."""


def _compile_compare(c: Compare) -> Predicate:
    get = field_getter(c.field)
    tests = [_TESTS[op](getattr(c, op)) for op in c.model_fields_set - {"field"} if op in _TESTS]
    if len(tests) == 1:
        t0 = tests[0]
        return lambda ctx: t0(get(ctx))

    def check(ctx: Ctx) -> bool:
        v = get(ctx)
        return all(t(v) for t in tests)

    return check


def _compile_since(c: Since) -> Predicate:
    get = field_getter(c.since)
    older, younger = c.older_than, c.younger_than

    def check(ctx: Ctx) -> bool:
        at = _as_time(get(ctx))
        if at is None:
            return False
        age = ctx.now - at
        if older is not None and age < older:
            return False
        return younger is None or age < younger

    return check


def _compile_seen(c: Seen) -> Predicate:
    etype = c.event_type
    negate = c.not_seen is not None
    within: timedelta | None = c.within
    field = None
    value_pred: Predicate | None = None
    if c.where:
        field = condition_fields(c.where[0])[0].split(".", 1)[1] if condition_fields(c.where[0]) else None
        value_pred = compile_all(c.where)
    min_count = c.min_count

    def check(ctx: Ctx) -> bool:
        stats = ctx.profile.seen.get(etype)
        if stats is None:
            return negate
        since = ctx.now - within if within is not None else None
        if value_pred is None or field is None:
            found = stats.count >= min_count and (since is None or stats.last_at >= since)
            return not found if negate else found
        for value, last_at in stats.values.get(field, ()):
            if since is not None and last_at < since:
                continue
            if value_pred(Ctx(etype, None, last_at, _unflatten(field, value), ctx.profile, ctx.now)):
                return not negate
        # not among the values kept: "not seen" only if they are complete for the whole look-back
        return negate and history_complete(stats, field, since)

    return check


def history_complete(stats: TypeSeen, field: str, since: datetime | None) -> bool:
    """Whether ``stats.values[field]`` holds every value of the events of its type at or after ``since`` (None: ever).

    Unknown history (see ``journey/facts.py``) makes a ``seen``/``not_seen ... where`` false both ways.
    """
    if since is not None and stats.last_at < since:
        return True  # no event of the type in the look-back at all
    if field not in stats.complete_after:
        return False
    after = stats.complete_after[field]
    return after is None or (since is not None and after < since)


def _compile_in_calendar(c: InCalendar, calendars: Mapping[str, Any]) -> Predicate:
    from orchestrator.journey.windows import in_window

    window = calendars.get(c.in_calendar)
    if window is None:  # validate refuses it (check_graph); a predicate that can not hold is the safe answer
        return lambda ctx: False
    return lambda ctx: in_window(window, ctx.profile.timezone, ctx.now)


def _compile_member(c: Member) -> Predicate:
    journey_id = c.journey_id
    steps = frozenset(c.at) if c.at else None
    negate = c.not_in_journey is not None

    def check(ctx: Ctx) -> bool:
        if ctx.instances is None:
            raise ValueError("in_journey/not_in_journey need the customer's instances (Ctx.instances)")
        found = any(i.journey_id == journey_id and (steps is None or i.step in steps) for i in ctx.instances)
        return not found if negate else found

    return check


def _unflatten(field: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cur = out
    parts = field.split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return out


def compile_condition(cond: Any, calendars: Mapping[str, Any] | None = None) -> Predicate:
    """Turn one condition model into a predicate over a :class:`Ctx` (``calendars``: the journey's, for ``in_calendar``)."""
    if isinstance(cond, Compare):
        return _compile_compare(cond)
    if isinstance(cond, All):
        return compile_all(cond.all, calendars)
    if isinstance(cond, AnyOf):
        preds = [compile_condition(c, calendars) for c in cond.any]
        return lambda ctx: any(p(ctx) for p in preds)
    if isinstance(cond, Not):
        inner = compile_condition(cond.not_, calendars)
        return lambda ctx: not inner(ctx)
    if isinstance(cond, InCalendar):
        return _compile_in_calendar(cond, calendars or {})
    if isinstance(cond, Since):
        return _compile_since(cond)
    if isinstance(cond, Seen):
        return _compile_seen(cond)
    if isinstance(cond, Member):
        return _compile_member(cond)
    raise TypeError(f"not a condition: {cond!r}")  # pragma: no cover


def _true(ctx: Ctx) -> bool:
    return True


def compile_all(conds: list[Any], calendars: Mapping[str, Any] | None = None) -> Predicate:
    """A predicate that holds when every condition in ``conds`` holds (true for none)."""
    preds = [compile_condition(c, calendars) for c in conds]
    if not preds:
        return _true
    if len(preds) == 1:
        return preds[0]
    return lambda ctx: all(p(ctx) for p in preds)

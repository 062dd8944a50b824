"""One customer's state: profile, live journey instances, history, split variants, dedupe.

The Faust table stores it as JSON (``model_dump_json`` / ``model_validate_json``).
The engine treats every object here as immutable: ``engine.step`` never mutates the
state it is given; it returns a new :class:`CustomerState` that shares every part it
did not change (copy-on-write with ``model_copy``), which keeps a step cheap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.actions import Send
from orchestrator.pressure.basket import Decision

Scalar = Union[str, int, float, bool, None]

RECENT_EVENT_IDS = 64
"""How many recent event ids a customer remembers for deduplication."""
SEEN_VALUES_PER_FIELD = 32
"""How many distinct values of one tracked payload field the profile remembers (oldest evicted)."""
HISTORY_JOURNEYS = 256
"""How many journeys' entry/exit history a customer keeps (oldest exit evicted)."""

# ---------------------------------------------------------------- recent event ids (dedupe)
#
# The recent ids are kept in ONE string, each id followed by a separator:
# ``"\x1fid1\x1fid2\x1f"`` (or ``""`` when empty). A membership test is a single substring
# search for ``"\x1f" + id + "\x1f"`` in that contiguous string, and remembering an id builds
# one new string -- no per-id objects are touched, which is what made the old list slow (every
# check compared, and every copy increfed, up to 64 separate string objects).
# Ids may hold any character: an id containing the separator or the escape character is
# escaped (ESC -> ESC "0", SEP -> ESC "1"), an injective encoding free of SEP.

RECENT_SEP = "\x1f"
RECENT_ESC = "\x1e"


def recent_encode(event_id: str) -> str:
    """The separator-free form of an event id inside the recent-ids string."""
    if RECENT_ESC in event_id or RECENT_SEP in event_id:
        return event_id.replace(RECENT_ESC, RECENT_ESC + "0").replace(RECENT_SEP, RECENT_ESC + "1")
    return event_id


def recent_decode(encoded: str) -> str:
    """The inverse of :func:`recent_encode`."""
    if RECENT_ESC not in encoded:
        return encoded
    out: list[str] = []
    i = 0
    n = len(encoded)
    while i < n:
        c = encoded[i]
        if c == RECENT_ESC and i + 1 < n:
            out.append(RECENT_ESC if encoded[i + 1] == "0" else RECENT_SEP)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def recent_contains(recent: str, event_id: str) -> bool:
    """Whether ``event_id`` is among the remembered ids."""
    return (RECENT_SEP + recent_encode(event_id) + RECENT_SEP) in recent


def recent_add(recent: str, event_id: str, keep: int = RECENT_EVENT_IDS) -> str:
    """The recent-ids string with ``event_id`` appended; only the ``keep`` most recent ids are kept."""
    if not recent:
        return RECENT_SEP + recent_encode(event_id) + RECENT_SEP
    n = recent.count(RECENT_SEP) - 1  # ids held
    if n >= keep:
        cut = 0
        for _ in range(n - keep + 1):  # drop the oldest ids so that keep - 1 remain
            cut = recent.index(RECENT_SEP, cut + 1)
        recent = recent[cut:]
    return recent + recent_encode(event_id) + RECENT_SEP


def recent_list(recent: str) -> list[str]:
    """The remembered ids, oldest first."""
    if not recent:
        return []
    return [recent_decode(x) for x in recent[1:-1].split(RECENT_SEP)]


def recent_from_list(ids: list[str], keep: int = RECENT_EVENT_IDS) -> str:
    """The recent-ids string holding the last ``keep`` of ``ids`` (oldest first)."""
    ids = ids[-keep:] if keep else []
    if not ids:
        return ""
    return RECENT_SEP + RECENT_SEP.join(recent_encode(x) for x in ids) + RECENT_SEP


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TypeSeen(_State):
    """What the profile remembers about one event type."""

    count: int = 0
    first_at: datetime
    last_at: datetime
    values: dict[str, list[tuple[Scalar, datetime]]] = Field(
        default_factory=dict,
        description="Per tracked payload field: the last distinct values with the time each was last seen (bounded).",
    )


class Profile(_State):
    """The accumulated profile conditions can read as ``profile.X``."""

    timezone: str = "UTC"
    segment: str | None = None
    registered_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    attributes: dict[str, Scalar] = Field(default_factory=dict)
    seen: dict[str, TypeSeen] = Field(default_factory=dict, description="Per qualified event type.")


class TimerRef(_State):
    timer_id: str
    purpose: Literal["timeout", "delay", "window", "deferred_send"]
    due_at: datetime


class Awaited(_State):
    """One event a waiting instance is waiting for."""

    event_type: str
    send_id: str | None = Field(default=None, description="For ccm events: the exact send id awaited.")
    index: int = Field(description="Index of the matcher in the wait step's for: list.")


class Instance(_State):
    """One customer's run through one version of one journey."""

    instance_id: str
    journey_id: str
    version: int
    entry_event_id: str
    entered_at: datetime
    step: str = Field(description="The step the instance is at (parked at).")
    status: Literal["running", "gating", "waiting", "delayed", "deferred"] = "running"
    awaiting: list[Awaited] = Field(default_factory=list)
    timers: list[TimerRef] = Field(default_factory=list, description="Pending timers (at most one in practice).")
    gating: Send | None = Field(default=None, description="The send handed to the basket, awaiting its GateOutcome.")
    attempt: int = Field(default=0, description="Deferral attempts of the current send step.")
    window_ok: bool = Field(default=False, description="The send window of the current step was already satisfied.")
    deferred: Send | None = None
    deferred_decision: Decision | None = None
    sent: dict[str, str] = Field(default_factory=dict, description="step id -> send id of the approved send.")
    visits: dict[str, int] = Field(default_factory=dict, description="step id -> times entered.")
    entry_data: dict[str, Any] = Field(default_factory=dict, description="Payload of the entry event (entry.X in conditions).")
    ctx_type: str | None = Field(default=None, description="Type of the event that last moved the instance.")
    ctx_event_id: str | None = None
    ctx_at: datetime | None = None
    ctx_data: dict[str, Any] = Field(default_factory=dict, description="Its payload (branches and variables read it).")


class JourneyHistory(_State):
    """Per journey id, for re-entry rules and reporting."""

    entries: int = 0
    last_entered_at: datetime | None = None
    last_exited_at: datetime | None = None
    last_outcome: str | None = None
    conversions: int = 0


class CustomerState(_State):
    """Everything the engine knows about one customer."""

    customer_id: str
    profile: Profile = Field(default_factory=Profile)
    instances: list[Instance] = Field(default_factory=list)
    history: dict[str, JourneyHistory] = Field(default_factory=dict)
    variants: dict[str, str] = Field(default_factory=dict, description="'journey_id/step_id' -> variant name (sticky).")
    recent_event_ids: str = Field(
        default="",
        description=(
            f"The last {RECENT_EVENT_IDS} event ids (dedupe), oldest first, in one string: each id (escaped, see "
            "recent_encode) preceded and followed by \\x1f; '' when empty. A legacy list of ids is accepted on input."
        ),
    )
    events_seen: int = 0

    @field_validator("recent_event_ids", mode="before")
    @classmethod
    def _recent_from_legacy_list(cls, v: Any) -> Any:
        # states stored before the one-string form held a JSON list of ids
        if isinstance(v, list):
            return recent_from_list([str(x) for x in v])
        return v

    def recent_ids(self) -> list[str]:
        """The remembered event ids, oldest first."""
        return recent_list(self.recent_event_ids)

    @classmethod
    def new(cls, customer_id: str) -> "CustomerState":
        """The state of a customer the orchestrator has never seen."""
        return cls(customer_id=customer_id)

    def instance(self, instance_id: str) -> Instance | None:
        """The live instance with this id, if any."""
        for inst in self.instances:
            if inst.instance_id == instance_id:
                return inst
        return None

    def pending_timers(self) -> list[TimerRef]:
        """Every timer armed by a live instance (what the timer table should hold)."""
        return [t for inst in self.instances for t in inst.timers]


# ---------------------------------------------------------------- engine-internal fast paths
#
# pydantic's model_construct/model_copy cost several microseconds each; the engine builds
# many small objects from data it has already validated, so it uses these two helpers
# instead. They skip validation: pass only correctly typed values.

_object_setattr = object.__setattr__
_INFO: dict[type, tuple[int, set[str], list[tuple[str, Any, Any]]]] = {}
# the slot setters of every pydantic model (calling them directly skips the attribute lookup of object.__setattr__)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_new = object.__new__


def _info(cls: type[Any]) -> tuple[int, set[str], list[tuple[str, Any, Any]]]:
    defaults = [(n, f.default_factory, f.default) for n, f in cls.model_fields.items() if not f.is_required()]
    info = (len(cls.model_fields), set(cls.model_fields), defaults)
    _INFO[cls] = info
    return info


def fast_new(cls: type[Any], **fields: Any) -> Any:
    """Build a model instance from trusted, already typed values (no validation); missing fields get their defaults."""
    info = _INFO.get(cls) or _info(cls)
    if len(fields) != info[0]:
        for name, factory, default in info[2]:
            if name not in fields:
                fields[name] = factory() if factory is not None else default
    obj = _new(cls)
    _set_dict(obj, fields)
    # every field is set: share one set of all names (adding a field name to it is a no-op)
    _set_fields_set(obj, info[1])
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def fast_build(cls: type[Any], fields: dict[str, Any]) -> Any:
    """Like :func:`fast_new` with a ready dict that holds every field (taken over, not copied)."""
    obj = _new(cls)
    _set_dict(obj, fields)
    _set_fields_set(obj, (_INFO.get(cls) or _info(cls))[1])
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


def fast_copy(obj: Any, **updates: Any) -> Any:
    """A shallow copy of a model with some fields replaced (no validation)."""
    cls = obj.__class__
    new = _new(cls)
    data = obj.__dict__.copy()
    if updates:
        data.update(updates)
    _set_dict(new, data)
    # the copy carries every field: share the set of all names (adding a field name to it is a no-op)
    _set_fields_set(new, (_INFO.get(cls) or _info(cls))[1])
    _set_extra(new, None)
    _set_private(new, None)
    return new

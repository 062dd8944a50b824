"""One customer's state: profile, live journey instances, history, split variants, dedupe.

The worker keeps it as JSON (``model_dump_json`` / ``model_validate_json``) in its state
store and changelog (``orchestrator.runtime.store``). The engine treats every object here
as immutable: ``engine.step`` never mutates the state it is given; it returns a new
:class:`CustomerState` that shares every part it did not change (copy-on-write, see
``orchestrator.engine.draft``), which keeps a step cheap.

Dedupe is by time: every event id is remembered (as a 64-bit digest) with the engine time it
was first seen, for :attr:`EngineLimits.dedupe_window` (7 days by default), capped at
:attr:`EngineLimits.dedupe_max_ids` ids per customer (8192 by default, 17 bytes each: at most
139,264 bytes). See :func:`remember` for the encoding.
"""

from __future__ import annotations

import hashlib
from binascii import b2a_base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.actions import Send
from orchestrator.pressure.basket import Decision

Scalar = str | int | float | bool | None

PROFILE_LISTS = 64
"""How many named lists a profile remembers (the oldest-named are dropped first: lists are kept sorted)."""
PROFILE_TAGS = 64
"""How many tags journeys may set on a profile (``update_profile``; kept sorted, like lists: the first-sorted go first)."""
HISTORY_JOURNEYS = 256
"""How many journeys' entry/exit history a customer keeps (oldest exit evicted)."""


@dataclass(frozen=True)
class EngineLimits:
    """Per-customer bounds of the engine, fixed for a run (the shell builds them from settings).

    ``dedupe_window``: an event id seen again within this time of its first sighting (engine
    time, the ``now`` given to ``engine.step``) is a duplicate: it never re-enters a journey
    nor republishes anything. Resolution is one minute: an id is remembered for at least the
    window (rounded up to whole minutes) and at most one minute longer.

    ``dedupe_max_ids``: a hard cap on the ids a customer remembers, so the state stays bounded
    at ``dedupe_max_ids * DEDUPE_ENTRY_CHARS`` bytes (8192 * 17 = 139,264 bytes by default, in
    memory and in the stored JSON). 8192 ids in 7 days is one event every 74 s for the whole
    week; a customer with more events than that inside the window loses the oldest ids first:
    for that overflow the dedupe is by count (the last ``dedupe_max_ids`` ids), as it was
    (with 64) before. Keep ``dedupe_max_ids * 17`` well below the maximum state size.
    """

    dedupe_window: timedelta = timedelta(days=7)
    dedupe_max_ids: int = 8192

    def __post_init__(self) -> None:
        if not isinstance(self.dedupe_window, timedelta) or self.dedupe_window <= timedelta(0):
            raise ValueError(f"dedupe_window must be a positive timedelta, not {self.dedupe_window!r}")
        if not isinstance(self.dedupe_max_ids, int) or self.dedupe_max_ids < 1:
            raise ValueError(f"dedupe_max_ids must be a positive int, not {self.dedupe_max_ids!r}")


DEFAULT_LIMITS = EngineLimits()

# ---------------------------------------------------------------- remembered event ids (dedupe)
#
# A customer remembers each event id it processed together with the engine time it was first
# seen, in ONE ASCII string of fixed-width entries, oldest first:
#
#     digest (11 chars) + "=" + seen (5 chars)        = 17 chars = 17 bytes per id
#
# * digest: blake2b with an 8-byte (64-bit) digest of the id's utf-8, in standard base64 with
#   its "=" pad (alphabet A-Z a-z 0-9 + /). Ids of any length and any characters cost the same.
#   A false duplicate needs two different ids of one customer, both within its remembered
#   set, to share 64 bits: with at most 8192 ids remembered the chance per new event is
#   below 8192 / 2**64 ~ 4e-16 -- negligible (one false duplicate in ~2e15 events).
# * seen: whole minutes since 2000-01-01 UTC, 5 chars (30 bits, good until the year 4041)
#   in the base64 characters sorted by code point, so that comparing two of them as strings
#   compares the times. Entries are appended in time order (a clock that steps back is
#   clamped to the newest entry's time, so the order holds and an id is never forgotten early).
# * "=": the base64 pad ends every digest and occurs nowhere else, so a membership test is a
#   single substring search for digest + "=", and a hit is always one whole entry's digest.
#
# Per event: prune from the front the entries seen before ``now - dedupe_window`` (the check
# is one 5-char comparison of the oldest entry, a second one when it expired -- in steady
# state usually exactly one entry expires per event -- and a binary search when more did),
# search, append one entry, and if over the cap drop the oldest with one slice (fixed width).
# The string is "" for a customer that never had an event, and is JSON-safe (17 bytes per id
# in the stored JSON too).
#
# Older stored forms still load and still deduplicate the ids they hold: a JSON list of raw
# ids, and the separator-joined string of raw ids ("\x1fid1\x1fid2\x1f", escaped with
# recent_encode). The first event of such a state converts every id it holds into an entry
# seen at that event's ``now`` (their real time is unknown; this remembers them for one more
# full window, erring on the safe side).

DEDUPE_DIGEST_BYTES = 8
DEDUPE_KEY_CHARS = 12
"""The digest and its "=": what a membership test searches for."""
DEDUPE_TIME_CHARS = 5
DEDUPE_ENTRY_CHARS = DEDUPE_KEY_CHARS + DEDUPE_TIME_CHARS
"""Bytes one remembered id costs (the string is ASCII: one byte per char in memory and in JSON)."""
DEDUPE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_EPOCH_S = int(DEDUPE_EPOCH.timestamp())
_ONE_MINUTE = timedelta(minutes=1)
_SECOND_TIME = DEDUPE_ENTRY_CHARS + DEDUPE_KEY_CHARS  # where the second entry's time is
_SECOND_END = 2 * DEDUPE_ENTRY_CHARS
_TIME_ALPHABET = "+/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TIME_VALUE = {c: i for i, c in enumerate(_TIME_ALPHABET)}
_TIME_MAX = 64**DEDUPE_TIME_CHARS - 1
_blake2b_8 = hashlib.blake2b(digest_size=DEDUPE_DIGEST_BYTES).copy  # copying a fresh hash beats building one


def dedupe_key(event_id: str) -> str:
    """The 12 chars that stand for ``event_id`` in an entry: its base64 digest with the "=" pad."""
    try:
        raw = event_id.encode()
    except UnicodeEncodeError:  # a lone surrogate (possible in JSON): still a distinct, stable digest
        raw = event_id.encode("utf-8", "surrogatepass")
    h = _blake2b_8()
    h.update(raw)
    return b2a_base64(h.digest(), newline=False).decode()


def _minute(at: datetime) -> int:
    """Whole minutes since DEDUPE_EPOCH, clamped to what 5 chars hold."""
    try:
        m = (at - DEDUPE_EPOCH) // _ONE_MINUTE  # exact
    except TypeError:  # a naive datetime: taken as local time, as datetime.timestamp() does
        m = (int(at.timestamp()) - _EPOCH_S) // 60
    return 0 if m < 0 else _TIME_MAX if m > _TIME_MAX else m


def _time_key(minute: int) -> str:
    a = _TIME_ALPHABET
    return a[minute >> 24 & 63] + a[minute >> 18 & 63] + a[minute >> 12 & 63] + a[minute >> 6 & 63] + a[minute & 63]


def _time_of(key: str) -> datetime:
    v = _TIME_VALUE
    minute = 0
    for c in key:
        minute = minute * 64 + v[c]
    return DEDUPE_EPOCH + minute * _ONE_MINUTE


# A memo of the last minute seen (a pure function of now and limits; the engine calls remember with
# the same minute again and again): (minute start, minute end, limits, key of now, key of the
# cutoff, max length). Replaced as a whole, so a reader never sees a mix of two minutes.
_clock: tuple[datetime, datetime, Any, str, str, int] = (DEDUPE_EPOCH, DEDUPE_EPOCH, None, "", "", 0)


def _clock_for(now: datetime, limits: EngineLimits) -> tuple[datetime, datetime, Any, str, str, int]:
    global _clock
    minute = _minute(now)
    window = -(-limits.dedupe_window // _ONE_MINUTE)  # whole minutes, rounded up
    cutoff = max(minute - window, 0)
    start = DEDUPE_EPOCH + minute * _ONE_MINUTE
    _clock = (start, start + _ONE_MINUTE, limits, _time_key(minute), _time_key(cutoff), limits.dedupe_max_ids * DEDUPE_ENTRY_CHARS)
    return _clock


def _prune(recent: str, cutoff_key: str) -> str:
    """``recent`` without the entries seen before the cutoff (they are at the front: binary search)."""
    w = DEDUPE_ENTRY_CHARS
    lo, hi = 0, len(recent) // w
    while lo < hi:
        mid = (lo + hi) // 2
        p = mid * w + DEDUPE_KEY_CHARS
        if recent[p : p + DEDUPE_TIME_CHARS] < cutoff_key:
            lo = mid + 1
        else:
            hi = mid
    return recent[lo * w :]


def _upgrade(recent: str, seen_key: str) -> str:
    """A legacy string of raw ids as entries, every one seen at ``seen_key``."""
    return "".join(dedupe_key(x) + seen_key for x in recent_list(recent))


def remember(recent: str, event_id: str, now: datetime, limits: EngineLimits = DEFAULT_LIMITS) -> str | None:
    """Dedupe ``event_id`` at engine time ``now``: None when it was seen within the window, else
    the remembered-ids string with it added (expired entries dropped, capped at ``dedupe_max_ids``)."""
    clock = _clock
    try:
        if not (clock[0] <= now < clock[1] and (limits is clock[2] or limits == clock[2])):
            clock = _clock_for(now, limits)
    except TypeError:  # a naive now: no memo
        clock = _clock_for(now, limits)
    try:
        raw = event_id.encode()
    except UnicodeEncodeError:
        raw = event_id.encode("utf-8", "surrogatepass")
    h = _blake2b_8()
    h.update(raw)
    key = b2a_base64(h.digest(), newline=False).decode()  # = dedupe_key(event_id), inlined: this runs per event
    if not recent:
        return key + clock[3]
    if recent[0] == RECENT_SEP:
        recent = _upgrade(recent, clock[3])
    cutoff = clock[4]
    if recent[DEDUPE_KEY_CHARS:DEDUPE_ENTRY_CHARS] < cutoff:  # the oldest entry expired
        # in steady state (a customer active for longer than the window) usually just that one
        second_alive = recent[_SECOND_TIME:_SECOND_END] >= cutoff
        recent = recent[DEDUPE_ENTRY_CHARS:] if second_alive else _prune(recent, cutoff)
    if key in recent:
        return None
    last = recent[-DEDUPE_TIME_CHARS:]
    now_key = clock[3]
    recent = f"{recent}{key}{now_key if now_key >= last else last}"
    if len(recent) > clock[5]:
        recent = recent[-clock[5] :]
    return recent


def dedupe_entries(recent: str) -> list[tuple[str, datetime | None]]:
    """The remembered ids as (key, first seen), oldest first; a legacy form gives its ids' keys and None."""
    if not recent:
        return []
    if recent[0] == RECENT_SEP:
        return [(dedupe_key(x), None) for x in recent_list(recent)]
    w = DEDUPE_ENTRY_CHARS
    k = DEDUPE_KEY_CHARS
    return [(recent[i : i + k], _time_of(recent[i + k : i + w])) for i in range(0, len(recent), w)]


def dedupe_contains(recent: str, event_id: str, now: datetime | None = None, limits: EngineLimits = DEFAULT_LIMITS) -> bool:
    """Whether ``event_id`` is remembered (with ``now``: and would be a duplicate at that time)."""
    if now is None:
        if recent and recent[0] == RECENT_SEP:
            return recent_contains(recent, event_id)
        return dedupe_key(event_id) in recent
    return remember(recent, event_id, now, limits) is None


# ---------------------------------------------------------------- legacy form: raw ids joined by \x1f
#
# States stored before the time-based dedupe hold ``"\x1fid1\x1fid2\x1f"``: each raw id
# preceded and followed by a separator, ids holding the separator or the escape character
# escaped (ESC -> ESC "0", SEP -> ESC "1"). These helpers read (and, for tests, write) it.

RECENT_SEP = "\x1f"
RECENT_ESC = "\x1e"


def recent_encode(event_id: str) -> str:
    """The separator-free form of an event id inside the legacy recent-ids string."""
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
    """Whether ``event_id`` is among the ids of a legacy recent-ids string."""
    return (RECENT_SEP + recent_encode(event_id) + RECENT_SEP) in recent


def recent_list(recent: str) -> list[str]:
    """The ids of a legacy recent-ids string, oldest first."""
    if not recent:
        return []
    return [recent_decode(x) for x in recent[1:-1].split(RECENT_SEP)]


def recent_from_list(ids: list[str]) -> str:
    """The legacy recent-ids string holding ``ids`` (oldest first)."""
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
        description="Per declared payload field (journeys/profile.yaml): the last distinct values, each with the time it was last seen.",
    )
    complete_after: dict[str, datetime | None] = Field(
        default_factory=dict,
        description=(
            "Per declared payload field: values holds every value of the events of this type after this time "
            "(null: since the first); a field not listed is not recorded for this customer."
        ),
    )


class ScoreValue(_State):
    """One score of the customer (``journeys/scores.yaml``): its value at ``at``, halving every ``half_life_s`` seconds.

    Decay needs no timer: :meth:`value_at` computes the value at any later time. ``latched``: the
    crossings (threshold, re-armed below) of loaded ``entry.score`` journeys this score passed upward
    and has not yet been seen below the re-arm value since (``engine/scores.py``).
    """

    value: float
    at: datetime
    half_life_s: float | None = None
    latched: list[tuple[float, float]] = Field(default_factory=list)

    def value_at(self, when: datetime) -> float:
        """The value at ``when`` (never grown: a time before ``at`` gives the stored value)."""
        half = self.half_life_s
        if half is None or when <= self.at:
            return self.value
        return round(self.value * 0.5 ** ((when - self.at).total_seconds() / half), SCORE_DIGITS)


SCORE_DIGITS = 6
"""Decimals a score is rounded to (stored and read): keeps the state small and the results exact on replay."""


class Profile(_State):
    """The accumulated profile conditions can read as ``profile.X``."""

    timezone: str = "UTC"
    segment: str | None = None
    registered_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    attributes: dict[str, Scalar] = Field(default_factory=dict)
    lists: list[str] = Field(
        default_factory=list,
        description=f"Named lists the customer is on (crm.added_to_list / removed_from_list), sorted; at most {PROFILE_LISTS}.",
    )
    tags: list[str] = Field(
        default_factory=list,
        description=f"Tags journeys set (update_profile add_tags / remove_tags), sorted; at most {PROFILE_TAGS}.",
    )
    seen: dict[str, TypeSeen] = Field(default_factory=dict, description="Per qualified event type.")
    scores: dict[str, ScoreValue] = Field(default_factory=dict, description="Per score of journeys/scores.yaml (profile.scores.NAME).")


class TimerRef(_State):
    timer_id: str
    purpose: Literal["timeout", "delay", "window", "deferred_send", "quiet"]
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
    expires_at: datetime | None = Field(
        default=None, description="The current send step's deadline (reached + expires_after): held until then at most, then expired."
    )
    sent: dict[str, str] = Field(default_factory=dict, description="step id -> send id of the approved send.")
    visits: dict[str, int] = Field(default_factory=dict, description="step id -> times entered.")
    entry_data: dict[str, Any] = Field(default_factory=dict, description="Payload of the entry event (entry.X in conditions).")
    ctx_type: str | None = Field(default=None, description="Type of the event that last moved the instance.")
    ctx_event_id: str | None = None
    ctx_at: datetime | None = None
    ctx_data: dict[str, Any] = Field(default_factory=dict, description="Its payload (branches and variables read it).")
    quiet_since: datetime | None = Field(default=None, description="A quiet_for wait: the last activity (or when the wait began).")
    wait_until: datetime | None = Field(default=None, description="A quiet_for wait with a timeout: when it times out.")


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
            "The event ids seen within the dedupe window (EngineLimits), oldest first, in one ASCII string of "
            "17-char entries: 12 chars of base64 blake2b digest of the id (ending in '='), 5 chars of the minute first seen "
            "(see state.remember); '' when empty. Older forms are accepted on input: a list of raw ids, or raw ids "
            "joined by \\x1f."
        ),
    )
    events_seen: int = 0

    @field_validator("recent_event_ids", mode="before")
    @classmethod
    def _recent_event_ids_form(cls, v: Any) -> Any:
        if isinstance(v, list):  # states stored before the one-string form held a JSON list of raw ids
            return recent_from_list([str(x) for x in v])
        if isinstance(v, str) and v:
            if v[0] == RECENT_SEP:
                if v[-1] != RECENT_SEP:
                    raise ValueError("recent_event_ids: a legacy \\x1f-joined string must end with \\x1f")
            elif len(v) % DEDUPE_ENTRY_CHARS or v[DEDUPE_KEY_CHARS - 1] != "=":
                raise ValueError(f"recent_event_ids: not a string of {DEDUPE_ENTRY_CHARS}-char entries")
        return v

    def remembered(self) -> list[tuple[str, datetime | None]]:
        """The remembered event ids as (digest key, minute first seen), oldest first (None: a legacy form, time unknown).

        The ids themselves are not kept; compare with :func:`dedupe_key` or ask :meth:`remembers`.
        """
        return dedupe_entries(self.recent_event_ids)

    def remembers(self, event_id: str, now: datetime | None = None, limits: EngineLimits = DEFAULT_LIMITS) -> bool:
        """Whether ``event_id`` is remembered; with ``now``: whether ``engine.step`` would drop it as a duplicate then."""
        return dedupe_contains(self.recent_event_ids, event_id, now, limits)

    @classmethod
    def new(cls, customer_id: str) -> CustomerState:
        """The state of a customer the orchestrator has never seen."""
        return cls(customer_id=customer_id)

    def pending_timers(self) -> list[TimerRef]:
        """Every timer armed by a live instance (what the worker's timer heap holds for this customer)."""
        return [t for inst in self.instances for t in inst.timers]

"""Remembered event ids: the dedupe window of each customer (the codec of ``CustomerState.recent_event_ids``).

Dedupe is by time: every event id is remembered (as a 64-bit digest) with the engine time it
was first seen, for :attr:`EngineLimits.dedupe_window` (7 days by default), capped at
:attr:`EngineLimits.dedupe_max_ids` ids per customer (8192 by default, 17 bytes each: at most
139,264 bytes). See :func:`remember` for the encoding; :mod:`orchestrator.state` holds the
state it is part of.
"""

from __future__ import annotations

import hashlib
from binascii import b2a_base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


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


def dedupe_contains(
    recent: str, event_id: str, now: datetime | None = None, limits: EngineLimits = DEFAULT_LIMITS, *, key: str | None = None
) -> bool:
    """Whether ``event_id`` is remembered (with ``now``: and would be a duplicate at that time).

    ``key``: ``dedupe_key(event_id)`` when the caller has it already (one id looked up in many customers' ids).
    """
    if now is None:
        if not recent:
            return False
        if recent[0] == RECENT_SEP:
            return recent_contains(recent, event_id)
        return (key if key is not None else dedupe_key(event_id)) in recent
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

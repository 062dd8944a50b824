"""Folding an event into the customer's profile: counts and times per type, tracked values, CRM fields.

Every event goes through :func:`fold_profile`, most of them through nothing else, so it
works on the models' field dicts directly (see :mod:`orchestrator.fastmodel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.events import CustomerEvent
from orchestrator.fastmodel import fast_build
from orchestrator.journey.facts import TrackedField
from orchestrator.state import PROFILE_LISTS, Profile, TypeSeen

CRM_TYPES = frozenset(("crm.customer_registered", "crm.profile_updated", "crm.added_to_list", "crm.removed_from_list"))
"""Event types whose payload updates the profile's own fields (time zone, segment, attributes)."""


def fold_profile(profile: Profile, ev: CustomerEvent, tracked: Sequence[TrackedField] = ()) -> Profile:
    """The profile after seeing ``ev``: counts and times per type, the declared payload values (``tracked``), CRM fields."""
    event = ev.__dict__
    at = event["occurred_at"]
    etype = event["type"]
    fields = profile.__dict__.copy()
    seen = fields["seen"].copy()  # dict.copy() + one store: about half the cost of {**seen, etype: stats}, same order
    seen[etype] = _seen_once_more(seen.get(etype), event["data"], at, tracked)
    fields["seen"] = seen
    first_seen = fields["first_seen_at"]
    if first_seen is None or at < first_seen:
        fields["first_seen_at"] = at
    last_seen = fields["last_seen_at"]
    if last_seen is None or at > last_seen:
        fields["last_seen_at"] = at
    if etype in CRM_TYPES:
        _fold_crm(fields, etype, event["data"], at)
    return fast_build(Profile, fields)


def _seen_once_more(old: TypeSeen | None, data: dict[str, Any], at: Any, tracked: Sequence[TrackedField]) -> TypeSeen:
    """The stats of one event type after one more event of it at ``at``."""
    if old is None:
        if not tracked:
            return fast_build(TypeSeen, {"count": 1, "first_at": at, "last_at": at, "values": {}, "complete_after": {}})
        values, complete = _track(data, at, {}, dict.fromkeys(f.path for f in tracked), tracked)
        return fast_build(TypeSeen, {"count": 1, "first_at": at, "last_at": at, "values": values, "complete_after": complete})
    stats = old.__dict__
    first, last = stats["first_at"], stats["last_at"]
    if tracked or stats["values"]:
        complete = _complete_after(stats["complete_after"], tracked, last)
        values, complete = _track(data, at, stats["values"], complete, tracked)
    else:
        values, complete = stats["values"], stats["complete_after"]
    # min() / max() semantics: the old value wins a tie
    return fast_build(
        TypeSeen,
        {
            "count": stats["count"] + 1,
            "first_at": at if at < first else first,
            "last_at": at if at > last else last,
            "values": values,
            "complete_after": complete,
        },
    )


def _complete_after(old: dict[str, Any], tracked: Sequence[TrackedField], last: Any) -> dict[str, Any]:
    """Per tracked field, from when its values are complete; a field tracked from now on: after the last event so far."""
    if len(old) == len(tracked) and all(f.path in old for f in tracked):
        return old
    return {f.path: old.get(f.path, last) for f in tracked}


def _track(
    data: dict[str, Any], at: Any, values: dict[str, Any], complete: dict[str, Any], tracked: Sequence[TrackedField]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tracked payload values with this event's added, and the completeness times (see ``journey/facts.py``).

    Per field: the last ``values`` distinct values, each with the time it was last seen; values not
    seen for ``keep`` are forgotten. Forgetting a value last seen at ``t`` makes the field complete only
    after ``t``. A field no longer tracked is dropped with its values.
    """
    out: dict[str, Any] = {}
    complete = dict(complete)
    for fact in tracked:
        path = fact.path
        kept = values.get(path, [])
        v = _dig(data, path)
        if v is not None and not isinstance(v, (dict, list)):
            last_seen = at
            others = []
            for x, t in kept:
                if x == v and isinstance(x, bool) == isinstance(v, bool):
                    last_seen = t if t > last_seen else last_seen  # a late event does not make a value older
                else:
                    others.append((x, t))
            others.append((v, last_seen))
            others.sort(key=_seen_time)
            kept = others
        horizon = None
        if fact.keep is not None and kept:
            newest = kept[-1][1]
            horizon = newest - fact.keep
        cut = len(kept) - fact.values if len(kept) > fact.values else 0
        while cut < len(kept) and horizon is not None and kept[cut][1] < horizon:
            cut += 1
        if cut:
            forgotten = kept[cut - 1][1]
            since = complete.get(path)
            complete[path] = forgotten if since is None or forgotten > since else since
            kept = kept[cut:]
        if kept:
            out[path] = kept
    return out, {f.path: complete.get(f.path) for f in tracked}


def _seen_time(item: tuple[Any, Any]) -> Any:
    return item[1]


def _fold_crm(fields: dict[str, Any], etype: str, data: dict[str, Any], at: Any) -> None:
    if etype == "crm.customer_registered" and fields["registered_at"] is None:
        fields["registered_at"] = at
    if etype == "crm.added_to_list" and data["list"] not in fields["lists"]:
        fields["lists"] = sorted([*fields["lists"], data["list"]])[-PROFILE_LISTS:]
    elif etype == "crm.removed_from_list" and data["list"] in fields["lists"]:
        fields["lists"] = [name for name in fields["lists"] if name != data["list"]]
    if data.get("timezone"):
        fields["timezone"] = data["timezone"]
    if data.get("segment") is not None:
        fields["segment"] = data["segment"]
    attrs = data.get("attributes") or {}
    if attrs:
        fields["attributes"] = {**fields["attributes"], **attrs}


def _dig(data: dict[str, Any], path: str) -> Any:
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur

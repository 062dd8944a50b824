"""Folding an event into the customer's profile: counts and times per type, tracked values, CRM fields.

Every event goes through :func:`fold_profile`, most of them through nothing else, so it
works on the models' field dicts directly (see :mod:`orchestrator.fastmodel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.events import CustomerEvent
from orchestrator.fastmodel import fast_build
from orchestrator.state import PROFILE_LISTS, SEEN_VALUES_PER_FIELD, Profile, TypeSeen

CRM_TYPES = frozenset(("crm.customer_registered", "crm.profile_updated", "crm.added_to_list", "crm.removed_from_list"))
"""Event types whose payload updates the profile's own fields (time zone, segment, attributes)."""


def fold_profile(profile: Profile, ev: CustomerEvent, tracked: Sequence[str] = ()) -> Profile:
    """The profile after seeing ``ev``: counts and times per type, tracked payload values, CRM fields."""
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


def _seen_once_more(old: TypeSeen | None, data: dict[str, Any], at: Any, tracked: Sequence[str]) -> TypeSeen:
    """The stats of one event type after one more event of it at ``at``."""
    if old is None:
        values = _track(data, at, {}, tracked) if tracked else {}
        return fast_build(TypeSeen, {"count": 1, "first_at": at, "last_at": at, "values": values})
    stats = old.__dict__
    values = _track(data, at, stats["values"], tracked) if tracked else stats["values"]
    first, last = stats["first_at"], stats["last_at"]
    # min() / max() semantics: the old value wins a tie
    return fast_build(
        TypeSeen,
        {
            "count": stats["count"] + 1,
            "first_at": at if at < first else first,
            "last_at": at if at > last else last,
            "values": values,
        },
    )


def _track(data: dict[str, Any], at: Any, values: dict[str, Any], tracked: Sequence[str]) -> dict[str, Any]:
    """The tracked payload values with this event's added (the last distinct values per field, bounded)."""
    values = dict(values)
    for path in tracked:
        v = _dig(data, path)
        if v is None or isinstance(v, (dict, list)):
            continue
        kept = [(x, t) for (x, t) in values.get(path, ()) if x != v or isinstance(x, bool) != isinstance(v, bool)]
        kept.append((v, at))
        values[path] = kept[-SEEN_VALUES_PER_FIELD:]
    return values


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

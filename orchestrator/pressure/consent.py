"""Consent: the members of a customer's suppression set and how a consent change edits it.

A member is ``channel`` or ``channel@brand`` (``channel`` may be ``all``; no brand means
every brand). The rules are specified under "Suppression" and "Consent" in the
docstring of :mod:`orchestrator.pressure.policy`.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.events import CHANNELS

__all__ = ["apply_consent", "split_member", "suppression_candidates", "suppression_member"]


def suppression_member(channel: str, brand: str | None) -> str:
    """The suppression-set member for an unsubscribe from ``channel`` (or ``all``) and ``brand`` (None = every brand)."""
    return f"{channel}@{brand}" if brand else channel


def suppression_candidates(channel: str, brand: str | None) -> list[str]:
    """Members that suppress a send on ``channel`` for ``brand``, most specific first."""
    if brand:
        return [f"{channel}@{brand}", f"all@{brand}", channel, "all"]
    return [channel, "all"]


def split_member(member: str) -> tuple[str, str | None]:
    """``"sms@b"`` → ``("sms", "b")``; ``"all"`` → ``("all", None)``."""
    channel, _, brand = member.partition("@")
    return channel, (brand or None)


def apply_consent(members: Iterable[str], channel: str, brand: str | None, subscribed: bool) -> set[str]:
    """The suppression set after one consent change (see "Consent" in :mod:`orchestrator.pressure.policy`)."""
    current = set(members)
    if not subscribed:
        return current | {suppression_member(channel, brand)}
    out: set[str] = set()
    for member in current:
        out.update(_after_resubscribe(member, channel, brand))
    return out


def _after_resubscribe(member: str, channel: str, brand: str | None) -> list[str]:
    """What becomes of one suppression when the customer resubscribes to ``(channel, brand)``."""
    m_channel, m_brand = split_member(member)
    inside_brand = brand is None or m_brand == brand
    if not inside_brand:
        return [member]
    if channel == "all" or m_channel == channel:
        return []  # lifted
    if m_channel == "all":
        return [suppression_member(c, m_brand) for c in CHANNELS if c != channel]
    return [member]

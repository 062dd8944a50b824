"""Basket periods: which period of a policy a moment falls in, for a customer's time zone.

The rules (calendar month in the customer's zone, or a rolling window of N days) are
specified in the docstring of :mod:`orchestrator.pressure.policy` ("Period").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from orchestrator.pressure.policy import PressurePolicy, Rolling
from orchestrator.timeutil import from_ms, resolve_tz, to_ms

__all__ = ["PeriodInfo", "period_bounds", "period_id", "period_info"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class PeriodInfo:
    """The basket period containing a moment: id and bounds in epoch milliseconds.

    Calendar month: ``[start_ms, end_ms)``. Rolling: ``(start_ms, end_ms]`` with
    ``end_ms = now`` and ``window_ms`` the window length.
    """

    id: str
    kind: Literal["calendar_month", "rolling"]
    start_ms: int
    end_ms: int
    window_ms: int = 0


def period_info(policy: PressurePolicy, now: datetime, tz: str | None) -> PeriodInfo:
    """The period of ``policy`` containing ``now`` for a customer in time zone ``tz`` (unknown zones: UTC)."""
    now_ms = to_ms(now)
    spec = policy.period
    if isinstance(spec, Rolling):
        window = spec.days * _DAY_MS
        return PeriodInfo(id=f"rolling-{spec.days}d", kind="rolling", start_ms=now_ms - window, end_ms=now_ms, window_ms=window)
    zone = resolve_tz(tz)
    local = from_ms(now_ms).astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    nxt = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=zone)
    return PeriodInfo(id=f"{local.year:04d}-{local.month:02d}", kind="calendar_month", start_ms=to_ms(start), end_ms=to_ms(nxt))


def period_id(policy: PressurePolicy, now: datetime, tz: str | None) -> str:
    """E.g. ``"2026-11"`` (calendar month in ``tz``) or ``"rolling-30d"``."""
    return period_info(policy, now, tz).id


def period_bounds(policy: PressurePolicy, now: datetime, tz: str | None) -> tuple[float, float]:
    """Start and end of the period containing ``now`` as epoch seconds (rolling: ``(now - N days, now)``)."""
    info = period_info(policy, now, tz)
    return info.start_ms / 1000, info.end_ms / 1000

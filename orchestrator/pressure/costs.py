"""What a send costs: points times channel weight, kept as integer hundredths of a point.

Rounding is half-up, once per amount, so that the Lua gate and its Python twin add
exactly the same integers; see "Cost and rounding" in the docstring of
:mod:`orchestrator.pressure.policy`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from orchestrator.pressure.policy import PressurePolicy

__all__ = ["cost_units", "send_cost", "to_units"]


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _round(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_units(points: float) -> int:
    """``points`` in hundredths of a point, rounded half-up (capacity, thresholds)."""
    return _round(_decimal(points) * 100)


def cost_units(policy: PressurePolicy, comm_type: str, channel: str) -> int:
    """The cost of a send in hundredths of a point: ``points[comm_type] * channel_weights[channel]``, rounded once."""
    return _round(_decimal(getattr(policy.points, comm_type)) * _decimal(getattr(policy.channel_weights, channel)) * 100)


def send_cost(policy: PressurePolicy, comm_type: str, channel: str) -> float:
    """``points[comm_type] * channel_weights[channel]`` rounded to 0.01 point."""
    return cost_units(policy, comm_type, channel) / 100

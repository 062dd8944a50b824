"""The pressure policy a simulation runs with: ``--policy FILE``, else ``pressure.yaml`` next to the journeys, else the default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.pressure.basket import Basket
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import POLICY_FILE, PolicyError, PressurePolicy, load_policy


@dataclass(frozen=True)
class PolicyChoice:
    """The policy a simulation runs with, where it came from, and what the designer should be told about it."""

    policy: PressurePolicy
    source: str | None
    """The policy file, or None for the built-in default policy."""
    notice: str | None = None


def describe_policy(policy: PressurePolicy) -> str:
    """The policy's capacity and period in words, e.g. ``capacity 25 points per calendar month``."""
    days = getattr(policy.period, "days", None)
    period = "calendar month" if days is None else f"rolling {days} days"
    text = f"capacity {policy.capacity:g} points per {period}"
    if policy.priority_reserve:
        text += "; priorities " + ", ".join(f"<= {r.max_priority} fill it up to {r.fill_up_to:g}" for r in policy.priority_reserve)
    return text


def choose_policy(journeys_dir: str | os.PathLike[str], policy_path: str | os.PathLike[str] | None = None) -> PolicyChoice:
    """The policy to simulate with: ``policy_path``, else ``pressure.yaml`` next to the journeys, else the default.

    A ``policy_path`` that does not exist raises :class:`~orchestrator.pressure.policy.PolicyError`
    naming it (never a silent default), as does an invalid policy file. When the journeys
    directory has no ``pressure.yaml``, the built-in default policy is used and the
    choice carries a notice saying so and what the default's capacity is.
    """
    if policy_path is not None:
        if not Path(policy_path).exists():
            raise PolicyError([f"{os.fspath(policy_path)}:1:1: no such policy file (the --policy file must exist)"])
        return PolicyChoice(load_policy(policy_path), os.fspath(policy_path))
    base = Path(journeys_dir)
    folder = base if base.is_dir() else base.parent
    candidate = folder / POLICY_FILE
    if candidate.exists():
        return PolicyChoice(load_policy(candidate), os.fspath(candidate))
    policy = PressurePolicy()
    notice = (
        f"notice: no {POLICY_FILE} in {folder}: using the built-in default policy ({describe_policy(policy)}); "
        f"add {candidate} or give --policy FILE to simulate with your own"
    )
    return PolicyChoice(policy, None, notice)


def default_basket(policy_path: str | os.PathLike[str] | None) -> Basket:
    """The in-memory basket with the policy file, or with the built-in default policy when ``policy_path`` is None.

    Raises :class:`~orchestrator.pressure.policy.PolicyError` when the file is missing or invalid.
    """
    if policy_path is None:
        return MemoryBasket(PressurePolicy())
    return MemoryBasket(choose_policy(Path(policy_path).parent, policy_path).policy)

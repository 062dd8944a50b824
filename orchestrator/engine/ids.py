"""Deterministic ids and choices: send ids, emit record ids, timer ids and split buckets.

They are functions of the customer, the journey instance and the step visit only, so a
replayed message produces the same ids (the basket's replay protection and the timer
heap's deduplication rely on it).
"""

from __future__ import annotations

import hashlib

from orchestrator.journey import model as m
from orchestrator.state import Instance


def visit_suffix(inst: Instance, step_id: str) -> str:
    """``#N`` for the N-th visit of a step (N > 1), else ``''``."""
    visit = inst.visits.get(step_id, 1)
    return f"#{visit}" if visit > 1 else ""


def send_id(customer_id: str, inst: Instance, step_id: str, channel: str, step_def: m.SendStep, attempt: int) -> str:
    """``customer:journey:vN:entry-event:step[#visit][:fallback-channel][:aN]``."""
    out = f"{customer_id}:{inst.journey_id}:v{inst.version}:{inst.entry_event_id}:{step_id}{visit_suffix(inst, step_id)}"
    if channel != step_def.channel:
        out += f":{channel}"
    if attempt:
        out += f":a{attempt}"
    return out


def emit_id(customer_id: str, inst: Instance, step_id: str) -> str:
    """``customer:journey:vN:entry-event:step[#visit]``: an emit step's record id (the same on a replay; emits never retry)."""
    return f"{customer_id}:{inst.journey_id}:v{inst.version}:{inst.entry_event_id}:{step_id}{visit_suffix(inst, step_id)}"


def timer_id(customer_id: str, inst: Instance, step_id: str, purpose: str, n: int = 0) -> str:
    """``customer:instance:step[#visit]:purpose[:n]``."""
    out = f"{customer_id}:{inst.instance_id}:{step_id}{visit_suffix(inst, step_id)}:{purpose}"
    return f"{out}:{n}" if n else out


def split_bucket(customer_id: str, journey_id: str, step_id: str, total: int) -> int:
    """A stable bucket in ``[0, total)`` for a customer at a split (blake2b, never Python's hash())."""
    digest = hashlib.blake2b(f"{customer_id}\x1f{journey_id}\x1f{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % total


def choose_variant(customer_id: str, journey_id: str, step_def: m.SplitStep, step_id: str) -> m.Variant:
    """The variant a customer gets at a split (deterministic, proportional to the weights)."""
    total = sum(v.weight for v in step_def.variants)
    bucket = split_bucket(customer_id, journey_id, step_id, total)
    for v in step_def.variants:
        if bucket < v.weight:
            return v
        bucket -= v.weight
    return step_def.variants[-1]  # pragma: no cover

"""Every id format of the orchestrator, written and parsed here only; and the split buckets.

* instance ids ``journey@entry-event`` (:func:`instance_id`);
* campaign runs: the run id ``2026-12-01T10:00Z`` / ``2026-12-01T10:00L`` (:func:`run_id`), the
  run's entry event id ``audience:journey:run`` (:func:`audience_event_id`), and the run read
  back from an entry event id or an instance id (:func:`run_of_event`, :func:`run_of_instance`);
* send ids, emit record ids and timer ids (:func:`send_id`, :func:`emit_id`, :func:`timer_id`).

They are functions of the customer, the journey instance and the step visit only, so a
replayed message produces the same ids (the basket's replay protection, the timer heap's
deduplication and the stored states rely on them: ``tests/unit/test_ids.py`` pins them).

Modules below the engine (``events``, ``actions``, ``journey.schedule``) import the few
functions they need from here when called (the engine package imports them).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.journey import model as m
    from orchestrator.state import Instance

AUDIENCE_EVENT_PREFIX = "audience:"
"""What every campaign run's entry event id starts with."""


def instance_id(journey_id: str, entry_event_id: str) -> str:
    """``journey@entry-event``: the id of the instance of ``journey_id`` that ``entry_event_id`` started."""
    return f"{journey_id}@{entry_event_id}"


def run_id(moment: datetime, local: bool) -> str:
    """A campaign run's id: ``2026-12-01T10:00Z`` (a UTC instant), or ``2026-12-01T10:00L`` (a wall-clock time in every zone).

    ``moment`` is taken as it is (a UTC run's moment must already be in UTC).
    """
    return f"{moment:%Y-%m-%dT%H:%M}{'L' if local else 'Z'}"


def audience_event_id(journey_id: str, run: str) -> str:
    """``audience:journey:run``: the entry event id of a campaign run, remembered by every customer the run reached."""
    return f"{AUDIENCE_EVENT_PREFIX}{journey_id}:{run}"


def run_of_event(journey_id: str, event_id: object) -> str | None:
    """The run id in a campaign run's entry event id ``audience:journey:run``; None for any other event id."""
    if not isinstance(event_id, str) or not event_id.startswith(AUDIENCE_EVENT_PREFIX):
        return None
    prefix = audience_event_id(journey_id, "")
    return event_id[len(prefix) :] if event_id.startswith(prefix) else None


def run_of_instance(journey_id: str, instance: str) -> str | None:
    """The run id of an instance a campaign run started (``journey@audience:journey:run``); None for any other instance id."""
    head = instance_id(journey_id, "")
    return run_of_event(journey_id, instance[len(head) :]) if instance.startswith(head) else None


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

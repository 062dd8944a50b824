"""Folding an event into the customer's scores (``journeys/scores.yaml``), and entering journeys on a score crossing.

Every event goes through :func:`fold_scores` when ``scores.yaml`` has a rule for its type (the
engine's one dict lookup per event, ``JourneySet.score_rules``; nothing else for the others).

The fold, per score with rules for the event's type
---------------------------------------------------
* Every matching rule adds its ``points``; a matching ``set_from`` rule sets the value to that
  payload number (the points of the rules after it add to it); no matching rule: nothing changes.
* The score's time is the event's ``occurred_at``: the stored ``(value, at)`` is decayed to it
  (:meth:`~orchestrator.state.ScoreValue.value_at`), the points are added, ``floor``/``cap``
  clamp the result, and ``(value, occurred_at)`` is stored with the score's half-life. An event
  older than the stored time adds its points decayed by how much older it is and keeps the stored
  time; an older ``set_from`` is ignored (the newest model value wins).
* Scores no longer defined are dropped from the profile at its next scoring event.

Crossings (``entry: {score: {name: lead, crosses: 50, hysteresis: 10}}``)
-------------------------------------------------------------------------
A scoring event that takes the score from below ``crosses`` to ``crosses`` or more enters the
journey (re-entry rule and ``entry.profile`` permitting; else a ``not_entered`` trace), with that
event as the entry event. The crossing is then *latched* in the score (``ScoreValue.latched``):
a later crossing does not enter again until the score was seen below ``crosses - hysteresis``.
Between two scoring events a score only decays, so its lowest value in between is the value
just before the next scoring event: checking the latch there (and after negative points) sees
every fall below the re-arm value exactly, without a timer. Decay alone never enters anyone:
only a scoring event can cross. Journeys with the same threshold and hysteresis share a latch;
latches of crossings no loaded journey has are dropped at the score's next scoring event.

Pure like the rest of the engine: the same event on the same state gives the same scores and
the same entries (replayed events are dropped earlier, by their event id).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from orchestrator.engine.draft import Draft
from orchestrator.engine.entry import _failed_condition, reentry_refusal
from orchestrator.engine.steps import advance
from orchestrator.events import CustomerEvent
from orchestrator.fastmodel import fast_build, fast_new
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.journey.scores import MAX_LATCHED, CompiledScore, Crossing, EventScoring
from orchestrator.state import SCORE_DIGITS, Profile, ScoreValue


def fold_scores(
    profile: Profile, ev: CustomerEvent, scoring: EventScoring, journeys: JourneySet, now: datetime
) -> tuple[Profile, tuple[CompiledJourney, ...]]:
    """The profile with ``ev`` scored (``scoring``: the scores with rules for its type), and the journeys whose crossing it made."""
    event = ev.__dict__
    at = event["occurred_at"]
    ctx = Ctx(event["type"], event["event_id"], at, event["data"], profile, now)
    kept = profile.scores
    changed: dict[str, ScoreValue] | None = None
    crossed: list[CompiledJourney] = []
    for score, rules in scoring:
        points = 0.0
        set_to: float | None = None
        fired = False
        for rule in rules:
            if not rule.predicate(ctx):
                continue
            if rule.set_from is None:
                points += rule.points
                fired = True
                continue
            value = rule.set_from(ctx)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                set_to, points, fired = float(value), 0.0, True
        if not fired:
            continue
        old = kept.get(score.name)
        moved = _moved(old, score, at, points, set_to)
        if moved is None:
            continue
        before, after, stamp = moved
        latched = _latch(old.latched if old is not None else (), journeys.crossings.get(score.name, ()), before, after, crossed)
        if changed is None:
            defined = journeys.scores.defs
            changed = {name: v for name, v in kept.items() if name in defined}
        changed[score.name] = fast_new(ScoreValue, value=after, at=stamp, half_life_s=score.half_life_s, latched=latched)
    if changed is None:
        return profile, ()
    fields = profile.__dict__.copy()
    fields["scores"] = changed
    return fast_build(Profile, fields), tuple(crossed)


def _moved(
    old: ScoreValue | None, score: CompiledScore, at: datetime, points: float, set_to: float | None
) -> tuple[float, float, datetime] | None:
    """(value just before the event, value after it, the time stored), or None for a ``set_from`` older than the stored value."""
    if old is None:
        before, stamp, base = 0.0, at, set_to if set_to is not None else 0.0
    elif at >= old.at:
        before, stamp = old.value_at(at), at
        base = set_to if set_to is not None else before
    elif set_to is not None:
        return None  # a late model value: the newer one stays
    else:  # a late event: its points count as decayed by its age
        before, stamp, base = old.value, old.at, old.value
        if score.half_life_s is not None:
            points *= 0.5 ** ((old.at - at).total_seconds() / score.half_life_s)
    after = base + points
    if score.floor is not None and after < score.floor:
        after = score.floor
    if score.cap is not None and after > score.cap:
        after = score.cap
    return before, round(after, SCORE_DIGITS), stamp


def _latch(
    latched: Sequence[tuple[float, float]], crossings: Sequence[Crossing], before: float, after: float, crossed: list[CompiledJourney]
) -> list[tuple[float, float]]:
    """The crossings still latched after the score went from ``before`` to ``after``; the journeys of new crossings go to ``crossed``."""
    out: list[tuple[float, float]] = []
    for crossing in crossings:
        key = crossing.key
        on = key in latched and before >= crossing.rearm_below  # seen below the re-arm value (decay): armed again
        if not on and before < crossing.threshold <= after:
            crossed.extend(crossing.journeys)
            on = True
        elif on and after < crossing.rearm_below:  # negative points took it below the re-arm value
            on = False
        if on:
            out.append(key)
    return out[:MAX_LATCHED]


def enter_crossed(draft: Draft, ev: CustomerEvent, crossed: Sequence[CompiledJourney], triggered: Sequence[CompiledJourney]) -> None:
    """Enter the customer into each journey whose score crossing ``ev`` made (re-entry rule and ``entry.profile`` permitting).

    A journey ``ev`` also triggers (``entry.event``) was decided by that trigger already.
    """
    ctx: Ctx | None = None
    for journey in crossed:
        if any(journey is t for t in triggered):
            continue
        if ctx is None or ctx.profile is not draft.profile:
            ctx = Ctx(ev.type, ev.event_id, ev.occurred_at, ev.data, draft.profile, draft.now, instances=draft.instances.values())
        why_not = crossing_refusal(draft, journey, ctx)
        if why_not is not None:
            draft.not_entered(journey, ev, why_not)
            continue
        inst = draft.start_instance(journey, ev)
        advance(draft, inst, journey, journey.journey.start)


def crossing_refusal(draft: Draft, journey: CompiledJourney, ctx: Ctx) -> str | None:
    """None when a crossing enters the customer into ``journey``; else why not (``entry.when`` is for ``entry.event`` only)."""
    why = reentry_refusal(draft, journey)
    if why is not None:
        return why
    if not journey.entry_profile(ctx):
        return "entry.profile: " + _failed_condition(journey, "entry.profile", ctx)
    return None


__all__ = ["crossing_refusal", "enter_crossed", "fold_scores"]

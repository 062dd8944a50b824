"""Replay an event file offline: the real engine, the in-memory basket, a virtual clock.

``orchestrator simulate --journeys journeys/ events.jsonl`` calls :func:`simulate_files`.
Each event is processed at its ``occurred_at`` through
:func:`orchestrator.processor.process` (exactly the code the Faust worker runs) with
:class:`~orchestrator.pressure.memory.MemoryBasket`. Before each line, every armed
timer due at or before its time fires, in due order; after the last line the remaining
timers fire up to ``until`` (default: the last line + 90 days). Cancelled timers
never fire.

Campaign runs
=============

The runs of every live scheduled audience (``entry.audience.schedule``; the run semantics
are :func:`orchestrator.journey.schedule.open_runs` and ``Run.due_for``) happen on the
same clock, in time order with the timers (a timer first on a tie) and before an event
line of the same time. A run begins at the first instant it can reach a customer (a UTC
run at its instant, a local run 14 h before its wall-clock time, in UTC+14) with every
customer seen so far, as a worker's pass over its partitions does; each of them is
checked at their due time (``Run.due_for`` their time zone as it is then): when the
audience's conditions (``CompiledJourney.audience_when``) hold on their state, an
:class:`~orchestrator.events.AudienceCheck` goes through :func:`~orchestrator.processor.process`
like an event (the engine deduplicates the run, checks the audience and the re-entry
rule). Customers outside the audience leave no record. Each run is summed up as a
:class:`CampaignRun` (evaluated, in the audience, entered, kept out by re-entry, and how
long its largest burst would take at the throttle, which is not simulated). A deploy or
retire line plans the runs again: a run follows the journey's live version when it begins; the runs of a
deployed journey still open at the deploy (within their grace) begin then, as a worker carries them out.

The event file
==============

JSON lines, run in time order (lines with the same time in file order); blank lines
and lines starting with ``#`` are skipped. Three kinds of line:

* **An event**: the inbound message of a family (``schemas/events/<family>.json``)
  plus ``"family"``: ``{"family": "web", "type": "cart_abandoned", "event_id": "e1",
  "customer_id": "c1", "occurred_at": "2026-03-02T10:00:00Z", "cart_id": "k1",
  "cart_value": 80}``. An invalid event line is reported as ``file:line: reason`` and
  skipped (``--strict``: exit 1).

  A top-level field may be a placeholder ``{"send_of": STEP}`` or ``{"send_of": STEP,
  "journey": ID}`` (typically ``"send_id"`` of a ``ccm`` event): at the event's time it
  becomes the send id of the latest *approved* send of that send step for the event's
  customer (in any journey, or only in journey ID). When there is none, the line is
  reported as ``file:line: ...`` and skipped, like an invalid line.
* **A deploy**: ``{"deploy": "abandoned_cart.v2.yaml", "at": "2026-03-02T12:00:00Z"}``
  loads that journey file at ``at``. A relative path is relative to the directory of
  the event file. From then on the newest ``live`` version takes new entries; customers
  already in an older version finish on it. A deployed file that is also in the
  journeys directory is held back until its deploy line.
* **A retire**: ``{"retire": "abandoned_cart", "version": 1, "at": "..."}`` marks that
  version ``retired`` at ``at``: no new entries, in-flight customers finish on it.

Deploy and retire lines are checked before anything runs: a malformed line, a missing
or invalid file, a version that is already loaded, retiring a version that is not
loaded at that time raise :class:`EventFileError` (a
:class:`~orchestrator.errors.DefinitionError`) with every problem as
``file:line:col: message``.

The policy
==========

``--policy FILE`` must exist (else :class:`~orchestrator.pressure.policy.PolicyError`
naming it). Without it, ``pressure.yaml`` next to the journeys is used; when there is
none, the built-in default policy is used and :func:`choose_policy` returns a notice
saying so (the CLI prints it on stderr).

The result is structured (:class:`SimulationResult`): the records in the order they
happened, per customer, the journey version changes, the campaign runs, plus the final states; the CLI
prints it (``--json``: one line per record, described by ``schemas/simulate-record.json``)
and ``render`` counts customers per edge from its traces.

Timer records (armed, fired, cancelled) carry the journey instance that armed the timer. A
deferred send's ``retry_at`` is when the journey retries it (the send window's opening when
the basket's time falls outside the window); ``fits_at`` is the basket's time. The text
output states a campaign run that keeps a customer out for a reason already shown only once,
with how many runs followed (:func:`customer_lines`); the JSON keeps every record.
``orchestrator simulate --compare-policy`` runs the file twice and compares
(:mod:`orchestrator.designer.whatif`).

Where things are
================

This module runs a simulation (:func:`simulate_files`, :func:`simulate`, :func:`simulate_async`)
and re-exports the names of its parts:

* :mod:`~orchestrator.designer.simulate_events`: reading the event file (events, ``send_of``
  placeholders, deploy and retire lines) and checking it against the journeys (:func:`load_scenario`);
* :mod:`~orchestrator.designer.simulate_policy`: which pressure policy a simulation runs with;
* :mod:`~orchestrator.designer.simulate_run`: one simulation under way, the virtual clock and its timers;
* :mod:`~orchestrator.designer.simulate_campaigns`: the runs of scheduled audiences on that clock;
* :mod:`~orchestrator.designer.simulate_result`: what a simulation produced (:class:`SimulationResult`);
* :mod:`~orchestrator.designer.simulate_records`: the records of one processed message;
* :mod:`~orchestrator.designer.simulate_output`: the text and ``--json`` output;
* :mod:`~orchestrator.designer.simulate_schema`: the models of a ``--json`` line (``schemas/simulate-record.json``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from orchestrator.designer.simulate_campaigns import reach, runs_between
from orchestrator.designer.simulate_events import (
    Deploy,
    EventFileError,
    InputEvent,
    InputItem,
    Retire,
    SendOf,
    _at,
    load_scenario,
    prepare,
    read_events,
)
from orchestrator.designer.simulate_output import customer_lines, format_json_lines, format_text
from orchestrator.designer.simulate_policy import PolicyChoice, choose_policy, default_basket, describe_policy
from orchestrator.designer.simulate_records import TimerOwner, score_changes
from orchestrator.designer.simulate_result import CampaignRun, RecordKind, SimRecord, SimulationResult, VersionChange, duration_text
from orchestrator.designer.simulate_run import _Run
from orchestrator.designer.simulate_schema import RECORD_ADAPTER, SimulateRecord, record_json_schema
from orchestrator.events import CustomerEvent
from orchestrator.journey.loader import JourneySet
from orchestrator.pressure.basket import Basket
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import PressurePolicy

__all__ = [
    "DEFAULT_HORIZON",
    "RECORD_ADAPTER",
    "CampaignRun",
    "Deploy",
    "EventFileError",
    "InputEvent",
    "InputItem",
    "PolicyChoice",
    "RecordKind",
    "Retire",
    "SendOf",
    "SimRecord",
    "SimulateRecord",
    "SimulationResult",
    "TimerOwner",
    "VersionChange",
    "choose_policy",
    "customer_lines",
    "default_basket",
    "describe_policy",
    "duration_text",
    "format_json_lines",
    "format_text",
    "load_scenario",
    "prepare",
    "reach",
    "read_events",
    "record_json_schema",
    "runs_between",
    "score_changes",
    "simulate",
    "simulate_async",
    "simulate_files",
]


DEFAULT_HORIZON = timedelta(days=90)


async def simulate_async(
    journeys: JourneySet,
    events: Sequence[InputItem | CustomerEvent],
    basket: Basket,
    until: datetime | None = None,
) -> SimulationResult:
    """Replay ``events`` (in time order, stable) through the processor with a virtual clock.

    Deploy and retire lines change the journeys at their time; scheduled audiences run on
    the same clock (see the module docs). Raises :class:`EventFileError` before anything
    runs when one of them cannot be used.
    """
    items = prepare(journeys, events)
    if until is None:
        until = (_at(items[-1]) if items else datetime.now(UTC)) + DEFAULT_HORIZON
    run = _Run(journeys, basket, until)
    if items:
        run.campaigns.plan(journeys, _at(items[0]), until)
    for item in items:
        await run.timers_until(_at(item))
        run.tick(_at(item))
        if isinstance(item, InputEvent):
            await run.event(item)
        else:
            run.change(item)
    await run.timers_until(until)
    run.result.states = run.states
    return run.result


def simulate(
    journeys: JourneySet,
    events: Sequence[InputItem | CustomerEvent],
    basket: Basket | None = None,
    until: datetime | None = None,
) -> SimulationResult:
    """Synchronous :func:`simulate_async` (default basket: in-memory with the built-in default policy)."""
    return asyncio.run(simulate_async(journeys, events, basket or MemoryBasket(PressurePolicy()), until))


def simulate_files(
    journeys_dir: str | os.PathLike[str],
    events_path: str | os.PathLike[str],
    policy_path: str | os.PathLike[str] | None = None,
    until: datetime | None = None,
) -> SimulationResult:
    """Load journeys and the event file and simulate; the policy is chosen by :func:`choose_policy`.

    Raises :class:`~orchestrator.errors.DefinitionError` for invalid journeys, a missing or
    invalid policy, or an unusable deploy/retire line; skipped lines are listed in
    ``result.errors``, a default-policy notice in ``result.notices``.
    """
    journeys, items, errors = load_scenario([journeys_dir], events_path)
    choice = choose_policy(journeys_dir, policy_path)
    result = asyncio.run(simulate_async(journeys, items, MemoryBasket(choice.policy), until))
    result.errors = errors + result.errors
    if choice.notice:
        result.notices.append(choice.notice)
    return result

"""The campaign designer's commands: ``campaign preview`` and ``campaign load-list``.

``orchestrator/cli.py`` calls :func:`register` on its subparsers.

    orchestrator campaign preview JOURNEY --journeys DIR EVENTS.jsonl [--at TIME] [--runs] [--json]
        what happens if JOURNEY (a file or a journey id) is deployed now: EVENTS.jsonl builds
        the customers' profiles and history with the other journeys of DIR live, and JOURNEY
        is deployed at the file's last line (or --at TIME) through simulate's deploy line.
        A summary of the next run a worker would carry out from then (a run whose time has
        passed but which is still open, at once): customers evaluated, the audience size,
        entries and who was kept out why, the sends the run's instances make and how the
        basket answers them (result and code, per step), and how long the run takes at the
        audience's throttle; then notes, and with --runs every run after the deploy.
    orchestrator campaign load-list FILE --list NAME [--brand B] [--dry-run]
        put the customers of FILE (one id per line, or a CSV with a customer_id column) on
        the list NAME: one crm.added_to_list event per customer on <prefix>.in.crm, keyed by
        customer id, with the event id list:NAME:CUSTOMER (loading the same file again is
        deduplicated by the engine within its dedupe window).

The preview is an estimate from a simulation: the in-memory basket with the policy next to
the journeys (or ``--policy``), the engine's own audience and re-entry decisions, each
customer checked at their due time (the throttle itself is not simulated: the preview says
how long it would stretch the run).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, Field

from orchestrator.actions import Disposition
from orchestrator.designer.simulate import (
    DEFAULT_HORIZON,
    CampaignRun,
    Deploy,
    InputEvent,
    InputItem,
    SimulationResult,
    choose_policy,
    duration_text,
    load_scenario,
    reach,
    runs_between,
    simulate_async,
)
from orchestrator.errors import DefinitionError
from orchestrator.events import InvalidEvent, parse_inbound
from orchestrator.journey import model as m
from orchestrator.journey.loader import CompiledJourney, JourneySet, facts_problems, history_notes, journey_files, parse_file
from orchestrator.journey.schedule import ScheduleSpec, open_runs
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.timeutil import iso_utc

# ------------------------------------------------------------------ preview: the result


class StepSends(BaseModel):
    """The decisions on one send step's messages (one channel and template)."""

    step_id: str
    channel: str
    template: str
    results: dict[str, int] = Field(description="Decisions by result: approved, capped, suppressed, deferred, fallback, cancelled.")


class RunPreview(BaseModel):
    """One run of the campaign after the deploy, in the simulation."""

    run_id: str
    at: datetime = Field(description="The run's time: its instant, or (local) when its first customer was due.")
    begins: datetime = Field(
        description="When a worker begins the run: its time, or the deploy when that time had passed but the run was still open."
    )
    passed_at_deploy: bool = Field(
        description="The run's time (a local run: some customer's due time) had passed at the deploy; the run was still open "
        "(its grace), so a worker carries it out at once, at the deploy, for the customers it is still open for."
    )
    grace_hours: float = Field(description="How long the run stays open for a customer after their due time (24; hourly runs: 1).")
    version: int = Field(description="The journey version live when the run began.")
    local: bool
    evaluated: int = Field(description="Customers the run reached, whose audience conditions were evaluated.")
    in_audience: int = Field(description="The audience size: customers the audience's conditions held for.")
    entered: int
    not_entered: int = Field(description="In the audience but kept out by the re-entry rule.")
    kept_out: dict[str, int] = Field(
        default_factory=dict,
        description="Customers kept out by the re-entry rule, by reason, e.g. 'reentry: never, and the customer entered before'.",
    )
    decisions: int = Field(
        description="Basket decisions on the sends of the instances this run started (retries and fallbacks each count)."
    )
    sent: int = Field(description="Messages that went out (approved).")
    results: dict[str, dict[str, int]] = Field(description="result -> code -> decisions, e.g. capped -> {reserve: 3}.")
    steps: list[StepSends]
    per_second: float = Field(description="The audience's throttle: customers per second, across all workers.")
    largest_burst: int = Field(description="Most customers in the audience reached at the same time (a UTC run: all of them).")
    throttle_seconds: float = Field(description="How long the largest burst takes at the throttle.")
    first_due: datetime | None = Field(default=None, description="When the run reached its first customer in the audience.")
    last_due: datetime | None = Field(default=None, description="When the run reached its last customer in the audience.")


class Preview(BaseModel):
    """``orchestrator campaign preview``: what happens if the campaign is deployed now, on the customers an event file builds."""

    journey: str
    version: int
    file: str
    schedule: str = Field(description="The schedule in words.")
    events: str = Field(description="The event file that built the customers.")
    journeys: str = Field(description="The journey directory: its other journeys are live while the events build the customers.")
    customers: int = Field(description="Customers the event file built.")
    last_line: datetime | None = Field(description="Time of the event file's last line (None: no line).")
    deployed_at: datetime = Field(
        description="When the journey under preview is deployed (--at, else the event file's last line, else now): the events "
        "before it build the customers' profiles and history with the other journeys live; the journey takes effect from then."
    )
    deployed_at_source: Literal["--at", "last_line", "now"] = Field(description="Where deployed_at comes from.")
    policy: str = Field(description="The pressure policy file, or 'built-in default'.")
    next_run: RunPreview | None = Field(description="The first run a worker carries out after the deploy (None: none comes).")
    no_run: str | None = Field(default=None, description="Why no run comes after the deploy (when next_run is None), in words.")
    runs: list[RunPreview] = Field(description="Every run of the journey after the deploy in the simulation, in order (next_run first).")
    notes: list[str] = Field(default_factory=list, description="What else the designer should know, printed after the summary.")


class PreviewError(Exception):
    """The journey cannot be previewed (not found, not a campaign); the message says why."""


def describe_schedule(schedule: ScheduleSpec) -> str:
    """A schedule in words: ``once at 2026-06-16T10:00:00Z``, ``every month on day 1 at 10:00 local time`` ..."""
    where = " local time" if schedule.local else " UTC"
    if schedule.every is None:
        return f"once at {schedule.at}" + (" local time" if schedule.local else "")
    if schedule.every == "hour":
        return f"every hour at minute {schedule.at.split(':')[1]}"
    when = {"day": "", "week": f" on {schedule.on}", "month": f" on day {schedule.day}"}[schedule.every]
    return f"every {schedule.every}{when} at {schedule.at}{where}"


# ------------------------------------------------------------------ preview: the run


@dataclass(frozen=True)
class _Target:
    """The campaign to preview and the other journey paths, live while the events build the customers."""

    journey: m.Journey
    file: str
    paths: list[Path]


def _target(what: str, journeys_dir: Path) -> _Target:
    """The journey named by ``what`` (a file, or a journey id in ``journeys_dir``) and the other paths to load.

    Raises :class:`PreviewError`, or :class:`~orchestrator.errors.DefinitionError` for an invalid file.
    """
    from orchestrator.journey.loader import JourneyError

    files = journey_files([journeys_dir]) if journeys_dir.is_dir() else []
    given = Path(what)
    if given.is_file():
        journey, errors = parse_file(given)
        if journey is None:
            raise JourneyError(errors)
        return _Target(journey, os.fspath(given), [f for f in files if f.resolve() != given.resolve()])
    found: list[tuple[m.Journey, Path]] = []
    for f in files:
        parsed, _ = parse_file(f)
        if parsed is not None and parsed.id == what:
            found.append((parsed, f))
    if not found:
        raise PreviewError(f"{what}: no such journey file, and no journey with that id in {journeys_dir}")
    journey, file = max(found, key=lambda jf: (jf[0].status == "live", jf[0].version))
    return _Target(journey, os.fspath(file), [f for f in files if f != file])


def _schedule(journey: m.Journey) -> m.Schedule:
    audience = journey.entry.audience
    if audience is None or audience.schedule is None:
        qualify = audience is not None and audience.qualify is not None
        why = " (its audience is entered on change, event by event: simulate shows those entries)" if qualify else ""
        raise PreviewError(f"journey {journey.id!r} has no scheduled audience (entry.audience.schedule){why}: nothing to preview")
    return audience.schedule


def _last_line(items: Sequence[InputItem]) -> datetime | None:
    from orchestrator.designer.simulate import InputEvent

    times = [i.event.occurred_at if isinstance(i, InputEvent) else i.at for i in items]
    return max(times) if times else None


def _horizon(schedule: ScheduleSpec, deployed_at: datetime, last: datetime | None) -> datetime:
    """Simulate until the default horizon, or long enough for the first run after the deploy to reach every zone."""
    until = max(deployed_at, last or deployed_at) + DEFAULT_HORIZON
    upcoming = runs_between(schedule, deployed_at, deployed_at + timedelta(days=400))
    if upcoming:
        until = max(until, reach(upcoming[0])[1] + timedelta(days=1))
    return until


def _closed_before(schedule: ScheduleSpec, deployed_at: datetime) -> str | None:
    """For a once-only schedule whose run has closed for every customer at the deploy: why no run comes, in words."""
    if schedule.every is not None:
        return None
    runs = open_runs(schedule, deployed_at)
    if not runs or reach(runs[0])[1] + runs[0].grace > deployed_at:
        return None
    run = runs[0]
    ago = duration_text((deployed_at - reach(run)[1]).total_seconds())
    return (
        f"its only run, {run.run_id}, came {ago} before the deploy ({iso_utc(deployed_at)}), past the "
        f"{duration_text(run.grace.total_seconds())} a run stays open: a worker never carries it out, so deploying it now "
        "enters and sends nothing (set a later schedule.at)"
    )


def preview(
    what: str,
    journeys_dir: str | os.PathLike[str],
    events_path: str | os.PathLike[str],
    policy_path: str | os.PathLike[str] | None = None,
    at: datetime | None = None,
) -> Preview:
    """What happens if the campaign ``what`` (a journey file or id) is deployed at ``at`` (default: the event file's last line).

    The events build the customers with the other journeys of ``journeys_dir`` live; the campaign is deployed at
    ``at`` through simulate's deploy line (:class:`~orchestrator.designer.simulate.Deploy`), so its runs are the ones a
    worker would carry out from then on: a run whose time has passed but which is still open (its grace) at once.
    Raises :class:`PreviewError` when it is not a campaign or not found,
    :class:`~orchestrator.errors.DefinitionError` for invalid journeys, policy or event file.
    """
    directory = Path(journeys_dir)
    target = _target(what, directory)
    schedule = _schedule(target.journey)
    journeys, items, skipped = load_scenario(target.paths, events_path, facts_dir=directory)
    choice = choose_policy(directory, policy_path)
    last = _last_line(items)
    deployed_at = at or last or datetime.now(UTC).replace(microsecond=0)
    source: Literal["--at", "last_line", "now"] = "--at" if at else "last_line" if last else "now"
    compiled = CompiledJourney(target.journey, source=target.file)
    deploy = Deploy(0, deployed_at, Path(target.file), f"campaign preview (deployed at {iso_utc(deployed_at)})", compiled)
    basket = MemoryBasket(choice.policy)
    result = asyncio.run(simulate_async(journeys, [*items, deploy], basket, _horizon(schedule, deployed_at, last)))
    runs = _run_previews(result, target.journey, deployed_at)
    notes = [f"{line} (line skipped)" for line in skipped + result.errors] + ([choice.notice] if choice.notice else [])
    notes += _journey_notes(target, journeys.newest(target.journey.id), result.errors)
    if last is not None and last > deployed_at:
        notes.append(f"the event file goes on after the deploy (to {iso_utc(last)}): those events happen with the journey live")
    notes += _history_notes(journeys, compiled, items, deployed_at)
    notes.append("the throttle is not simulated: every customer enters at their due time; throttle_seconds is what it would take")
    no_run = None if runs else _closed_before(schedule, deployed_at) or "no run of the journey came after the deploy in the simulation"
    return Preview(
        journey=target.journey.id,
        version=target.journey.version,
        file=target.file,
        schedule=describe_schedule(schedule),
        events=os.fspath(events_path),
        journeys=os.fspath(directory),
        customers=len(result.states),
        last_line=last,
        deployed_at=deployed_at,
        deployed_at_source=source,
        policy=choice.source or "built-in default",
        next_run=runs[0] if runs else None,
        no_run=no_run,
        runs=runs,
        notes=notes,
    )


def _history_notes(journeys: JourneySet, compiled: CompiledJourney, items: Sequence[InputItem], deployed_at: datetime) -> list[str]:
    """The profile facts: fields the campaign reads that ``profile.yaml`` does not record, and history shorter than it looks back.

    The simulation records the declared fields from the event file's first line: whatever a customer did before is
    not known to it, as a running system does not know what happened before a field was declared.
    """
    facts = journeys.facts
    notes = [
        f"{compiled.source}: {message} (a worker refuses this file: until then the condition is unknown for every customer)"
        for _, message in (facts_problems(compiled.journey, facts) if facts.source is not None else [])
    ]
    first = min((i.event.occurred_at if isinstance(i, InputEvent) else i.at for i in items), default=None)
    if first is not None:
        started = {(etype, f"data.{f.path}"): first for etype, fields in facts.tracked.items() for f in fields}
        alone = JourneySet([compiled], facts)
        notes += [
            f"{n} (in this simulation: recorded from the event file's first line)" for n in history_notes(alone, started, deployed_at)
        ]
    return notes


def _journey_notes(target: _Target, newest: CompiledJourney | None, errors: Sequence[str]) -> list[str]:
    """Notes on the journey deployed: not live, not the newest version, or event lines that answer its sends before the deploy."""
    journey = target.journey
    notes: list[str] = []
    if journey.status != "live":
        notes.append(f"{target.file} has status: {journey.status}: a retired version takes no new entries, so no run enters anyone")
    elif newest is not None and newest.version > journey.version:
        notes.append(f"v{newest.version} of {journey.id} ({newest.source}) is newer and live: new runs take it, not v{journey.version}")
    own = [f"send of step {s!r}" for s, step in journey.steps.items() if isinstance(step, m.SendStep)]
    if any(o in e for e in errors for o in own):
        notes.append(
            f"lines answering a send of {journey.id} before the deploy were skipped: it is not deployed yet then (--at deploys it earlier)"
        )
    return notes


_REASON_DETAIL = re.compile(r" \([^)]*\)|: last .*")
"""The per-customer part of a re-entry reason (counts, instance, times), left out to count customers by reason."""


def _run_previews(result: SimulationResult, journey: m.Journey, deployed_at: datetime) -> list[RunPreview]:
    """The runs of ``journey`` (that version: the one deployed) in the simulation, with their sends and who was kept out why."""
    mine = [c for c in result.campaigns if (c.journey_id, c.version) == (journey.id, journey.version)]
    sends: dict[str, list[Disposition]] = {}
    for d in result.dispositions:
        if d.send.journey_id == journey.id and d.send.run_id is not None:
            sends.setdefault(d.send.run_id, []).append(d)
    kept: dict[str, Counter[str]] = {}
    for t in result.traces:
        if t.what == "not_entered" and t.journey_id == journey.id and t.run_id is not None:
            kept.setdefault(t.run_id, Counter())[_REASON_DETAIL.sub("", str(t.detail.get("reason", "")))] += 1
    return [_run_preview(c, sends.get(c.run_id, []), kept.get(c.run_id, Counter()), deployed_at) for c in mine]


def _run_preview(campaign: CampaignRun, decided: Sequence[Disposition], kept: Counter[str], deployed_at: datetime) -> RunPreview:
    results: dict[str, Counter[str]] = {}
    steps: dict[tuple[str, str, str], Counter[str]] = {}
    for d in decided:
        results.setdefault(d.result, Counter())[str(getattr(d.decision, "code", None) or "none")] += 1
        steps.setdefault((d.send.step_id, d.send.channel, d.send.template), Counter())[d.result] += 1
    burst = max(campaign.bursts.values(), default=0)
    return RunPreview(
        run_id=campaign.run_id,
        at=campaign.at,
        begins=max(campaign.at, deployed_at),
        passed_at_deploy=campaign.at < deployed_at,
        grace_hours=campaign.run.grace.total_seconds() / 3600,
        version=campaign.version,
        local=campaign.run.local,
        evaluated=campaign.evaluated,
        in_audience=campaign.in_audience,
        entered=campaign.entered,
        not_entered=campaign.not_entered,
        kept_out=dict(kept.most_common()),
        decisions=len(decided),
        sent=sum(d.result == "approved" for d in decided),
        results={r: dict(c.most_common()) for r, c in sorted(results.items(), key=lambda rc: -sum(rc[1].values()))},
        steps=[StepSends(step_id=s, channel=ch, template=t, results=dict(c.most_common())) for (s, ch, t), c in steps.items()],
        per_second=campaign.per_second,
        largest_burst=burst,
        throttle_seconds=round(burst / campaign.per_second, 3),
        first_due=min(campaign.bursts) if campaign.bursts else None,
        last_due=max(campaign.bursts) if campaign.bursts else None,
    )


# ------------------------------------------------------------------ preview: the text


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.items())


def _customers(n: int) -> str:
    return f"{n} customer{'s' if n != 1 else ''}"


def _audience_line(run: RunPreview) -> str:
    """``10 in the audience of 13 evaluated; 8 entered, 2 kept out (reentry: never, and the customer entered before: 2)``."""
    kept = ""
    if run.not_entered:
        why = "; ".join(f"{reason}: {n}" for reason, n in run.kept_out.items())
        kept = f", {run.not_entered} kept out" + (f" ({why})" if why else "")
    return f"{run.in_audience} in the audience of {run.evaluated} evaluated; {run.entered} entered{kept}"


def _passed_line(run: RunPreview, deployed_at: datetime) -> str:
    """What a worker does with a run whose time had passed at the deploy."""
    grace = duration_text(run.grace_hours * 3600)
    if not run.local:
        ago = duration_text((deployed_at - run.at).total_seconds())
        return (
            f"  its time passed {ago} before the deploy, but a run stays open {grace} after its time: "
            f"a worker carries it out at once, at the deploy ({iso_utc(deployed_at)})"
        )
    return (
        f"  its time had passed for some customers at the deploy: a worker reaches those within {grace} after their local "
        f"time at once, at the deploy ({iso_utc(deployed_at)}), and the others at their local time"
    )


def _run_lines(run: RunPreview, deployed_at: datetime) -> list[str]:
    lines = [_passed_line(run, deployed_at)] if run.passed_at_deploy else []
    lines.append(f"  audience: {_audience_line(run)}")
    if run.decisions:
        by_result = ", ".join(f"{r} {sum(c.values())} ({_counts(c)})" for r, c in run.results.items())
        lines.append(f"  sends: {run.sent} sent; basket decisions: {by_result}")
        lines += [f"    {s.step_id}: {s.channel} {s.template}: {_counts(s.results)}" for s in run.steps]
    else:
        lines.append("  sends: none")
    span = ""
    if run.local and run.first_due and run.last_due and run.first_due != run.last_due:
        span = f"; the run reaches customers from {iso_utc(run.first_due)} to {iso_utc(run.last_due)}, each at their local time"
    lines.append(
        f"  throttle: {run.per_second:g} customers/s; the largest burst, {_customers(run.largest_burst)} due at once, "
        f"takes about {duration_text(run.throttle_seconds)}{span}"
    )
    return lines


_DEPLOYED = {"--at": "--at", "last_line": "the event file's last line", "now": "now: the event file has no line"}


def format_preview(p: Preview, runs: bool = False) -> str:
    """The preview as text: the summary (the deploy, the next run), the notes, then with ``runs`` every run after the deploy."""
    lines = [
        f"campaign {p.journey} v{p.version} ({p.file}): {p.schedule}",
        f"  deployed at {iso_utc(p.deployed_at)} ({_DEPLOYED[p.deployed_at_source]})",
        f"  {_customers(p.customers)} built by {p.events} with the other journeys of {p.journeys} live; policy {p.policy}",
    ]
    if p.next_run is not None:
        lines.append(f"next run {p.next_run.run_id} (v{p.next_run.version}, begins {iso_utc(p.next_run.begins)})")
        lines += _run_lines(p.next_run, p.deployed_at)
    else:
        lines.append(f"next run: none: {p.no_run}" if p.no_run else "next run: none")
    later = p.runs[1:]
    if later and not runs:
        lines.append(f"later runs: {len(later)} more in the simulation, the last {later[-1].run_id} (--runs lists them)")
    lines += [f"note: {n}" for n in p.notes]
    if runs and p.runs:
        lines.append("runs after the deploy:")
        lines += [f"  {r.run_id} (v{r.version}, begins {iso_utc(r.begins)}): {_audience_line(r)}; {r.sent} sent" for r in p.runs]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ load-list


class ListFileError(ValueError):
    """The list file cannot be used at all (e.g. a CSV without a customer_id column)."""


@dataclass(frozen=True)
class ListEntry:
    """One customer of a list file and where it was (``file:line``)."""

    customer_id: str
    where: str


def read_customer_ids(path: str | os.PathLike[str], text: str | None = None) -> tuple[list[ListEntry], list[str]]:
    """The customer ids of a list file, in file order, each once; and ``file:line: reason`` per line that was left out.

    One id per line (blank lines and ``#`` comments skipped), or a CSV whose header has a
    ``customer_id`` column (other columns are ignored). A repeated id is kept once and
    reported. Raises :class:`ListFileError` for a CSV header without ``customer_id``.
    """
    name = os.fspath(path)
    if text is None:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        return [], []
    header = next(csv.reader([rows[0][1]]))
    cells = [c.strip().lower() for c in header]
    if "customer_id" in cells:
        column = cells.index("customer_id")
        values = [(n, next(csv.reader([line]), [])) for n, line in rows[1:]]
        ids = [(n, row[column].strip() if column < len(row) else "") for n, row in values]
    elif len(header) > 1:
        raise ListFileError(f"{name}:{rows[0][0]}: a CSV list needs a customer_id column; the header has: {', '.join(header)}")
    else:
        ids = [(n, line.strip()) for n, line in rows]
    return _unique(name, ids)


def _unique(name: str, ids: Iterable[tuple[int, str]]) -> tuple[list[ListEntry], list[str]]:
    entries: list[ListEntry] = []
    problems: list[str] = []
    first: dict[str, int] = {}
    for n, cid in ids:
        if not cid:
            problems.append(f"{name}:{n}: no customer id")
        elif cid in first:
            problems.append(f"{name}:{n}: customer {cid!r} again (first at line {first[cid]}): loaded once")
        else:
            first[cid] = n
            entries.append(ListEntry(cid, f"{name}:{n}"))
    return entries, problems


def list_event_id(list_name: str, customer_id: str) -> str:
    """The event id of a customer's ``crm.added_to_list`` event: the same on every load, so a re-load is deduplicated."""
    return f"list:{list_name}:{customer_id}"


def list_events(
    entries: Sequence[ListEntry], list_name: str, at: datetime, brand: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """One ``crm.added_to_list`` message per customer (as published on ``<prefix>.in.crm``), and ``file:line: reason`` per
    customer whose message the worker would refuse (e.g. an id longer than 128 characters)."""
    docs: list[dict[str, Any]] = []
    problems: list[str] = []
    for entry in entries:
        doc: dict[str, Any] = {
            "event_id": list_event_id(list_name, entry.customer_id),
            "customer_id": entry.customer_id,
            "occurred_at": iso_utc(at),
            "type": "added_to_list",
            "list": list_name,
        }
        if brand:
            doc["brand"] = brand
        try:
            parse_inbound("crm", doc, key=entry.customer_id)
        except InvalidEvent as exc:
            problems.append(f"{entry.where}: {exc.reason}")
            continue
        docs.append(doc)
    return docs, problems


async def publish_events(docs: Sequence[dict[str, Any]], topic: str, settings: Any) -> int:
    """Publish the messages on ``topic``, keyed by customer id; returns how many were acknowledged."""
    from aiokafka import AIOKafkaProducer

    from orchestrator.runtime.preflight import aiokafka_kwargs

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5, **aiokafka_kwargs(settings))
    await producer.start()
    try:
        futures = [await producer.send(topic, json.dumps(doc).encode(), key=str(doc["customer_id"]).encode()) for doc in docs]
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(docs)


# ------------------------------------------------------------------ the commands


def _parse_time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad time {text!r}: use an ISO time such as 2026-12-01T10:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _preview_cmd(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        result = preview(args.journey, args.journeys, args.events, args.policy, args.at)
    except DefinitionError as exc:
        for line in exc.problems:
            print(line, file=err)
        return 1
    except PreviewError as exc:
        print(f"orchestrator campaign preview: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"{exc.filename}: {exc.strerror}", file=err)
        return 1
    out.write(result.model_dump_json(indent=2) + "\n" if args.json else format_preview(result, args.runs))
    return 0


def _load_list_cmd(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from pydantic import ValidationError

    from orchestrator.settings import Settings

    out, err = out or sys.stdout, err or sys.stderr
    try:
        entries, problems = read_customer_ids(args.file)
    except (OSError, ListFileError) as exc:
        print(f"{args.file}: {exc.strerror}" if isinstance(exc, OSError) else str(exc), file=err)
        return 1
    docs, refused = list_events(entries, args.list, args.at or datetime.now(UTC).replace(microsecond=0), args.brand)
    for line in problems:
        print(line, file=err)
    if refused:
        for line in refused:
            print(line, file=err)
        who = f"{len(refused)} customer{'s' if len(refused) != 1 else ''}"
        print(f"{who} refused: nothing published (fix the file and load it again)", file=err)
        return 1
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"orchestrator campaign load-list: invalid configuration: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", file=err)
        return 1
    topic = settings.topic("in.crm")
    if args.dry_run:
        for doc in docs:
            out.write(json.dumps({"topic": topic, "key": doc["customer_id"], "value": doc}) + "\n")
        print(f"dry run: would publish {len(docs)} crm.added_to_list events (list {args.list}) on {topic}", file=err)
        return 0
    return _publish(docs, topic, settings, args.list, err)


def _publish(docs: Sequence[dict[str, Any]], topic: str, settings: Any, list_name: str, err: TextIO) -> int:
    from aiokafka.errors import KafkaError

    try:
        sent = asyncio.run(publish_events(docs, topic, settings))
    except KafkaError as exc:
        print(
            f"orchestrator campaign load-list: cannot publish to Kafka at {settings.kafka_bootstrap_servers} "
            f"({type(exc).__name__}: {exc}); check KAFKA_BOOTSTRAP_SERVERS and the ORCH_KAFKA_* security settings. "
            "Loading the file again is safe: the events are deduplicated by id",
            file=err,
        )
        return 1
    print(f"published {sent} crm.added_to_list events (list {list_name}) on {topic}", file=err)
    return 0


def register(subparsers: Any) -> None:
    """Add ``campaign preview`` and ``campaign load-list`` to an argparse subparsers object."""
    c = subparsers.add_parser(
        "campaign",
        help="campaigns and segments: preview a scheduled audience, load a customer list",
        description="Tools for journeys that enter customers by audience (entry.audience).",
    )
    sub = c.add_subparsers(dest="campaign_command", required=True)
    p = sub.add_parser(
        "preview",
        help="what happens if I deploy this campaign now: its next run's audience, sends and the basket's answers, throttle time",
        description="What happens if JOURNEY is deployed now: EVENTS.jsonl builds the customers' profiles and history with the "
        "other journeys of --journeys live, and JOURNEY is deployed at the file's last line (or --at TIME). A summary of the next "
        "run a worker would carry out from then (a run whose time passed less than its grace before the deploy: at once): "
        "customers evaluated, the audience size, entries and who was kept out why, the sends of the instances it starts with "
        "the basket's answers (result and code, per step), and how long the run takes at the audience's throttle; then notes. "
        "An estimate: the in-memory basket, each customer entered at their due time.",
    )
    p.add_argument("journey", metavar="JOURNEY_FILE_OR_ID", help="a journey file, or the id of a journey in --journeys")
    p.add_argument("events", metavar="EVENTS.jsonl", help="an event file as for `orchestrator simulate`")
    p.add_argument("--journeys", default="journeys", metavar="DIR", help="journey directory (default: journeys)")
    p.add_argument("--policy", default=None, metavar="FILE", help="pressure policy (default: DIR/pressure.yaml, else the built-in one)")
    p.add_argument(
        "--at",
        type=_parse_time,
        default=None,
        metavar="TIME",
        help="deploy the journey at this ISO time (default: the event file's last line)",
    )
    p.add_argument("--runs", action="store_true", help="also list every run after the deploy in the simulation, one line each")
    p.add_argument("--json", action="store_true", help="print the preview as one JSON object (every run included)")
    p.set_defaults(func=_preview_cmd)

    load = sub.add_parser(
        "load-list",
        help="put the customers of a file on a list (crm.added_to_list events on <prefix>.in.crm)",
        description="Read customer ids (one per line, or a CSV with a customer_id column) and publish one crm.added_to_list "
        "event per customer on the CRM inbound topic (<ORCH_TOPIC_PREFIX>.in.crm), keyed by customer id, with the event id "
        "list:NAME:CUSTOMER: loading the same file again is deduplicated. Audiences read the list as "
        "{field: profile.lists, contains: NAME}. Nothing is published when a line is refused. Uses the worker's Kafka settings "
        "(KAFKA_BOOTSTRAP_SERVERS, ORCH_TOPIC_PREFIX, ORCH_KAFKA_*).",
    )
    load.add_argument("file", metavar="FILE", help="customer ids, one per line, or a CSV with a customer_id column")
    load.add_argument("--list", required=True, metavar="NAME", help="the list's name, e.g. newsletter or beta_testers")
    load.add_argument("--brand", default=None, metavar="B", help="the brand the events belong to")
    load.add_argument("--at", type=_parse_time, default=None, metavar="TIME", help="the events' occurred_at (default: now)")
    load.add_argument("--dry-run", action="store_true", help="print what would be published (one JSON line per event), publish nothing")
    load.set_defaults(func=_load_list_cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one campaign command (for tests and ``python -m orchestrator.designer.campaign``)."""
    parser = argparse.ArgumentParser(prog="orchestrator", description="Campaign commands.")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = [
    "ListEntry",
    "ListFileError",
    "Preview",
    "PreviewError",
    "RunPreview",
    "describe_schedule",
    "format_preview",
    "list_event_id",
    "list_events",
    "preview",
    "read_customer_ids",
    "register",
]

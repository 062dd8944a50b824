"""The campaign designer's commands: ``campaign preview`` and ``campaign load-list``.

``orchestrator/cli.py`` calls :func:`register` on its subparsers.

    orchestrator campaign preview JOURNEY --journeys DIR EVENTS.jsonl
        how a scheduled audience would go: simulate EVENTS.jsonl (the customers it builds)
        with the journeys of DIR (and JOURNEY, a file or a journey id), then, for the next
        run after the file's last line: customers evaluated, the audience size, entries,
        the sends the run's instances make and how the basket answers them (result and
        code, per step), and how long the run takes at the audience's throttle.
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
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, Field

from orchestrator.designer.simulate import (
    DEFAULT_HORIZON,
    CampaignRun,
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
from orchestrator.journey.loader import journey_files, parse_file
from orchestrator.journey.schedule import ScheduleSpec
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
    """One run of the campaign in the simulation."""

    run_id: str
    at: datetime = Field(description="When the run began: its instant, or (local) when it reached its first customer.")
    version: int = Field(description="The journey version live when the run began.")
    local: bool
    evaluated: int = Field(description="Customers seen by their due time, whose audience conditions were evaluated.")
    in_audience: int = Field(description="The audience size: customers the audience's conditions held for.")
    entered: int
    not_entered: int = Field(description="In the audience but kept out by the re-entry rule.")
    decisions: int = Field(
        description="Basket decisions on the sends of the instances this run started (retries and fallbacks each count)."
    )
    sent: int = Field(description="Messages that went out (approved).")
    results: dict[str, dict[str, int]] = Field(description="result -> code -> decisions, e.g. capped -> {reserve: 3}.")
    steps: list[StepSends]
    per_second: float = Field(description="The audience's throttle: customers per second, across all workers.")
    largest_burst: int = Field(description="Most customers in the audience due at the same time (a UTC run: all of them).")
    throttle_seconds: float = Field(description="How long the largest burst takes at the throttle.")
    first_due: datetime | None = None
    last_due: datetime | None = None


class Preview(BaseModel):
    """``orchestrator campaign preview``: how a scheduled audience would go on the customers an event file builds."""

    journey: str
    version: int
    file: str
    schedule: str = Field(description="The schedule in words.")
    events: str = Field(description="The event file that built the customers.")
    customers: int = Field(description="Customers the event file built.")
    last_line: datetime | None = Field(description="Time of the event file's last line: the next run is the first one at or after it.")
    policy: str = Field(description="The pressure policy file, or 'built-in default'.")
    next_run: RunPreview | None = Field(description="The run previewed: the first at or after the last line (else the last one).")
    runs: list[RunPreview] = Field(description="Every run of the campaign in the simulation, in order.")
    notes: list[str] = Field(default_factory=list)


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
    """The campaign to preview and the journey paths to simulate with."""

    journey: m.Journey
    file: str
    paths: list[Path]


def _target(what: str, journeys_dir: Path) -> _Target:
    """The journey named by ``what`` (a file, or a journey id in ``journeys_dir``) and the paths to load.

    Raises :class:`PreviewError`, or :class:`~orchestrator.errors.DefinitionError` for an invalid file.
    """
    from orchestrator.journey.loader import JourneyError

    files = journey_files([journeys_dir]) if journeys_dir.is_dir() else []
    given = Path(what)
    if given.is_file():
        journey, errors = parse_file(given)
        if journey is None:
            raise JourneyError(errors)
        paths = [f for f in files if f.resolve() != given.resolve()] + [given]
        return _Target(journey, os.fspath(given), paths)
    found: list[tuple[m.Journey, Path]] = []
    for f in files:
        parsed, _ = parse_file(f)
        if parsed is not None and parsed.id == what:
            found.append((parsed, f))
    if not found:
        raise PreviewError(f"{what}: no such journey file, and no journey with that id in {journeys_dir}")
    journey, file = max(found, key=lambda jf: (jf[0].status == "live", jf[0].version))
    return _Target(journey, os.fspath(file), files)


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


def _horizon(schedule: ScheduleSpec, last: datetime | None) -> datetime | None:
    """Simulate until the default horizon, or long enough for the next run after the last line to reach every zone."""
    if last is None:
        return None
    until = last + DEFAULT_HORIZON
    upcoming = runs_between(schedule, last, last + timedelta(days=400))
    if upcoming:
        until = max(until, reach(upcoming[0])[1] + timedelta(days=1))
    return until


def preview(
    what: str, journeys_dir: str | os.PathLike[str], events_path: str | os.PathLike[str], policy_path: str | os.PathLike[str] | None = None
) -> Preview:
    """Simulate ``events_path`` with the journeys and preview the campaign ``what`` (a journey file or id).

    Raises :class:`PreviewError` when it is not a campaign or not found,
    :class:`~orchestrator.errors.DefinitionError` for invalid journeys, policy or event file.
    """
    directory = Path(journeys_dir)
    target = _target(what, directory)
    schedule = _schedule(target.journey)
    journeys, items, skipped = load_scenario(target.paths, events_path)
    choice = choose_policy(directory, policy_path)
    last = _last_line(items)
    result = asyncio.run(simulate_async(journeys, items, MemoryBasket(choice.policy), _horizon(schedule, last)))
    runs = [_run_preview(c, result) for c in result.campaigns if c.journey_id == target.journey.id]
    nxt = next((r for r in runs if last is None or r.at >= last), None)
    notes = [f"{line} (line skipped)" for line in skipped + result.errors] + ([choice.notice] if choice.notice else [])
    if nxt is None and runs:
        nxt = runs[-1]
        notes.append(
            f"no run at or after the event file's last line ({iso_utc(last or nxt.at)}): previewing the last run, {nxt.run_id}; "
            "customers and events after it do not count for it"
        )
    elif nxt is None:
        notes.append("no run of the campaign reached a customer of the event file in the simulation")
    notes.append("the throttle is not simulated: every customer enters at their due time; throttle_seconds is what it would take")
    return Preview(
        journey=target.journey.id,
        version=target.journey.version,
        file=target.file,
        schedule=describe_schedule(schedule),
        events=os.fspath(events_path),
        customers=len(result.states),
        last_line=last,
        policy=choice.source or "built-in default",
        next_run=nxt,
        runs=runs,
        notes=notes,
    )


def _run_preview(campaign: CampaignRun, result: SimulationResult) -> RunPreview:
    instance = f"{campaign.journey_id}@audience:{campaign.journey_id}:{campaign.run_id}"
    decided = [d for d in result.dispositions if d.send.instance_id == instance]
    results: dict[str, Counter[str]] = {}
    steps: dict[tuple[str, str, str], Counter[str]] = {}
    for d in decided:
        results.setdefault(d.result, Counter())[str(getattr(d.decision, "code", None) or "none")] += 1
        steps.setdefault((d.send.step_id, d.send.channel, d.send.template), Counter())[d.result] += 1
    burst = max(campaign.bursts.values(), default=0)
    return RunPreview(
        run_id=campaign.run_id,
        at=campaign.at,
        version=campaign.version,
        local=campaign.run.local,
        evaluated=campaign.evaluated,
        in_audience=campaign.in_audience,
        entered=campaign.entered,
        not_entered=campaign.not_entered,
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


def _run_lines(run: RunPreview) -> list[str]:
    lines = [
        f"  audience: {run.in_audience} of {_customers(run.evaluated)} evaluated; {run.entered} entered"
        + (f", {run.not_entered} kept out by re-entry" if run.not_entered else ""),
    ]
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


def format_preview(p: Preview) -> str:
    """The preview as text."""
    lines = [
        f"campaign {p.journey} v{p.version} ({p.file}): {p.schedule}",
        f"  {p.customers} customers built by {p.events}"
        + (f" (last line {iso_utc(p.last_line)})" if p.last_line else "")
        + f"; policy {p.policy}",
    ]
    if p.next_run is not None:
        lines.append(f"next run {p.next_run.run_id} (v{p.next_run.version}, begins {iso_utc(p.next_run.at)})")
        lines += _run_lines(p.next_run)
    others = [r for r in p.runs if p.next_run is None or r.run_id != p.next_run.run_id]
    if others:
        lines.append("other runs in the simulation:")
        lines += [f"  {r.run_id}: {r.in_audience} of {r.evaluated} in the audience, {r.entered} entered, {r.sent} sent" for r in others]
    lines += [f"note: {n}" for n in p.notes]
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
        result = preview(args.journey, args.journeys, args.events, args.policy)
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
    out.write(result.model_dump_json(indent=2) + "\n" if args.json else format_preview(result))
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
        help="estimate a campaign run from a simulation: audience size, sends and the basket's answers, throttle time",
        description="Simulate EVENTS.jsonl (the customers it builds) with the journeys of --journeys and JOURNEY, and preview "
        "the campaign's next run after the file's last line: customers evaluated, the audience size, entries, the sends of the "
        "instances it starts with the basket's answers (result and code, per step), and how long the run takes at the "
        "audience's throttle. An estimate: the in-memory basket, each customer entered at their due time.",
    )
    p.add_argument("journey", metavar="JOURNEY_FILE_OR_ID", help="a journey file, or the id of a journey in --journeys")
    p.add_argument("events", metavar="EVENTS.jsonl", help="an event file as for `orchestrator simulate`")
    p.add_argument("--journeys", default="journeys", metavar="DIR", help="journey directory (default: journeys)")
    p.add_argument("--policy", default=None, metavar="FILE", help="pressure policy (default: DIR/pressure.yaml, else the built-in one)")
    p.add_argument("--json", action="store_true", help="print the preview as one JSON object")
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

"""The journey designer's commands: ``validate``, ``simulate`` and ``render``.

``orchestrator/cli.py`` calls :func:`register` on its subparsers; :func:`main` runs
these three alone (``python -m orchestrator.designer.cli validate journeys/``).

    orchestrator validate PATH...                       exit 0 when every file is valid,
                                                        else file:line:col: message per problem
    orchestrator simulate --journeys DIR EVENTS.jsonl   replay offline (virtual clock, in-memory basket)
    orchestrator render FILE [--events EVENTS.jsonl]    Mermaid flowchart, edges counted per customer
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from orchestrator.definitions import load_definitions
from orchestrator.errors import DefinitionError
from orchestrator.journey.facts import FACTS_FILE, load_facts
from orchestrator.journey.loader import journey_files, parse_file, validate_paths
from orchestrator.journey.scores import SCORES_FILE, load_scores, scores_beside
from orchestrator.pressure.policy import POLICY_FILE, PressurePolicy, validate_policy_file

if TYPE_CHECKING:
    from orchestrator.designer.simulate import SimulationResult


def validate(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Every problem in the given files/directories (journeys, ``pressure.yaml``, ``profile.yaml``); empty when all are valid."""
    return check(paths)[0]


def check(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """(every problem, what was checked per path).

    A directory is checked as the worker loads it (:func:`~orchestrator.definitions.load_definitions`):
    it must hold journeys, ``pressure.yaml`` and ``profile.yaml``, and the journeys are checked
    against the facts. A single file is checked on its own (a journey against the facts file
    beside it, when there is one).
    """
    errors: list[str] = []
    checked: list[str] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            errors.append(f"{os.fspath(path)}:1:1: no such file or directory")
        elif path.is_dir():
            try:
                checked.append(f"{os.fspath(path)}: {load_definitions(path, require_journeys=True).summary()}")
            except DefinitionError as exc:
                errors.extend(exc.problems)
        elif path.name == POLICY_FILE:
            errors.extend(validate_policy_file(path))
            checked.append(f"{os.fspath(path)}: 1 policy")
        elif path.name == FACTS_FILE:
            errors.extend(_facts_problems(path))
            checked.append(f"{os.fspath(path)}: 1 facts file")
        elif path.name == SCORES_FILE:
            errors.extend(_scores_problems(path))
            checked.append(f"{os.fspath(path)}: 1 scores file")
        else:
            errors.extend(_journey_file_problems(path))
            checked.append(f"{os.fspath(path)}: 1 journey file")
    return errors, checked


def _facts_problems(path: Path) -> list[str]:
    try:
        load_facts(path)
    except DefinitionError as exc:
        return exc.problems
    return []


def _scores_problems(path: Path) -> list[str]:
    try:
        load_scores(path)
    except DefinitionError as exc:
        return exc.problems
    return []


def _journey_file_problems(path: Path) -> list[str]:
    problems: list[str] = []
    scores = scores_beside([path.parent], problems)  # profile.scores.X and entry.score against scores.yaml beside it
    beside = path.parent / FACTS_FILE
    if not beside.is_file():
        return [*problems, *validate_paths([path], None, scores)]
    try:
        facts = load_facts(beside)
    except DefinitionError as exc:
        return [*exc.problems, *problems, *validate_paths([path], None, scores)]
    return [*problems, *validate_paths([path], facts, scores)]


def _print_problems(exc: DefinitionError, err: TextIO) -> int:
    """Print every ``file:line:col: message`` of an invalid journey or policy file; the exit code (1)."""
    for line in exc.problems:
        print(line, file=err)
    return 1


def _validate_cmd(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    errors, checked = check(args.paths)
    for line in errors:
        print(line, file=err)
    if errors:
        print(f"{len(errors)} problem{'s' if len(errors) != 1 else ''} found", file=err)
        return 1
    for line in checked:
        print(f"{line}: ok", file=out)
    if getattr(args, "kafka", False):
        for note in _history_notes(args.paths):
            print(f"note: {note}", file=out)
    elif any(Path(p).is_dir() and _reads_history(p) for p in args.paths):
        print(
            "note: journeys here read payload history (seen/not_seen ... where): how far back it goes depends on when the "
            "running system began recording each field; add --kafka to check against its facts registry",
            file=out,
        )
    return 0


def _reads_history(directory: str | os.PathLike[str]) -> bool:
    from orchestrator.journey.loader import load_journeys

    return any(fields for journey in load_journeys([Path(directory)]) for fields in journey.tracked.values())


def _history_notes(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Where a journey of the given directories looks back before the running system's history (its facts registry)."""
    from orchestrator.journey.loader import history_notes
    from orchestrator.runtime.facts_registry import read_registry
    from orchestrator.runtime.preflight import aiokafka_kwargs
    from orchestrator.settings import Settings

    settings = Settings()
    topic = settings.topic("profile-facts")
    registry = read_registry(settings.kafka_bootstrap_servers, topic, settings.partitions, **aiokafka_kwargs(settings))
    started = asyncio.run(registry)
    now = datetime.now(UTC)
    notes: list[str] = []
    for p in paths:
        if Path(p).is_dir():
            notes += history_notes(load_definitions(p).journeys, started, now)
    unrecorded = [f"{etype} {field}" for etype, field in sorted(started)]
    notes.append(f"facts registry {topic}: {len(started)} field(s) recorded ({', '.join(unrecorded) or 'none'})")
    return notes


def _parse_until(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --until {text!r}: use an ISO time such as 2026-06-01T00:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _simulate_cmd(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from orchestrator.designer.simulate import format_json_lines, format_text, simulate_files

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        until = _parse_until(args.until)
        result = simulate_files(args.journeys, args.events, args.policy, until)
        proposed = simulate_files(args.journeys, args.events, args.compare_policy, until) if args.compare_policy else None
    except DefinitionError as exc:
        return _print_problems(exc, err)
    except argparse.ArgumentTypeError as exc:
        print(str(exc), file=err)
        return 2
    except OSError as exc:
        print(f"{exc.filename}: {exc.strerror}", file=err)
        return 1
    for line in result.notices:
        print(line, file=err)
    for line in result.errors:
        print(f"{line} (line skipped)", file=err)
    customers = [args.customer] if args.customer else None
    if proposed is not None:
        out.write(_policy_comparison(args, result, proposed, customers))
    else:
        out.write(format_json_lines(result, customers) if args.json else format_text(result, customers))
    return 1 if (args.strict and result.errors) else 0


def _policy_comparison(args: argparse.Namespace, current: SimulationResult, proposed: SimulationResult, customers: list[str] | None) -> str:
    """``simulate --compare-policy``: the two runs compared (text, or one JSON object with ``--json``)."""
    from orchestrator.designer.simulate import choose_policy, describe_policy
    from orchestrator.designer.whatif import compare, format_comparison

    labels = []
    for path in (args.policy, args.compare_policy):
        choice = choose_policy(args.journeys, path)
        labels.append(f"{choice.source or 'the built-in default policy'} ({describe_policy(choice.policy)})")
    comparison = compare(current, proposed, current_label=labels[0], proposed_label=labels[1], customers=customers)
    return comparison.model_dump_json(indent=2) + "\n" if args.json else format_comparison(comparison)


def _render_cmd(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from orchestrator.designer.render import counts_from_json_lines, render_mermaid

    out = out or sys.stdout
    err = err or sys.stderr
    journey, errors = parse_file(args.file)
    if journey is None:
        for line in errors:
            print(line, file=err)
        return 1
    counts = None
    if args.counts:
        with open(args.counts, encoding="utf-8") as fh:
            counts = counts_from_json_lines(fh, journey.id)
    elif args.events:
        try:
            counts = _simulated_counts(args, journey.id, err)
        except DefinitionError as exc:
            return _print_problems(exc, err)
    text = render_mermaid(journey, counts)
    out.write(f"```mermaid\n{text}```\n" if args.markdown else text)
    return 0


def _simulated_counts(args: argparse.Namespace, journey_id: str, err: TextIO) -> Counter[tuple[str, str]]:
    """Customers per edge of ``journey_id`` (all its versions) when ``args.events`` is simulated with FILE's journeys.

    Raises :class:`~orchestrator.errors.DefinitionError` when a journey, the policy or a deploy/retire line is invalid.
    """
    from orchestrator.designer.simulate import choose_policy, load_scenario, simulate_async
    from orchestrator.pressure.memory import MemoryBasket

    directory = Path(args.journeys) if args.journeys else Path(args.file).parent
    paths: list[Path] = [directory]
    if Path(args.file).resolve() not in {p.resolve() for p in journey_files([directory])}:
        paths.append(Path(args.file))
    journeys, items, bad = load_scenario(paths, args.events)
    choice = choose_policy(directory, args.policy)
    if choice.notice:
        print(choice.notice, file=err)
    for line in bad:
        print(f"{line} (line skipped)", file=err)
    result = asyncio.run(simulate_async(journeys, items, MemoryBasket(choice.policy)))
    for line in result.errors:
        print(f"{line} (line skipped)", file=err)
    return result.edge_counts(journey_id)


def register(subparsers: Any) -> None:
    """Add ``validate``, ``simulate`` and ``render`` to an argparse subparsers object."""
    v = subparsers.add_parser(
        "validate",
        help="check journey files, pressure policies and profile facts (file:line:col: message per problem)",
        description="Check journey files, pressure.yaml and profile.yaml. A directory is checked as the worker loads it: "
        "journeys, pressure.yaml and profile.yaml must be there. Exits 0 when everything is valid, saying what was checked; "
        "otherwise prints every problem as file:line:col: message and exits 1.",
    )
    v.add_argument("paths", nargs="+", metavar="PATH", help="journey files, pressure.yaml, profile.yaml, or directories")
    v.add_argument(
        "--kafka",
        action="store_true",
        help="also read the running system's facts registry (KAFKA_BOOTSTRAP_SERVERS, ORCH_TOPIC_PREFIX) and note where a "
        "journey looks back before a field's recorded history began",
    )
    v.set_defaults(func=_validate_cmd)

    s = subparsers.add_parser(
        "simulate",
        help="replay an event file offline through the real engine (virtual clock, in-memory basket)",
        description="Replay a JSON-lines event file through the journeys with a virtual clock and the in-memory basket; "
        "print, per customer, each step, send (with outcome and why) and timer. Lines of the event file: an inbound event "
        '({"family": "web", "type": ..., "event_id": ..., "customer_id": ..., "occurred_at": ..., ...}), where a field may be '
        '{"send_of": STEP} (optionally with "journey": ID) for the send id of the latest approved send of that step for that '
        'customer; {"deploy": FILE, "at": TIME} to load a journey version at that time (FILE relative to the event file); '
        '{"retire": JOURNEY_ID, "version": N, "at": TIME} to stop new entries into a version. '
        "Deploy and retire problems are reported as file:line:col before anything runs. Scheduled audiences (campaigns) run "
        "on the same clock over the customers seen so far, each customer at their due time; a line per run sums it up.",
    )
    s.add_argument("events", metavar="EVENTS.jsonl")
    s.add_argument("--journeys", default="journeys", metavar="DIR", help="journey directory (default: journeys)")
    s.add_argument(
        "--policy",
        default=None,
        metavar="FILE",
        help="pressure policy; it must exist (default: DIR/pressure.yaml). When DIR has no pressure.yaml the built-in default "
        f"policy (capacity {PressurePolicy().capacity:g} points per calendar month) is used and a notice saying so is printed "
        "on stderr: a journey can be tried before its policy exists, and the output never hides which policy decided the sends",
    )
    s.add_argument(
        "--until", default=None, metavar="TIME", help="fire timers and campaign runs up to this ISO time (default: last line + 90 days)"
    )
    s.add_argument(
        "--compare-policy",
        default=None,
        metavar="OTHER.yaml",
        help="what would a policy change do: simulate under the current policy and under OTHER.yaml and print what changes "
        "(per journey and send step: results and basket codes; customers contacted more or less; points spent), a summary first",
    )
    s.add_argument("--customer", default=None, help="only print this customer (with --compare-policy: only compare their sends)")
    s.add_argument("--json", action="store_true", help="one JSON object per line (with --compare-policy: one JSON object)")
    s.add_argument("--strict", action="store_true", help="exit 1 when an event line is skipped (invalid, or a send_of with no send)")
    s.set_defaults(func=_simulate_cmd)

    r = subparsers.add_parser(
        "render",
        help="print a journey as a Mermaid flowchart (with --events: customers per edge)",
        description="Print the journey in FILE as a Mermaid flowchart. With --events, simulate that event file "
        "(journeys of FILE's directory, or --journeys) and label every edge with the customers that took it; "
        "with --counts, read the output of `simulate --json` instead.",
    )
    r.add_argument("file", metavar="FILE")
    r.add_argument("--events", default=None, metavar="EVENTS.jsonl", help="simulate these events and count customers per edge")
    r.add_argument("--counts", default=None, metavar="SIM.jsonl", help="count customers per edge from `simulate --json` output")
    r.add_argument("--journeys", default=None, metavar="DIR", help="journeys to simulate with (default: FILE's directory)")
    r.add_argument(
        "--policy",
        default=None,
        metavar="FILE",
        help="pressure policy; it must exist (default: DIR/pressure.yaml, else the built-in default policy, with a notice on stderr)",
    )
    r.add_argument("--markdown", action="store_true", help="wrap the output in a ```mermaid block")
    r.set_defaults(func=_render_cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one designer command (for tests and ``python -m orchestrator.designer.cli``)."""
    parser = argparse.ArgumentParser(prog="orchestrator", description="Journey designer commands.")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

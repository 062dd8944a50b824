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
from typing import Any, TextIO

from orchestrator.errors import DefinitionError
from orchestrator.journey.loader import journey_files, parse_file, validate_paths
from orchestrator.pressure.policy import POLICY_FILE, PressurePolicy, validate_policy_file


def validate(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Every problem in the given files/directories: journeys and ``pressure.yaml`` policies."""
    errors: list[str] = []
    journey_paths: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            errors.append(f"{os.fspath(path)}:1:1: no such file or directory")
            continue
        if path.is_dir():
            policy = path / POLICY_FILE
            if policy.is_file():
                errors.extend(validate_policy_file(policy))
            journey_paths.extend(journey_files([path]))
        elif path.name == POLICY_FILE:
            errors.extend(validate_policy_file(path))
        else:
            journey_paths.append(path)
    if journey_paths:
        errors.extend(validate_paths(journey_paths))
    return errors


def _print_problems(exc: DefinitionError, err: TextIO) -> int:
    """Print every ``file:line:col: message`` of an invalid journey or policy file; the exit code (1)."""
    for line in exc.problems:
        print(line, file=err)
    return 1


def _validate_cmd(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    errors = validate(args.paths)
    for line in errors:
        print(line, file=err)
    if errors:
        print(f"{len(errors)} problem{'s' if len(errors) != 1 else ''} found", file=err)
        return 1
    print(f"ok: {len(args.paths)} path{'s' if len(args.paths) != 1 else ''} valid", file=out)
    return 0


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
        result = simulate_files(args.journeys, args.events, args.policy, _parse_until(args.until))
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
    out.write(format_json_lines(result, customers) if args.json else format_text(result, customers))
    return 1 if (args.strict and result.errors) else 0


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
        help="check journey files and pressure policies (file:line:col: message per problem)",
        description="Check journey files (and pressure.yaml policies). Directories: every *.yaml in them. "
        "Exits 0 when everything is valid; otherwise prints every problem as file:line:col: message and exits 1.",
    )
    v.add_argument("paths", nargs="+", metavar="PATH", help="journey files, pressure.yaml, or directories")
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
    s.add_argument("--customer", default=None, help="only print this customer")
    s.add_argument("--json", action="store_true", help="one JSON object per line")
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

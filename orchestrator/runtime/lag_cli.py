"""``orchestrator lag``: the consumer group's lag per topic and partition, as Kafka sees it.

``orchestrator/cli.py`` calls :func:`register` on its subparsers::

    from orchestrator.runtime import lag_cli
    lag_cli.register(sub)                      # adds `lag [--json] [--group G] [--topics T ...] [--timeout S]`

Configuration comes from the same environment as the worker (``Settings``): the group
is ``ORCH_APP_ID``, the topics are the inbound topics and the customer topic of
``ORCH_TOPIC_PREFIX`` (never the table changelogs), the brokers and their security
``KAFKA_BOOTSTRAP_SERVERS`` / ``ORCH_KAFKA_*``. Exit 0 with the table (or JSON), exit 1
with one line on stderr when Kafka cannot be read within ``--timeout`` seconds, or when
none of the topics exists (a wrong ``ORCH_TOPIC_PREFIX``, a deployment never started: a
table of nothing would read as "no lag"). Some topics missing: exit 0, the missing named on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from orchestrator.runtime.lag import DEFAULT_TIMEOUT, LagProbe, LagUnavailable, PartitionLag, lag_topics

__all__ = ["format_table", "lag_report", "no_topics_message", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lag [--json] [--group GROUP] [--topics TOPIC ...] [--timeout SECONDS]`` to an argparse subparsers object."""
    lag = sub.add_parser(
        "lag",
        help="consumer lag per topic and partition: committed, end, lag, owner",
        description=(
            "Print the consumer group's lag on every partition of the inbound topics and the customer topic, "
            "from the offsets the group committed and the partitions' end offsets (as Kafka sees them: "
            "partitions nobody owns and those of a dead worker included; table changelogs excluded). "
            "committed '-' = never committed: everything retained counts as lag. "
            "owner '-' = no member holds it (group rebalancing, empty, or partition unassigned). "
            "Exit 1 with one line on stderr when Kafka does not answer or none of the topics exists."
        ),
    )
    lag.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    lag.add_argument("--group", default=None, help="consumer group (default: $ORCH_APP_ID)")
    lag.add_argument(
        "--topics",
        nargs="+",
        default=None,
        metavar="TOPIC",
        help="topics to report, space- or comma-separated (default: the inbound topics and <prefix>.customer-events)",
    )
    lag.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for Kafka before giving up with exit 1 (default: {DEFAULT_TIMEOUT:g})",
    )
    lag.set_defaults(func=_lag_command)


async def lag_report(
    bootstrap: str, group: str, topics: Sequence[str], timeout: float = DEFAULT_TIMEOUT, **client_kw: Any
) -> dict[str, Any]:
    """The lag as the ``--json`` object: group, state, bootstrap, partitions (rows), total_lag, missing_topics."""
    async with LagProbe(bootstrap, group, topics, timeout=timeout, **client_kw) as probe:
        rows = await probe.read()
        return {
            "group": group,
            "state": probe.group_state,
            "bootstrap": bootstrap,
            "partitions": [asdict(r) for r in rows],
            "total_lag": sum(r.lag for r in rows),
            "missing_topics": list(probe.missing_topics),
        }


def format_table(report: dict[str, Any]) -> str:
    """The report as an aligned table ``topic partition committed end lag owner`` with a total line."""
    rows = [PartitionLag(**r) for r in report["partitions"]]
    header = ("topic", "partition", "committed", "end", "lag", "owner")
    cells = [
        (r.topic, str(r.partition), "-" if r.committed is None else str(r.committed), str(r.end), str(r.lag), r.owner or "-") for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    right = {1, 2, 3, 4}  # numbers align right

    def line(c: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True))).rstrip()

    out = [f"group {report['group']} ({report['state']}) at {report['bootstrap']}", line(header)]
    out += [line(c) for c in cells]
    out.append(f"total lag {report['total_lag']} over {len(rows)} partitions")
    return "\n".join(out)


def no_topics_message(missing: Sequence[str], prefix: str | None) -> str:
    """The one line for "none of the topics exists": which (the first three), and for the default topics the prefix."""
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    hint = f" (ORCH_TOPIC_PREFIX={prefix!r}: no worker of that prefix ever started?)" if prefix is not None else ""
    return f"no lag to report: none of the topics exists or is visible: {shown}{hint}"


def _lag_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from pydantic import ValidationError

    from orchestrator.runtime.preflight import aiokafka_kwargs
    from orchestrator.settings import Settings

    out = out or sys.stdout
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"orchestrator lag: invalid configuration: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 1
    group = args.group or settings.app_id
    topics = [t for arg in args.topics for t in arg.split(",") if t] if args.topics else lag_topics(settings)
    # With no logging configured, Python would print aiokafka's connection retries and our
    # own warnings on stderr next to the one line this command writes: mute them meanwhile.
    loggers = [logging.getLogger(n) for n in ("aiokafka", "orchestrator.runtime.lag")] if not logging.getLogger().handlers else []
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        report = asyncio.run(lag_report(settings.kafka_bootstrap_servers, group, topics, timeout=args.timeout, **aiokafka_kwargs(settings)))
    except LagUnavailable as exc:
        print(f"orchestrator lag: {exc}", file=sys.stderr)
        return 1
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    if report["missing_topics"] and not report["partitions"]:
        prefix = None if args.topics else settings.topic_prefix
        print(f"orchestrator lag: {no_topics_message(report['missing_topics'], prefix)}", file=sys.stderr)
        return 1
    if report["missing_topics"]:
        print(
            f"orchestrator lag: not listed, topic does not exist or is not visible: {', '.join(report['missing_topics'])}",
            file=sys.stderr,
        )
    out.write((json.dumps(report, indent=2) if args.json else format_table(report)) + "\n")
    return 0

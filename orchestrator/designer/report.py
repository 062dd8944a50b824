"""``orchestrator report``: entries, conversions and A/B uplift per journey, version and split variant.

``orchestrator/cli.py`` calls :func:`register` on its subparsers::

    orchestrator report [--from-simulate FILE] [--since TIME] [--until TIME] [--journey ID]
                        [--unit instance|customer] [--min-n N] [--journeys DIR] [--json] [--timeout S]

Where the records come from: the journey-log topic ``<ORCH_TOPIC_PREFIX>.journey-log``, every
partition from its beginning to its end at the time of the call, then the command stops (brokers
and security from the worker's environment, :class:`~orchestrator.settings.Settings`); or, with
``--from-simulate FILE``, the output of ``orchestrator simulate --json``.

What is counted
---------------
The unit is the journey **instance**: one entry of one customer into one journey version, from
its ``entered`` record to its ``goal`` or ``exited`` record. A customer who enters a journey three
times counts three times. ``--unit customer`` counts each customer once per row instead (converted
when any of their instances reached a goal). Instances are the default because a journey's goal is
defined per entry (a cart abandoned twice is two chances to convert); customers are the unit the
split randomises (the variant is sticky per customer), so when customers re-enter, instance-level
intervals are too narrow: the report says so, and ``--unit customer`` is then the safer basis.

* **entered**: instances whose ``entered`` record lies in ``[--since, --until)`` (record time
  ``at``, the engine's clock). Records at or after ``--until`` are ignored: the report is as of
  ``--until``. An instance that entered before ``--since`` is left out with all its records;
  records of an instance whose ``entered`` record is missing (deleted by retention) are skipped
  and counted in a note.
* **variant**: ``detail.variant`` of the instance's ``split`` record, per split step. Instances
  that have not reached the split (yet) are in no variant ("not split").
* **converted**: the instance ended with a ``goal`` record. Instances still running count as
  entered and not converted (so far); the ``open`` column says how many.
* **conversion rate** = converted / entered, with a 95 % **Wilson score interval** (right for
  small samples and rates near 0 or 1, unlike the plain normal interval).
* **uplift** of a variant against its split's **baseline**, the first variant declared in the
  journey file (``--journeys``; by name when the file is not at hand): relative uplift = rate /
  baseline rate − 1 with a 95 % interval for the rate ratio (Katz log method; none when either
  side has no conversion), and the difference of the rates in percentage points with a 95 %
  Newcombe hybrid score interval (built from the two Wilson intervals). The **verdict** comes
  from the difference interval: ``higher`` or ``lower`` when it excludes 0, else ``no clear
  difference``. Overlapping Wilson intervals alone do not mean "no difference": the report
  shows the overlap but decides on the difference interval.
* **n too small**: a row with fewer than ``--min-n`` (default 30) instances (customers with
  ``--unit customer``) is marked so, and a comparison involving one gets no verdict.
* **assignment check**: with the variant weights from the journey file, the customers per
  variant are tested against the weights (chi-square). p < 0.001 is a sample ratio mismatch:
  the split does not assign as declared (or the log is incomplete), so do not trust its
  comparison.
* **sends**: the instances' ``send`` records by result (approved, fallback, capped, suppressed,
  cancelled) and their deferred sends (``delayed`` records with a send id), once per send id
  and result.

Each variant is compared with the baseline on its own at 95 %: with several variants, or when
the report is looked at every day until something "wins", one comparison in twenty of equal
variants looks different by chance. Fix the sample size before the test and read the verdict
once it is reached.

Where things are
----------------
This module is the command (:func:`register`) and re-exports the names of its parts:
:mod:`~orchestrator.designer.report_stats` (the intervals and the chi-square test),
:mod:`~orchestrator.designer.report_model` (the report document, what ``--json`` prints),
:mod:`~orchestrator.designer.report_input` (``simulate --json`` files, the variants declared in the journey files),
:mod:`~orchestrator.designer.report_build` (counting the records into a report: :func:`build_report`),
:mod:`~orchestrator.designer.report_text` (the text output: :func:`format_report`) and
:mod:`~orchestrator.designer.report_kafka` (reading a topic to its end, also used by ``explain``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from orchestrator.designer.report_build import build_report
from orchestrator.designer.report_input import log_records, read_simulate_file, simulate_to_log, variant_order
from orchestrator.designer.report_kafka import KafkaReadError, RawRecord, quiet_kafka_client, read_to_end
from orchestrator.designer.report_model import MIN_N, SRM_ALPHA, Interval, JourneyReport, Report, SplitReport, Uplift, VariantRow
from orchestrator.designer.report_stats import (
    CONFIDENCE,
    Z95,
    chi2_sf,
    newcombe_difference,
    relative_uplift_interval,
    sample_ratio_p,
    wilson_interval,
)
from orchestrator.designer.report_text import format_report

if TYPE_CHECKING:
    from orchestrator.settings import Settings

__all__ = [
    "CONFIDENCE",
    "MIN_N",
    "SRM_ALPHA",
    "Z95",
    "Interval",
    "JourneyReport",
    "KafkaReadError",
    "RawRecord",
    "Report",
    "SplitReport",
    "Uplift",
    "VariantRow",
    "build_report",
    "chi2_sf",
    "format_report",
    "log_records",
    "newcombe_difference",
    "parse_time",
    "read_simulate_file",
    "read_to_end",
    "register",
    "relative_uplift_interval",
    "sample_ratio_p",
    "simulate_to_log",
    "variant_order",
    "wilson_interval",
]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` allowed; naive = UTC) for ``--since`` / ``--until``."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time such as 2026-06-01T00:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


HELP = (
    "Per journey, version and split variant: entered, converted (ended with a goal), conversion rate with a 95 % Wilson "
    "score interval, uplift against the split's first variant (relative, with its interval, and the difference in "
    "percentage points with a Newcombe interval that decides the verdict), and sends by result. "
    "Counts journey instances (one per entry: a customer entering twice counts twice) unless --unit customer; "
    "an instance belongs to the variant of its split record; still-running instances count as not converted (so far). "
    "Rows with fewer than --min-n entries are marked 'n too small' and get no verdict. "
    "With the journey files at hand (--journeys), the baseline is the first variant declared and the customers per variant "
    "are checked against the weights (chi-square; p < 0.001 is reported as a sample ratio mismatch). "
    "--since/--until select instances by the time of their entered record (the engine's clock). "
    "Reads the journey-log topic (<ORCH_TOPIC_PREFIX>.journey-log, every partition from the beginning to its current end) "
    "or, with --from-simulate, the output of `orchestrator simulate --json`."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report [--from-simulate FILE] [--since T] [--until T] [--journey ID] [--unit U] [--min-n N] [--json]``."""
    p = sub.add_parser(
        "report", help="conversion and A/B uplift per journey, version and split variant, from the journey log", description=HELP
    )
    p.add_argument(
        "--from-simulate", default=None, metavar="FILE", help="read the output of `orchestrator simulate --json` instead of Kafka"
    )
    p.add_argument("--since", type=parse_time, default=None, metavar="TIME", help="count instances that entered at or after this ISO time")
    p.add_argument(
        "--until",
        type=parse_time,
        default=None,
        metavar="TIME",
        help="count instances that entered before this ISO time; ignore later records",
    )
    p.add_argument("--journey", default=None, metavar="ID", help="only this journey")
    p.add_argument(
        "--unit",
        choices=("instance", "customer"),
        default="instance",
        help="what one entry counts: an instance (default) or a customer (once per row, converted if any instance was)",
    )
    p.add_argument(
        "--min-n", type=_positive_int, default=MIN_N, metavar="N", help=f"'n too small' below N entries per row (default {MIN_N})"
    )
    p.add_argument(
        "--journeys",
        default=None,
        metavar="DIR",
        help="journey files for the variants' order (baseline = first) and weights (default: $ORCH_JOURNEYS_DIR, else journeys)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="seconds to read the topic before giving up with exit 1 (default 60)"
    )
    p.set_defaults(func=_report_command)


def load_settings(command: str, err: TextIO) -> Settings | None:
    """The worker's settings from the environment, or None after saying on ``err`` what is wrong."""
    from orchestrator.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"orchestrator {command}: invalid configuration: {first['loc']}: {first['msg']}", file=err)
        return None


def _read_kafka(args: argparse.Namespace, settings: Settings, err: TextIO) -> tuple[list[bytes], str] | None:
    from orchestrator.runtime.preflight import aiokafka_kwargs

    topic = settings.topic("journey-log")
    try:
        with quiet_kafka_client():
            raw, _ = asyncio.run(read_to_end(settings.kafka_bootstrap_servers, [topic], args.timeout, **aiokafka_kwargs(settings)))
    except KafkaReadError as exc:
        print(f"orchestrator report: {exc}", file=err)
        return None
    return [r.value for r in raw if r.value is not None], topic


def _report_command(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = load_settings("report", err)
    if settings is None:
        return 1
    records: Sequence[Mapping[str, Any] | bytes]
    if args.from_simulate:
        try:
            records, problems = read_simulate_file(args.from_simulate)
        except OSError as exc:
            print(f"orchestrator report: {args.from_simulate}: {exc.strerror}", file=err)
            return 1
        for line in problems:
            print(f"{line} (line skipped)", file=err)
        source = args.from_simulate
    else:
        read = _read_kafka(args, settings, err)
        if read is None:
            return 1
        records, source = read
    order, why = variant_order(args.journeys or settings.journeys_dir)
    report = build_report(
        records, since=args.since, until=args.until, unit=args.unit, min_n=args.min_n, journey=args.journey, variants=order, source=source
    )
    if why is not None and any(j.splits for j in report.journeys):
        report.notes.append(f"baselines by variant name, weights unknown: {why}")
    out.write((report.model_dump_json(indent=2) if args.json else format_report(report)) + "\n")
    return 0

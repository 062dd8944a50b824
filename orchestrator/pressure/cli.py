"""Command-line pieces of the basket: ``orchestrator basket show`` and policy validation.

The main CLI (``orchestrator/cli.py``) wires these in::

    from orchestrator.pressure import cli as pressure_cli
    pressure_cli.register(subparsers)          # adds `basket show CUSTOMER ...`
    problems = pressure_cli.validate_policy_file(path)   # for files named pressure.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from orchestrator.errors import DefinitionError
from orchestrator.pressure.basket import BasketView
from orchestrator.pressure.connect import RedisMode, redacted_url
from orchestrator.pressure.policy import POLICY_FILE, load_policy, validate_policy_file
from orchestrator.timeutil import resolve_tz

__all__ = ["format_view", "register", "show_basket", "validate_policy_file"]

DEFAULT_POLICY = f"journeys/{POLICY_FILE}"


def register(subparsers: Any) -> None:
    """Add ``basket show CUSTOMER [--tz TZ] [--json] [--redis-url URL] [--policy FILE]`` to an argparse subparsers object."""
    basket = subparsers.add_parser(
        "basket", help="inspect the contact-pressure basket", description="Inspect the contact-pressure basket in Redis."
    )
    commands = basket.add_subparsers(dest="basket_command", required=True, metavar="COMMAND")
    show = commands.add_parser(
        "show",
        help="print a customer's balance, spends of the period, lock and suppressions",
        description="Print a customer's basket for the current period: balance, spends, calamity lock and suppressions.",
    )
    show.add_argument("customer", metavar="CUSTOMER", help="customer id")
    show.add_argument("--tz", default="UTC", help="the customer's IANA time zone; the calendar period follows it (default: UTC)")
    show.add_argument("--json", action="store_true", help="print the basket as JSON")
    show.add_argument("--redis-url", default=None, help="Redis URL (default: $REDIS_URL, else redis://localhost:6379/0)")
    show.add_argument(
        "--redis-mode",
        choices=("single", "cluster"),
        default=None,
        help="single or cluster (default: $ORCH_REDIS_MODE, else single); cluster: --redis-url names a seed node",
    )
    show.add_argument("--policy", default=DEFAULT_POLICY, help=f"pressure policy file (default: {DEFAULT_POLICY})")
    show.set_defaults(func=_show_command)


async def show_basket(
    redis_url: str, policy_path: str, customer_id: str, tz: str, now: datetime | None = None, mode: RedisMode = "single"
) -> BasketView:
    """Read one customer's basket from Redis."""
    from orchestrator.pressure.redis_basket import RedisBasket

    basket = RedisBasket.from_url(redis_url, load_policy(policy_path), mode=mode)
    try:
        return await basket.show(customer_id, now or datetime.now(UTC), tz)
    finally:
        await basket.aclose()


def format_view(view: BasketView, tz: str = "UTC") -> str:
    """A human-readable rendering of a basket, times in the customer's time zone ``tz``."""
    zone = resolve_tz(tz)

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).isoformat(timespec="seconds")

    lines = [
        f"customer     {view.customer_id}",
        f"period       {view.period}",
        f"balance      {view.balance:g} of {view.capacity:g} points",
        f"locked until {local(view.locked_until) if view.locked_until else '-'}",
        f"suppressions {', '.join(view.suppressions) if view.suppressions else '-'}",
        f"spends       {len(view.spends)}",
    ]
    for s in view.spends:
        brand = s.brand or "-"
        lines.append(f"  {local(s.at)}  {s.cost:>6g}  {s.comm_type:<10} {s.channel:<11} brand={brand} priority={s.priority}  {s.send_id}")
    return "\n".join(lines)


def _show_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    url = args.redis_url or os.environ.get("REDIS_URL") or "redis://localhost:6379/0"
    try:
        wanted = getattr(args, "redis_mode", None) or os.environ.get("ORCH_REDIS_MODE") or "single"
        if wanted not in ("single", "cluster"):
            print(f"ORCH_REDIS_MODE={wanted!r}: use single or cluster", file=sys.stderr)
            return 2
        mode: RedisMode = "cluster" if wanted == "cluster" else "single"
        view = asyncio.run(show_basket(url, args.policy, args.customer, args.tz, mode=mode))
    except DefinitionError as exc:
        print(f"invalid pressure policy {args.policy}:", file=sys.stderr)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (RedisConnectionError, RedisClusterException, OSError) as exc:
        print(f"cannot reach Redis at {redacted_url(url)}: {exc}", file=sys.stderr)
        return 1
    except RedisError as exc:
        print(f"basket show failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out.write((view.model_dump_json(indent=2) if args.json else format_view(view, args.tz)) + "\n")
    return 0

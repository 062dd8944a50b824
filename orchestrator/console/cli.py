"""``orchestrator console``: serve the live journey console (``orchestrator/cli.py`` calls :func:`register`).

Configured like a worker (``ORCH_*``, ``KAFKA_BOOTSTRAP_SERVERS``; the deployment's topic prefix,
app id and journeys directory) plus ``ORCH_CONSOLE_TOKEN`` (required), ``ORCH_CONSOLE_HOST``
and ``ORCH_CONSOLE_PORT``. Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from orchestrator.settings import Settings

MIN_TOKEN = 16
"""Shortest token accepted (characters): a short one can be guessed."""

HELP = (
    "Serve a read-only live console of the running journeys on ORCH_CONSOLE_HOST:ORCH_CONSOLE_PORT (default 127.0.0.1:6067): "
    "per journey version entered / now in journey / converted, the journey map with customers at each step now and the "
    "count of each edge, send steps by the basket's answer, split variants with 95 % intervals and uplift, campaign runs, "
    "a customer's story (as `orchestrator explain`), dead letters per hour and the consumer lag. Reads the journey-log, "
    "decisions and dead-letter topics from their beginning, then live, without a consumer group. Every request needs "
    "ORCH_CONSOLE_TOKEN: `Authorization: Bearer <token>`, or open a page once with ?token=<token> (a session cookie)."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``console``."""
    p = sub.add_parser("console", help="serve the read-only live journey console (needs ORCH_CONSOLE_TOKEN)", description=HELP)
    p.set_defaults(func=_console_command)


def _console_command(args: argparse.Namespace, err: TextIO | None = None) -> int:
    from orchestrator.designer.report import load_settings

    err = err or sys.stderr
    settings = load_settings("console", err)
    if settings is None:
        return 2
    token = settings.console_token.get_secret_value() if settings.console_token is not None else ""
    if not token:
        print(
            "orchestrator console: refusing to start: ORCH_CONSOLE_TOKEN is not set (every request needs it; "
            "e.g. `export ORCH_CONSOLE_TOKEN=$(openssl rand -hex 32)`)",
            file=err,
        )
        return 2
    if len(token) < MIN_TOKEN:
        print(f"orchestrator console: refusing to start: ORCH_CONSOLE_TOKEN is shorter than {MIN_TOKEN} characters", file=err)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(settings, token, err))
    except OSError as exc:
        print(f"orchestrator console: cannot serve on {settings.console_host}:{settings.console_port}: {exc.strerror or exc}", file=err)
        return 1
    return 0


async def serve(settings: Settings, token: str, err: TextIO) -> None:
    """Serve until SIGTERM/SIGINT: the web server and the three feeds over one state."""
    from aiohttp import web

    from orchestrator.console.app import make_app
    from orchestrator.console.feed import customer_lookup, load_journeys, read_lag, read_topics, watch_journeys
    from orchestrator.console.state import ConsoleState
    from orchestrator.runtime.preflight import aiokafka_kwargs

    state = ConsoleState()
    load_journeys(settings, state)
    kw = aiokafka_kwargs(settings)
    app = make_app(state, token, customer_lookup(settings, kw))
    runner = web.AppRunner(app, access_log=None)  # no URLs in logs: a first ?token=, a customer id
    await runner.setup()
    stop = asyncio.Event()
    try:
        site = web.TCPSite(runner, settings.console_host, settings.console_port)
        await site.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [
            asyncio.create_task(read_topics(settings, state, kw, stop)),
            asyncio.create_task(read_lag(settings, state, kw, stop)),
            asyncio.create_task(watch_journeys(settings, state, stop)),
        ]
        print(
            f"orchestrator console: serving http://{settings.console_host}:{settings.console_port}/ "
            f"(topics {settings.topic_prefix}.*, group {settings.app_id})",
            file=err,
            flush=True,
        )
        await stop.wait()
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await runner.cleanup()


__all__ = ["register", "serve"]

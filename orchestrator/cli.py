"""The ``orchestrator`` command.

orchestrator worker               run a worker (Faust), configured from ORCH_* / KAFKA_BOOTSTRAP_SERVERS / REDIS_URL
orchestrator validate PATH...     check journey files and the pressure policy (file:line:col errors)
orchestrator simulate ...         replay an event file offline through the real engine
orchestrator render FILE          draw a journey as a Mermaid flowchart
orchestrator report               per journey, version and split variant: entered, converted (95 % interval), uplift
orchestrator explain CUSTOMER     one customer's story on the running system: entered or not and why, sends and why
orchestrator campaign preview|load-list   campaigns: preview a scheduled audience; put a file of customers on a list
orchestrator basket show C        a customer's contact-pressure basket in Redis
orchestrator lag [--json]         consumer lag per topic/partition: committed, end, lag, owner
orchestrator console              the read-only live journey console (web; needs ORCH_CONSOLE_TOKEN)
orchestrator schemas [--check]    (re)generate the JSON Schemas in schemas/
orchestrator demo                 the README's main job: real journeys on the real local stack
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _worker(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os
    from logging.handlers import BufferingHandler

    from aiokafka.errors import KafkaError, SaslAuthenticationFailed

    from orchestrator.definitions import load_definitions
    from orchestrator.errors import DefinitionError
    from orchestrator.runtime.preflight import PreflightError, check_redis_settings, prepare_topics
    from orchestrator.settings import Settings, retired_settings

    for warning in retired_settings(os.environ):
        print(f"orchestrator worker: warning: {warning}", file=sys.stderr)
    settings = Settings()
    try:  # the journeys, the policy and the facts first: a broken file is the designer's to fix, whatever Kafka says
        load_definitions(settings.journeys_dir, settings.policy_file)
    except DefinitionError as exc:
        print(f"orchestrator worker: refusing to start: invalid {exc.what}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        print("fix them (`orchestrator validate` lists the same problems) and start again", file=sys.stderr)
        return 2
    if settings.pseudonym_key is None:
        if not settings.local_only():
            print(
                "orchestrator worker: refusing to start: ORCH_PSEUDONYM_KEY is not set. It keys the customer pseudonyms in "
                "the logs; without a secret key anyone who knows the consumer group could recompute a guessed customer's "
                "pseudonym. Set it from where this deployment keeps its secrets (e.g. `openssl rand -hex 32`).",
                file=sys.stderr,
            )
            return 2
        print(
            "orchestrator worker: warning: ORCH_PSEUDONYM_KEY is not set; Kafka is on this machine, so log pseudonyms use "
            f"a key derived from ORCH_APP_ID ({settings.app_id}): fine for the local stack, not for production",
            file=sys.stderr,
        )
    # aiokafka logs why each broker connection failed (a refused SASL login, a TLS error) and raises only
    # "Unable to bootstrap": keep its log lines out of stderr and name their cause in the one line below
    kafka_log = logging.getLogger("aiokafka")
    kafka_errors = BufferingHandler(capacity=10_000)
    kafka_log.addHandler(kafka_errors)
    kafka_log.propagate = False
    try:
        redis_warning = asyncio.run(check_redis_settings(settings))
        if redis_warning:
            print(f"orchestrator worker: warning: {redis_warning}", file=sys.stderr)
        asyncio.run(prepare_topics(settings))
    except PreflightError as exc:
        print(f"orchestrator worker: refusing to start: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        causes = [a for r in kafka_errors.buffer if isinstance(r.args, tuple) for a in r.args if isinstance(a, BaseException)]
        refused = next((c for c in causes if isinstance(c, SaslAuthenticationFailed)), None)
        if refused is not None:
            print(
                f"orchestrator worker: refusing to start: Kafka at {settings.kafka_bootstrap_servers} refused the SASL login of "
                f"user {settings.kafka_sasl_username} ({refused}); check ORCH_KAFKA_SASL_USERNAME, ORCH_KAFKA_SASL_PASSWORD and "
                "ORCH_KAFKA_SASL_MECHANISM",
                file=sys.stderr,
            )
            return 2
        cause = causes[0] if causes else exc
        print(
            f"orchestrator worker: cannot reach Kafka at {settings.kafka_bootstrap_servers} ({type(cause).__name__}: {cause}); "
            "check KAFKA_BOOTSTRAP_SERVERS and the ORCH_KAFKA_* security settings",
            file=sys.stderr,
        )
        return 1
    finally:
        kafka_log.removeHandler(kafka_errors)
        kafka_log.propagate = True
    from orchestrator.runtime.worker import app

    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel]
    app.main()  # Faust's own CLI: handles signals, graceful shutdown, exit code
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from orchestrator.designer.schemas import write_schemas

    drift = write_schemas(check=args.check)
    for path in drift:
        print(f"{path}: {'differs from the models' if args.check else 'written'}")
    if args.check and drift:
        print("run `orchestrator schemas` to regenerate", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from orchestrator.dev.demo import run_demo
    from orchestrator.dev.demo_console import console_process

    return run_demo(customers=args.customers, clock_speed=args.clock_speed, seconds=args.seconds, console=console_process)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description="Event-streaming customer journey orchestrator.")
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a worker (Faust app); configure with ORCH_* environment variables")
    worker.add_argument("-l", "--loglevel", default="info")
    worker.set_defaults(func=_worker)

    from orchestrator.console import cli as console_cli
    from orchestrator.designer import campaign, explain, report
    from orchestrator.designer import cli as designer_cli
    from orchestrator.pressure import cli as basket_cli
    from orchestrator.runtime import lag_cli

    designer_cli.register(sub)
    report.register(sub)
    explain.register(sub)
    campaign.register(sub)
    basket_cli.register(sub)
    lag_cli.register(sub)
    console_cli.register(sub)

    schemas = sub.add_parser("schemas", help="regenerate the JSON Schemas in schemas/ (--check: only report drift)")
    schemas.add_argument("--check", action="store_true")
    schemas.set_defaults(func=_schemas)

    demo = sub.add_parser("demo", help="run the example journeys for a few hundred customers on a running Kafka + Redis")
    demo.add_argument("--customers", type=int, default=300)
    demo.add_argument("--clock-speed", type=float, default=43200.0, help="engine seconds per wall second (43200: 1 s = 12 h)")
    demo.add_argument("--seconds", type=float, default=80.0, help="how long to let the worker run after publishing")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""The Faust shell: the process, its web pages, and the data plane it runs. No business rules here.

Follow one event:

1. An upstream team publishes JSON on ``<prefix>.in.<family>``.
2. The worker's batch loop (:class:`~orchestrator.runtime.batches.BatchLoop`, started
   by :class:`~orchestrator.runtime.pipeline.Pipeline`) validates it and re-publishes the
   canonical envelope on ``<prefix>.customer-events``, keyed (and so partitioned) by
   customer; invalid → ``<prefix>.dead-letter``.
3. The same loop consumes ``customer-events`` (one writer per customer), runs the pure
   engine and the Redis basket for the whole batch (``processor.process_batch``),
   publishes sends, decisions and the journey log, writes each touched state once to
   the state changelog, and commits the batch's offsets only after all of that is
   acknowledged.
4. Due timers (an in-memory heap over the owned customers' pending timers) are
   published as ``TimerFired`` onto the customer's partition — step 3 again.

What Faust does here: the ``worker`` command (signals, graceful shutdown), the web
server with ``/metrics``, ``/health`` and ``/ready`` (Faust's own table, router,
statistics and index pages are switched off: no customer data on the web port, 404 on
any other path). It runs no agent, table or consumer of its own (``enable_kafka``
is off): the data plane is in ``pipeline.py`` and its loops; ``batches.py`` says why.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.web import Request, Response, View, Web
from faust.web.drivers import by_url as web_driver
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator.definitions import load_definitions
from orchestrator.metrics import Metrics
from orchestrator.runtime.logs import install_rate_limits, logging_config
from orchestrator.runtime.pipeline import Pipeline
from orchestrator.settings import Settings


class _Boot(BootStrategy):
    """Faust starts its web server and sensors only; the pipeline owns every Kafka client."""

    enable_kafka = False


def _web_without_index(app: faust.App) -> Web:
    """Faust's web driver without its index page: with the statistics off Faust serves ``{"status": "OK"}``
    at ``/``; here ``GET /`` is a 404 like every other path but ``/metrics``, ``/health`` and ``/ready``."""
    driver: type[Web] = web_driver(app.conf.web)

    class _Web(driver):  # type: ignore[valid-type, misc]
        production_blueprints = ()

    return _Web(app)


def create_app(settings: Settings) -> faust.App:
    """Build the worker app. Journeys, policy and profile facts are loaded (and checked) here: a broken file stops start-up."""
    definitions = load_definitions(settings.journeys_dir, settings.policy_file)
    journeys, policy = definitions.journeys, definitions.policy
    metrics = Metrics()
    metrics.journeys_loaded.set(len(journeys))

    class App(faust.App):
        BootStrategy = _Boot

        def _new_web(self) -> Web:
            return _web_without_index(self)

    app = App(
        settings.app_id,
        env={},  # Faust reads WEB_PORT, BROKER_URL ... from the environment and lets them win: ORCH_* decide here
        broker=[f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",") if s.strip()],
        datadir=str(settings.data_dir),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        logging_config=logging_config(settings),
    )
    pipeline = Pipeline(settings, journeys, policy, metrics)
    app.pipeline = pipeline  # type: ignore[attr-defined]

    def lag_rows() -> list[tuple[str, int, int, float | None]]:
        health = pipeline.health
        return [(row.topic, row.partition, row.lag, health.lag_seconds.get((row.topic, row.partition))) for row in health.lag]

    metrics.watch(lag_rows, pipeline.overdue, lambda: pipeline.health.lag_read_at)

    @app.task
    async def start_pipeline() -> None:
        install_rate_limits()  # logging is configured by now
        await app.add_runtime_dependency(pipeline)

    @app.page("/metrics")
    async def metrics_page(self: View, request: Request) -> Response:
        return self.bytes(generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(self: View, request: Request) -> Response:
        return self.json({"status": "ok"})

    @app.page("/ready")
    async def ready(self: View, request: Request) -> Response:
        body: dict[str, Any] = {
            "assigned": pipeline.health.assigned,
            "partitions": list(pipeline.health.partitions),
            "kafka": pipeline.kafka_ok(),
            "redis": await pipeline.redis_ok(),
            "journeys": len(pipeline.journeys),
        }
        ok = body["assigned"] and body["kafka"] and body["redis"]
        return self.json(body, status=200 if ok else 503)

    return app

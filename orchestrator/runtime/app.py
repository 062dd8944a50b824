"""The Faust shell: topics, tables, agents, timers, web pages. No business rules here.

Follow one event:

1. An upstream team publishes JSON on ``<prefix>.in.<family>``. :func:`ingest`
   validates it (``events.parse_inbound``); invalid → ``<prefix>.dead-letter``
   with the original bytes and the reason in headers; valid → the canonical
   envelope on ``<prefix>.customer-events``, keyed (and so partitioned) by customer.
2. :func:`journeys` (one writer per customer) loads the customer's state from the
   ``customer-state`` table and calls ``processor.process`` — the pure engine plus
   the Redis basket. It publishes the approved sends, the decisions and the journey
   log, applies timer arm/cancel to the ``timers`` table and the heap, and stores
   the new state.
3. :func:`fire_due_timers` ticks every ``timer_tick`` seconds and publishes a
   ``TimerFired`` for each due timer back onto ``customer-events`` — step 2 again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faust
import redis.asyncio as aioredis
import redis.exceptions
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator.events import (
    CustomerEvent,
    InvalidEvent,
    TimerFired,
    decode_internal,
    encode_internal,
    parse_inbound,
)
from orchestrator.journey.loader import JourneyError, JourneySet, load_journeys
from orchestrator.metrics import Metrics
from orchestrator.pressure.policy import PolicyError, PressurePolicy, load_policy
from orchestrator.pressure.redis_basket import RedisBasket
from orchestrator.processor import Result, process
from orchestrator.records import DecisionRecord, JourneyLogRecord, SendRequest
from orchestrator.runtime.timers import DueTimer, TimerHeap, decode_timer_row, encode_timer_row
from orchestrator.settings import Settings
from orchestrator.state import CustomerState

log = logging.getLogger("orchestrator")

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _credentials(settings: Settings) -> Any:
    """Faust broker credentials for the configured security protocol (None for PLAINTEXT)."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ctx = settings.kafka_ssl_context()
    if proto == "SSL":
        return ctx
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ctx if proto == "SASL_SSL" else None,
    )


class Runtime:
    """What the agents share besides Faust: settings, live journeys, the basket, the timer heap, metrics."""

    def __init__(self, settings: Settings, journeys: JourneySet, policy: PressurePolicy) -> None:
        self.settings = settings
        self.journeys = journeys
        self.policy = policy
        self.metrics = Metrics()
        self.heap = TimerHeap()
        self.started_at = time.time()
        self.redis: aioredis.Redis | None = None
        self._basket: RedisBasket | None = None
        self._fingerprint = self._scan()

    # --- clock ---
    def now(self) -> datetime:
        return self.settings.engine_now(datetime.now(timezone.utc), self.started_at)

    # --- basket ---
    @property
    def basket(self) -> RedisBasket:
        if self._basket is None:
            self.redis = aioredis.Redis.from_url(
                self.settings.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=15
            )
            self._basket = RedisBasket(self.redis, self.policy)
        return self._basket

    async def process(self, state: CustomerState, message: CustomerEvent | TimerFired) -> Result:
        """``processor.process`` with the basket; while Redis is unreachable, wait and retry.

        Retrying from the same input state is safe: the engine is deterministic and the
        basket answers a send id it has seen with its recorded decision. So an outage
        delays this partition; it drops nothing and spends nothing twice.
        """
        delay = 0.2
        while True:
            try:
                return await process(state, message, self.journeys, self.now(), self.basket)
            except REDIS_ERRORS as exc:
                self.metrics.retries.labels("redis").inc()
                log.warning(
                    "redis unreachable (%s); retrying customer %s in %.1fs", exc, message.customer_id, delay,
                    extra={"event": "dependency_retry", "dependency": "redis", "customer_id": message.customer_id},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_backoff_max)

    # --- journey hot reload ---
    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        files = sorted(Path(self.settings.journeys_dir).glob("*.yaml"))
        policy = self.settings.resolved_policy_file()
        if policy.exists() and policy not in files:
            files.append(policy)
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())

    def maybe_reload(self) -> None:
        """Reload journeys and policy when a file changed; a broken file is refused and the old set keeps running."""
        fingerprint = self._scan()
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        try:
            journeys = load_journeys([self.settings.journeys_dir])
            policy = load_policy(self.settings.resolved_policy_file())
        except (JourneyError, PolicyError, OSError) as exc:  # each refusal is logged with its file:line
            errors = getattr(exc, "errors", None) or [str(exc)]
            self.metrics.journey_reloads.labels("refused").inc()
            for err in errors:
                log.error("journey reload refused: %s", err, extra={"event": "journey_reload_refused", "error": err})
            log.error("keeping the running journeys (%d versions)", len(self.journeys))
            return
        self.journeys, self.policy = journeys, policy
        if self._basket is not None:
            self._basket = RedisBasket(self.redis, policy)  # type: ignore[arg-type]
        self.metrics.journey_reloads.labels("ok").inc()
        self.metrics.journeys_loaded.set(len(journeys))
        log.info("journeys reloaded: %d versions live", len(journeys))

    def overdue(self) -> tuple[int, float]:
        oldest = self.heap.oldest_due()
        if oldest is None:
            return len(self.heap), 0.0
        late_engine_seconds = self.now().timestamp() - oldest
        return len(self.heap), max(0.0, late_engine_seconds / self.settings.clock_speed)


def logging_config(settings: Settings) -> dict[str, Any] | None:
    """Faust's ``logging_config`` (a dictConfig) for JSON logs, or None for Faust's default text logs."""
    if settings.log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "root": {"handlers": ["stdout"], "level": settings.log_level.upper()},
    }


def create_app(settings: Settings, journeys: JourneySet | None = None) -> faust.App:
    """Build the worker app. Journeys and policy are loaded (and validated) here: a broken file stops start-up."""
    journeys = journeys or load_journeys([settings.journeys_dir])
    policy = load_policy(settings.resolved_policy_file())
    rt = Runtime(settings, journeys, policy)
    rt.metrics.journeys_loaded.set(len(journeys))

    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",") if s.strip()],
        broker_credentials=_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        producer_acks=-1,
        logging_config=logging_config(settings),
    )
    app.runtime = rt  # type: ignore[attr-defined]
    setup_prometheus_sensors(app, pattern="/faust-metrics", registry=rt.metrics.registry, name_prefix="faust")

    # --- topics ---
    inbound = settings.inbound_topics()
    # The topics exist already: `orchestrator worker` creates them before Faust starts (runtime/preflight.py).
    def topic(*names: str) -> faust.TopicT:
        return app.topic(*names, key_type=bytes, value_type=bytes, partitions=settings.partitions, internal=True)

    inbound_topic = topic(*inbound)
    customer_topic = topic(settings.topic("customer-events"))
    sends_topic = topic(settings.topic("sends"))
    decisions_topic = topic(settings.topic("decisions"))
    log_topic = topic(settings.topic("journey-log"))
    dlq_topic = topic(settings.topic("dead-letter"))

    # --- tables (co-partitioned with customer_topic, changelogged) ---
    state_table = app.Table("customer-state", default=None, partitions=settings.partitions, key_type=bytes, value_type=bytes)
    timers_table = app.Table("timers", default=None, partitions=settings.partitions, key_type=bytes, value_type=bytes)

    def owned_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == customer_topic.get_topic_name()}

    # --- 1. ingest: validate, dead-letter or forward ---
    @app.agent(inbound_topic)
    async def ingest(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            family = inbound.get(msg.topic, "?")
            try:
                canonical = parse_inbound(family, event.value, key=event.key)
            except InvalidEvent as exc:
                rt.metrics.events.labels(family, "dead_lettered").inc()
                log.warning(
                    "dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc.reason,
                    extra={"event": "dead_letter", "family": family, "topic": msg.topic, "partition": msg.partition,
                           "offset": msg.offset, "reason": exc.reason},
                )
                await dlq_topic.send(
                    key=event.key,
                    value=event.value,
                    headers={
                        "dlq.reason": exc.reason.encode(),
                        "dlq.family": family.encode(),
                        "dlq.source.topic": msg.topic.encode(),
                        "dlq.source.partition": str(msg.partition).encode(),
                        "dlq.source.offset": str(msg.offset).encode(),
                        "dlq.at": datetime.now(timezone.utc).isoformat().encode(),
                    },
                )
                continue
            rt.metrics.events.labels(family, "accepted").inc()
            await customer_topic.send(key=canonical.customer_id.encode(), value=encode_internal(canonical))

    # --- 2. journeys: one writer per customer ---
    async def publish(result: Result, at: datetime) -> None:
        for d in result.dispositions:
            rt.metrics.decisions.labels(d.result, d.send.comm_type, d.send.channel).inc()
            await decisions_topic.send(key=d.send.customer_id.encode(), value=DecisionRecord.of(d, at).model_dump_json().encode())
        for d in result.sends:
            rt.metrics.sends.labels(d.send.channel, d.send.comm_type).inc()
            await sends_topic.send(key=d.send.customer_id.encode(), value=SendRequest.of(d, at).model_dump_json().encode())
        for t in result.traces:
            rt.metrics.journey_steps.labels(t.journey_id or "(none)", t.what).inc()
            await log_topic.send(key=t.customer_id.encode(), value=JourneyLogRecord.of(t).model_dump_json().encode())

    def apply_timers(key: bytes, customer_id: str, result: Result, fired: str | None, partition: int) -> None:
        if not result.timer_ops and fired is None:
            return
        rows = {e.timer_id: (e.due, e.partition) for e in decode_timer_row(customer_id, timers_table.get(key))}
        if fired is not None:
            rows.pop(fired, None)
        for op in result.timer_ops:
            if op.kind == "arm_timer":
                due = op.due_at.timestamp()
                rows[op.timer_id] = (due, partition)
                rt.heap.arm(customer_id, op.timer_id, due, partition)
            else:
                rows.pop(op.timer_id, None)
                rt.heap.cancel(customer_id, op.timer_id)
        if rows:
            timers_table[key] = encode_timer_row(rows)
        elif key in timers_table:
            del timers_table[key]

    @app.agent(customer_topic)
    async def journeys(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = decode_internal(event.value)
            key = message.customer_id.encode()
            raw = state_table.get(key)
            state = CustomerState.model_validate_json(raw) if raw else CustomerState.new(message.customer_id)
            result = await rt.process(state, message)
            await publish(result, rt.now())
            fired = message.timer_id if isinstance(message, TimerFired) else None
            apply_timers(key, message.customer_id, result, fired, event.message.partition)
            state_table[key] = result.state.model_dump_json().encode()
            rt.metrics.processed.labels(message.kind).inc()
            rt.metrics.process_seconds.observe(time.perf_counter() - started)

    # --- 3. timers: due deadlines become events on the customer's partition ---
    @timers_table.on_recover
    async def rebuild_heap() -> None:
        owned = owned_partitions()
        entries: list[DueTimer] = []
        for key, raw in timers_table.items():
            entries.extend(e for e in decode_timer_row(key.decode(), raw) if e.partition in owned)
        rt.heap.rebuild(entries)
        log.info("timer heap rebuilt: %d timers on partitions %s", len(entries), sorted(owned))

    @app.timer(interval=settings.timer_tick)
    async def fire_due_timers() -> None:
        due = rt.heap.pop_due(rt.now().timestamp(), owned_partitions())
        for t in due:
            fired = TimerFired(customer_id=t.customer_id, timer_id=t.timer_id, due_at=datetime.fromtimestamp(t.due, timezone.utc))
            await customer_topic.send(key=t.customer_id.encode(), value=encode_internal(fired))
            rt.metrics.timers_fired.inc()

    @app.timer(interval=settings.reload_interval)
    async def reload_journeys() -> None:
        rt.maybe_reload()

    # --- web: metrics, health, readiness ---
    def consumer_lag() -> list[tuple[str, int, int]]:
        """Every assigned partition with end offset - committed offset (0 until the first fetch tells the end)."""
        consumer, mon = app.consumer, app.monitor
        out = []
        for tp in sorted(consumer.assignment()) if consumer else ():
            end = consumer.highwater(tp) or mon.tp_end_offsets.get(tp)
            committed = mon.tp_committed_offsets.get(tp, 0)
            out.append((tp.topic, tp.partition, max(0, (end or 0) - committed) if end else 0))
        return out

    rt.metrics.watch(consumer_lag, rt.overdue)

    @app.page("/metrics")
    async def metrics_page(self: View, request: Request) -> Response:
        return self.bytes(generate_latest(rt.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(self: View, request: Request) -> Response:
        return self.json({"status": "ok"})

    @app.page("/ready")
    async def ready(self: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set() if app.tables else False
        try:
            rt.basket  # noqa: B018 - creates the client on first use
            redis_ok = bool(await rt.redis.ping())  # type: ignore[union-attr]
        except REDIS_ERRORS:
            redis_ok = False
        body = {"recovered": recovered, "redis": redis_ok, "journeys": len(rt.journeys)}
        return self.json(body, status=200 if recovered and redis_ok else 503)

    return app

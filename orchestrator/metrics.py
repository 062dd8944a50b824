"""Prometheus metrics of a worker (prometheus-client), served at ``/metrics``.

The worker's data plane is not a Faust agent (see ``runtime/batches.py``), so
Faust's own sensor would count nothing: every metric here is ours (``orchestrator_*``),
and the table in the README explains each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from orchestrator.actions import Disposition

LagSource = Callable[[], Iterable[tuple[str, int, int, float | None]]]
"""Yields (topic, partition, lag in records, lag in seconds or None) for every partition of the group's input topics."""
TimerSource = Callable[[], tuple[int, float]]
"""Returns (pending timers, seconds the oldest due-but-unfired timer is overdue, 0 if none)."""
LagAgeSource = Callable[[], float]
"""Returns the Unix time of the last successful lag read (0 before the first)."""


class _LiveCollector(Collector):
    """Values read at scrape time: consumer lag per partition and the timer heap."""

    def __init__(self, lag: LagSource, timers: TimerSource, lag_read_at: LagAgeSource) -> None:
        self._lag = lag
        self._timers = timers
        self._lag_read_at = lag_read_at

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "orchestrator_consumer_lag",
            "Messages not yet processed per input partition: end offset - the group's committed offset "
            "(read from the broker every ORCH_LAG_INTERVAL seconds; every partition, whoever owns it).",
            labels=["topic", "partition"],
        )
        seconds = GaugeMetricFamily(
            "orchestrator_consumer_lag_seconds",
            "How far behind real time the group is per input partition: now - the produce time of the group's committed "
            "offset, interpolated from the end offsets of earlier lag reads (as kafka-lag-exporter; no message read). "
            "0 when caught up; absent when the partition was never committed.",
            labels=["topic", "partition"],
        )
        for topic, partition, value, behind in self._lag():
            lag.add_metric([topic, str(partition)], value)
            if behind is not None:
                seconds.add_metric([topic, str(partition)], behind)
        yield lag
        yield seconds
        yield GaugeMetricFamily(
            "orchestrator_consumer_lag_read_timestamp_seconds",
            "Unix time of the last successful lag read (0 before the first): time() - this is the age of "
            "orchestrator_consumer_lag; while the broker is away the lag gauge keeps its last value and this stops moving.",
            value=self._lag_read_at(),
        )
        pending, overdue = self._timers()
        yield GaugeMetricFamily("orchestrator_timers_pending", "Armed timers on this worker's partitions.", value=pending)
        yield GaugeMetricFamily(
            "orchestrator_timer_oldest_overdue_seconds",
            "How late the oldest due-but-unfired timer is (0 when none is overdue).",
            value=overdue,
        )


class Tally:
    """Counts to add later, once what they count is with Kafka: every loop of the worker counts this way.

    A batch attempt that fails is tried again from scratch, so nothing it counted may reach
    the metrics before its outputs are acknowledged: the attempt fills a tally, and the loop
    applies it after publishing (``apply``) or drops it with the attempt.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[Counter, tuple[str, ...]], float] = {}
        self._observed: list[tuple[Histogram, tuple[str, ...], float]] = []

    def add(self, metric: Counter, *labels: str, n: float = 1) -> None:
        """Count ``n`` in ``metric`` with ``labels`` (none for an unlabelled counter)."""
        key = (metric, labels)
        self._counts[key] = self._counts.get(key, 0) + n

    def observe(self, histogram: Histogram, value: float, *labels: str) -> None:
        """Observe ``value`` in ``histogram`` (with ``labels``) when the tally is applied."""
        self._observed.append((histogram, labels, value))

    def apply(self) -> None:
        """Add every count and observation to its metric (once: the tally is empty afterwards)."""
        for (metric, labels), n in self._counts.items():
            (metric.labels(*labels) if labels else metric).inc(n)
        for histogram, labels, value in self._observed:
            (histogram.labels(*labels) if labels else histogram).observe(value)
        self._counts.clear()
        self._observed.clear()

    def __len__(self) -> int:
        return len(self._counts)


class Metrics:
    """All of the orchestrator's own metrics, on one registry per app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "orchestrator_events", "Inbound messages by family and outcome (accepted | dead_lettered).", ["family", "outcome"], registry=r
        )
        self.inbound_direct = Counter(
            "orchestrator_inbound_direct",
            "Inbound events processed on their own partition, without republishing them on customer-events (one hop).",
            ["family"],
            registry=r,
        )
        self.processed = Counter(
            "orchestrator_processed", "Messages run through the engine, by kind (event | timer).", ["kind"], registry=r
        )
        self.batch_seconds = Histogram(
            "orchestrator_batch_seconds",
            "Time to handle one batch: decode, engine, basket, publishing, commit (retries included).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0),
            registry=r,
        )
        self.batch_records = Histogram(
            "orchestrator_batch_records",
            "Records per batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        latency = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
        self.event_to_send = Histogram(
            "orchestrator_event_to_send_seconds",
            "From the publish time of the message that caused a send (its Kafka record timestamp) to the send request "
            "handed to Kafka (as Kafka Streams' record-e2e-latency), by what caused it: event | timer | audience. "
            "A timer's message is published when the timer fires.",
            ["trigger"],
            buckets=latency,
            registry=r,
        )
        self.timer_lateness = Histogram(
            "orchestrator_timer_lateness_seconds",
            "How late each timer fired: from its due time to its TimerFired handed to Kafka (real seconds; "
            "like Temporal's schedule-to-start).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
            registry=r,
        )
        self.gate_seconds = Histogram(
            "orchestrator_gate_seconds",
            "One basket round trip: every send of a batch round decided at Redis in one pipelined call.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.gc_pause = Histogram(
            "orchestrator_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector by generation (0, 1, 2): nothing else runs meanwhile.",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.basket_rebuilds = Counter(
            "orchestrator_basket_rebuilds",
            "Baskets of customer partitions rebuilt from the decisions topic because Redis no longer held them "
            "(a master lost its data; also once for a new deployment), by customer partition.",
            ["partition"],
            registry=r,
        )
        self.basket_rebuilt_sends = Counter(
            "orchestrator_basket_rebuilt_sends",
            "Send-id records written back into Redis by basket rebuilds (decisions Redis had lost).",
            registry=r,
        )
        self.basket_rebuilt_suppressions = Counter(
            "orchestrator_basket_rebuilt_suppressions",
            "Customers whose suppressions (unsubscribes) basket rebuilds put back from the consent topic.",
            registry=r,
        )
        self.basket_rebuild_seconds = Histogram(
            "orchestrator_basket_rebuild_seconds",
            "How long one basket rebuild held the batch loop (reading the decisions topic and writing back).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
            registry=r,
        )
        self.rebalances = Counter(
            "orchestrator_rebalances",
            "Consumer group rebalances seen by this worker: partitions revoked | assigned.",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "orchestrator_dead_letters", "Messages sent to the dead-letter topic, by reason code.", ["code"], registry=r
        )
        self.decisions = Counter(
            "orchestrator_decisions",
            "Basket decisions by what the journey made of them.",
            ["result", "comm_type", "channel"],
            registry=r,
        )
        self.sends = Counter("orchestrator_sends", "Send requests published.", ["channel", "comm_type"], registry=r)
        self.journey_steps = Counter(
            "orchestrator_journey_steps", "Journey trace events by journey and kind.", ["journey", "what"], registry=r
        )
        self.timers_fired = Counter("orchestrator_timers_fired", "Timer events published.", registry=r)
        self.retries = Counter(
            "orchestrator_dependency_retries",
            "Retries while a dependency (redis | kafka) was unavailable: batch attempts, fetches, commits, state restores, lag reads.",
            ["dependency"],
            registry=r,
        )
        self.journey_reloads = Counter(
            "orchestrator_journey_reloads", "Journey directory reloads by outcome (ok | refused).", ["outcome"], registry=r
        )
        self.journeys_loaded = Gauge("orchestrator_journeys_loaded", "Journey versions currently live.", registry=r)
        self.invalid_definition_files = Gauge(
            "orchestrator_invalid_definition_files",
            "Files of the journeys directory the last reload refused (journeys, pressure.yaml, profile.yaml, scores.yaml): "
            "a running worker keeps its journeys, but a new or restarted one refuses to start until they are fixed. Alert on > 0.",
            registry=r,
        )
        # campaigns (runtime/campaigns.py): per journey and run, on this worker's partitions; a run's series
        # are removed once the journey has had CAMPAIGN_RUNS_KEPT newer runs (later counts go to run="older")
        run = ["journey", "run"]
        self.campaign_evaluated = Counter(
            "orchestrator_campaign_evaluated",
            "Customers of this worker whose campaign audience conditions were evaluated (due, run open, not reached before).",
            run,
            registry=r,
        )
        self.campaign_audience = Counter(
            "orchestrator_campaign_audience",
            "Customers of this worker who qualified for the campaign run: an AudienceCheck was published (Kafka acknowledged).",
            run,
            registry=r,
        )
        self.campaign_entered = Counter(
            "orchestrator_campaign_entered", "Customers the engine entered into the journey by the campaign run.", run, registry=r
        )
        self.campaign_decisions = Counter(
            "orchestrator_campaign_decisions",
            "Basket decisions on sends of instances a campaign run started, by result (approved = sent, capped, ...).",
            [*run, "result"],
            registry=r,
        )
        self.campaign_progress = Gauge(
            "orchestrator_campaign_progress",
            "Share (0..1) of this worker's customers the run has settled (evaluated, reached before, or closed for them).",
            run,
            registry=r,
        )
        self.campaign_rate = Gauge(
            "orchestrator_campaign_throttle_per_second",
            "This worker's share of the campaign's throttle: AudienceChecks per second (per_second x owned / all partitions).",
            ["journey"],
            registry=r,
        )

    def forget_campaign_run(self, journey: str, run: str) -> None:
        """Drop a campaign run's series (its counts live on in Prometheus' history)."""
        for metric in (self.campaign_evaluated, self.campaign_audience, self.campaign_entered, self.campaign_progress):
            with contextlib.suppress(KeyError):  # never set on this worker (older clients raise)
                metric.remove(journey, run)
        for result in get_args(Disposition.model_fields["result"].annotation):
            with contextlib.suppress(KeyError):
                self.campaign_decisions.remove(journey, run, result)

    def watch(self, lag: LagSource, timers: TimerSource, lag_read_at: LagAgeSource) -> None:
        """Register the scrape-time collectors (call once the app exists)."""
        self.registry.register(_LiveCollector(lag, timers, lag_read_at))

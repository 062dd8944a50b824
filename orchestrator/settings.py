"""Worker configuration, read from the environment (pydantic-settings).

Every setting is an environment variable ``ORCH_<NAME>``; the two that every
Kafka/Redis tool already knows are also read under their usual names:
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.events import FAMILIES
from orchestrator.pressure.policy import POLICY_FILE

RETIRED: dict[str, str] = {
    "ORCH_STORE": "states live in memory, durable in the state changelog; there is no table store any more",
    "ORCH_STANDBY_REPLICAS": "there are no standby replicas: a gained partition is restored from its changelog",
}
"""Settings an older worker read and this one ignores, with why (``orchestrator worker`` warns about them)."""


def retired_settings(env: Mapping[str, str]) -> list[str]:
    """One warning line per retired setting present in ``env``."""
    return [f"{name} is set but no longer used: {why}" for name, why in RETIRED.items() if name in env]


class Settings(BaseSettings):
    """All knobs of a worker. See README "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    # --- Kafka ---
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("ORCH_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle for SSL / SASL_SSL; system CAs when unset.")

    pseudonym_key: SecretStr | None = Field(
        default=None,
        description=(
            "Secret key of the customer pseudonyms in log lines (keep it where the deployment keeps secrets). Required "
            "unless every Kafka bootstrap server is on this machine (the local stack), where a key derived from "
            "ORCH_APP_ID is used and the worker says so."
        ),
    )

    # --- Redis ---
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("ORCH_REDIS_URL", "REDIS_URL"),
        description="redis:// or rediss:// URL of the contact-pressure basket (user:password in it); in cluster mode one seed node.",
    )
    redis_mode: Literal["single", "cluster"] = Field(
        default="single", description="single: one Redis (or a Sentinel-less primary); cluster: Redis Cluster, REDIS_URL a seed node."
    )
    redis_ca_file: Path | None = Field(default=None, description="CA bundle for rediss:// (system CAs when unset).")

    # --- the app and its topics ---
    app_id: str = Field(default="journey-orchestrator", description="Faust app id = Kafka consumer group and changelog topic prefix.")
    topic_prefix: str = Field(default="orch", description="Every topic name starts with '<prefix>.'.")
    partitions: int = Field(default=8, ge=1, description="Partitions of the internal customer topic and the state tables.")
    replication_factor: int = Field(default=1, ge=1)
    data_dir: Path = Field(default=Path(".orchestrator-data"), description="Faust's app directory (no table data is kept there).")

    # --- journeys and policy ---
    journeys_dir: Path = Field(default=Path("journeys"))
    policy_file: Path | None = Field(default=None, description=f"Defaults to <journeys_dir>/{POLICY_FILE}.")
    reload_interval: float = Field(default=5.0, gt=0, description="Seconds between checks for changed journey files.")

    # --- timers and clock ---
    timer_tick: float = Field(default=0.2, gt=0, description="Seconds between checks of the due-timer heap.")
    clock_speed: float = Field(
        default=1.0, gt=0, description="Engine time runs this many times faster than wall time (demo only; 1 in production)."
    )
    clock_origin: float | None = Field(default=None, description="Epoch seconds where the sped-up clock starts; defaults to worker start.")

    # --- campaigns (runtime/campaigns.py) ---
    campaign_tick: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between campaign checks while no run has work: how soon a run starts once due, how often not-yet-due "
        "local-time customers are revisited.",
    )
    campaign_slice: int = Field(
        default=1000, ge=1, description="Customers a campaign scan evaluates before it lets the batch loop run (~10 ms of work)."
    )
    campaign_progress_every: int = Field(
        default=10_000, ge=1, description="A campaign_progress journey-log record every this many customers settled per partition pass."
    )
    campaign_max_lag: int = Field(
        default=20_000,
        ge=0,
        description="Campaigns publish nothing while this worker's customer-events partitions lag more than this many records "
        "(0: never pause).",
    )

    # --- observability ---
    web_port: int = Field(default=6066, description="Faust web server: /metrics, /health, /ready.")
    web_host: str = "127.0.0.1"
    console_port: int = Field(default=6067, description="`orchestrator console`: the live journey console's port.")
    console_host: str = Field(default="127.0.0.1", description="`orchestrator console`: the address it listens on.")
    console_token: SecretStr | None = Field(
        default=None,
        description="`orchestrator console`: the bearer token every request needs (required by the console; keep it with the secrets).",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(default="text", description="json: one JSON object per log line (python-json-logger).")

    # --- batches and consumer group ---
    batch_max_records: int = Field(default=2000, ge=1, description="Most records one batch takes from Kafka.")
    fetch_max_wait_ms: int = Field(default=20, ge=0, description="How long a fetch waits for data to fill (latency vs. batch size).")
    gc_young_objects: int = Field(
        default=500_000,
        ge=700,
        description=(
            "Python's young-generation GC threshold: a collection runs when this many more container objects live "
            "than at the last one. Above a batch's peak of live objects (~100-200k for 2,000 records), a batch's "
            "objects are freed before any collection sees them (backlog +20 % against 50,000); the cost is a rarer, "
            "longer pause when the state grows (orchestrator_gc_pause_seconds)."
        ),
    )
    session_timeout: float = Field(
        default=10.0, gt=0, description="Seconds without heartbeat before the group drops a worker (failover time)."
    )
    heartbeat_interval: float = Field(default=3.0, gt=0, description="Seconds between heartbeats (a third of the session timeout).")
    max_poll_interval: float = Field(
        default=300.0, gt=0, description="Seconds one batch may take (retries included) before the worker leaves the group."
    )
    shutdown_timeout: float = Field(
        default=20.0, gt=0, description="Seconds SIGTERM waits for the running batch and the clients before it gives up on them."
    )
    state_cache_customers: int = Field(
        default=50_000, ge=0, description="Recently written customer states kept parsed in memory (speed; 0 = off)."
    )
    lag_interval: float = Field(default=5.0, gt=0, description="Seconds between reads of the group's lag (also the Kafka readiness probe).")
    direct_inbound: bool = Field(
        default=True,
        description="Process an inbound event where it is when it already sits on the customer's own partition "
        "(keyed by customer id, as many partitions as customer-events) instead of republishing it there first.",
    )

    # --- bounds ---
    max_event_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest accepted inbound message; larger ones are dead-lettered.")
    max_json_depth: int = Field(default=16, ge=2, description="Deepest accepted JSON nesting of an inbound message.")
    max_number_digits: int = Field(default=32, ge=8, description="Longest accepted JSON number literal.")
    max_state_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        description=(
            "Largest customer state; an event that would grow it beyond is dead-lettered and the old state kept. "
            "Keep below the broker's message.max.bytes."
        ),
    )
    dlq_max_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Original bytes kept on a dead-letter record (the rest is cut; header dlq.truncated)."
    )
    dedupe_window_days: float = Field(default=7.0, gt=0, description="An event id seen again within this many days is ignored.")
    dedupe_max_ids: int = Field(
        default=8192, ge=64, description="Most event ids one customer remembers (17 bytes each); beyond, the oldest are forgotten first."
    )

    # --- resilience ---
    retry_backoff_max: float = Field(default=10.0, gt=0, description="Max seconds between retries while Redis or Kafka is unreachable.")
    retry_tries: int = Field(
        default=5, ge=1, description="Tries of a message whose processing fails with an unknown error reply before it is dead-lettered."
    )

    def kafka_ssl_context(self) -> ssl.SSLContext:
        """TLS context for SSL / SASL_SSL (the CA file if given, else the system CAs)."""
        return ssl.create_default_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)

    def local_only(self) -> bool:
        """Every Kafka bootstrap server is on this machine (the local stack, tests, the demo)."""
        hosts = [s.strip().rsplit(":", 1)[0].strip("[]") for s in self.kafka_bootstrap_servers.split(",") if s.strip()]
        return bool(hosts) and all(h in ("localhost", "::1") or h.startswith("127.") for h in hosts)

    def log_pseudonym_key(self) -> bytes:
        """The key of the customer pseudonyms in logs: ORCH_PSEUDONYM_KEY, else (local stack only) one derived from the app id."""
        if self.pseudonym_key is not None:
            return self.pseudonym_key.get_secret_value().encode()
        return b"local:" + self.app_id.encode()

    def topic(self, name: str) -> str:
        """Full topic name for one of our topics (e.g. 'in.web', 'customer-events', 'sends')."""
        return f"{self.topic_prefix}.{name}"

    def inbound_topics(self) -> dict[str, str]:
        """Inbound topic name -> event family."""
        return {self.topic(f"in.{family}"): family for family in FAMILIES}

    def resolved_policy_file(self) -> Path:
        """The pressure policy the worker loads: ``policy_file``, else ``<journeys_dir>/pressure.yaml``."""
        return self.policy_file or self.journeys_dir / POLICY_FILE

    def engine_now(self, wall: datetime, origin: float) -> datetime:
        """The engine's 'now' for a wall-clock instant (identity unless clock_speed != 1)."""
        if self.clock_speed == 1.0:
            return wall
        start = self.clock_origin if self.clock_origin is not None else origin
        return datetime.fromtimestamp(start + (wall.timestamp() - start) * self.clock_speed, tz=UTC)

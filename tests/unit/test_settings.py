from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.settings import Settings, retired_settings


def test_standard_env_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("REDIS_URL", "redis://r:6380/2")
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", "acme")
    s = Settings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.redis_url == "redis://r:6380/2"
    assert s.topic("customer-events") == "acme.customer-events"
    assert s.inbound_topics()["acme.in.web"] == "web"


def test_sped_up_clock_for_the_demo() -> None:
    s = Settings(clock_speed=3600, clock_origin=1_000_000.0)
    wall = datetime.fromtimestamp(1_000_010.0, tz=UTC)  # 10 wall seconds after origin
    assert s.engine_now(wall, origin=0).timestamp() == 1_000_000.0 + 36_000.0
    assert Settings().engine_now(wall, origin=0) == wall


def test_retired_settings_are_named_not_silently_ignored() -> None:
    assert retired_settings({"ORCH_PARTITIONS": "4"}) == []
    [warning] = retired_settings({"ORCH_STORE": "rocksdb://", "ORCH_PARTITIONS": "4"})
    assert warning.startswith("ORCH_STORE is set but no longer used") and "changelog" in warning

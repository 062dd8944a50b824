"""`orchestrator worker` refuses a broken journey or policy before it touches Kafka."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator import cli

ROOT = Path(__file__).resolve().parents[2]


def test_worker_refuses_an_invalid_journey_with_its_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "journeys" / "pressure.yaml", tmp_path / "pressure.yaml")
    shutil.copy(ROOT / "journeys" / "profile.yaml", tmp_path / "profile.yaml")
    bad = tmp_path / "bad.yml"  # .yml is read like .yaml
    bad.write_text("id: x\nname: X\nversion: 1\nentry: {event: web.cart_abandoned}\nstart: a\nsteps:\n  a: {type: end, outcom: done}\n")
    monkeypatch.setenv("ORCH_JOURNEYS_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached: the files are checked first

    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start: invalid journeys, policy or profile facts:" in err
    assert f"{bad}:7:18: steps.a.outcom: unknown key 'outcom'" in err


def test_worker_refuses_an_invalid_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pressure.yaml").write_text("capacity: -3\n")
    monkeypatch.setenv("ORCH_JOURNEYS_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")

    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start: invalid journeys, policy or profile facts:" in err
    # the missing facts file is reported in the same run as the broken policy
    assert f"{tmp_path / 'profile.yaml'}:1:1: missing: the profile facts" in err
    assert f"{tmp_path / 'pressure.yaml'}:1:1: capacity: Input should be greater than or equal to 0" in err


def test_worker_refuses_to_start_outside_the_local_stack_without_a_pseudonym_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORCH_JOURNEYS_DIR", str(ROOT / "journeys"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker1.internal:9093,broker2.internal:9093")
    monkeypatch.delenv("ORCH_PSEUDONYM_KEY", raising=False)
    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start: ORCH_PSEUDONYM_KEY is not set" in err and "openssl rand" in err


def test_settings_know_the_local_stack_and_the_pseudonym_key() -> None:
    from pydantic import SecretStr

    from orchestrator.settings import Settings

    assert Settings(kafka_bootstrap_servers="127.0.0.1:9092").local_only()
    assert Settings(kafka_bootstrap_servers="localhost:9092,[::1]:9094").local_only()
    assert not Settings(kafka_bootstrap_servers="127.0.0.1:9092,broker:9092").local_only()
    local = Settings(app_id="app").log_pseudonym_key()
    assert local == b"local:app" and Settings(app_id="app", pseudonym_key=SecretStr("s3cret")).log_pseudonym_key() == b"s3cret"


def test_redact_replaces_every_known_id_by_its_pseudonym() -> None:
    from orchestrator.runtime.logs import pseudonym, redact

    reason = "message key 'cust-12' differs from customer_id 'cust-1'"
    out = redact(reason, ["cust-1", "cust-12", None, ""], b"k")
    assert "cust-1" not in out and pseudonym("cust-12", b"k") in out and pseudonym("cust-1", b"k") in out

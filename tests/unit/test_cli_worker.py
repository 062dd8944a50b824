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

"""The pressure policy file speaks the journeys' duration grammar; its errors are DefinitionErrors."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.errors import DefinitionError
from orchestrator.pressure.planner import GatePlanner
from orchestrator.pressure.policy import PolicyError, PressurePolicy, load_policy, validate_policy_file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pressure.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_months_and_journey_spellings_are_accepted(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """
        arbitration_window: 1h 30m
        calamity: {lock: 1mo}
        key_margin: 2M
        """,
        )
    )
    assert policy.calamity.lock == timedelta(days=30)
    assert policy.key_margin == timedelta(days=60)
    assert policy.arbitration_window == timedelta(minutes=90)


def test_whole_seconds_are_accepted(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "arbitration_window: 900\ncalamity: {lock: 60}\n"))
    assert policy.arbitration_window == timedelta(minutes=15) and policy.calamity.lock == timedelta(minutes=1)


def test_zero_means_none_for_the_lock_and_the_key_margin(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "calamity: {lock: 0s}\nkey_margin: 0\n"))
    assert policy.calamity.lock == timedelta(0) and policy.key_margin == timedelta(0)
    planner = GatePlanner(policy)
    assert planner._lock_ms == 0 and planner._margin_ms == 0


@pytest.mark.parametrize("zero", ["0s", "0h0m", "0"])
def test_a_zero_arbitration_window_is_refused_with_the_way_to_turn_it_off(tmp_path: Path, zero: str) -> None:
    path = write(tmp_path, f"capacity: 25\narbitration_window: {zero}\n")
    [problem] = validate_policy_file(path)
    shown = repr(int(zero)) if zero.isdigit() else repr(zero)
    assert problem == f"{path}:2:1: arbitration_window: bad duration {shown}: must be longer than 0s; use null to turn arbitration off"


def test_arbitration_can_be_turned_off_with_null(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "arbitration_window: null\n")).arbitration_window is None


@pytest.mark.parametrize(
    ("setting", "text", "expected"),
    [
        ("calamity.lock", "calamity: {lock: -1}", "bad duration -1: must not be negative"),
        ("key_margin", "key_margin: 1.5d", "bad duration '1.5d': use a whole number followed by a unit: s, m, h, d, w or mo (30 days)"),
        ("arbitration_window", "arbitration_window: 15 minutes", "bad duration '15 minutes': use a whole number followed by a unit"),
    ],
)
def test_bad_durations_say_what_is_accepted(tmp_path: Path, setting: str, text: str, expected: str) -> None:
    path = write(tmp_path, text + "\n")
    [problem] = validate_policy_file(path)
    assert problem.startswith(f"{path}:1:") and f" {setting}: {expected}" in problem
    assert "e.g. 30s, 15m, 24h, 7d, 2w, 3mo, 1h30m" in problem


def test_durations_round_trip_through_json() -> None:
    policy = PressurePolicy.model_validate({"arbitration_window": "1mo", "calamity": {"lock": "0s"}, "key_margin": 90})
    assert PressurePolicy.model_validate_json(policy.model_dump_json()) == policy


def test_policy_error_is_a_definition_error(tmp_path: Path) -> None:
    path = write(tmp_path, "capacity: lots\n")
    with pytest.raises(DefinitionError) as err:
        load_policy(path)
    assert isinstance(err.value, PolicyError)
    assert err.value.problems == err.value.errors and err.value.problems[0].startswith(f"{path}:1:1: capacity")
    assert str(err.value).splitlines()[0] == "invalid pressure policy:"


def test_basket_show_prints_policy_problems_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from orchestrator.pressure import cli as pressure_cli

    path = write(tmp_path, "key_margin: -1\n")
    args = argparse.Namespace(policy=str(path), redis_url="redis://127.0.0.1:1/0", customer="c", tz="UTC", json=False)
    assert pressure_cli._show_command(args) == 2  # the policy is read before Redis is contacted
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0] == f"invalid pressure policy {path}:"
    assert err[1].startswith(f"{path}:1:1: key_margin: bad duration -1: must not be negative; use a whole number")

"""``orchestrator lag`` when none of its topics exists: exit 1 with one line, not an empty table that reads as "no lag"."""

from __future__ import annotations

import argparse

import pytest

from orchestrator.runtime import lag_cli

pytestmark = pytest.mark.integration


def _main(argv: list[str]) -> int:
    """``orchestrator <argv>`` with only the lag command registered."""
    parser = argparse.ArgumentParser(prog="orchestrator")
    lag_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_lag_command_fails_with_one_line_when_no_topic_exists(
    kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ORCH_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", unique)  # no worker of this prefix ever ran: none of its topics exists
    monkeypatch.setenv("ORCH_APP_ID", f"{unique}-app")
    from orchestrator.settings import Settings

    inbound = list(Settings().inbound_topics())
    for argv in (["lag"], ["lag", "--json"]):
        assert _main(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (
            f"orchestrator lag: no lag to report: none of the topics exists or is visible: {', '.join(inbound[:3])} "
            f"and {len(inbound) + 1 - 3} more (ORCH_TOPIC_PREFIX={unique!r}: no worker of that prefix ever started?)\n"
        )

    # Topics named on the command line: the same, without the prefix hint.
    assert _main(["lag", "--topics", f"{unique}.nope"]) == 1
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        f"orchestrator lag: no lag to report: none of the topics exists or is visible: {unique}.nope\n",
    )

"""`orchestrator validate`: every error class reported as file:line:col: message, exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from orchestrator.designer import cli as designer_cli
from orchestrator.journey.loader import JourneyError, load_journeys

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "fixtures" / "invalid"


def problems(name: str) -> list[str]:
    return designer_cli.validate([BAD / name])


def test_shipped_journeys_and_policy_are_valid():
    assert designer_cli.validate([ROOT / "journeys"]) == []
    out, err = io.StringIO(), io.StringIO()
    args = _parse(["validate", str(ROOT / "journeys")])
    assert args.func(args, out, err) == 0 and err.getvalue() == ""


def _parse(argv):
    import argparse

    parser = argparse.ArgumentParser()
    designer_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_unknown_step_reference():
    assert problems("unknown_step.yaml")[0] == (
        f"{BAD / 'unknown_step.yaml'}:12:5: unknown step 'secnod' referenced from step 'first' (steps are: first, second)"
    )


def test_unreachable_step():
    assert problems("unreachable.yaml") == [
        f"{BAD / 'unreachable.yaml'}:8:3: step 'orphan' is unreachable from start 'first': remove it or point an edge at it"
    ]


def test_loop_without_a_wait():
    assert problems("loop.yaml") == [
        (
            f"{BAD / 'loop.yaml'}:7:3: loop without a wait: check -> nag -> check; "
            "put a wait or delay step in the loop so it can not spin forever"
        )
    ]


def test_bad_duration():
    (msg,) = problems("bad_duration.yaml")
    assert msg.startswith(
        f"{BAD / 'bad_duration.yaml'}:10:5: steps.wait.timeout: bad duration '24hours': use a whole number followed by a unit"
    )


def test_unknown_channel_and_comm_type():
    assert problems("unknown_channel.yaml") == [
        (
            f"{BAD / 'unknown_channel.yaml'}:9:5: steps.first.channel: unknown channel 'fax': "
            "use one of email, sms, push, call_center, direct_mail, web_message, in_app"
        ),
        (
            f"{BAD / 'unknown_channel.yaml'}:11:5: steps.first.comm_type: unknown communication type 'promotional': "
            "use one of service, editorial, commercial, calamity"
        ),
    ]


def test_schema_violations_each_on_its_line():
    f = BAD / "schema.yaml"
    got = problems("schema.yaml")
    assert got == [
        f"{f}:1:1: id: 'Schema-Violations' is not a valid journey id: use lowercase letters, digits and _, starting with a letter",
        f"{f}:2:1: version: Input should be greater than or equal to 1 (got 0)",
        (
            f"{f}:5:3: entry.event: unknown event type 'web.cart_abandonned'; web events are: web.cart_abandoned, web.feature_used, "
            "web.form_submitted, web.loan_approved, web.page_view, web.purchase, web.refund"
        ),
        f"{f}:9:3: missing required key 'template' in steps.first",
        f"{f}:13:5: steps.first.priority: Input should be less than or equal to 10 (got 11)",
        f"{f}:14:5: steps.first.chanel: unknown key 'chanel' (did you mean 'channel'?)",
        f"{f}:16:3: steps.done: missing or unknown step type: write type: send, wait, branch, split, delay, window or end",
        f"{f}:17:3: steps.Bad-Step: 'Bad-Step' is not a valid name: use letters, digits and _, starting with a letter",
    ]


def test_invalid_yaml():
    (msg,) = problems("not_yaml.yaml")
    assert msg.startswith(f"{BAD / 'not_yaml.yaml'}:3:1: invalid YAML:")


def test_condition_and_wait_errors(tmp_path):
    f = tmp_path / "conds.yaml"
    f.write_text(
        "id: conds\n"
        "version: 1\n"
        "name: Conditions\n"
        "entry:\n"
        "  event: web.cart_abandoned\n"
        "  when:\n"
        "    - {field: cart.value, gte: 20}\n"
        "    - {field: data.cart_value}\n"
        "start: w\n"
        "steps:\n"
        "  w:\n"
        "    type: wait\n"
        "    for: {opened_of: done}\n"
        "    timeout: 1h\n"
        "    on_event: done\n"
        "  done: {type: end}\n"
    )
    got = designer_cli.validate([f])
    assert got[0] == (
        f"{f}:7:8: entry.when.0.field: unknown field root 'cart' in 'cart.value': fields start with data. (event payload), "
        "entry. (payload of the entry event), event. (type, id, occurred_at) or profile."
    )
    assert got[1].startswith(f"{f}:8:7: entry.when.1: condition on 'data.cart_value' has no operator")
    old, new = "    - {field: cart.value, gte: 20}\n    - {field: data.cart_value}\n", "    - {field: data.cart_value, gte: 1}\n"
    f.write_text(f.read_text().replace(old, new))
    assert designer_cli.validate([f]) == [f"{f}:12:11: opened_of must name a send step, but 'done' is a step of type end"]


def test_every_problem_of_a_directory_is_listed_and_exit_code_is_1():
    out, err = io.StringIO(), io.StringIO()
    args = _parse(["validate", str(BAD)])
    assert args.func(args, out, err) == 1
    lines = err.getvalue().splitlines()
    assert lines[-1] == "16 problems found"
    files = {line.split(":", 1)[0] for line in lines[:-1]}
    assert files == {
        str(BAD / n)
        for n in (
            "unknown_step.yaml",
            "unreachable.yaml",
            "loop.yaml",
            "bad_duration.yaml",
            "unknown_channel.yaml",
            "schema.yaml",
            "not_yaml.yaml",
        )
    }


def test_missing_path():
    assert designer_cli.validate([BAD / "nope.yaml"]) == [f"{BAD / 'nope.yaml'}:1:1: no such file or directory"]


def test_pressure_policy_is_validated_too(tmp_path):
    (tmp_path / "pressure.yaml").write_text("capacity: lots\n")
    got = designer_cli.validate([tmp_path / "pressure.yaml"])
    assert len(got) == 1 and got[0].startswith(f"{tmp_path / 'pressure.yaml'}:1:1: capacity")
    assert designer_cli.validate([tmp_path]) == got  # a directory validates its policy too


def test_load_journeys_raises_with_all_errors():
    with pytest.raises(JourneyError) as exc:
        load_journeys([BAD])
    assert len(exc.value.errors) == 16


def test_validate_reports_journey_and_policy_files_alike(tmp_path):
    (tmp_path / "pressure.yaml").write_text("capacity: 25\narbitration_window: 0s\ncalamity: {lock: 0s}\n")
    (tmp_path / "j.yaml").write_text(
        "id: j\nversion: 1\nname: J\nentry: {event: web.form_submitted}\nstart: w\nsteps:\n"
        "  w: {type: wait, for: {event: web.page_view}, timeout: 0s, on_event: s, on_timeout: s}\n"
        "  s: {type: send, channel: email, template: t, comm_type: service}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    args = _parse(["validate", str(tmp_path)])
    assert args.func(args, out, err) == 1 and out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert lines == [
        (
            f"{tmp_path / 'pressure.yaml'}:2:1: arbitration_window: bad duration '0s': "
            "must be longer than 0s; use null to turn arbitration off"
        ),
        lines[1],
        "2 problems found",
    ]
    assert lines[1].startswith(f"{tmp_path / 'j.yaml'}:7:")
    assert "steps.w.timeout: bad duration '0s': must be longer than 0s; use a whole" in lines[1]


def test_a_month_in_the_policy_is_valid(tmp_path):
    (tmp_path / "pressure.yaml").write_text("arbitration_window: 1mo\ncalamity: {lock: 1mo}\nkey_margin: 1mo\n")
    assert designer_cli.validate([tmp_path / "pressure.yaml"]) == []

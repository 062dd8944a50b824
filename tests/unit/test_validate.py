"""`orchestrator validate`: every error class reported as file:line:col: message, exit codes."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pytest

from orchestrator.designer import cli as designer_cli
from orchestrator.journey.loader import JourneyError, load_journeys
from orchestrator.journey.model import Schedule
from orchestrator.yamlpos import DuplicateKey, DuplicateKeyError, loads_yaml_with_positions

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
        f"{BAD / 'unknown_step.yaml'}:12:5: unknown step 'secnod' referenced from step 'first': did you mean 'second'? "
        "(steps are: first, second)"
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
            f"{f}:5:3: entry.event: unknown event type 'web.cart_abandonned'; web events are: web.cart_abandoned, web.cart_updated, "
            "web.feature_used, web.form_submitted, web.loan_approved, web.page_view, web.purchase, web.refund"
        ),
        f"{f}:9:3: missing required key 'template' in steps.first",
        f"{f}:13:5: steps.first.priority: Input should be less than or equal to 10 (got 11)",
        f"{f}:14:5: steps.first.chanel: unknown key 'chanel' (did you mean 'channel'?)",
        (
            f"{f}:16:3: steps.done: missing or unknown step type: write type: "
            "send, wait, branch, split, delay, window, update_profile, emit or end"
        ),
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
    assert lines[-1] == "18 problems found"  # 16 in the journeys; the policy and the facts file are missing
    files = {line.split(":", 1)[0] for line in lines[:-1]}
    assert files == {
        str(BAD / n)
        for n in (
            "pressure.yaml",
            "profile.yaml",
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


MINIMAL = "id: j\nversion: 1\nname: J\nentry: {event: web.form_submitted}\nstart: e\nsteps: {e: {type: end}}\n"


def complete(directory, journey: bool = True):
    """Give a directory what the worker needs besides the file under test: the facts file and (``journey``) a journey."""
    (directory / "profile.yaml").write_text("events: {}\n")
    if journey:
        (directory / "j.yaml").write_text(MINIMAL)


def test_pressure_policy_is_validated_too(tmp_path):
    complete(tmp_path)
    (tmp_path / "pressure.yaml").write_text("capacity: lots\n")
    got = designer_cli.validate([tmp_path / "pressure.yaml"])
    assert len(got) == 1 and got[0].startswith(f"{tmp_path / 'pressure.yaml'}:1:1: capacity")
    assert designer_cli.validate([tmp_path]) == got  # a directory validates its policy too


def test_load_journeys_raises_with_all_errors():
    with pytest.raises(JourneyError) as exc:
        load_journeys([BAD])
    assert len(exc.value.errors) == 16


def test_validate_reports_journey_and_policy_files_alike(tmp_path):
    complete(tmp_path, journey=False)
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


# ---------------------------------------------------------------- issue 9: what used to fail silently at run time


def check(tmp_path, text, name="j.yaml"):
    """`validate` on one journey text: its problems without the file name (``line:col: message``)."""
    f = tmp_path / name
    f.write_text(textwrap.dedent(text).lstrip())
    return [line.removeprefix(f"{f}:") for line in designer_cli.validate([f])]


CART = """
    id: cart
    version: 1
    name: Cart
    entry:
      event: web.cart_abandoned
      when: [{field: data.cart_valu, gte: 50}]
    goals:
      - {name: bought, event: web.purchase, when: [{field: data.ammount, gte: 1}]}
    start: send
    steps:
      send:
        type: send
        channel: email
        template: t
        comm_type: commercial
        variables_from: {x: data.cart_valu, y: entry.cart_value}
      """


def test_data_fields_are_checked_against_the_event_schemas(tmp_path):
    assert check(tmp_path, CART) == [
        "6:11: unknown field 'data.cart_valu': the entry event web.cart_abandoned has no 'cart_valu' (did you mean 'data.cart_value'?)",
        "8:49: unknown field 'data.ammount': web.purchase has no 'ammount' (fields: attributes, brand, currency, order_id, value)",
        (
            "16:22: unknown field 'data.cart_valu': the event that reaches step 'send' (web.cart_abandoned) has no 'cart_valu' "
            "(did you mean 'data.cart_value'?)"
        ),
    ]
    fixed = CART.replace("cart_valu,", "cart_value,").replace("cart_valu}", "cart_value}").replace("ammount", "value")
    assert check(tmp_path, fixed) == []


def test_comparison_literals_must_fit_the_field_type(tmp_path):
    got = check(
        tmp_path,
        """
        id: lit
        version: 1
        name: Literals
        entry:
          event: web.cart_abandoned
          when:
            - {field: data.cart_value, gte: "50"}
            - {field: data.items, eq: "3"}
            - {field: data.cart_id, ne: 7}
            - {field: data.items, in: [1, "2", 2.5, 3.0]}
            - {field: data.cart_value, gte: 50, lt: 1000, ne: 20}
            - {field: data.currency, gt: 3}
            - {field: data.brand, eq: null}
            - {field: data.attributes.vip, eq: true}
        exits:
          - {event: consent.unsubscribed, when: [{field: data.channel, in: [emial, all]}]}
        start: done
        steps:
          done: {type: end}
        """,
    )
    assert got == [
        "7:32: gte: '50' is a string but data.cart_value (web.cart_abandoned) is a number: the comparison is always false; write gte: 50",
        "8:27: eq: '3' is a string but data.items (web.cart_abandoned) is an integer: it never matches; write 3 without quotes",
        '9:29: ne: 7 is an integer but data.cart_id (web.cart_abandoned) is a string: it always holds; quote it: "7"',
        "10:35: in: '2' is a string but data.items (web.cart_abandoned) is an integer: it never matches; write 2 without quotes",
        "10:40: in: 2.5 is a number but data.items (web.cart_abandoned) is an integer: it never matches",
        "12:30: gt: 3 is a number but data.currency (web.cart_abandoned) is a string: the comparison is always false",
        (
            "16:69: in: 'emial' is not a value of data.channel (consent.unsubscribed), which is one of email, sms, push, "
            "call_center, direct_mail, web_message, in_app, all: it never matches (did you mean 'email'?)"
        ),
    ]


def test_every_entry_event_must_have_a_field_the_entry_needs(tmp_path):
    text = """
        id: geo
        version: 1
        name: Geo
        entry:
          event: [geo.store_entered, geo.geofence_entered]
          when:
            - {field: data.store_id, eq: s1}
            - {field: data.latitude, gte: 40}
            - {field: data.store_id, ne: s2}
            - {any: [{field: data.store_id, eq: s1}, {field: data.geofence_id, eq: g1}]}
            - {not: {field: data.geofence_id, eq: g2}}
            - {field: entry.store_nr, exists: false}
        start: offer
        steps:
          offer:
            type: send
            channel: push
            template: t
            comm_type: commercial
            variables_from: {store: data.store_id, geofence: entry.geofence_id}
        """
    assert check(tmp_path, text) == [
        (
            "7:8: field 'data.store_id' is not in the entry event geo.geofence_entered (only in geo.store_entered): "
            "the condition needs it, so geo.geofence_entered events never enter"
        ),
        (
            "12:8: unknown field 'entry.store_nr': none of the entry events geo.store_entered, geo.geofence_entered has "
            "'store_nr' (did you mean 'entry.store_id'?)"
        ),
    ]


def test_branch_and_variables_read_the_event_that_moved_the_instance(tmp_path):
    text = """
        id: moved
        version: 1
        name: Moved
        entry: {event: web.cart_abandoned}
        start: wait
        steps:
          wait:
            type: wait
            for:
              - {event: web.page_view, when: [{field: data.url, contains: /pricing}, {field: data.cart_value, gt: 1}]}
              - {opened_of: mail, next: after_open}
            timeout: 1d
            on_event: route
            on_timeout: route
          route:
            type: branch
            cases:
              - {when: [{field: data.url, contains: /pricing}], next: mail}
              - {when: [{field: data.cart_value, gte: 100}], next: mail}
              - {when: [{field: data.sentiment, eq: negative}], next: mail}
            default: mail
          mail:
            type: send
            channel: email
            template: t
            comm_type: commercial
            variables_from: {value: data.cart_value}
            next: wait_open
          wait_open:
            type: wait
            for: {opened_of: mail}
            timeout: 1d
            on_event: after_open
          after_open:
            type: send
            channel: sms
            template: t
            comm_type: commercial
            variables_from: {value: data.cart_value, cart: entry.cart_value}
        """
    assert check(tmp_path, text) == [
        "10:79: unknown field 'data.cart_value': the awaited event web.page_view has no 'cart_value' (fields: attributes, brand, url)",
        (
            "20:18: unknown field 'data.sentiment': none of the events that can reach step 'route' (web.cart_abandoned, web.page_view) "
            "has 'sentiment' (fields: attributes, brand, cart_id, cart_value, currency, items, url)"
        ),
        (
            "39:22: unknown field 'data.cart_value': the event that reaches step 'after_open' (ccm.opened) has no 'cart_value' "
            "(fields: attributes, brand, channel, send_id, template)"
        ),
    ]


def test_nested_and_seen_fields(tmp_path):
    got = check(
        tmp_path,
        """
        id: nested
        version: 1
        name: Nested
        entry:
          event: crm.customer_registered
          when:
            - {field: data.attributes.tier, eq: gold}
            - {field: data.attribute.tier, eq: gold}
            - {field: data.segment.kind, exists: true}
          profile:
            - {not_seen: web.feature_used, where: [{field: data.featur, eq: export}]}
            - {seen: web.feature_used, where: [{field: data.feature, eq: export}]}
            - {seen: web.not_a_type, where: [{field: data.anything, eq: 1}]}
        start: done
        steps:
          done: {type: end}
        """,
    )
    assert got == [
        (
            "8:8: unknown field 'data.attribute.tier': the entry event crm.customer_registered has no 'attribute' "
            "(did you mean 'data.attributes.tier'?)"
        ),
        (
            "9:8: unknown field 'data.segment.kind': the entry event crm.customer_registered has no 'kind' "
            "(data.segment is a string or null: it has no fields)"
        ),
        "11:45: unknown field 'data.featur': web.feature_used has no 'featur' (did you mean 'data.feature'?)",
    ]


def test_duplicate_keys_are_reported_with_the_other_problems(tmp_path):
    got = check(
        tmp_path,
        """
        id: dup
        version: 1
        name: Duplicates
        entry: {event: web.form_submitted}
        start: wait
        steps:
          wait:
            type: wait
            for: {event: web.page_view}
            timeout: 1h
            timeout: 2h
            on_timeout: done
          done: {type: end}
          done: {type: end, outcome: finished}
          bad: {type: end, outcom: x}
        """,
    )
    assert got == [
        "11:5: duplicate key 'timeout' (first at line 10): YAML keeps only the last value",
        "14:3: duplicate key 'done' (first at line 13): YAML keeps only the last value",
        "15:20: steps.bad.outcom: unknown key 'outcom' (did you mean 'outcome'?)",
    ]


def test_duplicate_keys_in_the_pressure_policy(tmp_path):
    complete(tmp_path)
    (tmp_path / "pressure.yaml").write_text("capacity: 20\narbitration_window: 1h\ncapacity: -1\ncalamity: {lock: 1h, lock: 2h}\n")
    policy = tmp_path / "pressure.yaml"
    # one line per repeat, together with the other problems of the file, in file order
    assert designer_cli.validate([tmp_path]) == [
        f"{policy}:3:1: duplicate key 'capacity' (first at line 1): YAML keeps only the last value",
        f"{policy}:3:1: capacity: Input should be greater than or equal to 0",
        f"{policy}:4:22: duplicate key 'lock' (first at line 4): YAML keeps only the last value",
    ]


def test_bad_step_references_are_reported_with_the_model_problems(tmp_path):
    got = check(
        tmp_path,
        """
        id: refs
        version: 1
        name: References
        entry: {event: web.cart_abandoned}
        start: send_first
        steps:
          send_first:
            type: send
            channel: fax
            template: t
            comm_type: commercial
            next: wait_open
          wait_open:
            type: wait
            for: {opened_of: sendfirst}
            timeout: 24h
            on_event: done
            on_timeout: sned_reminder
          send_reminder:
            type: send
            channel: email
            template: t2
            comm_type: commercial
            next: dnoe
          done: {type: end}
        """,
    )
    assert got == [
        "9:5: steps.send_first.channel: unknown channel 'fax': use one of email, sms, push, call_center, direct_mail, web_message, in_app",
        (
            "15:11: unknown step 'sendfirst' in opened_of: did you mean 'send_first'? "
            "(steps are: send_first, wait_open, send_reminder, done)"
        ),
        (
            "18:5: unknown step 'sned_reminder' referenced from step 'wait_open': did you mean 'send_reminder'? "
            "(steps are: send_first, wait_open, send_reminder, done)"
        ),
        (
            "24:5: unknown step 'dnoe' referenced from step 'send_reminder': did you mean 'done'? "
            "(steps are: send_first, wait_open, send_reminder, done)"
        ),
    ]


def test_unknown_keys_are_matched_against_the_keys_of_their_place(tmp_path):
    got = check(
        tmp_path,
        """
        id: keys
        version: 1
        name: Keys
        entry:
          event: web.cart_abandoned
          when:
            - {field: data.cart_value, lessthan: 500}
            - {since: profile.registered_at, older_then: 30d}
            - {seen: web.purchase, where: [{field: data.value, greater_than: 5}]}
          reentry: {polcy: never}
        start: done
        steps:
          done: {type: end, zzz: 1}
        """,
    )
    assert got == [
        "7:32: entry.when.0.lessthan: unknown key 'lessthan' (did you mean 'lt'?)",
        "8:38: entry.when.1.older_then: unknown key 'older_then' (did you mean 'older_than'?)",
        "9:56: entry.when.2.where.0.greater_than: unknown key 'greater_than' (did you mean 'gt'?)",
        "10:13: entry.reentry.polcy: unknown key 'polcy' (did you mean 'policy'?)",
        "13:21: steps.done.zzz: unknown key 'zzz' (keys here: type, outcome)",
    ]


def test_yaml_duplicates_and_merge_keys():
    text = "base: &b {a: 1, c: 2}\nx:\n  <<: *b\n  a: 2\ny: 1\ny: [3]\n"
    with pytest.raises(DuplicateKeyError) as exc:
        loads_yaml_with_positions(text)
    assert [(d.path, d.position, d.first) for d in exc.value.duplicates] == [(("y",), (6, 1), (5, 1))]
    duplicates: list[DuplicateKey] = []
    data, positions = loads_yaml_with_positions(text, duplicates)
    assert data == {"base": {"a": 1, "c": 2}, "x": {"a": 2, "c": 2}, "y": [3]}  # a merge may be overridden: no duplicate
    assert [d.message for d in duplicates] == ["duplicate key 'y' (first at line 5): YAML keeps only the last value"]
    assert positions[("y",)] == (6, 1) and positions[("y", 0)] == (6, 5)  # where the winning value is
    assert positions[("x", "a")] == (4, 3)


# ---------------------------------------------------------------- issue 10: campaigns and segments (entry.audience)


def test_audience_schedule_and_condition_problems_each_at_their_place(tmp_path):
    got = check(
        tmp_path,
        """
        id: camp
        version: 1
        name: Campaign
        entry:
          audience:
            when:
              - {field: profile.lists, contains: beta_testers}
              - {field: data.cart_value, gte: 20}
              - {any: [{field: profile.segment, eq: vip}, {not: {since: event.occurred_at, older_than: 3d}}]}
            schedule: {every: week, at: "10:00"}
        start: done
        steps:
          done: {type: end}
        """,
    )
    why = (
        "audience conditions read what we know about the customer (profile.X, seen/not_seen, since), not {}: "
        "there is no event payload when a campaign runs"
    )
    assert got == [
        "8:10: entry.audience.when.1.field: " + why.format("data.cart_value"),
        "9:58: entry.audience.when.2.any.1.not.since: " + why.format("event.occurred_at"),
        "10:5: entry.audience.schedule: every: week needs on: mon..sun (and only weeks take on:)",
    ]


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ('{at: "2026-12-01T10:00"}', 'at needs a UTC offset, e.g. "2026-12-01T10:00Z"; or add local: true for each customer\'s local time'),
        (
            '{at: "2026-12-01T10:00Z", local: true}',
            "a local schedule's at has no UTC offset (it is each customer's local time): write 2026-12-01T10:00",
        ),
        ("{at: tomorrow}", "a once-only schedule's at is an ISO date-time, e.g. \"2026-12-01T10:00:00Z\", got 'tomorrow'"),
        ('{every: hour, at: "00:15", local: true}', "every: hour cannot be local (an hour is the same everywhere): drop local"),
        ('{every: month, at: "10:00", day: 31}', "entry.audience.schedule.day: Input should be less than or equal to 28 (got 31)"),
        (
            '{every: fortnight, at: "10:00"}',
            "entry.audience.schedule.every: Input should be 'hour', 'day', 'week' or 'month' (got 'fortnight')",
        ),
    ],
)
def test_schedule_problems_are_reported_at_the_schedule(tmp_path, schedule, problem):
    text = f"""
        id: camp
        version: 1
        name: Campaign
        entry:
          audience:
            when: [{{field: profile.segment, eq: vip}}]
            schedule: {schedule}
        start: done
        steps:
          done: {{type: end}}
        """
    [line] = check(tmp_path, text)
    assert line.startswith("7:") and line.endswith(problem)


def test_a_weekly_schedule_reads_on_unquoted(tmp_path):
    # YAML 1.1 reads the key `on` as true: the loader gives the schedule its `on` back
    text = """
        id: weekly
        version: 1
        name: Weekly
        entry:
          audience:
            when: [{field: profile.lists, contains: newsletter}]
            schedule: {every: week, on: mon, at: "10:00"}
        start: done
        steps:
          done: {type: end}
        """
    assert check(tmp_path, text) == []
    journey = load_journeys([tmp_path]).newest("weekly")
    assert journey is not None and journey.journey.entry.audience is not None
    assert journey.journey.entry.audience.schedule == Schedule(every="week", on="mon", at="10:00")
    assert check(tmp_path, text.replace("on: mon", "on: someday"))[0].startswith("7:29: entry.audience.schedule.on: Input should be")


AUDIENCE_ONLY = """
    id: news
    version: 1
    name: News
    entry:
      audience:
        when:
          - {field: profile.lists, contains: newsletter}
          - {not_seen: web.feature_used, where: [{field: data.featur, eq: export}]}
        schedule: {every: month, day: 1, at: "10:00", local: true}
      reentry: {policy: always}
    start: route
    steps:
      route:
        type: branch
        cases:
          - {when: [{field: data.cart_value, gte: 1}], next: mail}
          - {when: [{field: entry.run, eq: "2026-12-01T10:00L"}], next: mail}
        default: mail
      mail:
        type: send
        channel: email
        template: news
        comm_type: editorial
        variables_from: {edition: entry.run, campaign: data.journey, typo: entry.journy}
        next: wait
      wait:
        type: wait
        for: {clicked_of: mail}
        timeout: 1d
        on_event: thanks
        on_timeout: thanks
      thanks:
        type: send
        channel: email
        template: thanks
        comm_type: service
        variables_from: {send: data.send_id, edition: data.run}
    """


def test_a_journey_entered_by_its_audience_has_no_event_payload(tmp_path):
    run = "a campaign run's entry event audience.run has only {0}.journey and {0}.run"
    read = "read what we know about the customer (profile.X, seen/not_seen, since) or wait for an event first"
    assert check(tmp_path, AUDIENCE_ONLY) == [
        "8:47: unknown field 'data.featur': web.feature_used has no 'featur' (did you mean 'data.feature'?)",
        (
            "16:18: unknown field 'data.cart_value': customers who enter by the audience reach step 'route' without an event "
            f"payload ({run.format('data')}): {read}"
        ),
        (
            "24:66: unknown field 'entry.journy': customers who enter by the audience have no trigger event "
            f"({run.format('entry')}): {read} (did you mean 'entry.journey'?)"
        ),
        # after the wait, data. is the click or (timeout) still the run: data.send_id is in one of them, data.run too
    ]


def test_entry_conditions_without_a_trigger_event_belong_in_the_audience(tmp_path):
    text = """
        id: seg
        version: 1
        name: Segment
        entry:
          audience: {when: [{field: profile.lists, contains: beta}], qualify: on_change}
          when: [{field: data.cart_value, gte: 1}]
          profile: [{field: profile.segment, eq: vip}]
        start: mail
        steps:
          mail:
            type: send
            channel: email
            template: t
            comm_type: service
            variables_from: {tier: data.attributes.tier, url: data.url}
        """
    move = "applies to the trigger event, and this journey has none (it enters by its audience): move these conditions to "
    assert check(tmp_path, text) == [
        f"6:3: entry.when {move}entry.audience.when",
        f"7:3: entry.profile {move}entry.audience.when",
        (
            "15:50: unknown field 'data.url': customers who enter by the audience reach step 'mail' without an event payload "
            "(the event that makes them qualify (qualify: on_change) can be of any type): read what we know about the customer "
            "(profile.X, seen/not_seen, since) or wait for an event first"
        ),
    ]


def test_an_audience_next_to_a_trigger_event(tmp_path):
    text = """
        id: both
        version: 1
        name: Both
        entry:
          event: web.cart_abandoned
          when: [{field: data.cart_value, gte: 20}]
          audience: {when: [{field: profile.lists, contains: carts}], schedule: {at: "2026-12-01T10:00:00Z"}}
        start: mail
        steps:
          mail:
            type: send
            channel: email
            template: t
            comm_type: commercial
            variables_from: {value: data.cart_value, run: entry.run, nope: entry.nope}
        """
    assert check(tmp_path, text) == [
        (
            "15:62: unknown field 'entry.nope': none of the entry events web.cart_abandoned, audience.run has 'nope' "
            "(fields: attributes, brand, cart_id, cart_value, currency, items, journey, run)"
        )
    ]


def test_the_audience_run_event_type_is_the_engines():
    from orchestrator.engine.audience import AUDIENCE_EVENT_TYPE
    from orchestrator.journey.fields import AUDIENCE_RUN

    assert AUDIENCE_RUN == AUDIENCE_EVENT_TYPE


# ------------------------------------------------------------------ issue 14, item 4: validate fails on what the worker refuses


def _validate(*paths):
    out, err = io.StringIO(), io.StringIO()
    args = _parse(["validate", *map(str, paths)])
    return args.func(args, out, err), out.getvalue(), err.getvalue()


def test_validate_fails_on_an_empty_directory(tmp_path):
    code, out, err = _validate(tmp_path)
    assert code == 1 and out == ""
    assert f"{tmp_path}:1:1: no journey files" in err
    assert f"{tmp_path / 'pressure.yaml'}:1:1: missing: the contact-pressure policy is required" in err
    assert f"{tmp_path / 'profile.yaml'}:1:1: missing: the profile facts" in err
    assert err.splitlines()[-1] == "3 problems found"


def test_validate_fails_on_an_unreadable_policy(tmp_path):
    complete(tmp_path)
    (tmp_path / "pressure.yaml").mkdir()  # there, but not a file that can be read
    code, _, err = _validate(tmp_path)
    assert code == 1 and f"{tmp_path / 'pressure.yaml'}:1:1: missing" in err


def test_validate_says_what_it_checked():
    code, out, _ = _validate(ROOT / "journeys")
    assert code == 0
    first, note = out.splitlines()
    checked = r".*journeys: \d+ journeys( \(\d+ versions\))?, 1 policy, 1 facts file \(\d+ fields recorded\)"
    checked += r", 1 scores file \(\d+ scores\): ok"
    assert re.fullmatch(checked, first), out
    assert note.startswith("note: journeys here read payload history") and "--kafka" in note


def test_a_broken_journey_a_broken_policy_and_broken_facts_come_together(tmp_path):
    (tmp_path / "pressure.yaml").write_text("capacity: lots\n")
    (tmp_path / "profile.yaml").write_text("events: {web.nope: {}}\n")
    (tmp_path / "j.yaml").write_text(MINIMAL.replace("type: end", "type: ende"))
    code, _, err = _validate(tmp_path)
    assert code == 1
    assert {line.split(":", 1)[0] for line in err.splitlines()[:-1]} == {
        str(tmp_path / n) for n in ("pressure.yaml", "profile.yaml", "j.yaml")
    }


def test_the_worker_refuses_what_validate_refuses(tmp_path):
    from orchestrator.definitions import DefinitionsError, load_definitions

    complete(tmp_path)
    with pytest.raises(DefinitionsError) as exc:
        load_definitions(tmp_path)
    code, _, err = _validate(tmp_path)
    assert code == 1 and exc.value.problems == err.splitlines()[:-1]


# ------------------------------------------------------------------ every problem of a journey file in one run


ALL_AT_ONCE = """
    id: cart
    version: 1
    name: Cart
    entry:
      event: web.cart_abandoned
      when: [{field: data.cart_valu, gte: 20}]
    goals:
      - {name: bought, event: web.purchse}
    start: wait
    steps:
      wait:
        type: wait
        for: {event: web.purchase}
        timeout: 0s
        on_timeout: mail
      mail:
        type: send
        channel: email
        template: t
        comm_type: commercial
        next: thnks
      thanks: {type: end}
    """


def test_structure_fields_event_types_and_references_come_in_one_run(tmp_path):
    got = check(tmp_path, ALL_AT_ONCE)
    assert [line.split(": ", 1)[0] for line in got] == ["6:11", "8:20", "14:5", "21:5"]
    assert (
        got[0]
        == "6:11: unknown field 'data.cart_valu': the entry event web.cart_abandoned has no 'cart_valu' (did you mean 'data.cart_value'?)"
    )
    assert got[1].startswith("8:20: goals.0.event: unknown event type 'web.purchse'")
    assert got[2].startswith("14:5: steps.wait.timeout: bad duration '0s'")
    assert got[3] == "21:5: unknown step 'thnks' referenced from step 'mail': did you mean 'thanks'? (steps are: wait, mail, thanks)"


def test_the_field_problems_of_a_rejected_part_are_not_reported(tmp_path):
    text = """
        id: cart
        version: 1
        name: Cart
        entry:
          event: web.cart_abandoned
          when: [{field: data.cart_valu, gte: 20, bogus: 1}, {field: data.brnd, eq: x}]
        start: mail
        steps:
          mail:
            type: send
            channel: email
            template: t
            comm_type: commercial
            colour: red
            variables_from: {value: data.cart_valu}
        """
    got = check(tmp_path, text)
    assert [line.split(": ", 2)[:2] for line in got] == [
        ["6:43", "entry.when.0.bogus"],  # the condition is rejected: not its field too
        ["6:55", "unknown field 'data.brnd'"],
        ["14:5", "steps.mail.colour"],  # the step is rejected: not its variables_from too
    ]


def test_a_journey_with_only_structural_mistakes_reports_what_it_always_did(tmp_path):
    # the repair turns the wait into an end: step 'check' is then reached by the cart event only, where
    # data.order_id is unknown: the repair's doing, not the file's
    text = """
        id: cart
        version: 1
        name: Cart
        entry:
          event: web.cart_abandoned
          when: [{field: data.cart_value, gte: 20}]
        goals:
          - {name: bought, event: web.purchse}
        start: route
        steps:
          route:
            type: branch
            cases:
              - {when: [{field: data.cart_value, gte: 100}], next: wait}
            default: check
          wait:
            type: wait
            for: {event: web.purchase}
            timeout: 0s
            on_event: check
          check:
            type: branch
            cases:
              - {when: [{field: data.order_id, exists: true}], next: mail}
            default: done
          mail:
            type: send
            channel: fax
            template: t
            comm_type: commercial
            next: done
          done: {type: end}
        """
    assert check(tmp_path, text) == [
        (
            "8:20: goals.0.event: unknown event type 'web.purchse'; web events are: web.cart_abandoned, web.cart_updated, "
            "web.feature_used, web.form_submitted, web.loan_approved, web.page_view, web.purchase, web.refund"
        ),
        (
            "19:5: steps.wait.timeout: bad duration '0s': must be longer than 0s; use a whole number followed by a unit: "
            "s, m, h, d, w or mo (30 days), e.g. 30s, 15m, 24h, 7d, 2w, 3mo, 1h30m (a bare whole number counts seconds)"
        ),
        "28:5: steps.mail.channel: unknown channel 'fax': use one of email, sms, push, call_center, direct_mail, web_message, in_app",
    ]


def test_a_step_that_only_a_repaired_step_leads_to_keeps_its_field_problems_to_itself(tmp_path):
    text = """
        id: cart
        version: 1
        name: Cart
        entry: {event: web.cart_abandoned}
        start: route
        steps:
          route:
            type: branch
            cases:
              - {when: [{field: data.cart_vale, gte: 100}], next: wait}
            default: check
          wait:
            type: wait
            for: {event: web.purchase}
            timeout: 0s
            on_event: check
          check:
            type: branch
            cases:
              - {when: [{field: data.order_id, exists: true}], next: done}
            default: done
          done: {type: end}
        """
    got = check(tmp_path, text)
    assert [line.split(": ", 2)[:2] for line in got] == [["10:18", "unknown field 'data.cart_vale'"], ["15:5", "steps.wait.timeout"]]

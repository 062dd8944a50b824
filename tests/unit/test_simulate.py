"""`orchestrator simulate`: virtual clock, timers, invalid lines, text and JSON output."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.designer import cli as designer_cli
from orchestrator.designer.simulate import (
    RECORD_ADAPTER,
    choose_policy,
    format_json_lines,
    format_text,
    load_scenario,
    read_events,
    simulate,
    simulate_files,
)
from orchestrator.dev.drive import decision
from orchestrator.events import CustomerEvent
from orchestrator.journey.loader import load_text
from orchestrator.pressure.policy import PolicyError, PressurePolicy

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "fixtures" / "events"


def cli(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    designer_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_text_output_shows_steps_sends_with_outcome_and_timers():
    code, out, err = cli("simulate", "--journeys", str(ROOT / "journeys"), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 0
    assert "abandoned_cart.jsonl:11: invalid web event" in err and "(line skipped)" in err
    block = out.split("customer c1\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == [
        "  2026-03-02T10:00:00Z  event web.cart_abandoned (c1-e1)",
        "  2026-03-02T10:00:00Z  abandoned_cart v1 entered (web.cart_abandoned) -> send_first",
        "  2026-03-02T10:00:00Z  abandoned_cart v1 step send_first (send)",
        (
            "  2026-03-02T10:00:00Z  send email cart_reminder (commercial, p5) -> approved: fits: 0 spent + 10 = 10 of 20 [basket 10/25] "
            "c1:abandoned_cart:v1:c1-e1:send_first -> wait_open"
        ),
        "  2026-03-02T10:00:00Z  abandoned_cart v1 step wait_open (wait)",
        (
            "  2026-03-02T10:00:00Z  abandoned_cart v1 waiting at wait_open for ccm.opened[c1:abandoned_cart:v1:c1-e1:send_first] "
            "until 2026-03-03T10:00:00Z"
        ),
        "  2026-03-02T10:00:00Z  timer armed timeout c1:abandoned_cart@c1-e1:wait_open:timeout due 2026-03-03T10:00:00Z",
        "  2026-03-03T10:00:00Z  timer fired c1:abandoned_cart@c1-e1:wait_open:timeout",
        "  2026-03-03T10:00:00Z  abandoned_cart v1 wait_open: timed out -> send_reminder",
        "  2026-03-03T10:00:00Z  abandoned_cart v1 step send_reminder (send)",
        (
            "  2026-03-03T10:00:00Z  send email cart_reminder_2 (commercial, p4) -> approved: fits: 10 spent + 10 = 20 of 20 "
            "[basket 20/25] c1:abandoned_cart:v1:c1-e1:send_reminder -> done"
        ),
        "  2026-03-03T10:00:00Z  abandoned_cart v1 step done (end)",
        "  2026-03-03T10:00:00Z  abandoned_cart v1 ended at done: completed",
    ]


def test_text_output_says_why_a_trigger_did_not_enter():
    code, out, _ = cli("simulate", "--customer", "c4", "--journeys", str(ROOT / "journeys"), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 0
    [line] = [line for line in out.splitlines() if "not entered" in line]
    assert line.startswith("  2026-03-02T10:15:00Z  abandoned_cart v1 not entered (web.cart_abandoned): entry.when")


def test_json_lines_output():
    code, out, _ = cli("simulate", "--json", "--customer", "c3", "--journeys", str(ROOT / "journeys"), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert {line["customer"] for line in lines} == {"c3"}
    send = next(line for line in lines if line["kind"] == "send")
    assert send["result"] == "approved" and send["template"] == "cart_reminder" and send["balance"] == 10
    assert send["journey"] == "abandoned_cart" and send["step_id"] == "send_first" and send["edge"] == "wait_open"
    goal = next(line for line in lines if line.get("what") == "goal")
    assert goal["goal"] == "purchased" and goal["step_id"] == "wait_open"
    assert [line["kind"] for line in lines].count("timer_cancelled") == 1


def test_strict_mode_fails_on_invalid_lines():
    code, _, _ = cli("simulate", "--strict", "--journeys", str(ROOT / "journeys"), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 1


def test_invalid_journeys_are_reported(tmp_path):
    (tmp_path / "bad.yaml").write_text("id: x\n")
    code, _, err = cli("simulate", "--journeys", str(tmp_path), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 1 and f"{tmp_path / 'bad.yaml'}:1:1: missing required key" in err


def test_read_events_reports_each_bad_line(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text(
        '{"family": "web", "type": "page_view", "event_id": "1", "customer_id": "c", "occurred_at": "2026-01-01T00:00:00Z", "url": "/"}\n'
        "not json\n"
        '{"type": "page_view"}\n'
        "[1, 2]\n"
        '{"family": "nope", "type": "x"}\n'
        "\n# a comment\n"
    )
    events, errors = read_events(f)
    assert [e.line for e in events] == [1]
    assert [e.split(": ", 1)[0] for e in errors] == [f"{f}:2", f"{f}:3", f"{f}:4", f"{f}:5"]
    assert 'missing "family"' in errors[1] and "unknown event family 'nope'" in errors[3]


WAIT = """
id: w
version: 1
name: W
entry: {event: web.form_submitted}
start: s
steps:
  s: {type: send, channel: email, template: t, comm_type: service, next: w}
  w: {type: wait, for: {event: web.page_view}, timeout: 10d, on_event: done, on_timeout: late}
  late: {type: send, channel: email, template: late, comm_type: service}
  done: {type: end}
"""


FORM_EVENT_LINE = (
    '{"family": "web", "type": "form_submitted", "event_id": "1", "customer_id": "c", '
    '"occurred_at": "2026-01-01T00:00:00Z", "form_id": "x"}\n'
)


def ev(eid, etype, day, **data):
    return CustomerEvent(event_id=eid, customer_id="c", type=etype, occurred_at=datetime(2026, 1, day, tzinfo=UTC), data=data)


class Approve:
    async def gate(self, request):
        from orchestrator.actions import Send

        return decision(
            Send(
                send_id=request.send_id,
                customer_id=request.customer_id,
                journey_id="",
                journey_version=1,
                instance_id="",
                step_id="",
                channel=request.channel,
                template="t",
                comm_type=request.comm_type,
            )
        )

    async def gate_many(self, requests, *, return_exceptions=False):
        return [await self.gate(r) for r in requests]

    async def set_consent(self, *a):
        return []

    async def show(self, customer_id, now, timezone="UTC"):
        raise NotImplementedError  # not used by simulate; completes the Basket protocol


def test_timers_fire_before_later_events_and_cancelled_timers_never_fire():
    js = load_text(WAIT)
    # the page view on day 5 cancels the 10-day timeout
    r = simulate(js, [ev("f", "web.form_submitted", 1, form_id="x"), ev("p", "web.page_view", 5, url="/")], Approve())
    assert r.path("c") == ["s", "w", "done"]
    assert not any(rec.kind == "timer" for rec in r.records)
    # the page view on day 20 comes after the timeout (day 11), which fires first
    r = simulate(js, [ev("f", "web.form_submitted", 1, form_id="x"), ev("p", "web.page_view", 20, url="/")], Approve())
    assert r.path("c") == ["s", "w", "late"]
    timer = next(rec for rec in r.records if rec.kind == "timer")
    assert timer.at == datetime(2026, 1, 11, tzinfo=UTC)


def test_until_bounds_the_clock():
    js = load_text(WAIT)
    events = [ev("f", "web.form_submitted", 1, form_id="x")]
    r = simulate(js, events, Approve(), until=datetime(2026, 1, 5, tzinfo=UTC))
    assert r.path("c") == ["s", "w"] and r.states["c"].instances[0].status == "waiting"
    r = simulate(js, events, Approve())  # default: last event + 90 days
    assert r.path("c") == ["s", "w", "late"]


def test_events_are_processed_in_time_order():
    js = load_text(WAIT)
    r = simulate(js, [ev("p", "web.page_view", 5, url="/"), ev("f", "web.form_submitted", 1, form_id="x")], Approve())
    assert r.path("c") == ["s", "w", "done"]


def test_simulate_files_uses_policy_next_to_journeys(tmp_path):
    (tmp_path / "j.yaml").write_text(WAIT)
    (tmp_path / "pressure.yaml").write_text("capacity: 1\npriority_reserve: []\n")
    f = tmp_path / "e.jsonl"
    f.write_text(FORM_EVENT_LINE)
    r = simulate_files(tmp_path, f)
    assert [d.result for d in r.sends("c")][:1] == ["capped"]


# ------------------------------------------------------------------ invalid designer files: DefinitionError


def _designer_dir(tmp_path, journey=WAIT, policy="capacity: 25\n"):
    (tmp_path / "j.yaml").write_text(journey)
    (tmp_path / "pressure.yaml").write_text(policy)
    events = tmp_path / "e.jsonl"
    events.write_text(FORM_EVENT_LINE)
    return events


def test_simulate_prints_policy_problems_as_file_line_col(tmp_path):
    events = _designer_dir(tmp_path, policy="capacity: 25\ncalamity:\n  lock: 3 days\n")
    code, out, err = cli("simulate", "--journeys", str(tmp_path), str(events))
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith(f"{tmp_path / 'pressure.yaml'}:3:3: calamity.lock: bad duration '3 days': use a whole number followed by a unit")


def test_simulate_prints_journey_problems_as_file_line_col(tmp_path):
    events = _designer_dir(tmp_path, journey=WAIT.replace("timeout: 10d", "timeout: 0s"))
    code, out, err = cli("simulate", "--journeys", str(tmp_path), str(events))
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith(f"{tmp_path / 'j.yaml'}:9:") and "steps.w.timeout: bad duration '0s': must be longer than 0s" in line


def test_render_with_events_prints_policy_problems(tmp_path):
    events = _designer_dir(tmp_path, policy="arbitration_window: 0s\n")
    code, out, err = cli("render", str(tmp_path / "j.yaml"), "--events", str(events))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        (
            f"{tmp_path / 'pressure.yaml'}:1:1: arbitration_window: bad duration '0s': "
            "must be longer than 0s; use null to turn arbitration off"
        )
    ]


def test_a_month_long_policy_lock_simulates(tmp_path):
    events = _designer_dir(tmp_path, policy="calamity: {lock: 1mo}\nkey_margin: 0s\n")
    code, _, err = cli("simulate", "--journeys", str(tmp_path), str(events))
    assert code == 0 and err == ""


# ------------------------------------------------------------------ the policy: never a silent default (issue 9, item 4)


def test_a_missing_policy_file_is_refused_with_its_path(tmp_path):
    events = _designer_dir(tmp_path)
    missing = tmp_path / "nope" / "pressure.yaml"
    code, out, err = cli("simulate", "--journeys", str(tmp_path), "--policy", str(missing), str(events))
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"{missing}:1:1: no such policy file (the --policy file must exist)"]
    with pytest.raises(PolicyError):
        simulate_files(tmp_path, events, policy_path=missing)


def test_render_refuses_a_missing_policy_file_too(tmp_path):
    events = _designer_dir(tmp_path)
    code, out, err = cli("render", str(tmp_path / "j.yaml"), "--events", str(events), "--policy", str(tmp_path / "x.yaml"))
    assert (code, out) == (1, "") and "x.yaml:1:1: no such policy file" in err


def test_a_folder_without_pressure_yaml_says_it_uses_the_default_policy(tmp_path):
    events = _designer_dir(tmp_path)
    (tmp_path / "pressure.yaml").unlink()
    code, out, err = cli("simulate", "--journeys", str(tmp_path), str(events))
    assert code == 0 and "customer c" in out
    [notice] = err.splitlines()
    assert notice.startswith(f"notice: no pressure.yaml in {tmp_path}: using the built-in default policy (capacity 25 points per")
    assert simulate_files(tmp_path, events).notices == [notice]
    # with the file (or --policy) there is no notice
    assert simulate_files(tmp_path, events, policy_path=ROOT / "journeys" / "pressure.yaml").notices == []
    code, _, err = cli("render", str(tmp_path / "j.yaml"), "--events", str(events))
    assert code == 0 and err == notice + "\n"


def test_choose_policy_reports_where_the_policy_came_from(tmp_path):
    choice = choose_policy(ROOT / "journeys")
    assert choice.source == str(ROOT / "journeys" / "pressure.yaml") and choice.notice is None
    choice = choose_policy(tmp_path)
    assert choice.source is None and choice.policy == PressurePolicy() and "built-in default policy" in (choice.notice or "")


# ------------------------------------------------------------------ output is linear in the records (issue 9, item 5)


class CountingList(list):
    """A list that counts how many records are visited: each full pass counts len(self), each index read one."""

    def __init__(self, items):
        super().__init__(items)
        self.visits = 0

    def __iter__(self):
        self.visits += len(self)
        return super().__iter__()

    def __getitem__(self, index):
        self.visits += 1
        return super().__getitem__(index)


def _many_customers(n: int):
    js = load_text(WAIT)
    day1 = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        CustomerEvent(event_id=f"f{i}", customer_id=f"c{i}", type="web.form_submitted", occurred_at=day1, data={"form_id": "x"})
        for i in range(n)
    ]
    return simulate(js, events, Approve())


def test_formatting_visits_each_record_a_bounded_number_of_times():
    # a structural check, not a timing: formatting once per customer over all records (the old for_customer
    # loop) visits n_customers * n_records records; an index built once visits each record a few times
    result = _many_customers(60)
    n = len(result.records)
    assert n > 60 * 5
    for fmt in (format_text, format_json_lines):
        result.records = CountingList(result.records)
        fmt(result)
        assert result.records.visits <= 3 * n, f"{fmt.__name__} visited {result.records.visits} records for {n}"
        result.records = CountingList(result.records)
        fmt(result, ["c7", "c8"])
        assert result.records.visits <= 3 * n


def test_by_customer_groups_in_order_of_appearance():
    result = _many_customers(3)
    index = result.by_customer()
    assert list(index) == result.customers() == ["c0", "c1", "c2"]
    assert index["c1"] == result.for_customer("c1") and sum(map(len, index.values())) == len(result.records)


# ------------------------------------------------------------------ send records carry the basket's code (issue 9, item 8)


def test_send_records_carry_the_decision_code():
    r = simulate_files(ROOT / "journeys", EVENTS / "abandoned_cart.jsonl")
    sends = [rec for rec in r.records if rec.kind == "send"]
    assert sends
    by_id = {d.send.send_id: d for d in r.dispositions}
    for rec in sends:
        assert "code" in rec.data and "code" in rec.to_json()
        assert rec.data["code"] == getattr(by_id[rec.data["send_id"]].decision, "code", None)


def test_every_record_of_every_example_matches_the_record_schema():
    from tests.unit.test_examples import EXAMPLES

    for name in EXAMPLES:
        result = simulate_files(ROOT / "journeys", EVENTS / f"{name}.jsonl")
        kinds = set()
        for rec in result.records:
            line = json.loads(json.dumps(rec.to_json(), default=str))
            RECORD_ADAPTER.validate_python(line)
            kinds.add(line["kind"])
        assert {"event", "trace"} <= kinds and kinds & {"send", "emit"}, name  # webcare_handoff contacts nobody: emits only


def test_record_schema_follows_the_models_literals():
    from typing import get_args

    from orchestrator.actions import Disposition, Trace
    from orchestrator.designer.simulate import record_json_schema

    defs = record_json_schema()["$defs"]
    assert set(defs["TraceRecord"]["properties"]["what"]["enum"]) == set(get_args(Trace.model_fields["what"].annotation))
    assert set(defs["SendRecord"]["properties"]["result"]["enum"]) == set(get_args(Disposition.model_fields["result"].annotation))
    code = defs["SendRecord"]["properties"]["code"]
    assert "code" in defs["SendRecord"]["required"] and {t["type"] for t in code["anyOf"]} == {"string", "null"}


# ------------------------------------------------------------------ send_id placeholders (issue 9, item 11)

CART = (
    '{"family": "web", "type": "cart_abandoned", "event_id": "%(c)s-e1", "customer_id": "%(c)s", '
    '"occurred_at": "2026-03-02T10:00:00Z", "cart_id": "k", "cart_value": 45}\n'
)
OPENED = (
    '{"family": "ccm", "type": "opened", "event_id": "%(c)s-o1", "customer_id": "%(c)s", '
    '"occurred_at": "2026-03-02T12:00:00Z", "send_id": %(ph)s, "channel": "email"}\n'
)


def _events(tmp_path, *lines):
    f = tmp_path / "e.jsonl"
    f.write_text("".join(lines))
    return f


def test_send_of_resolves_to_the_latest_approved_send_of_the_step(tmp_path):
    f = _events(tmp_path, CART % {"c": "c2"}, OPENED % {"c": "c2", "ph": '{"send_of": "send_first"}'})
    r = simulate_files(ROOT / "journeys", f)
    assert r.errors == []
    assert r.path("c2", "abandoned_cart") == ["send_first", "wait_open", "done"]  # the open matched: no reminder
    [event] = [rec for rec in r.for_customer("c2") if rec.kind == "event" and rec.data["type"] == "ccm.opened"]
    assert event.data["resolved"] == {"send_id": "c2:abandoned_cart:v1:c2-e1:send_first"}
    assert event.text == "event ccm.opened (c2-o1) send_id=c2:abandoned_cart:v1:c2-e1:send_first"
    # qualified by journey
    f = _events(tmp_path, CART % {"c": "c2"}, OPENED % {"c": "c2", "ph": '{"send_of": "send_first", "journey": "abandoned_cart"}'})
    assert simulate_files(ROOT / "journeys", f).path("c2", "abandoned_cart") == ["send_first", "wait_open", "done"]


def test_send_of_without_an_approved_send_is_reported_with_its_line(tmp_path):
    f = _events(
        tmp_path,
        CART % {"c": "c2"},
        OPENED % {"c": "c9", "ph": '{"send_of": "send_first"}'},  # c9 got nothing
        OPENED % {"c": "c2", "ph": '{"send_of": "send_first", "journey": "loan_documents"}'},  # not that journey
        OPENED % {"c": "c2", "ph": '{"send_of": "send_frist"}'},  # a typo
    )
    r = simulate_files(ROOT / "journeys", f)
    assert r.errors == [
        f"{f}:2: send_id: no approved send of step 'send_first' for customer 'c9' at or before 2026-03-02T12:00:00Z",
        (
            f"{f}:3: send_id: no approved send of step 'send_first' in journey 'loan_documents' for customer 'c2' at or before "
            "2026-03-02T12:00:00Z (journey 'loan_documents' has no send step 'send_first')"
        ),
        (
            f"{f}:4: send_id: no approved send of step 'send_frist' for customer 'c2' at or before 2026-03-02T12:00:00Z "
            "(no journey has a send step 'send_frist')"
        ),
    ]
    assert r.path("c2", "abandoned_cart") == ["send_first", "wait_open", "send_reminder", "done"]  # no open arrived
    assert "c9" not in r.customers()
    code, _, err = cli("simulate", "--strict", "--journeys", str(ROOT / "journeys"), str(f))
    assert code == 1 and f"{f}:2: send_id: no approved send" in err and "(line skipped)" in err


def test_a_malformed_placeholder_is_an_invalid_line(tmp_path):
    f = _events(tmp_path, CART % {"c": "c2"}, OPENED % {"c": "c2", "ph": '{"send_of": 3}'})
    _, errors = read_events(f)
    assert errors == [f'{f}:2: send_id: a placeholder is {{"send_of": STEP}} or {{"send_of": STEP, "journey": ID}}, got {{"send_of": 3}}']


# ------------------------------------------------------------------ campaign runs on the virtual clock (issue 10)

CAMPAIGN = """
id: camp
version: 1
name: Campaign
entry:
  audience:
    when: [{field: profile.segment, eq: vip}]
    schedule: SCHEDULE
  reentry: {policy: REENTRY}
start: mail
steps:
  mail: {type: send, channel: email, template: news, comm_type: editorial, next: wait}
  wait: {type: wait, for: {opened_of: mail}, timeout: 1d, on_event: done, on_timeout: done}
  done: {type: end}
"""


def camp(schedule: str = '{at: "2026-03-10T10:00:00Z"}', reentry: str = "never", **changes: str) -> str:
    text = CAMPAIGN.replace("SCHEDULE", schedule).replace("REENTRY", reentry)
    for old, new in changes.items():
        text = text.replace(old, new)
    return text


def crm(cid: str, day: int, hour: int = 9, **data) -> CustomerEvent:
    at = datetime(2026, 3, day, hour, tzinfo=UTC)
    return CustomerEvent(event_id=f"{cid}-{day}-{hour}", customer_id=cid, type="crm.profile_updated", occurred_at=at, data=data)


def entered_at(r, cid: str) -> list[str]:
    return [rec.at.strftime("%m-%d %H:%M") for rec in r.for_customer(cid) if rec.kind == "trace" and rec.data["what"] == "entered"]


def test_a_once_run_checks_every_customer_seen_so_far_and_enters_those_in_the_audience():
    js = load_text(camp())
    events = [crm("v1", 1, segment="vip"), crm("r1", 1, segment="retail"), crm("v2", 11, segment="vip")]  # v2 comes after the run
    r = simulate(js, events, Approve())
    [run] = r.campaigns
    assert (run.journey_id, run.version, run.run_id, run.evaluated, run.in_audience, run.entered) == (
        "camp",
        1,
        "2026-03-10T10:00Z",
        2,
        1,
        1,
    )
    assert entered_at(r, "v1") == ["03-10 10:00"] and entered_at(r, "r1") == entered_at(r, "v2") == []
    [check] = [rec for rec in r.for_customer("v1") if rec.kind == "audience"]
    assert check.text == "campaign camp run 2026-03-10T10:00Z: in the audience"
    assert check.data == {"run_id": "2026-03-10T10:00Z", "due_at": "2026-03-10T10:00:00Z"}
    assert r.path("v1") == ["mail", "wait", "done"]
    assert r.sends("v1")[0].send.send_id == "v1:camp:v1:audience:camp:2026-03-10T10:00Z:mail"


def test_campaign_checks_run_in_time_order_with_timers_and_events():
    js = load_text(camp(), WAIT)
    march = [
        crm("c", 1, segment="vip"),
        CustomerEvent(event_id="f", customer_id="c", type="web.form_submitted", occurred_at=datetime(2026, 3, 5, tzinfo=UTC), data={}),
        crm("c", 10, 10),  # at the time of the run
    ]
    r = simulate(js, march, Approve())
    kinds = [(rec.at.strftime("%m-%d %H:%M"), rec.kind) for rec in r.for_customer("c") if rec.kind in ("event", "audience", "timer")]
    # the run at 10:00 comes before the event line of the same time (as timers do); the timeouts fire in due order
    assert kinds == [
        ("03-01 09:00", "event"),
        ("03-05 00:00", "event"),
        ("03-10 10:00", "audience"),
        ("03-10 10:00", "event"),
        ("03-11 10:00", "timer"),  # camp: the open's 1-day timeout
        ("03-15 00:00", "timer"),  # w: the page view's 10-day timeout
    ]


def test_a_local_run_reaches_each_customer_at_their_local_time():
    js = load_text(camp('{every: day, at: "09:00", local: true}', reentry="always"))
    events = [
        crm("tokyo", 1, segment="vip", timezone="Asia/Tokyo"),
        crm("ny", 1, segment="vip", timezone="America/New_York"),
        crm("utc", 1, segment="vip"),
    ]
    r = simulate(js, events, Approve(), until=datetime(2026, 3, 2, 18, tzinfo=UTC))
    # the run of the 1st began before anyone was known (it reaches nobody); the next one reaches all three
    assert [(c.run_id, c.evaluated, c.entered) for c in r.campaigns] == [("2026-03-01T09:00L", 0, 0), ("2026-03-02T09:00L", 3, 3)]
    assert entered_at(r, "tokyo") == ["03-02 00:00"] and entered_at(r, "utc") == ["03-02 09:00"] and entered_at(r, "ny") == ["03-02 14:00"]
    run = r.campaigns[1]
    assert run.at == datetime(2026, 3, 2, 0, tzinfo=UTC) and max(run.bursts.values()) == 1


def test_a_customer_who_moves_west_before_their_due_time_is_reached_at_the_new_time():
    js = load_text(camp('{at: "2026-03-10T09:00", local: true}'))
    events = [crm("c", 1, segment="vip", timezone="Europe/Berlin"), crm("c", 9, 20, timezone="America/New_York")]
    r = simulate(js, events, Approve())
    assert entered_at(r, "c") == ["03-10 13:00"]  # 09:00 EDT (the run began before the move, with Berlin's time)


def test_recurring_runs_follow_the_reentry_rule():
    js = load_text(camp('{every: week, on: tue, at: "10:00"}'))
    r = simulate(js, [crm("c", 1, segment="vip")], Approve(), until=datetime(2026, 3, 20, tzinfo=UTC))
    assert [(c.run_id, c.in_audience, c.entered, c.not_entered) for c in r.campaigns] == [
        ("2026-03-03T10:00Z", 1, 1, 0),
        ("2026-03-10T10:00Z", 1, 0, 1),
        ("2026-03-17T10:00Z", 1, 0, 1),
    ]
    assert "kept out by re-entry" in r.campaigns[1].text
    not_entered = [rec.text for rec in r.for_customer("c") if rec.kind == "trace" and rec.data["what"] == "not_entered"]
    assert not_entered[0] == "camp v1 not entered (audience.run): reentry: never, and the customer entered before (1 time)"


def test_campaign_runs_in_text_and_json_output():
    js = load_text(camp())
    r = simulate(js, [crm("v1", 1, segment="vip"), crm("r1", 1, segment="retail")], Approve())
    text = format_text(r)
    assert text.startswith(
        "campaign runs\n"
        "  2026-03-10T10:00:00Z  campaign camp run 2026-03-10T10:00Z: 2 evaluated, 1 in the audience, 1 entered; "
        "at 100/s about 0.01 s (throttle not simulated)\n\ncustomer v1\n"
    )
    lines = [json.loads(line) for line in format_json_lines(r).splitlines()]
    assert lines[0] == {
        "at": "2026-03-10T10:00:00Z",
        "kind": "campaign_run",
        "journey": "camp",
        "version": 1,
        "run_id": "2026-03-10T10:00Z",
        "local": False,
        "evaluated": 2,
        "in_audience": 1,
        "entered": 1,
        "not_entered": 0,
        "throttle_per_second": 100.0,
        "throttle_seconds": 0.01,
        "text": r.campaigns[0].text,
    }
    for line in lines:
        RECORD_ADAPTER.validate_python(line)
    assert "audience" in {line["kind"] for line in lines}
    # one customer: their own lines only
    assert "campaign runs" not in format_text(r, ["v1"])
    assert {json.loads(line).get("customer") for line in format_json_lines(r, ["v1"]).splitlines()} == {"v1"}


def test_a_run_that_reaches_nobody_is_left_out_of_the_output():
    js = load_text(camp('{at: "2026-03-01T09:00:00Z"}'))
    r = simulate(js, [crm("v1", 1, segment="vip")], Approve())  # the run begins as the first line comes: nobody is known yet
    assert [(c.run_id, c.evaluated) for c in r.campaigns] == [("2026-03-01T09:00Z", 0)]
    assert "campaign runs" not in format_text(r) and '"campaign_run"' not in format_json_lines(r)


def test_deploys_and_retires_change_the_campaigns(tmp_path):
    (tmp_path / "camp.yaml").write_text(camp())
    later = tmp_path / "v2.yaml"
    later.write_text(camp('{at: "2026-03-20T10:00:00Z"}').replace("version: 1", "version: 2"))
    f = tmp_path / "e.jsonl"
    f.write_text(
        '{"family": "crm", "type": "profile_updated", "event_id": "p", "customer_id": "c", "occurred_at": "2026-03-01T00:00:00Z", '
        '"segment": "vip"}\n'
        '{"deploy": "v2.yaml", "at": "2026-03-05T00:00:00Z"}\n'
    )
    journeys, items, _ = load_scenario([tmp_path], f)
    r = simulate(journeys, items, Approve())
    # v2 moves the run: v1's run on the 10th does not happen, v2's on the 20th does
    assert [(c.run_id, c.version, c.entered) for c in r.campaigns] == [("2026-03-20T10:00Z", 2, 1)]
    f.write_text(f.read_text() + '{"retire": "camp", "version": 2, "at": "2026-03-15T00:00:00Z"}\n')
    journeys, items, _ = load_scenario([tmp_path], f)
    r = simulate(journeys, items, Approve())
    # v2 retires on the 15th: v1 is live again, but its run (the 10th) has passed, and v2's (the 20th) no longer comes
    assert r.campaigns == []


@pytest.mark.parametrize(
    ("schedule", "start", "end", "expected"),
    [
        ({"at": "2026-12-01T10:00:00Z"}, "2026-11-01T00:00", "2027-01-01T00:00", ["2026-12-01T10:00Z"]),
        ({"at": "2026-12-01T10:00:00Z"}, "2026-12-02T00:00", "2027-01-01T00:00", []),
        (
            {"every": "month", "day": 31 - 3, "at": "10:00"},
            "2027-01-01T00:00",
            "2027-04-01T00:00",
            ["2027-01-28T10:00Z", "2027-02-28T10:00Z", "2027-03-28T10:00Z"],
        ),
        ({"every": "week", "on": "mon", "at": "08:00"}, "2026-11-30T09:00", "2026-12-15T00:00", ["2026-12-07T08:00Z", "2026-12-14T08:00Z"]),
        (
            {"every": "hour", "at": "00:30"},
            "2026-12-01T00:00",
            "2026-12-01T03:00",
            ["2026-12-01T00:30Z", "2026-12-01T01:30Z", "2026-12-01T02:30Z"],
        ),
        # a local run is under way for 26 hours: at 21:00Z the 1st's still reaches the far west, the 2nd's the far east
        (
            {"every": "day", "at": "10:00", "local": True},
            "2026-12-01T21:00",
            "2026-12-01T21:30",
            ["2026-12-01T10:00L", "2026-12-02T10:00L"],
        ),
    ],
)
def test_runs_between_lists_the_runs_that_reach_someone_in_a_period(schedule, start, end, expected):
    from orchestrator.designer.simulate import runs_between
    from orchestrator.journey.model import Schedule

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    assert [r.run_id for r in runs_between(Schedule.model_validate(schedule), at(start), at(end))] == expected

"""`orchestrator campaign preview` and `orchestrator campaign load-list` (no Kafka: parsing, events, dry run)."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.designer import campaign
from orchestrator.designer.campaign import (
    ListEntry,
    ListFileError,
    Preview,
    describe_schedule,
    list_event_id,
    list_events,
    preview,
    read_customer_ids,
)
from orchestrator.events import parse_inbound
from orchestrator.journey.model import Schedule

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
EVENTS = ROOT / "tests" / "fixtures" / "events"
AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def cli(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    campaign.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["campaign", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out, err)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- preview


def test_preview_of_a_once_only_campaign_deployed_before_its_run():
    p = preview("feature_announcement", JOURNEYS, EVENTS / "feature_announcement.jsonl", at=datetime(2026, 6, 15, tzinfo=UTC))
    assert (p.journey, p.version, p.file, p.schedule) == (
        "feature_announcement",
        1,
        str(JOURNEYS / "feature_announcement.yaml"),
        "once at 2026-06-16T10:00:00Z",
    )
    assert p.customers == 6 and p.policy == str(JOURNEYS / "pressure.yaml")
    assert (p.deployed_at, p.deployed_at_source) == (datetime(2026, 6, 15, tzinfo=UTC), "--at")
    run = p.next_run
    assert run is not None and [r.run_id for r in p.runs] == [run.run_id] == ["2026-06-16T10:00Z"]
    assert (run.begins, run.passed_at_deploy) == (datetime(2026, 6, 16, 10, tzinfo=UTC), False)
    assert (run.evaluated, run.in_audience, run.entered, run.not_entered, run.kept_out) == (6, 4, 4, 0, {})
    assert (run.decisions, run.sent) == (4, 2)
    assert run.results == {"approved": {"fits": 2}, "suppressed": {"unsubscribed": 1}, "capped": {"reserve": 1}}
    assert [(s.step_id, s.template, s.results) for s in run.steps] == [
        ("announce", "export_announcement", {"approved": 2, "suppressed": 1, "capped": 1})
    ]
    assert (run.per_second, run.largest_burst, run.throttle_seconds) == (100, 4, 0.04)
    # the fixture goes on after the deploy (a click on the announcement, a use of export): those happen with it live
    assert "the event file goes on after the deploy (to 2026-06-18T10:00:00Z): those events happen with the journey live" in p.notes
    assert any("throttle is not simulated" in n for n in p.notes)


def test_a_once_only_campaign_whose_time_is_inside_the_event_file_is_judged_as_deployed_at_its_end():
    # deployed at the last line (2026-06-18T10:00Z), 48 h after its instant: the run has closed, a worker never carries it out
    p = preview("feature_announcement", JOURNEYS, EVENTS / "feature_announcement.jsonl")
    assert p.next_run is None and p.runs == []
    assert (p.deployed_at, p.deployed_at_source) == (datetime(2026, 6, 18, 10, tzinfo=UTC), "last_line")
    assert p.no_run == (
        "its only run, 2026-06-16T10:00Z, came 48 h before the deploy (2026-06-18T10:00:00Z), past the 24 h a run stays open: "
        "a worker never carries it out, so deploying it now enters and sends nothing (set a later schedule.at)"
    )
    # f1's click answers an announcement that was never sent: the line is skipped, and the preview says why
    assert any(n.startswith("lines answering a send of feature_announcement before the deploy were skipped") for n in p.notes)
    code, out, _ = cli("preview", "feature_announcement", "--journeys", str(JOURNEYS), str(EVENTS / "feature_announcement.jsonl"))
    assert code == 0 and out.splitlines()[3] == f"next run: none: {p.no_run}"


def test_a_once_only_campaign_whose_time_passed_within_its_grace_runs_at_the_deploy(tmp_path):
    # its instant 10 h before the last line: still open (24 h), so a worker carries the run out at once, at the deploy,
    # over every customer the file built, on their history up to then (f6 used export at the last line: no longer in it)
    text = (JOURNEYS / "feature_announcement.yaml").read_text().replace("2026-06-16T10:00:00Z", "2026-06-18T00:00:00Z")
    (tmp_path / "late.yaml").write_text(text.replace("id: feature_announcement", "id: late"))
    p = preview(str(tmp_path / "late.yaml"), JOURNEYS, EVENTS / "feature_announcement.jsonl")
    run = p.next_run
    assert run is not None and (run.run_id, run.evaluated, run.in_audience, run.entered) == ("2026-06-18T00:00Z", 6, 3, 3)
    code, out, err = cli("preview", str(tmp_path / "late.yaml"), "--journeys", str(JOURNEYS), str(EVENTS / "feature_announcement.jsonl"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[1] == "  deployed at 2026-06-18T10:00:00Z (the event file's last line)"
    assert lines[3:6] == [
        "next run 2026-06-18T00:00Z (v1, begins 2026-06-18T10:00:00Z)",
        (
            "  its time passed 10 h before the deploy, but a run stays open 24 h after its time: "
            "a worker carries it out at once, at the deploy (2026-06-18T10:00:00Z)"
        ),
        "  audience: 3 in the audience of 6 evaluated; 3 entered",
    ]
    code, out, _ = cli(
        "preview", str(tmp_path / "late.yaml"), "--journeys", str(JOURNEYS), "--json", str(EVENTS / "feature_announcement.jsonl")
    )
    run = Preview.model_validate_json(out).next_run
    assert run is not None and (run.at, run.begins, run.passed_at_deploy, run.grace_hours) == (
        datetime(2026, 6, 18, tzinfo=UTC),
        datetime(2026, 6, 18, 10, tzinfo=UTC),
        True,
        24,
    )
    assert (run.first_due, run.largest_burst) == (datetime(2026, 6, 18, 10, tzinfo=UTC), 3)


DAILY = """id: daily_tip
version: 1
name: Daily tip
entry:
  audience:
    when: [{field: profile.segment, eq: vip}]
    schedule: {every: day, at: "10:00"}
  reentry: {policy: never}
start: tip
steps:
  tip: {type: send, channel: email, template: daily_tip, comm_type: editorial, priority: 4, brand: shop, next: done}
  done: {type: end}
"""


def test_a_recurring_campaign_previews_the_next_run_not_runs_before_the_deploy(tmp_path):
    (tmp_path / "daily_tip.yaml").write_text(DAILY)
    events = tmp_path / "events.jsonl"
    profile = '{"family": "crm", "type": "profile_updated", "event_id": "%s-p", "customer_id": "%s", "occurred_at": "%s", "segment": "%s"}'
    events.write_text(
        "\n".join(
            [
                profile % ("d1", "d1", "2026-03-01T08:00:00Z", "vip"),
                profile % ("d2", "d2", "2026-03-01T08:00:00Z", "vip"),
                profile % ("d3", "d3", "2026-03-01T08:00:00Z", "retail"),
                (
                    '{"family": "web", "type": "page_view", "event_id": "d1-v", "customer_id": "d1", '
                    '"occurred_at": "2026-03-03T12:00:00Z", "url": "/home"}'
                ),
            ]
        )
        + "\n"
    )
    p = preview(str(tmp_path / "daily_tip.yaml"), JOURNEYS, events)
    # the days of the file built the customers; the campaign was not live then, so no earlier run kept anyone out:
    # deployed at 12:00, today's 10:00 run is still open (24 h) and a worker carries it out at once
    run = p.next_run
    assert run is not None and (run.run_id, run.evaluated, run.in_audience, run.entered, run.not_entered, run.sent) == (
        "2026-03-03T10:00Z",
        3,
        2,
        2,
        0,
        2,
    )
    assert (run.begins, run.passed_at_deploy) == (datetime(2026, 3, 3, 12, tzinfo=UTC), True)
    # the day after, reentry: never keeps them out
    after = p.runs[1]
    assert (after.run_id, after.entered, after.not_entered) == ("2026-03-04T10:00Z", 0, 2)
    assert after.kept_out == {"reentry: never, and the customer entered before": 2}

    code, out, _ = cli("preview", str(tmp_path / "daily_tip.yaml"), "--journeys", str(JOURNEYS), str(events))
    lines = out.splitlines()
    assert code == 0 and lines[3:5] == [
        "next run 2026-03-03T10:00Z (v1, begins 2026-03-03T12:00:00Z)",
        (
            "  its time passed 2 h before the deploy, but a run stays open 24 h after its time: "
            "a worker carries it out at once, at the deploy (2026-03-03T12:00:00Z)"
        ),
    ]
    assert "  audience: 2 in the audience of 3 evaluated; 2 entered" in lines
    assert f"later runs: {len(p.runs) - 1} more in the simulation, the last {p.runs[-1].run_id} (--runs lists them)" in lines
    assert "runs after the deploy:" not in lines
    code, out, _ = cli("preview", str(tmp_path / "daily_tip.yaml"), "--journeys", str(JOURNEYS), "--runs", str(events))
    lines = out.splitlines()
    listing = lines[lines.index("runs after the deploy:") + 1 :]
    assert listing[:2] == [
        "  2026-03-03T10:00Z (v1, begins 2026-03-03T12:00:00Z): 2 in the audience of 3 evaluated; 2 entered; 2 sent",
        (
            "  2026-03-04T10:00Z (v1, begins 2026-03-04T10:00:00Z): 2 in the audience of 3 evaluated; 0 entered, 2 kept out "
            "(reentry: never, and the customer entered before: 2); 0 sent"
        ),
    ]
    assert len(listing) == len(p.runs) and not any(line.startswith("later runs") for line in lines)


def test_preview_text_of_a_local_split_campaign():
    code, out, err = cli(
        "preview",
        str(JOURNEYS / "event_invitation.yaml"),
        "--journeys",
        str(JOURNEYS),
        "--at",
        "2026-09-14T00:00:00Z",
        str(EVENTS / "event_invitation.jsonl"),
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == [
        f"campaign event_invitation v1 ({JOURNEYS / 'event_invitation.yaml'}): once at 2026-09-15T09:00 local time",
        "  deployed at 2026-09-14T00:00:00Z (--at)",
        (
            f"  5 customers built by {EVENTS / 'event_invitation.jsonl'} with the other journeys of {JOURNEYS} live; "
            f"policy {JOURNEYS / 'pressure.yaml'}"
        ),
    ]
    assert lines[3:8] == [
        "next run 2026-09-15T09:00L (v1, begins 2026-09-15T00:00:00Z)",
        "  audience: 4 in the audience of 5 evaluated; 4 entered",
        "  sends: 3 sent; basket decisions: approved 3 (fits 3), capped 1 (capacity 1)",
        "    invite_plain: email evening_invitation_plain: approved 2, capped 1",
        "    invite_personal: email evening_invitation_personal: approved 1",
    ]
    assert lines[8] == (
        "  throttle: 100 customers/s; the largest burst, 1 customer due at once, takes about 0.01 s; "
        "the run reaches customers from 2026-09-15T00:00:00Z to 2026-09-15T13:00:00Z, each at their local time"
    )
    assert lines[9:] == [
        "note: the event file goes on after the deploy (to 2026-09-15T14:00:00Z): those events happen with the journey live",
        "note: the throttle is not simulated: every customer enters at their due time; throttle_seconds is what it would take",
    ]


def test_preview_of_a_recurring_campaign_takes_the_next_run_after_the_deploy():
    code, out, _ = cli("preview", "monthly_newsletter", "--journeys", str(JOURNEYS), "--json", str(EVENTS / "monthly_newsletter.jsonl"))
    assert code == 0
    p = Preview.model_validate_json(out)
    assert p.schedule == "every month on day 1 at 10:00 local time"
    assert p.last_line == p.deployed_at == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert p.next_run is not None and p.next_run.run_id == "2026-12-01T10:00L" and not p.next_run.passed_at_deploy
    # the November issue came before the deploy: not in the preview (--json has every run after it)
    assert [(r.run_id, r.in_audience, r.sent) for r in p.runs] == [
        ("2026-12-01T10:00L", 2, 2),
        ("2027-01-01T10:00L", 2, 2),
        ("2027-02-01T10:00L", 2, 2),
    ]
    assert p.next_run.first_due == datetime(2026, 12, 1, 1, tzinfo=UTC) and p.next_run.last_due == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_preview_simulates_long_enough_for_a_run_far_after_the_events(tmp_path):
    text = (JOURNEYS / "feature_announcement.yaml").read_text().replace("2026-06-16T10:00:00Z", "2026-12-24T10:00:00Z")
    text = text.replace("younger_than: 30d", "younger_than: 300d")
    (tmp_path / "xmas.yaml").write_text(text.replace("id: feature_announcement", "id: xmas"))
    p = preview(str(tmp_path / "xmas.yaml"), JOURNEYS, EVENTS / "feature_announcement.jsonl")  # events in June: + 90 days is not enough
    assert p.next_run is not None and p.next_run.run_id == "2026-12-24T10:00Z"
    assert (p.next_run.evaluated, p.next_run.in_audience) == (6, 4)  # all but f2 and f6, who used export


def test_preview_refuses_what_is_not_a_campaign():
    code, out, err = cli("preview", "abandoned_cart", "--journeys", str(JOURNEYS), str(EVENTS / "abandoned_cart.jsonl"))
    assert (code, out) == (1, "")
    assert err == (
        "orchestrator campaign preview: journey 'abandoned_cart' has no scheduled audience (entry.audience.schedule): nothing to preview\n"
    )
    code, _, err = cli("preview", "nope", "--journeys", str(JOURNEYS), str(EVENTS / "abandoned_cart.jsonl"))
    assert code == 1 and err == f"orchestrator campaign preview: nope: no such journey file, and no journey with that id in {JOURNEYS}\n"


def test_preview_reports_an_invalid_journey_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: bad\nversion: 1\nname: Bad\nentry: {audience: {schedule: {every: week, at: '10:00'}}}\nstart: x\nsteps: {x: {type: end}}\n"
    )
    code, out, err = cli("preview", str(bad), "--journeys", str(JOURNEYS), str(EVENTS / "abandoned_cart.jsonl"))
    assert (code, out) == (1, "")
    assert err.startswith(f"{bad}:4:")
    assert "every: week needs on: mon..sun" in err and "an audience needs a schedule" not in err


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ({"at": "2026-12-01T10:00:00Z"}, "once at 2026-12-01T10:00:00Z"),
        ({"at": "2026-12-01T10:00", "local": True}, "once at 2026-12-01T10:00 local time"),
        ({"every": "day", "at": "07:30"}, "every day at 07:30 UTC"),
        ({"every": "week", "on": "fri", "at": "10:00", "local": True}, "every week on fri at 10:00 local time"),
        ({"every": "hour", "at": "00:15"}, "every hour at minute 15"),
    ],
)
def test_describe_schedule(schedule, words):
    assert describe_schedule(Schedule.model_validate(schedule)) == words


# ---------------------------------------------------------------- load-list: reading the file


def ids(text: str, name: str = "list.txt") -> tuple[list[str], list[str]]:
    entries, problems = read_customer_ids(name, text)
    return [e.customer_id for e in entries], problems


def test_one_id_per_line_with_comments_blank_lines_and_repeats():
    got, problems = ids("# exported 2026-11-30\nc1\n\n  c2  \nc1\n")
    assert got == ["c1", "c2"]
    assert problems == ["list.txt:5: customer 'c1' again (first at line 2): loaded once"]


def test_a_csv_with_a_customer_id_column():
    got, problems = ids("email,Customer_ID,score\na@x,c1,0.9\nb@x,c2,0.7\nc@x,,0.1\nd@x\n", "list.csv")
    assert got == ["c1", "c2"]
    assert problems == ["list.csv:4: no customer id", "list.csv:5: no customer id"]
    assert ids("customer_id\nc1\nc2\n")[0] == ["c1", "c2"]  # a one-column CSV: the header is not an id


def test_a_csv_without_a_customer_id_column_is_refused():
    with pytest.raises(ListFileError, match=r"list.csv:1: a CSV list needs a customer_id column; the header has: id, email"):
        read_customer_ids("list.csv", "id,email\n1,a@x\n")


def test_reading_a_file_with_a_byte_order_mark(tmp_path):
    f = tmp_path / "ids.csv"
    f.write_bytes("customer_id;x\r\n".replace(";", ",").encode("utf-8-sig") + b"c1,1\r\nc2,2\r\n")
    entries, problems = read_customer_ids(f)
    assert entries == [ListEntry("c1", f"{f}:2"), ListEntry("c2", f"{f}:3")] and problems == []


# ---------------------------------------------------------------- load-list: the events


def test_one_added_to_list_event_per_customer_with_a_stable_id():
    docs, problems = list_events([ListEntry("c1", "f:1"), ListEntry("c2", "f:2")], "newsletter", AT, brand="shop")
    assert problems == []
    assert docs[0] == {
        "event_id": "list:newsletter:c1",
        "customer_id": "c1",
        "occurred_at": "2026-12-01T08:00:00Z",
        "type": "added_to_list",
        "list": "newsletter",
        "brand": "shop",
    }
    assert list_event_id("newsletter", "c2") == docs[1]["event_id"]
    # what the worker makes of it: a crm.added_to_list for that customer, folded into profile.lists
    event = parse_inbound("crm", json.dumps(docs[1]), key="c2")
    assert (event.type, event.event_id, event.data["list"]) == ("crm.added_to_list", "list:newsletter:c2", "newsletter")
    # loading again builds the same events: the engine drops them as duplicates
    assert list_events([ListEntry("c1", "f:1")], "newsletter", AT, brand="shop")[0] == docs[:1]


def test_a_customer_the_worker_would_refuse_is_reported_with_its_line():
    long_id = "c" * 125  # the id is fine, the event id list:newsletter:<id> is longer than 128
    docs, problems = list_events([ListEntry("ok", "f:1"), ListEntry(long_id, "f:2")], "newsletter", AT)
    assert [d["customer_id"] for d in docs] == ["ok"]
    [problem] = problems
    assert problem.startswith("f:2: ") and "event_id" in problem


def test_dry_run_prints_what_it_would_publish(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", "shop")
    f = tmp_path / "ids.txt"
    f.write_text("c1\nc2\nc1\n")
    code, out, err = cli("load-list", str(f), "--list", "beta_testers", "--dry-run", "--at", "2026-12-01T08:00:00Z")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["topic"], line["key"], line["value"]["event_id"]) for line in lines] == [
        ("shop.in.crm", "c1", "list:beta_testers:c1"),
        ("shop.in.crm", "c2", "list:beta_testers:c2"),
    ]
    assert lines[0]["value"]["occurred_at"] == "2026-12-01T08:00:00Z" and "brand" not in lines[0]["value"]
    assert err.splitlines() == [
        f"{f}:3: customer 'c1' again (first at line 1): loaded once",
        "dry run: would publish 2 crm.added_to_list events (list beta_testers) on shop.in.crm",
    ]


def test_nothing_is_published_when_a_customer_is_refused(tmp_path, monkeypatch):
    published: list[object] = []
    monkeypatch.setattr(campaign, "publish_events", lambda *a: published.append(a))
    f = tmp_path / "ids.txt"
    f.write_text("c1\n" + "x" * 130 + "\n")
    code, out, err = cli("load-list", str(f), "--list", "newsletter")
    assert (code, out, published) == (1, "", [])
    assert err.splitlines()[-1] == "1 customer refused: nothing published (fix the file and load it again)"


def test_publishing_goes_to_the_crm_topic_keyed_by_customer(tmp_path, monkeypatch):
    calls: list[tuple[list[dict], str]] = []

    async def fake_publish(docs, topic, settings):
        calls.append((list(docs), topic))
        return len(docs)

    monkeypatch.setattr(campaign, "publish_events", fake_publish)
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", "orch")
    f = tmp_path / "ids.csv"
    f.write_text("customer_id\nc1\nc2\n")
    code, out, err = cli("load-list", str(f), "--list", "newsletter", "--brand", "shop")
    assert (code, out) == (0, "")
    [(docs, topic)] = calls
    assert topic == "orch.in.crm" and [d["customer_id"] for d in docs] == ["c1", "c2"] and {d["brand"] for d in docs} == {"shop"}
    assert err == "published 2 crm.added_to_list events (list newsletter) on orch.in.crm\n"


def test_a_missing_list_file(tmp_path):
    code, _, err = cli("load-list", str(tmp_path / "nope.txt"), "--list", "x", "--dry-run")
    assert code == 1 and err == f"{tmp_path / 'nope.txt'}: No such file or directory\n"

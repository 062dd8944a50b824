"""update_profile and emit steps, the social event family and the webcare example: pure engine, no servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.actions import Emit, Trace
from orchestrator.designer.render import render_mermaid
from orchestrator.designer.simulate import RECORD_ADAPTER, format_json_lines, format_text, simulate_files
from orchestrator.dev.drive import drive
from orchestrator.events import CustomerEvent, InvalidEvent, parse_inbound
from orchestrator.journey.effects import MAX_RECORD_FIELDS, MAX_VALUE_CHARS
from orchestrator.journey.loader import load_text, parse_text
from orchestrator.metrics import Metrics
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import load_policy
from orchestrator.processor import CustomerWork, Result, process_batch
from orchestrator.records import EmitRecord
from orchestrator.runtime.out_topics import journey_out_topics
from orchestrator.runtime.outputs import BatchOutput, result_records
from orchestrator.runtime.pipeline import worker_topics
from orchestrator.settings import Settings
from orchestrator.state import CustomerState

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

MARK = """
id: a_mark
version: 1
name: mark and route
entry: {event: web.page_view}
start: mark
steps:
  mark:
    type: update_profile
    set:
      attributes.case: open
      attributes.seen_url: {from: data.url}
      attributes.campaign: {from: data.attributes.campaign, default: none}
      attributes.missing: {from: data.attributes.nope}
    clear: [attributes.old]
    add_tags: [vip, webcare]
    remove_tags: [stale]
    next: route
  route:
    type: branch
    cases:
      - {name: open_case, when: [{field: profile.attributes.case, eq: open}, {field: profile.tags, contains: vip}], next: opened}
    default: not_opened
  opened: {type: end, outcome: saw_the_change}
  not_opened: {type: end, outcome: missed_the_change}
"""

GATE = """
id: b_gate
version: 1
name: only with an open case
entry:
  event: [web.page_view, web.purchase]
  profile: [{field: profile.attributes.case, eq: open}]
  reentry: {policy: always}
start: done
steps:
  done: {type: end}
"""

HOLD_BACK = """
id: c_offer
version: 1
name: no offers during a case
entry:
  event: web.purchase
  profile: [{field: profile.attributes.case, ne: open}]
start: done
steps:
  done: {type: end}
"""

EMIT = """
id: handoff
version: 1
name: emit
entry: {event: web.page_view}
start: out
steps:
  out:
    type: emit
    topic: webcare
    record:
      priority: high
      url: {from: data.url}
      note: {from: data.attributes.note}
      absent: {from: data.attributes.nope}
      fallback: {from: data.attributes.nope, default: n/a}
      when: {from: event.occurred_at}
      segment: {from: profile.segment}
    next: wait
  wait:
    type: wait
    for: {event: web.page_view}
    timeout: 1d
    on_event: out
"""


def ev(eid: str, etype: str = "web.page_view", cid: str = "c1", at: datetime = T0, **data) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id=cid, type=etype, occurred_at=at, data=data)


def traces(actions, what):
    return [a for a in actions if isinstance(a, Trace) and a.what == what]


def emits(actions) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit)]


def state_with(**profile) -> CustomerState:
    s = CustomerState.new("c1")
    return s.model_copy(update={"profile": s.profile.model_copy(update=profile)})


# ---------------------------------------------------------------- update_profile


def test_update_profile_is_seen_by_a_later_branch_and_traced():
    js = load_text(MARK)
    state, actions = drive(
        state_with(attributes={"old": 1}, tags=["stale", "zz"]), ev("e1", url="/p", attributes={"campaign": "x"}), js, T0
    )
    assert state.profile.attributes == {"case": "open", "seen_url": "/p", "campaign": "x"}
    assert state.profile.tags == ["vip", "webcare", "zz"]  # sorted, stale removed
    (tr,) = traces(actions, "profile_updated")
    assert (tr.step_id, tr.edge) == ("mark", "route")
    assert tr.detail == {
        "set": {"case": "open", "seen_url": "/p", "campaign": "x"},
        "cleared": ["old"],
        "tags_added": ["vip", "webcare"],
        "tags_removed": ["stale"],
        "unchanged": ["missing"],  # {from: ...} without a default, and the field was missing: left alone
    }
    assert [t.detail["outcome"] for t in traces(actions, "exited") if t.journey_id == "a_mark"] == ["saw_the_change"]
    # the default applies when the field is missing
    state2, _ = drive(CustomerState.new("c2"), ev("e1", cid="c2", url="/q"), js, T0)
    assert state2.profile.attributes["campaign"] == "none" and "missing" not in state2.profile.attributes


def test_update_profile_is_seen_by_another_journeys_entry_condition():
    js = load_text(MARK, GATE, HOLD_BACK)
    # same event: a_mark (checked first: journeys go in id order) opens the case, b_gate's entry condition sees it
    state, actions = drive(CustomerState.new("c1"), ev("e1", url="/p"), js, T0)
    assert [t.journey_id for t in traces(actions, "entered")] == ["a_mark", "b_gate"]
    # a later event: c_offer holds back during the open case, b_gate lets the customer in
    state, actions = drive(state, ev("e2", "web.purchase", order_id="o1", value=5.0), js, T0 + timedelta(minutes=1))
    assert [t.journey_id for t in traces(actions, "entered")] == ["b_gate"]
    assert [t.journey_id for t in traces(actions, "not_entered")] == ["c_offer"]
    # without the case, the other way round
    _, actions = drive(CustomerState.new("c9"), ev("e2", "web.purchase", cid="c9", order_id="o1", value=5.0), js, T0)
    assert [t.journey_id for t in traces(actions, "entered")] == ["c_offer"]


def test_update_profile_replays_to_the_same_state():
    js = load_text(MARK)
    before = CustomerState.new("c1")
    once, a1 = drive(before, ev("e1", url="/p"), js, T0)
    again, a2 = drive(before, ev("e1", url="/p"), js, T0)
    assert once.model_dump() == again.model_dump() and [a.model_dump() for a in a1] == [a.model_dump() for a in a2]
    dup, a3 = drive(once, ev("e1", url="/p"), js, T0)  # a redelivery after the state was written: nothing again
    assert [a.what for a in a3 if isinstance(a, Trace)] == ["duplicate"] and dup.profile == once.profile


# ---------------------------------------------------------------- emit


def test_emit_record_id_is_deterministic_and_the_same_on_replay():
    js = load_text(EMIT)
    before = CustomerState.new("c1")
    s1, a1 = drive(before, ev("e1", url="/p", attributes={"note": "hi"}), js, T0)
    _, a2 = drive(before, ev("e1", url="/p", attributes={"note": "hi"}), js, T0 + timedelta(seconds=5))  # a replay
    (e1,), (e2,) = emits(a1), emits(a2)
    assert e1.record_id == e2.record_id == "c1:handoff:v1:e1:out"
    assert e1.record == e2.record
    # the loop back to the emit step: a new visit, a new id; a redelivered event: nothing
    s2, a3 = drive(s1, ev("e2", url="/again"), js, T0 + timedelta(minutes=1))
    assert [e.record_id for e in emits(a3)] == ["c1:handoff:v1:e1:out#2"]
    _, a4 = drive(s2, ev("e2", url="/again"), js, T0 + timedelta(minutes=2))
    assert emits(a4) == []
    # an emit never goes to the basket
    assert not [a for a in a1 if a.kind == "send"]


def test_a_replayed_batch_emits_the_same_records():
    js = load_text(EMIT)
    basket = MemoryBasket(load_policy(ROOT / "journeys" / "pressure.yaml"))

    async def run() -> list[Emit]:
        work = [CustomerWork(state=CustomerState.new("c1"), messages=[ev("e1", url="/p"), ev("e2", url="/q")])]
        (outcome,) = await process_batch(work, js, T0, basket)
        return [e for r in outcome.results if isinstance(r, Result) for e in r.emits]

    import asyncio

    first, second = asyncio.run(run()), asyncio.run(run())
    assert [e.record_id for e in first] == [e.record_id for e in second] == ["c1:handoff:v1:e1:out", "c1:handoff:v1:e1:out#2"]


def test_emit_record_shape_and_size_bound():
    js = load_text(EMIT)
    long = "x" * (MAX_VALUE_CHARS + 100)
    _, actions = drive(state_with(segment="gold"), ev("e1", url=long, attributes={"note": {"nested": 1}}), js, T0)
    (e,) = emits(actions)
    assert e.record == {
        "priority": "high",
        "url": "x" * MAX_VALUE_CHARS,  # cut to the bound
        "note": None,  # not a single value: as if missing
        "absent": None,
        "fallback": "n/a",
        "when": T0.isoformat(),
        "segment": "gold",
    }
    assert e.truncated == ["url"]
    record = json.loads(EmitRecord.of(e).model_dump_json())
    assert set(record) == {
        "record_id",
        "topic",
        "customer_id",
        "journey_id",
        "journey_version",
        "instance_id",
        "step_id",
        "event_id",
        "record",
        "truncated",
        "emitted_at",
    }
    assert (record["topic"], record["event_id"], record["step_id"]) == ("webcare", "e1", "out")
    schema = json.loads((ROOT / "schemas" / "outbound" / "emit.json").read_text())
    assert set(schema["required"]) == set(record)
    # the bound: at most MAX_RECORD_FIELDS fields, each string at most MAX_VALUE_CHARS
    fields = "".join(f"\n      f{i}: {{from: data.url}}" for i in range(MAX_RECORD_FIELDS))
    head = "id: wide\nversion: 1\nname: w\nentry: {event: web.page_view}\nstart: out\n"
    wide = f"{head}steps:\n  out:\n    type: emit\n    topic: w\n    record:{fields}\n"
    _, actions = drive(CustomerState.new("c1"), ev("e1", url="y" * 100_000), load_text(wide), T0)
    (big,) = emits(actions)
    assert len(big.record) <= MAX_RECORD_FIELDS and all(len(v) <= MAX_VALUE_CHARS for v in big.record.values() if isinstance(v, str))
    assert len(EmitRecord.of(big).model_dump_json()) < MAX_RECORD_FIELDS * (MAX_VALUE_CHARS + 80) + 1000


def test_the_worker_publishes_emits_on_their_out_topic(tmp_path):
    js = load_text(EMIT)
    policy = ROOT / "journeys" / "pressure.yaml"
    settings = Settings(journeys_dir=tmp_path, policy_file=policy, topic_prefix="t")
    assert journey_out_topics(js, settings) == {"t.out.webcare"}
    topics, metrics = worker_topics(settings), Metrics()
    _, actions = drive(CustomerState.new("c1"), ev("e1", url="/p"), js, T0)
    out = BatchOutput()
    result = Result(state=CustomerState.new("c1"), emits=emits(actions), traces=traces(actions, "emitted"))
    result_records(out, result, T0, topics, metrics, lambda journey, run: run)
    assert [r.topic for r in out.records] == ["t.journey-log", "t.out.webcare"] and out.emit_topics == {"t.out.webcare"}
    emitted = out.records[1]
    assert emitted.key == b"c1" and json.loads(emitted.value)["record_id"] == "c1:handoff:v1:e1:out"
    # a batch without emits: no topic to make sure of
    out = BatchOutput()
    result_records(out, Result(state=CustomerState.new("c1"), traces=traces(actions, "step")), T0, topics, metrics, lambda j, r: r)
    assert out.emit_topics == set()


# ---------------------------------------------------------------- validate, render


BAD = """id: bad
version: 1
name: bad
entry: {event: social.mention}
start: a
steps:
  a:
    type: update_profile
    set:
      segment: gold
      attributes.x: {form: data.platform}
      attributes.y: [1, 2]
    next: b
  b:
    type: emit
    topic: Web Care
    record:
      link: {from: data.link}
    next: c
  c:
    type: update_profile
    set: {attributes.z: 1}
    clear: [attributes.z]
    next: d
  d: {type: update_profile}
"""


def test_validate_locates_every_problem():
    journey, problems = parse_text(BAD, "bad.yaml")
    assert journey is None
    assert problems == [
        (
            "bad.yaml:10:7: steps.a.set.segment: 'segment' is not a profile attribute: write attributes.NAME (NAME: letters, digits "
            "and _, starting with a letter); tags go in add_tags / remove_tags"
        ),
        "bad.yaml:11:7: missing required key 'from' in steps.a.set.attributes.x",
        "bad.yaml:11:22: steps.a.set.attributes.x.form: unknown key 'form' (did you mean 'from'?)",
        "bad.yaml:12:7: steps.a.set.attributes.y: a value is a string, number, boolean, null or {from: FIELD}, not a list",
        (
            "bad.yaml:16:5: steps.b.topic: 'Web Care' is not a topic name: lowercase letters, digits, _ and -, at most 48, "
            "starting with a letter"
        ),
        "bad.yaml:20:3: steps.c: attributes.z is both set and cleared: keep one",
        "bad.yaml:25:3: steps.d: update_profile changes nothing: give set, clear, add_tags or remove_tags",
    ]


def test_validate_checks_the_fields_a_step_reads():
    text = """id: fields
version: 1
name: fields
entry: {event: social.mention}
start: a
steps:
  a:
    type: update_profile
    set: {attributes.p: {from: data.platfrom}}
    next: b
  b:
    type: emit
    topic: webcare
    record:
      link: {from: data.linkk}
      ok: {from: data.attributes.anything}
"""
    journey, problems = parse_text(text, "f.yaml")
    assert journey is None
    assert problems == [
        (
            "f.yaml:9:26: unknown field 'data.platfrom': the event that reaches step 'a' "
            "(social.mention) has no 'platfrom' (did you mean 'data.platform'?)"
        ),
        (
            "f.yaml:15:14: unknown field 'data.linkk': the event that reaches step 'b' "
            "(social.mention) has no 'linkk' (did you mean 'data.link'?)"
        ),
    ]


def test_render_draws_both_steps():
    js = load_text(MARK, EMIT)
    mark = render_mermaid(js.live["a_mark"].journey)
    assert 's_mark[("mark<br/>update profile<br/>set attributes.case = #quot;open#quot;' in mark
    assert "tags +vip +webcare -stale" in mark and 's_mark -->|"next"| s_route' in mark
    out = render_mermaid(js.live["handoff"].journey)
    assert 's_out[["out<br/>emit to out.webcare<br/>priority: #quot;high#quot;<br/>url: data.url' in out
    assert "+1 more" in out


# ---------------------------------------------------------------- the social family


def mention(**fields) -> dict:
    doc = {
        "event_id": "m-1",
        "customer_id": "c1",
        "occurred_at": "2026-03-02T10:00:00Z",
        "type": "mention",
        "mention_id": "m1",
        "platform": "x",
        "platform_kind": "public",
        "handle": "@c1",
        "link": "https://x.com/c1/status/1",
        "excerpt": "late again",
        "sentiment": "negative",
        "sentiment_score": -0.7,
        "is_complaint": True,
    }
    return {**doc, **fields}


def test_social_mention_and_reply_parse():
    got = parse_inbound("social", json.dumps(mention()).encode(), key=b"c1")
    assert got.type == "social.mention"
    assert got.data["platform_kind"] == "public" and got.data["is_complaint"] is True and got.data["is_question"] is False
    reply = {k: v for k, v in mention(type="reply", reply_id="r1").items() if k not in ("is_complaint",)}
    assert parse_inbound("social", reply).type == "social.reply"
    assert "in.social" in " ".join(Settings().inbound_topics())


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"excerpt": "x" * 281}, "invalid social event 'mention': excerpt: must have at most 280 characters (got 281)"),
        ({"link": "javascript:alert(1)"}, "invalid social event 'mention': link: must be an http(s) URL, got \"javascript:alert(1)\""),
        (
            {"platform_kind": "private"},
            "invalid social event 'mention': platform_kind: expected own, public or customer_owned, got \"private\"",
        ),
        ({"sentiment_score": -2}, "invalid social event 'mention': sentiment_score: must be at least -1, got -2"),
        (
            {"text": "the whole post"},
            "invalid social event 'mention': unknown field text (leave it out, or send free-form values in attributes)",
        ),
        ({"handle": ""}, "invalid social event 'mention': handle: must not be empty"),
        ({"type": "mentoin"}, "invalid social event: unknown type 'mentoin'; known types: mention, reply (did you mean 'mention'?)"),
    ],
)
def test_social_events_are_refused_with_a_precise_reason(change, reason):
    with pytest.raises(InvalidEvent) as err:
        parse_inbound("social", json.dumps(mention(**change)))
    assert (err.value.code, err.value.reason) == ("schema", reason)


# ---------------------------------------------------------------- the webcare example, end to end


def test_webcare_example_via_simulate_both_paths(tmp_path):
    events = tmp_path / "mentions.jsonl"
    lines = [
        {"family": "social", **mention(event_id="a-1", customer_id="a", sentiment="negative", is_complaint=True)},
        {"family": "social", **mention(event_id="a-1", customer_id="a")},  # redelivered
        {"family": "social", **mention(event_id="b-1", customer_id="b", platform="other", platform_kind="customer_owned")},
        {
            "family": "social",
            **{k: v for k, v in mention(event_id="a-2", customer_id="a", type="reply", reply_id="r1").items() if k != "is_complaint"},
            "occurred_at": "2026-03-03T10:00:00Z",
        },
    ]
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    r = simulate_files(ROOT / "journeys", events)
    assert r.errors == []
    a = [rec for rec in r.for_customer("a") if rec.kind == "emit"]
    assert [
        (rec.step_id, rec.data["record"]["priority"] if "priority" in rec.data["record"] else rec.data["record"]["kind"]) for rec in a
    ] == [
        ("handoff_high", "high"),
        ("follow_up", "update"),
    ]
    assert a[0].data["record_id"] == "a:webcare_handoff:v1:a-1:handoff_high"
    assert a[0].data["topic"] == "webcare" and a[0].data["record"]["link"] == "https://x.com/c1/status/1"
    assert r.states["a"].profile.tags == [] and r.states["a"].profile.attributes["webcare_case"] == "closed"
    # the customer-owned platform: no emit, no send, the reason on the journey log
    assert [rec for rec in r.for_customer("b") if rec.kind in ("emit", "send")] == []
    (ended,) = [t for t in r.traces if t.customer_id == "b" and t.what == "exited"]
    assert (ended.step_id, ended.detail["outcome"]) == ("not_ours", "customer_owned_platform")
    # text and JSON output show them; every JSON line fits schemas/simulate-record.json
    text = format_text(r)
    assert "handoff_high: emit out.webcare {" in text and 'open_case: profile updated: set webcare_case="open"' in text
    for line in format_json_lines(r).splitlines():
        RECORD_ADAPTER.validate_json(line)
    kinds = [json.loads(line)["kind"] for line in format_json_lines(r, ["a"]).splitlines()]
    assert kinds.count("emit") == 2

"""`orchestrator explain CUSTOMER`: the story from handcrafted journey-log and decision records; the partition."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.designer import explain as ex
from orchestrator.designer.explain import Story, build_story, format_story, partition_for

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
CART = "abandoned_cart@c1-e1"
SEND1 = "c1:abandoned_cart:v1:c1-e1:send_first"
SEND2 = "c1:abandoned_cart:v1:c1-e1:send_reminder"


def log(
    what: str, at: datetime = T0, step: str | None = None, edge: str | None = None, journey: str = "abandoned_cart", **detail: Any
) -> dict:
    return {
        "customer_id": detail.pop("customer", "c1"),
        "journey_id": journey,
        "journey_version": 1,
        "instance_id": detail.pop("instance", CART if journey == "abandoned_cart" else f"{journey}@x"),
        "step_id": step,
        "what": what,
        "edge": edge,
        "detail": detail,
        "at": at.isoformat(),
    }


def decision(send_id: str, result: str, at: datetime = T0, step: str = "send_first", **kw: Any) -> dict:
    doc = {
        "send_id": send_id,
        "customer_id": "c1",
        "journey_id": "abandoned_cart",
        "journey_version": 1,
        "step_id": step,
        "channel": "email",
        "comm_type": "commercial",
        "priority": 5,
        "outcome": "approved" if result == "approved" else "capped",
        "result": result,
        "reason": "fits: 0 spent + 10 = 10 of 20",
        "cost": 10.0,
        "balance": 10.0,
        "capacity": 25.0,
        "period": "2026-03",
        "retry_at": None,
        "decided_at": at.isoformat(),
    }
    doc.update(kw)
    return doc


def story_records() -> tuple[list[dict], list[dict]]:
    records = [
        log("entered", T0, None, "send_first", event_id="c1-e1", event_type="web.cart_abandoned"),
        log("step", T0, "send_first", type="send"),
        log(
            "send",
            T0,
            "send_first",
            "wait_open",
            result="approved",
            send_id=SEND1,
            channel="email",
            template="cart_reminder",
            reason="fits",
        ),
        log("step", T0, "wait_open", type="wait"),
        log("waiting", T0, "wait_open", until="2026-03-03T10:00:00Z", awaiting=[f"ccm.opened[{SEND1}]"]),
        log("timeout", T1, "wait_open", "send_reminder", timer_id="t1"),
        log("step", T1, "send_reminder", type="send"),
        log("delayed", T1, "send_reminder", reason="send deferred", send_id=SEND2, until="2026-04-01T00:00:00Z"),
        log("goal", T1 + timedelta(hours=2), "send_reminder", outcome="goal", goal="purchased", event_id="c1-p1"),
        log(
            "not_entered",
            T1 + timedelta(hours=3),
            journey="churn_apology",
            instance="",
            reason="entry.when: entry.when[0] {field: data.score, gte: 0.7} is false (data.score = 0.3)",
            event_id="c1-s",
            event_type="crm.churn_risk_scored",
        ),
        # another customer on the same partition: not in c1's story
        log(
            "entered",
            T0,
            None,
            "send_first",
            customer="c2",
            instance="abandoned_cart@c2-e1",
            event_id="c2-e1",
            event_type="web.cart_abandoned",
        ),
    ]
    decisions = [
        decision(SEND1, "approved", code="fits"),
        decision(SEND1, "approved", code="fits"),  # redelivered: once
        decision(
            SEND2,
            "deferred",
            T1,
            "send_reminder",
            reason="capacity 25 exceeded: 20 spent + 10; retry at 2026-04-01T00:00:00Z",
            code="capacity",
            balance=20.0,
            retry_at="2026-04-01T00:00:00Z",
        ),
        decision(
            SEND2,
            "cancelled",
            T1 + timedelta(hours=2),
            "send_reminder",
            reason="journey ended: goal",
            balance=20.0,
            retry_at="2026-04-01T00:00:00Z",
        ),  # no code: a record from before decisions had one
        {**decision("c2:x", "approved"), "customer_id": "c2"},
        {"not": "a decision"},
    ]
    return records, decisions


def test_the_story_in_time_order() -> None:
    records, decisions = story_records()
    story = build_story("c1", records, decisions)
    assert [line.what for line in story.lines] == ["entered", "send", "waiting", "timeout", "delayed", "goal", "decision", "not_entered"]
    assert (story.log_records, story.decisions) == (10, 3)
    text = format_story(story).splitlines()
    assert text == [
        "customer c1: 10 journey-log records, 3 decisions; 3 step records not shown (--steps)",
        "2026-03-02T10:00:00Z  abandoned_cart v1  entered on web.cart_abandoned (event c1-e1), starts at send_first",
        (
            "2026-03-02T10:00:00Z  abandoned_cart v1  send_first: sent email cart_reminder: approved (fits) "
            "[code fits; basket 10/25 in 2026-03, cost 10] -> wait_open"
        ),
        f"2026-03-02T10:00:00Z  abandoned_cart v1  wait_open: waiting for ccm.opened of send {SEND1} until 2026-03-03T10:00:00Z",
        f"2026-03-03T10:00:00Z  abandoned_cart v1  wait_open: timed out waiting for ccm.opened of send {SEND1} -> send_reminder",
        (
            "2026-03-03T10:00:00Z  abandoned_cart v1  send_reminder: send deferred until 2026-04-01T00:00:00Z: "
            "capacity 25 exceeded: 20 spent + 10; retry at 2026-04-01T00:00:00Z "
            "[code capacity; basket 20/25 in 2026-03, cost 10; fits again at 2026-04-01T00:00:00Z]"
        ),
        "2026-03-03T12:00:00Z  abandoned_cart v1  GOAL purchased reached (event c1-p1) at send_reminder: converted, the journey ends",
        (
            "2026-03-03T12:00:00Z  abandoned_cart v1  send_reminder: email send cancelled: journey ended: goal "
            "[basket 20/25 in 2026-03, cost 10]"
        ),
        (
            "2026-03-03T13:00:00Z  churn_apology v1  did not enter churn_apology: entry.when: entry.when[0] "
            "{field: data.score, gte: 0.7} is false (data.score = 0.3) (on crm.churn_risk_scored, event c1-s)"
        ),
    ]


def test_steps_journey_and_since_filters() -> None:
    records, decisions = story_records()
    with_steps = build_story("c1", records, decisions, steps=True)
    assert [line.text for line in with_steps.lines if line.what == "step"] == [
        "at step send_first (send)",
        "at step wait_open (wait)",
        "at step send_reminder (send)",
    ]
    only_churn = build_story("c1", records, decisions, journey="churn_apology")
    assert [line.what for line in only_churn.lines] == ["not_entered"] and only_churn.decisions == 0
    later = build_story("c1", records, decisions, since=T1)
    assert [line.what for line in later.lines] == ["timeout", "delayed", "goal", "decision", "not_entered"]
    assert (
        format_story(later).splitlines()[0]
        == "customer c1: 5 journey-log records, 2 decisions; 1 step record not shown (--steps); since 2026-03-03T10:00:00Z"
    )
    # a timeout whose wait began before --since: what it waited for is not in the story
    assert later.lines[0].text == "wait_open: timed out -> send_reminder"


def test_sends_not_sent_fallback_and_exits() -> None:
    records = [
        log("entered", T0, None, "offer", journey="store_offer", event_id="g1", event_type="geo.store_entered"),
        log(
            "send",
            T0,
            "offer",
            "offer",
            journey="store_offer",
            result="fallback",
            send_id="s1",
            channel="push",
            fallback_to="in_app",
            reason="capacity",
        ),
        log(
            "send",
            T0,
            "offer",
            "wait_click",
            journey="store_offer",
            result="capped",
            send_id="s1:in_app",
            channel="in_app",
            reason="capacity",
        ),
        log("branch", T0, "check", "big", journey="store_offer", case="big_cart"),
        log("split", T0, "ab", "left", journey="store_offer", variant="left", sticky=True),
        log("delayed", T0, "pause", journey="store_offer", reason="delay", until="2026-03-05T00:00:00Z"),
        log("resumed", T1, "pause", "next", journey="store_offer", timer_id="t"),
        log("matched", T1, "wait_click", "clicked", journey="store_offer", event_id="k1", event_type="ccm.clicked"),
        log("exited", T1, "wait_click", journey="store_offer", outcome="exit:unsubscribed", exit="unsubscribed", event_id="u1"),
        log("exited", T1, "done", journey="store_offer", outcome="aborted", reason="more than 100 steps without a wait"),
        {**log("duplicate", T1, event_id="e9", type="web.purchase"), "journey_id": "", "journey_version": 0, "instance_id": ""},
    ]
    story = build_story("c1", records, [])
    texts = [line.text for line in story.lines]
    assert texts == [
        "entered on geo.store_entered (event g1), starts at offer",
        "offer: push not sent (capacity), falling back to in_app [no decision record found]",
        "offer: in_app not sent, capped: capacity [no decision record found] -> wait_click",
        "check: branch case big_cart -> big",
        "ab: split, variant left (sticky: as before) -> left",
        "pause: waiting until 2026-03-05T00:00:00Z (delay)",
        "pause: resumed (delay over) -> next",
        "wait_click: got ccm.clicked (event k1) -> clicked",
        "left by exit rule unsubscribed (event u1) at wait_click",
        "ended at done: aborted (more than 100 steps without a wait)",
        "event e9 (web.purchase) ignored: already processed (duplicate)",
    ]
    assert format_story(story).splitlines()[-1] == "2026-03-03T10:00:00Z  -  event e9 (web.purchase) ignored: already processed (duplicate)"


def test_empty_story_and_json() -> None:
    story = build_story("nobody", *story_records(), partitions={"orch.journey-log": 3, "orch.decisions": 3})
    assert format_story(story).splitlines() == [
        "customer nobody: 0 journey-log records, 0 decisions (read partition 3 of orch.journey-log, partition 3 of orch.decisions)",
        "nothing happened to this customer in the journeys (no journey-log records)",
    ]
    full = build_story("c1", *story_records())
    doc = json.loads(full.model_dump_json())
    assert Story.model_validate(doc) == full
    send = doc["lines"][1]
    assert send["decision"]["code"] == "fits" and send["decision"]["balance"] == 10.0 and send["detail"]["send_id"] == SEND1
    assert doc["lines"][6]["decision"]["code"] is None  # the old record without a code


@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    [  # org.apache.kafka.common.utils.UtilsTest#testMurmur2: the Java client's hash of these keys
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
@pytest.mark.parametrize("partitions", [1, 2, 8, 12])
def test_partition_is_the_java_default_partitioners(key: str, java_murmur2: int, partitions: int) -> None:
    # Java: Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions
    assert partition_for(key, partitions) == (java_murmur2 & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------- dead letters and each event at its own time


def envelope(event_id: str, occurred_at: datetime, type_: str = "web.cart_abandoned", customer: str = "c1") -> bytes:
    """A customer-events record as the worker republishes it (the canonical envelope)."""
    doc = {"kind": "event", "event_id": event_id, "customer_id": customer, "type": type_, "occurred_at": occurred_at.isoformat()}
    return json.dumps({**doc, "data": {}}).encode()


def dlq_headers(code: str, reason: str, at: datetime, customer: str = "", offset: int = 7) -> list[tuple[str, bytes]]:
    """The headers outputs.dead_letter_record writes on a dead-letter record."""
    fields = {
        "dlq.reason": reason,
        "dlq.code": code,
        "dlq.exception": "InvalidEvent",
        "dlq.family": "web",
        "dlq.customer": customer,
        "dlq.source.topic": "orch.in.web",
        "dlq.source.partition": "0",
        "dlq.source.offset": str(offset),
        "dlq.at": at.isoformat(),
    }
    return [(k, v.encode()) for k, v in fields.items()]


BAD_CART = json.dumps(
    {"event_id": "c1-bad", "customer_id": "c1", "occurred_at": "2026-03-02T09:30:00+00:00", "type": "cart_abandoned", "cart_value": "x"}
).encode()
REASON = "invalid web event 'cart_abandoned': cart_value: expected a number, got \"x\""


def test_dead_letter_view_reads_the_workers_headers_and_the_original_bytes() -> None:
    handled = T0 + timedelta(minutes=40)
    d = ex.dead_letter_view(b"c1", BAD_CART, dlq_headers("schema", REASON, handled), 1_772_444_400_000)
    assert d is not None
    assert (d.key, d.customer_id, d.code, d.reason, d.family, d.source_offset) == ("c1", None, "schema", REASON, "web", 7)
    assert (d.event_id, d.event_type, d.occurred_at, d.dead_lettered_at) == (
        "c1-bad",
        "cart_abandoned",
        T0 - timedelta(minutes=30),
        handled,
    )
    assert d.at == T0 - timedelta(minutes=30) and d.belongs_to("c1") and not d.belongs_to("c2")
    # not JSON, cut short: no event fields, so its time is when it was dead-lettered
    cut = ex.dead_letter_view(b"c1", BAD_CART[:20], [*dlq_headers("not_json", "not JSON", handled), ("dlq.truncated", b"99")])
    assert cut is not None and (cut.event_id, cut.occurred_at, cut.truncated, cut.at) == (None, None, 99, handled)
    # no dlq.at either: the record's timestamp; a naive occurred_at is not trusted
    naive = BAD_CART.replace(b"+00:00", b"")
    bare = ex.dead_letter_view(None, naive, [("dlq.code", b"processing_failed"), ("dlq.customer", b"c1")], 1_772_444_400_000)
    assert bare is not None and bare.occurred_at is None and bare.at == datetime(2026, 3, 2, 9, 40, tzinfo=UTC) and bare.belongs_to("c1")
    assert ex.dead_letter_view(b"c1", b"{}", [("other", b"x")]) is None  # not a worker's dead letter


def test_dead_letters_are_in_the_story_each_at_its_own_time() -> None:
    batch = T0 + timedelta(minutes=40)  # one batch handled the cart and the purchase: the log has one time for both
    records = [
        log("entered", batch, None, "send_first", event_id="c1-e1", event_type="web.cart_abandoned"),
        log("send", batch, "send_first", "wait_open", result="approved", send_id=SEND1, channel="email", template="t", reason="fits"),
        log("goal", batch, "send_first", outcome="goal", goal="purchased", event_id="c1-p1"),
    ]
    events = [envelope("c1-e1", T0), envelope("c1-p1", T0 + timedelta(minutes=20), "web.purchase"), envelope("c2-e1", T0, customer="c2")]
    letters = [
        ex.dead_letter_view(b"c1", BAD_CART, dlq_headers("schema", REASON, batch)),
        ex.dead_letter_view(b"c1", BAD_CART, dlq_headers("schema", REASON, batch)),  # dead-lettered again by a retried batch: once
        ex.dead_letter_view(b"c2", BAD_CART.replace(b'"c1', b'"c2'), dlq_headers("schema", REASON, batch, offset=8)),  # another customer
        ex.dead_letter_view(None, b"\xff", dlq_headers("undecodable", "not a customer-events message", batch, "c1", 9)),
    ]
    story = build_story(
        "c1", records, [decision(SEND1, "approved", batch, code="fits")], dead_letters=[d for d in letters if d], events=events
    )
    assert (story.log_records, story.decisions, story.dead_letters) == (3, 1, 2)
    assert format_story(story).splitlines() == [
        "customer c1: 3 journey-log records, 1 decision, 2 dead letters",
        (
            "2026-03-02T09:30:00Z  -  dead-lettered web event (code schema, event c1-bad): "
            "invalid web event 'cart_abandoned': cart_value: expected a number, got \"x\" (handled 2026-03-02T10:40:00Z)"
        ),
        (
            "2026-03-02T10:00:00Z  abandoned_cart v1  entered on web.cart_abandoned (event c1-e1), starts at send_first "
            "(handled 2026-03-02T10:40:00Z)"
        ),
        (
            "2026-03-02T10:20:00Z  abandoned_cart v1  GOAL purchased reached (event c1-p1) at send_first: converted, the journey ends "
            "(handled 2026-03-02T10:40:00Z)"
        ),
        (
            "2026-03-02T10:40:00Z  abandoned_cart v1  send_first: sent email t: approved (fits) "
            "[code fits; basket 10/25 in 2026-03, cost 10] -> wait_open"
        ),
        "2026-03-02T10:40:00Z  -  dead-lettered web event (code undecodable): not a customer-events message",
    ]
    assert [line.logged_at for line in story.lines[1:3]] == [batch, batch]
    # --since goes by the lines' own times; a dead letter is in every --journey (it never reached one)
    later = build_story("c1", records, dead_letters=[d for d in letters if d], events=events, since=T0 + timedelta(minutes=10))
    assert [line.what for line in later.lines] == ["goal", "send", "dead_letter"]
    only = build_story("c1", records, dead_letters=[d for d in letters if d], events=events, journey="churn_apology")
    assert [line.what for line in only.lines] == ["dead_letter", "dead_letter"]
    # without the envelopes (gone with retention): the record's time, as before
    assert [line.at for line in build_story("c1", records).lines] == [batch, batch, batch]


def test_timeouts_at_their_timers_due_time_and_nothing_happened_but_dead_letters() -> None:
    due = T1
    records = [log("timeout", due + timedelta(seconds=5), "wait_open", "send_reminder", timer_id="t1")]
    timer = json.dumps({"kind": "timer", "customer_id": "c1", "timer_id": "t1", "due_at": due.isoformat()})
    story = build_story("c1", records, events=[timer, b"not json", {"kind": "timer", "customer_id": "c1", "timer_id": "t1"}])
    assert story.lines[0].at == due and story.lines[0].logged_at == due + timedelta(seconds=5)
    assert format_story(story).splitlines()[1] == (
        "2026-03-03T10:00:00Z  abandoned_cart v1  wait_open: timed out -> send_reminder (handled 2026-03-03T10:00:05Z)"
    )
    letter = ex.dead_letter_view(b"c9", b"[1]", dlq_headers("not_object", "expected a JSON object, got list", T0))
    assert letter is not None
    only_dead = build_story("c9", [], dead_letters=[letter, letter.model_dump(mode="json")], partitions={"orch.dead-letter": 1})
    assert format_story(only_dead).splitlines() == [
        "customer c9: 0 journey-log records, 0 decisions, 1 dead letter (read partition 1 of orch.dead-letter)",
        "2026-03-02T10:00:00Z  -  dead-lettered web event (code not_object): expected a JSON object, got list",
    ]
    assert Story.model_validate_json(only_dead.model_dump_json()) == only_dead


# ---------------------------------------------------------------- events the worker processed without a second hop


def inbound(event_id: str, occurred_at: str, customer: str = "c1", type_: str = "cart_abandoned") -> dict[str, Any]:
    """A raw upstream event as it sits on ``<prefix>.in.web`` (no envelope: the worker processed it directly)."""
    return {"event_id": event_id, "customer_id": customer, "occurred_at": occurred_at, "type": type_, "cart_value": 12.5}


def test_event_times_takes_raw_inbound_events() -> None:
    times = ex.event_times(
        "c1",
        [
            envelope("c1-env", T0),  # a canonical envelope, as before
            inbound("c1-map", "2026-12-01T10:00:00Z"),  # a Mapping
            json.dumps(inbound("c1-bytes", "2026-12-01T11:00:00+01:00")).encode(),  # the record's bytes
            json.dumps(inbound("c1-str", "2026-12-01T12:00:00Z")),
            inbound("c2-e1", "2026-12-01T10:00:00Z", customer="c2"),  # another customer's
            inbound("c1-naive", "2026-12-01T10:00:00"),  # no time zone: not trusted
            inbound("c1-bad", "yesterday"),
            {**inbound("c1-noid", "2026-12-01T10:00:00Z"), "event_id": 7},
            {"customer_id": "c1", "occurred_at": "2026-12-01T10:00:00Z"},
            b"[1, 2]",
            b"\xff",
            inbound("c1-map", "2026-12-02T10:00:00Z"),  # a redelivery: the first time is kept
            inbound("c1-env", "2026-12-02T10:00:00Z"),  # republished and also read raw: the envelope (first) wins
        ],
    )
    assert times == {
        "c1-env": T0,
        "c1-map": datetime(2026, 12, 1, 10, tzinfo=UTC),
        "c1-bytes": datetime(2026, 12, 1, 10, tzinfo=UTC),
        "c1-str": datetime(2026, 12, 1, 12, tzinfo=UTC),
    }


def test_a_directly_processed_event_is_told_at_its_occurred_at() -> None:
    batch = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    records = [log("entered", batch, None, "send_first", event_id="c1-e1", event_type="web.cart_abandoned")]
    raw = json.dumps(inbound("c1-e1", "2026-12-01T10:00:00Z")).encode()
    story = build_story("c1", records, events=[raw])
    assert story.lines[0].at == datetime(2026, 12, 1, 10, tzinfo=UTC) and story.lines[0].logged_at == batch
    assert format_story(story).splitlines()[1] == (
        "2026-12-01T10:00:00Z  abandoned_cart v1  entered on web.cart_abandoned (event c1-e1), starts at send_first "
        "(handled 2026-12-01T10:05:00Z)"
    )
    assert build_story("c1", records, events=[inbound("c1-e1", "2026-12-01T10:00:00Z")]).lines[0].at == story.lines[0].at


def test_read_customer_reads_the_inbound_topics_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.designer.report_kafka import KafkaReadError, RawRecord

    existing = {"o.journey-log": 4, "o.decisions": 4, "o.customer-events": 4, "o.in.web": 4, "o.in.crm": 2}
    reads: list[list[str]] = []

    async def partition_counts(bootstrap: str, topics: list[str], client_kw: Any) -> dict[str, int]:
        missing = [t for t in topics if t not in existing]
        if missing:
            raise KafkaReadError(f"topic {', '.join(missing)} does not exist")
        return {t: existing[t] for t in topics}

    async def read_to_end(bootstrap: str, topics: list[str], timeout: float, choose: Any, **kw: Any) -> Any:
        reads.append(list(topics))
        counts = await partition_counts(bootstrap, topics, kw)
        chosen = {t: list(choose(t, n)) for t, n in counts.items()}
        raw = [RawRecord(t, ps[0], 0, k, f"{t}:{k!r}".encode()) for t, ps in chosen.items() for k in (b"c1", b"c2", None)]
        return raw, chosen

    async def dead_letters(*args: Any) -> tuple[list[ex.DeadLetterView], int, int]:
        return [], 1, 0

    monkeypatch.setattr(ex, "_partition_counts", partition_counts)
    monkeypatch.setattr(ex, "read_to_end", read_to_end)
    monkeypatch.setattr(ex, "_read_dead_letters", dead_letters)

    async def read(inbound_topics: list[str]) -> ex.CustomerRecords:
        return await ex.read_customer(
            "kafka:9092",
            "o.journey-log",
            "o.decisions",
            "c1",
            5.0,
            events_topic="o.customer-events",
            dead_letter_topic="o.dead-letter",
            inbound_topics=inbound_topics,
        )

    got = asyncio.run(read(["o.in.web", "o.in.missing", "o.in.crm"]))
    assert reads == [["o.journey-log", "o.decisions", "o.customer-events"], ["o.in.web", "o.in.crm"]]
    assert got.events == [b"o.customer-events:b'c1'", b"o.in.web:b'c1'", b"o.in.crm:b'c1'"]  # only c1's, envelopes first
    assert got.partitions == {
        "o.journey-log": partition_for("c1", 4),
        "o.decisions": partition_for("c1", 4),
        "o.customer-events": partition_for("c1", 4),
        "o.in.web": partition_for("c1", 4),
        "o.in.crm": partition_for("c1", 2),
        "o.dead-letter": 1,
    }
    reads.clear()
    assert asyncio.run(read([])).events == [b"o.customer-events:b'c1'"] and len(reads) == 1
    reads.clear()
    none = asyncio.run(read(["o.in.missing"]))  # no inbound topic exists: not read at all, no error
    assert reads == [["o.journey-log", "o.decisions", "o.customer-events"]] and "o.in.missing" not in none.partitions
    existing.pop("o.decisions")  # one of the other topics missing still fails the read
    with pytest.raises(KafkaReadError, match=r"o\.decisions does not exist"):
        asyncio.run(read(["o.in.web"]))

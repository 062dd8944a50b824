"""The webcare hand-off on real Kafka and Redis: a social mention -> a record on <prefix>.out.webcare.

journeys/webcare_handoff.yaml as shipped. The worker creates the out topic itself (the journey
names it); the record carries its deterministic id; a redelivered duplicate of the mention
publishes no second record (the customer's reply afterwards, on the same partition, proves the
duplicate was processed before we count).
"""

from __future__ import annotations

import shutil

import pytest

from tests.integration.helpers import ROOT, Deployment, event

pytestmark = pytest.mark.integration


def mention(customer: str, event_id: str) -> dict:
    return event(
        customer,
        "mention",
        event_id,
        mention_id=f"{customer}-m1",
        platform="x",
        platform_kind="public",
        handle=f"@{customer}",
        link=f"https://x.com/{customer}/status/1",
        excerpt="Third late delivery in a row.",
        sentiment="negative",
        sentiment_score=-0.8,
        is_complaint=True,
    )


def test_a_mention_reaches_webcare_once_with_its_record_id(deployment: Deployment) -> None:
    dep = deployment
    shutil.copy(ROOT / "journeys" / "webcare_handoff.yaml", dep.journeys_dir / "webcare_handoff.yaml")
    dep.start_worker()

    cust = f"{dep.prefix}-wanda"
    dep.publish("social", mention(cust, f"{cust}-m1"))
    first = dep.read("out.webcare", until=lambda rs: any(r.key == cust for r in rs), timeout=60)
    (handoff,) = [r.json() for r in first if r.key == cust]
    assert handoff["record_id"] == f"{cust}:webcare_handoff:v1:{cust}-m1:handoff_high"
    assert (handoff["topic"], handoff["journey_id"], handoff["step_id"], handoff["event_id"]) == (
        "webcare",
        "webcare_handoff",
        "handoff_high",
        f"{cust}-m1",
    )
    assert handoff["record"]["priority"] == "high" and handoff["record"]["link"] == f"https://x.com/{cust}/status/1"

    # the listening tool redelivers the mention, then the customer answers in the thread
    reply = event(
        cust,
        "reply",
        f"{cust}-r1",
        mention_id=f"{cust}-m1",
        reply_id="r1",
        platform="x",
        platform_kind="public",
        handle=f"@{cust}",
        link=f"https://x.com/{cust}/status/2",
        sentiment="negative",
        sentiment_score=-0.5,
    )
    dep.publish("social", mention(cust, f"{cust}-m1"), reply)

    def followed_up(rs: list) -> bool:
        return any(r.key == cust and r.json()["step_id"] == "follow_up" for r in rs)

    records = dep.read("out.webcare", until=followed_up, timeout=60)
    mine = [r.json() for r in records if r.key == cust]
    # the duplicate mention published nothing: the records are the hand-off and the reply's update. (A batch replayed
    # after a Kafka error may publish a record again, always under its id: consumers deduplicate on record_id.)
    assert list(dict.fromkeys(r["record_id"] for r in mine)) == [
        f"{cust}:webcare_handoff:v1:{cust}-m1:handoff_high",
        f"{cust}:webcare_handoff:v1:{cust}-m1:follow_up",
    ]
    assert all(r["record"] == handoff["record"] for r in mine if r["step_id"] == "handoff_high")

    def duplicate_seen(rs: list) -> bool:
        return any(r.key == cust and r.json()["what"] == "duplicate" for r in rs)

    log = [r.json() for r in dep.read("journey-log", until=duplicate_seen, timeout=30) if r.key == cust]
    assert [t["detail"]["event_id"] for t in log if t["what"] == "duplicate"] == [f"{cust}-m1"]
    # nothing of it went through the basket: no decision
    assert dep.read("decisions", until=lambda rs: False, timeout=2) == []

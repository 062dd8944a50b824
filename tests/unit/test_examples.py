"""Every example journey in journeys/, simulated with its event file: the exact path and the exact sends.

The simulations run all shipped journeys together with the shipped pressure policy and
the in-memory basket, exactly as ``orchestrator simulate --journeys journeys EVENTS`` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.designer.simulate import SimulationResult, simulate_files
from orchestrator.engine import choose_variant
from orchestrator.journey.loader import load_journeys

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
EVENTS = ROOT / "tests" / "fixtures" / "events"


def run(name: str) -> SimulationResult:
    return simulate_files(JOURNEYS, EVENTS / f"{name}.jsonl")


def at_sends(result: SimulationResult, cid: str) -> list[tuple[str, str, str, str]]:
    """(time, channel, template, result) from the send records (time the send was decided)."""
    return [
        (r.at.strftime("%m-%d %H:%M"), r.data["channel"], r.data["template"], r.data["result"])
        for r in result.for_customer(cid)
        if r.kind == "send"
    ]


EXAMPLES = [
    "abandoned_cart",
    "loan_documents",
    "call_sentiment",
    "store_offer",
    "onboarding_nudge",
    "refund_feedback",
    "churn_apology",
    "service_outage",
]
"""The example journeys in journeys/ (each has a scenario below)."""


def outcomes(result: SimulationResult, cid: str) -> list[tuple[str, str]]:
    return [(t.journey_id, t.detail["outcome"]) for t in result.traces if t.customer_id == cid and t.what in ("exited", "goal")]


def test_every_example_validates():
    js = load_journeys([JOURNEYS])
    assert set(js.ids()) >= set(EXAMPLES)


def test_abandoned_cart():
    r = run("abandoned_cart")
    assert r.errors and r.errors[0].endswith(
        "abandoned_cart.jsonl:11: invalid web event 'cart_abandoned': missing field cart_id (string); "
        "cart_value: must be at least 0, got -3"
    )
    # c1: no open -> reminder exactly 24 h later
    assert r.path("c1") == ["send_first", "wait_open", "send_reminder", "done"]
    assert at_sends(r, "c1") == [
        ("03-02 10:00", "email", "cart_reminder", "approved"),
        ("03-03 10:00", "email", "cart_reminder_2", "approved"),
    ]
    first = r.sends("c1")[0].send
    assert first.send_id == "c1:abandoned_cart:v1:c1-e1:send_first"
    assert (first.comm_type, first.brand, first.variables) == ("commercial", "shop", {"tone": "friendly", "cart_value": 80.0})
    # c2 opened the exact message: no reminder
    assert r.path("c2") == ["send_first", "wait_open", "done"]
    assert at_sends(r, "c2") == [("03-02 10:05", "email", "cart_reminder", "approved")]
    # c3 purchased: goal, counted as conversion, no reminder
    assert r.path("c3") == ["send_first", "wait_open"]
    assert outcomes(r, "c3") == [("abandoned_cart", "goal")]
    assert r.states["c3"].history["abandoned_cart"].conversions == 1
    assert at_sends(r, "c3") == [("03-02 10:10", "email", "cart_reminder", "approved")]
    # c4's cart was too small
    assert r.path("c4") == [] and at_sends(r, "c4") == []


def test_loan_documents_reminder_and_explainer():
    r = run("loan_documents")
    assert r.path("l1") == ["send_documents", "wait_open", "send_reminder", "done"]
    assert at_sends(r, "l1") == [
        ("03-02 09:00", "email", "loan_documents", "approved"),
        ("03-04 09:00", "email", "loan_documents_reminder", "approved"),
    ]
    assert r.path("l2") == ["send_documents", "wait_open", "wait_click", "send_explainer", "done"]
    assert at_sends(r, "l2") == [
        ("03-02 09:00", "email", "loan_documents", "approved"),
        ("03-04 14:00", "email", "loan_documents_explained", "approved"),
    ]
    assert r.sends("l2")[1].send.variables == {"tone": "helpful"}
    assert r.sends("l1")[1].send.variables == {"amount": 15000.0}
    assert r.path("l3") == ["send_documents", "wait_open", "wait_click", "done"]
    assert at_sends(r, "l3") == [("03-02 09:00", "email", "loan_documents", "approved")]
    assert r.path("l4") == ["send_documents", "wait_open"] and outcomes(r, "l4") == [("loan_documents", "goal")]
    assert at_sends(r, "l4") == [("03-02 09:00", "email", "loan_documents", "approved")]


def test_call_sentiment_branches():
    r = run("call_sentiment")
    assert r.path("s1") == ["route", "conciliatory_letter", "done"]
    assert at_sends(r, "s1") == [("03-02 11:00", "direct_mail", "conciliatory_letter", "approved")]
    assert r.sends("s1")[0].send.variables == {"tone": "conciliatory", "topic": "billing"}
    assert r.path("s2") == ["route", "enthusiastic_note", "done"]
    assert at_sends(r, "s2") == [("03-02 12:00", "email", "enthusiastic_note", "approved")]
    # 22:00 is outside the 09:00-20:00 send window: the note waits for the morning
    assert r.path("s3") == ["route", "enthusiastic_note", "done"]
    assert at_sends(r, "s3") == [("03-03 09:00", "email", "enthusiastic_note", "approved")]
    assert r.path("s4") == ["route", "done"] and at_sends(r, "s4") == []


def test_store_offer():
    r = run("store_offer")
    assert r.path("g1") == ["offer", "wait_click", "done"]
    assert at_sends(r, "g1") == [("03-02 10:00", "push", "in_store_offer", "approved")]
    assert r.sends("g1")[0].send.variables == {"store": "berlin-mitte"}
    # the second visit is inside the 7-day cool-down: no second offer
    assert [t.instance_id for t in r.traces if t.customer_id == "g1" and t.what == "entered"] == ["store_offer@g1-s1"]
    # geofence on Sunday afternoon: the offer waits for Monday 09:00
    assert r.path("g2") == ["offer", "wait_click", "done"]
    assert at_sends(r, "g2") == [("03-09 09:00", "push", "in_store_offer", "approved")]
    assert r.sends("g2")[0].send.variables == {"geofence": "mall-west"}
    assert r.path("g3") == [] and at_sends(r, "g3") == []
    assert r.path("g4") == ["offer", "wait_click", "clicked"] and outcomes(r, "g4") == [("store_offer", "clicked")]


def test_onboarding_nudge_after_30_days():
    r = run("onboarding_nudge")
    assert r.path("o1") == ["wait_30_days", "check", "nudge", "done"]
    assert at_sends(r, "o1") == [("04-01 10:00", "email", "onboarding_export_nudge", "approved")]
    assert r.sends("o1")[0].send.timezone == "Europe/Berlin"
    assert r.path("o2") == ["wait_30_days"] and outcomes(r, "o2") == [("onboarding_nudge", "goal")]
    assert at_sends(r, "o2") == []
    assert r.path("o3") == ["wait_30_days", "check", "nudge", "done"]
    assert at_sends(r, "o3") == [("04-01 10:00", "email", "onboarding_export_nudge", "approved")]
    assert r.path("o4") == ["wait_30_days", "check", "done"] and at_sends(r, "o4") == []


def test_refund_feedback():
    r = run("refund_feedback")
    assert r.path("r1") == ["settle", "ask", "done"]
    assert at_sends(r, "r1") == [("03-03 10:00", "email", "refund_feedback_request", "approved")]
    assert r.sends("r1")[0].send.variables == {"order_id": "A-1"}
    assert r.path("r2") == ["settle", "ask", "done"]
    assert at_sends(r, "r2") == [("03-04 09:00", "email", "refund_feedback_request", "approved")]


def test_churn_apology_split_and_fallback():
    r = run("churn_apology")
    journey = load_journeys([JOURNEYS]).newest("churn_apology")
    assert journey is not None
    split = journey.steps["offer_test"]
    expected = {"h1": "twenty_percent", "h2": "ten_percent", "h3": "ten_percent", "h4": "ten_percent", "h6": "ten_percent"}
    for cid, variant in expected.items():
        assert choose_variant(cid, "churn_apology", split, "offer_test").name == variant
        assert r.states[cid].variants == {"churn_apology/offer_test": variant}
        assert [t.detail["variant"] for t in r.traces if t.customer_id == cid and t.what == "split"] == [variant]
    assert r.path("h1", "churn_apology") == ["offer_test", "apology_20", "wait_click"]
    assert outcomes(r, "h1") == [("churn_apology", "goal")]
    assert at_sends(r, "h1") == [("03-02 10:00", "email", "churn_apology", "approved")]
    assert r.sends("h1")[0].send.variables["promo_code"] == "SORRY20"
    for cid in ("h2", "h3", "h4"):
        assert r.path(cid) == ["offer_test", "apology_10", "wait_click", "done"]
        assert at_sends(r, cid) == [("03-02 10:00", "email", "churn_apology", "approved")]
        assert r.sends(cid)[0].send.variables["promo_code"] == "SORRY10"
    assert r.path("h5") == []
    # h6's basket is full from two cart emails: email capped -> letter tried -> capped too
    assert at_sends(r, "h6") == [
        ("03-02 08:00", "email", "cart_reminder", "approved"),
        ("03-03 08:00", "email", "cart_reminder_2", "approved"),
        ("03-04 10:00", "email", "churn_apology", "fallback"),
        ("03-04 10:00", "direct_mail", "churn_apology", "capped"),
    ]
    assert r.path("h6", "churn_apology") == ["offer_test", "apology_10", "wait_click", "done"]


def test_service_outage_calamity():
    r = run("service_outage")
    assert at_sends(r, "x1") == [
        ("03-02 08:00", "email", "churn_apology", "approved"),
        ("03-02 08:30", "email", "loan_documents", "approved"),
        ("03-02 09:00", "email", "cart_reminder", "deferred"),
        ("03-02 11:00", "email", "outage_notice", "approved"),
        ("03-02 11:00", "email", "cart_reminder", "cancelled"),
        ("03-03 11:00", "email", "cart_reminder_2", "suppressed"),
        ("03-04 08:30", "email", "loan_documents_reminder", "capped"),
    ]
    notice = next(d for d in r.sends("x1") if d.send.template == "outage_notice")
    assert notice.send.comm_type == "calamity" and notice.send.priority == 10
    assert notice.send.variables == {"service": "payments", "incident": "INC-7"}
    assert r.path("x1", "service_outage") == ["notice", "done"]
    # the cancelled deferred send's timer never fires: the cart journey moved on to its wait at once
    assert r.path("x1", "abandoned_cart") == ["send_first", "wait_open", "send_reminder", "done"]
    assert r.path("x2") == [] and at_sends(r, "x2") == []
    assert at_sends(r, "x3") == [
        ("03-02 11:00", "email", "outage_notice", "fallback"),
        ("03-02 11:00", "sms", "outage_notice", "suppressed"),
    ]


@pytest.mark.parametrize(
    "name",
    EXAMPLES,
)
def test_no_instance_left_waiting_after_the_horizon(name):
    r = run(name)
    for cid, state in r.states.items():
        assert state.instances == [], (cid, state.instances)

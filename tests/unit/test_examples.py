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
    "feature_announcement",
    "outage_notice",
    "event_invitation",
    "monthly_newsletter",
    "webcare_handoff",
    "idle_cart",
    "lead_scoring",
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
    # geofence on Sunday afternoon: outside opening hours, the offer expires after 2 h (never sent on Monday)
    assert r.path("g2") == ["offer", "missed"] and outcomes(r, "g2") == [("store_offer", "offer_expired")]
    assert at_sends(r, "g2") == [("03-08 17:00", "push", "in_store_offer", "expired")]
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


# ---------------------------------------------------------------- campaigns (entry.audience with a schedule)


def codes(result: SimulationResult, cid: str) -> list[tuple[str, str, str | None]]:
    """(template, result, basket code) of every decision on the customer's sends."""
    return [(d.send.template, d.result, getattr(d.decision, "code", None)) for d in result.sends(cid)]


def runs(result: SimulationResult, journey: str) -> list[tuple[str, int, int, int]]:
    """(run id, evaluated, in the audience, entered) of every run of a campaign that reached someone."""
    return [(c.run_id, c.evaluated, c.in_audience, c.entered) for c in result.campaigns if c.journey_id == journey and c.evaluated]


def test_feature_announcement_once_to_active_customers_who_never_used_export():
    r = run("feature_announcement")
    assert runs(r, "feature_announcement") == [("2026-06-16T10:00Z", 6, 4, 4)]
    # f1: announced, clicks
    assert at_sends(r, "f1") == [("06-16 10:00", "email", "export_announcement", "approved")]
    assert r.sends("f1")[0].send.send_id == "f1:feature_announcement:v1:audience:feature_announcement:2026-06-16T10:00Z:announce"
    assert r.path("f1", "feature_announcement") == ["announce", "wait_click", "done"]
    # f2 used export, f3 was last seen in April: not in the audience, nothing on record for the campaign
    for cid in ("f2", "f3"):
        assert r.path(cid) == [] and not [rec for rec in r.for_customer(cid) if rec.kind == "audience"]
    # f4's basket holds the two cart emails: the priority-4 announcement may fill it only up to 20
    assert codes(r, "f4")[-1] == ("export_announcement", "capped", "reserve")
    # f5 unsubscribed from the shop's emails
    assert codes(r, "f5") == [("export_announcement", "suppressed", "unsubscribed")]
    # f6 used export after the announcement: a conversion
    assert outcomes(r, "f6") == [("feature_announcement", "goal")]
    assert r.states["f6"].history["feature_announcement"].conversions == 1


def test_outage_notice_to_one_region_locks_marketing():
    r = run("outage_notice")
    assert runs(r, "outage_notice") == [("2026-08-04T09:00Z", 4, 2, 2)]
    notice = r.sends("n1")[0]
    assert notice.decision is not None
    assert (notice.send.template, notice.send.comm_type, notice.result, notice.decision.code) == (
        "regional_outage_notice",
        "calamity",
        "approved",
        "calamity",
    )
    assert notice.send.variables == {"service": "payments", "region": "north"}
    # n1 abandons a cart three hours later: the commercial email is locked until the 72 h lock ends
    cart = [d for d in r.sends("n1") if d.send.journey_id == "abandoned_cart"]
    assert cart[0].decision is not None
    assert (cart[0].result, cart[0].decision.code) == ("deferred", "locked")
    assert cart[0].decision.retry_at is not None and cart[0].decision.retry_at.isoformat() == "2026-08-07T09:00:00+00:00"
    # after the lock the calamity's 20 points leave no room this month: the email goes out in September
    assert [(d.result, getattr(d.decision, "code", None)) for d in cart[1:]] == [
        ("deferred", "capacity"),
        ("approved", "fits"),
        ("approved", "fits"),
    ]
    # n2 unsubscribed from email: not even a calamity overrides consent; the SMS fallback goes out
    assert codes(r, "n2") == [("regional_outage_notice", "fallback", "unsubscribed"), ("regional_outage_notice", "approved", "calamity")]
    assert [d.send.channel for d in r.sends("n2")] == ["email", "sms"]
    # n3 moved south before the outage; s1 lives in the south: no notice, no lock, the cart email goes out at once
    assert r.sends("n3") == []
    assert at_sends(r, "s1")[0] == ("08-04 12:00", "email", "cart_reminder", "approved")


def test_event_invitation_local_time_with_a_subject_test():
    r = run("event_invitation")
    journey = load_journeys([JOURNEYS]).newest("event_invitation")
    assert journey is not None
    split = journey.steps["subject_test"]
    assert runs(r, "event_invitation") == [("2026-09-15T09:00L", 5, 4, 4)]
    # 09:00 in each customer's zone; the variant is the sticky hash of customer, journey and step
    expected = {
        "e3": ("09-15 00:00", "plain_subject", "evening_invitation_plain", "approved"),  # Tokyo
        "e1": ("09-15 07:00", "plain_subject", "evening_invitation_plain", "approved"),  # Berlin (CEST)
        "e5": ("09-15 09:00", "plain_subject", "evening_invitation_plain", "capped"),  # no time zone: UTC; full basket
        "e2": ("09-15 13:00", "personal_subject", "evening_invitation_personal", "approved"),  # New York (EDT)
    }
    for cid, (at, variant, template, result) in expected.items():
        assert choose_variant(cid, "event_invitation", split, "subject_test").name == variant
        assert r.states[cid].variants == {"event_invitation/subject_test": variant}
        assert at_sends(r, cid)[-1] == (at, "email", template, result)
        [check] = [rec for rec in r.for_customer(cid) if rec.kind == "audience"]
        assert check.data["due_at"] == f"2026-{at[:5]}T{at[6:]}:00Z"
    assert outcomes(r, "e1") == [("event_invitation", "goal")]  # registered
    assert r.path("e2", "event_invitation") == ["subject_test", "invite_personal", "wait_click", "done"]
    assert r.path("e4") == []  # retail: not in the audience


def test_monthly_newsletter_every_month_in_local_time_to_the_list():
    r = run("monthly_newsletter")
    assert runs(r, "monthly_newsletter") == [
        ("2026-11-01T10:00L", 4, 2, 2),
        ("2026-12-01T10:00L", 4, 2, 2),
        ("2027-01-01T10:00L", 4, 2, 2),
        ("2027-02-01T10:00L", 4, 2, 2),
    ]
    # m1 (Berlin): every month at 10:00 CET, a new instance each month (reentry: always)
    assert at_sends(r, "m1") == [(f"{month}-01 09:00", "email", "monthly_newsletter", "approved") for month in ("11", "12", "01", "02")]
    entered = [t.instance_id for t in r.traces if t.customer_id == "m1" and t.what == "entered"]
    assert entered[0] == "monthly_newsletter@audience:monthly_newsletter:2026-11-01T10:00L" and len(set(entered)) == 4
    assert r.sends("m1")[0].send.variables == {"edition": "2026-11-01T10:00L"}  # entry.run
    # m2 (New York) left the list on 2026-11-20: the November issue only, at 10:00 EST
    assert at_sends(r, "m2") == [("11-01 15:00", "email", "monthly_newsletter", "approved")]
    # m3 is not on the list; m4 (Tokyo) joined on 2026-11-25: from December, at 10:00 JST
    assert at_sends(r, "m3") == []
    assert [a for a, *_ in at_sends(r, "m4")] == ["12-01 01:00", "01-01 01:00", "02-01 01:00"]


def emitted(result: SimulationResult, cid: str) -> list[tuple[str, str, str, str]]:
    """(step, record kind, priority, record id) of a customer's emit records."""
    return [
        (r.step_id or "", r.data["record"]["kind"], r.data["record"].get("priority", ""), r.data["record_id"])
        for r in result.for_customer(cid)
        if r.kind == "emit"
    ]


def test_webcare_handoff():
    r = run("webcare_handoff")
    # w1: a negative complaint on X -> priority high, the case open on the profile; the redelivered mention
    # changes nothing; the reply goes to webcare as an update; 7 days later the case closes
    assert emitted(r, "w1") == [
        ("handoff_high", "handoff", "high", "w1:webcare_handoff:v1:w1-m1:handoff_high"),
        ("follow_up", "update", "", "w1:webcare_handoff:v1:w1-m1:follow_up"),
    ]
    handoff = next(rec for rec in r.for_customer("w1") if rec.kind == "emit").data["record"]
    assert handoff["link"] == "https://x.com/wanda/status/1" and handoff["handle"] == "@wanda" and handoff["reason"] == "negative_complaint"
    assert [t.what for t in r.traces if t.customer_id == "w1" and t.what == "duplicate"] == ["duplicate"]
    assert r.path("w1") == ["route", "handoff_high", "open_case", "wait_reply", "follow_up", "wait_reply", "close_case", "closed"]
    assert outcomes(r, "w1") == [("webcare_handoff", "case_closed")]
    profile = r.states["w1"].profile
    assert profile.attributes == {"webcare_case": "closed", "webcare_platform": "x"} and profile.tags == []
    # w2: the customer's own blog: no contact, no emit, and the journey log says why
    assert emitted(r, "w2") == [] and r.path("w2") == ["route", "not_ours"]
    assert outcomes(r, "w2") == [("webcare_handoff", "customer_owned_platform")]
    assert r.states["w2"].profile.attributes == {}
    # w3: a question in our community -> priority low; w4: praise -> nothing for webcare
    assert [(step, prio) for step, _, prio, _ in emitted(r, "w3")] == [("handoff_low", "low")]
    assert emitted(r, "w4") == [] and outcomes(r, "w4") == [("webcare_handoff", "no_webcare_needed")]
    # nothing of this went through the basket
    assert all(d.send.journey_id != "webcare_handoff" for d in r.dispositions)


def sales_leads(result: SimulationResult, cid: str) -> list[tuple[str, str, float]]:
    """(time, record id, score) of a customer's hand-offs to sales (emit records on the sales topic)."""
    return [
        (r.at.strftime("%m-%d %H:%M"), r.data["record_id"], round(r.data["record"]["score"], 2))
        for r in result.for_customer(cid)
        if r.kind == "emit" and r.data["topic"] == "sales"
    ]


def test_lead_scoring_hands_the_lead_to_sales_once_per_crossing():
    r = run("lead_scoring")
    # p1: the second form takes the lead score from 42 to 62: one hand-off; the purchase after it does not cross again
    assert [(at, rid) for at, rid, _ in sales_leads(r, "p1")] == [("03-02 09:20", "p1:lead_scoring:v1:p1-f2:hand_to_sales")]
    assert outcomes(r, "p1") == [("lead_scoring", "handed_to_sales")] and "sales_lead" in r.states["p1"].profile.tags
    assert sales_leads(r, "p2") == [] and at_sends(r, "p1") == []  # nobody is contacted by this journey
    # p3: crossed on the purchase (20 + 20 + 30, the forms decayed by minutes); 44 days later decayed below 40 (re-armed)
    # and crossed again on a pricing page
    assert sales_leads(r, "p3") == [
        ("03-02 10:10", "p3:lead_scoring:v1:p3-b1:hand_to_sales", 70.0),
        ("04-15 10:15", "p3:lead_scoring:v1:p3-v1:hand_to_sales", sales_leads(r, "p3")[1][2]),
    ]
    assert 50 <= sales_leads(r, "p3")[1][2] < 60
    assert r.states["p3"].history["lead_scoring"].entries == 2
    assert r.states["p4"].profile.scores["churn_risk"].value == 0.82  # crm.score_updated: set_from data.value


@pytest.mark.parametrize(
    "name",
    EXAMPLES,
)
def test_no_instance_left_waiting_after_the_horizon(name):
    r = run(name)
    for cid, state in r.states.items():
        assert state.instances == [], (cid, state.instances)


def test_idle_cart():
    r = run("idle_cart")
    # i1 browses on after the cart (10:04): quiet from 10:14, in Berlin service hours -> a person offers the chat
    assert at_sends(r, "i1") == [("03-02 10:14", "web_message", "live_chat_offer", "approved")]
    assert [t.detail["quiet_since"] for t in r.traces if t.customer_id == "i1" and t.what == "quiet"] == ["2026-03-02T10:04:00Z"]
    # i2 at 21:30 Berlin: outside service hours -> the bot
    assert at_sends(r, "i2") == [("03-02 20:40", "web_message", "chat_bot_offer", "approved")]
    # i3 buys within the quiet period: the goal ends the wait, no offer
    assert at_sends(r, "i3") == [] and outcomes(r, "i3") == [("idle_cart", "goal")]

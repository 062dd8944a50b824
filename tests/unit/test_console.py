"""`orchestrator console`: the aggregates from hand-made records, the SVG map, and the access rule (no Kafka)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.console import cli as console_cli
from orchestrator.console.app import API_ROUTES, COOKIE, ROUTES, LookupFailed, make_app
from orchestrator.console.layout import NODE_W, edge_id, journey_graph, layout, svg
from orchestrator.console.pages import campaigns_page, dead_letters_page, home_numbers, journey_numbers, journey_page
from orchestrator.console.state import MAX_REASONS, ConsoleState, LagRow, run_of_send
from orchestrator.designer.explain import DeadLetterView, DecisionView
from orchestrator.journey import model as m
from orchestrator.journey.loader import load_journeys
from orchestrator.records import CampaignProgress, JourneyLogRecord

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TOKEN = "s3cret-console-token-0123456789"


def rec(
    customer: str,
    what: str,
    step: str | None = None,
    edge: str | None = None,
    *,
    journey: str = "abandoned_cart",
    version: int = 1,
    instance: str | None = None,
    at: datetime = T0,
    **detail: Any,
) -> JourneyLogRecord:
    return JourneyLogRecord(
        customer_id=customer,
        journey_id=journey,
        journey_version=version,
        instance_id=instance if instance is not None else f"{journey}@{customer}-cart",
        step_id=step,
        what=what,
        edge=edge,
        detail=detail,
        at=at,
    )


def decision(
    customer: str, step: str, result: str, *, journey: str = "abandoned_cart", version: int = 1, send_id: str | None = None
) -> DecisionView:
    return DecisionView(
        send_id=send_id or f"{customer}:{journey}:v{version}:{customer}-cart:{step}",
        customer_id=customer,
        journey_id=journey,
        journey_version=version,
        step_id=step,
        channel="email",
        outcome="approved" if result == "approved" else "capped",
        result=result,
        reason="fits",
        code="fits",
        cost=10,
        balance=10,
        capacity=100,
        period="week",
        decided_at=T0,
    )


def cart_path(customer: str, version: int = 1) -> list[JourneyLogRecord]:
    """What the worker logs for one abandoned cart up to the wait for the open."""
    return [
        rec(customer, "entered", None, "send_first", event_id=f"{customer}-cart", event_type="cart_abandoned", version=version),
        rec(customer, "step", "send_first", None, type="send", version=version),
        rec(customer, "send", "send_first", "wait_open", result="approved", send_id=f"{customer}:s1", channel="email", version=version),
        rec(customer, "step", "wait_open", None, type="wait", version=version),
        rec(customer, "waiting", "wait_open", None, until="x", awaiting=[], version=version),
    ]


def opened(customer: str, version: int = 1) -> list[JourneyLogRecord]:
    return [
        rec(customer, "matched", "wait_open", "done", event_id=f"{customer}-open", event_type="opened", version=version),
        rec(customer, "step", "done", None, type="end", version=version),
        rec(customer, "exited", "done", None, outcome="completed", version=version),
    ]


def journeys() -> Any:
    return load_journeys([JOURNEYS / "abandoned_cart.yaml", JOURNEYS / "churn_apology.yaml"])


def fed(*records: JourneyLogRecord) -> ConsoleState:
    state = ConsoleState(journeys())
    for r in records:
        state.apply_log(r)
    return state


# ------------------------------------------------------------------ aggregates


def test_customers_now_at_each_step_follow_the_live_instances():
    state = fed(*cart_path("c1"), *cart_path("c2"), *cart_path("c3"), *opened("c1"))
    assert state.now_at("abandoned_cart", 1) == {"wait_open": 2}
    vs = state.versions[("abandoned_cart", 1)]
    assert (vs.entered, vs.live, vs.converted, vs.ended) == (3, 2, 0, 1)
    # c2 times out and gets the reminder; c3 buys: the goal ends it wherever it is
    for r in [
        rec("c2", "timeout", "wait_open", "send_reminder", timer_id="t"),
        rec("c2", "step", "send_reminder", None, type="send"),
        rec("c3", "goal", "wait_open", None, outcome="goal", goal="purchased", event_id="buy"),
    ]:
        state.apply_log(r)
    assert state.now_at("abandoned_cart", 1) == {"send_reminder": 1}
    assert (vs.live, vs.converted) == (1, 1)
    assert set(state.instances) == {("c2", "abandoned_cart@c2-cart")}  # an ended instance is dropped


def test_edge_counts_are_per_version():
    state = fed(*cart_path("a"), *cart_path("b"), *opened("a"), *cart_path("c", version=2), *opened("c", version=2))
    v1, v2 = state.versions[("abandoned_cart", 1)].edges, state.versions[("abandoned_cart", 2)].edges
    assert v1[("start", "send_first")] == 2 and v1[("send_first", "wait_open")] == 2 and v1[("wait_open", "done")] == 1
    assert v2[("start", "send_first")] == 1 and v2[("wait_open", "done")] == 1
    assert state.now_at("abandoned_cart", 1) == {"wait_open": 1} and state.now_at("abandoned_cart", 2) == {}
    nums = journey_numbers(state, "abandoned_cart", 1)
    assert nums[edge_id("wait_open", "done")] == 1 and nums[edge_id("wait_open", "send_reminder")] == 0
    assert nums["now-wait_open"] == 1 and nums["v-entered"] == 2
    home = home_numbers(state)
    assert home["home-abandoned_cart-1-entered"] == 2 and home["home-abandoned_cart-2-entered"] == 1
    assert home["home-churn_apology-1-entered"] == 0  # loaded, nobody yet


def test_send_step_results_from_decisions():
    state = fed(*cart_path("a"))
    for d in [
        decision("a", "send_first", "approved"),
        decision("b", "send_first", "deferred"),
        decision("b", "send_first", "approved", send_id="b:abandoned_cart:v1:b-cart:send_first:a1"),
        decision("c", "send_first", "capped"),
        decision("d", "send_reminder", "expired"),
    ]:
        state.apply_decision(d)
    nums = journey_numbers(state, "abandoned_cart", 1)
    assert (nums["send-send_first-total"], nums["send-send_first-approved"]) == (4, 2)
    assert (nums["send-send_first-deferred"], nums["send-send_first-capped"], nums["send-send_first-expired"]) == (1, 1, 0)
    assert nums["send-send_reminder-expired"] == 1


def test_split_conversion_per_variant_with_interval_and_uplift():
    state = ConsoleState(journeys())
    j = "churn_apology"
    for i in range(40):
        variant, nxt = ("ten_percent", "apology_10") if i % 2 else ("twenty_percent", "apology_20")
        c, inst = f"c{i}", f"{j}@e{i}"
        state.apply_log(rec(c, "entered", None, "offer_test", journey=j, instance=inst))
        state.apply_log(rec(c, "split", "offer_test", nxt, journey=j, instance=inst, variant=variant, sticky=False))
        if i % 2 == 0 or i % 5 == 0:  # twenty_percent: all 20 convert; ten_percent: 4 of 20
            state.apply_log(rec(c, "goal", nxt, None, journey=j, instance=inst, outcome="goal"))
    nums = journey_numbers(state, j, 1)
    assert nums["split-offer_test-ten_percent-entered"] == 20 and nums["split-offer_test-ten_percent-converted"] == 4
    assert nums["split-offer_test-twenty_percent-converted"] == 20
    assert nums["split-offer_test-ten_percent-uplift"] == "baseline"  # the first variant declared
    assert str(nums["split-offer_test-twenty_percent-uplift"]).startswith("400.0 %")
    assert "higher" not in str(nums["split-offer_test-twenty_percent-uplift"])  # 20 per row: n too small for a verdict
    assert nums["split-offer_test-ten_percent-interval"] == "8.1 – 41.6 %"


def test_campaign_runs_progress_entered_and_answers():
    state = ConsoleState()
    j, run = "monthly_newsletter", "2026-12-01T10:00L"
    for part, done in ((0, False), (1, True), (0, True)):
        p = CampaignProgress(
            run=run, partition=part, customers=10, evaluated=8, audience=6, remembered=1, closed=1, pending=0 if done else 5, complete=done
        )
        state.apply_log(p.record(j, 1, T0))
    state.apply_log(rec("c1", "entered", None, "send", journey=j, instance=f"{j}@audience:{j}:{run}"))
    state.apply_decision(decision("c1", "send", "approved", journey=j, send_id=f"c1:{j}:v1:audience:{j}:{run}:send"))
    c = state.campaigns[(j, run)]
    assert c.complete and c.total("customers") == 20 and c.total("audience") == 12
    assert c.entered == 1 and c.decisions == {"approved": 1}
    html = campaigns_page(state)
    assert f'id="run-{j}-{run}-entered">1<' in html and f'id="run-{j}-{run}-audience">12<' in html
    assert "100.0 % (complete)" in html and "approved 1" in html
    assert run_of_send(j, "c:x:v1:e:send") is None and run_of_send(j, f"a:b:c:{j}:v1:audience:{j}:{run}:send#2") == run


def test_dead_letters_per_hour_code_and_reason_bounded():
    state = ConsoleState()
    for i in range(MAX_REASONS + 5):
        state.apply_dead_letter(
            DeadLetterView(key="c", customer_id=None, code="schema", reason=f"field {i}", dead_lettered_at=T0 + timedelta(minutes=i))
        )
    state.apply_dead_letter(
        DeadLetterView(key="c", customer_id=None, code="not_json", reason="x", dead_lettered_at=T0 + timedelta(hours=2))
    )
    assert sorted(state.dead_letters) == [T0, T0 + timedelta(hours=2)]
    assert state.dead_letters[T0][("schema", "(other reasons)")] == 5
    assert state.dead_letter_codes == {"schema": MAX_REASONS + 5, "not_json": 1}
    state.set_lag([LagRow("p.customer-events", 0, 90, 100, 10, 2.5), LagRow("p.in.web", 1, None, 4, 4, None)], T0, "Stable")
    html = dead_letters_page(state)
    assert 'id="dlq-schema">25<' in html and "2026-12-01 12:00Z" in html
    assert 'id="lag-p.customer-events-0-records">10<' in html and 'id="lag-p.customer-events-0-seconds">2.5<' in html
    assert 'id="lag-p.in.web-1-committed">–<' in html


# ------------------------------------------------------------------ the map


ALL = list(load_journeys([JOURNEYS]))


@pytest.mark.parametrize("compiled", ALL, ids=[f"{j.id}-v{j.version}" for j in ALL])
def test_svg_has_every_step_and_edge(compiled: Any):
    journey = compiled.journey
    graph = journey_graph(journey)
    drawing = svg(graph, {}, {})
    steps = set(re.findall(r'data-step="([^"]+)"', drawing))
    assert set(journey.steps) <= steps and "start" in steps
    ids = set(re.findall(r'id="(edge-[^"]+)"', drawing))
    expected = {edge_id("start", journey.start)}
    expected |= {edge_id(sid, target or "finish") for sid, step in journey.steps.items() for _, target, _ in m.edges(sid, step)}
    assert expected <= ids
    lay = layout(graph)
    placed, width, height = lay.placed, lay.width, lay.height
    boxes = {(p.x, p.y) for p in placed}
    assert len(boxes) == len(placed)  # no two nodes on one spot
    assert all(0 <= p.x <= width and 0 <= p.y <= height for p in placed)
    layer = {p.node.id: p.layer for p in placed}
    assert layer["start"] == 0 and all(layer[s] > 0 for s in journey.steps)
    for (src, dst), via in lay.waypoints.items():  # a long edge passes beside the boxes of the layers between
        assert len(via) == layer[dst] - layer[src] - 1
        for x, y in via:
            assert not any(p.y == y and p.x <= x <= p.x + NODE_W for p in placed), (src, dst)


def test_long_edge_goes_around_the_step_between():
    journey = next(j for j in ALL if j.id == "abandoned_cart").journey
    lay = layout(journey_graph(journey))
    assert len(lay.waypoints[("wait_open", "done")]) == 1  # past send_reminder, not through it


def test_journey_page_labels_steps_and_edges_with_counts():
    state = fed(*cart_path("a"), *cart_path("b"), *opened("a"))
    html = journey_page(state, "abandoned_cart", 1)
    assert html is not None
    assert '<tspan id="now-wait_open" class="now">1</tspan>' in html
    assert f'id="{edge_id("send_first", "wait_open")}">2<' in html
    assert journey_page(state, "nope", 1) is None


# ------------------------------------------------------------------ the access rule


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    state = fed(*cart_path("a"))

    async def lookup(customer: str) -> str:
        if customer == "broken":
            raise LookupFailed("no broker")
        return f"customer {customer}: a story"

    async with TestClient(TestServer(make_app(state, TOKEN, lookup))) as c:
        yield c


def urls() -> list[str]:
    fill = {"{journey}": "abandoned_cart", "{version}": "1"}
    out = []
    for route in (*ROUTES, *API_ROUTES):
        for k, v in fill.items():
            route = route.replace(k, v)
        out.append(route)
    return [*out, "/customer?id=a", "/no-such-page"]


async def test_every_route_without_token_is_401_and_says_nothing(client: TestClient[Any, Any]):
    for url in urls():
        resp = await client.get(url)
        body = await resp.text()
        assert resp.status == 401, url
        assert "abandoned_cart" not in body and "journey" not in body.lower().replace("orchestrator console", ""), url
        assert COOKIE not in resp.cookies


async def test_wrong_token_is_401(client: TestClient[Any, Any]):
    for url in urls():
        assert (await client.get(url, headers={"Authorization": "Bearer wrong"})).status == 401, url
        assert (await client.get(url, headers={"Authorization": f"Basic {TOKEN}"})).status == 401, url
    resp = await client.get("/?token=wrong", allow_redirects=False)
    assert resp.status == 401 and COOKIE not in resp.cookies


async def test_bearer_token_opens_every_route(client: TestClient[Any, Any]):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for url in urls()[:-1]:
        resp = await client.get(url, headers=auth)
        assert resp.status == 200, url
        assert resp.headers["Cache-Control"] == "no-store"
    data = await (await client.get("/api/journey/abandoned_cart/1", headers=auth)).json()
    assert data["values"]["v-entered"] == 1 and data["values"]["now-wait_open"] == 1
    assert (await client.get("/no-such-page", headers=auth)).status == 404
    story = await (await client.get("/customer?id=a", headers=auth)).text()
    assert "customer a: a story" in story
    assert "no broker" in await (await client.get("/customer?id=broken", headers=auth)).text()


async def test_token_in_query_sets_a_session_cookie_and_redirects(client: TestClient[Any, Any]):
    resp = await client.get(f"/journey/abandoned_cart/1?token={TOKEN}&x=1", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/journey/abandoned_cart/1?x=1"
    cookie = resp.cookies[COOKIE]
    assert cookie.value and TOKEN not in cookie.value
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    # the client's cookie jar now sends it: every page opens without the token
    page = await client.get("/journey/abandoned_cart/1")
    assert page.status == 200 and 'id="now-wait_open"' in await page.text()
    assert (await client.get("/api/home")).status == 200


async def test_forged_cookie_is_401(client: TestClient[Any, Any]):
    client.session.cookie_jar.update_cookies({COOKIE: "forged-session-id"})
    assert (await client.get("/")).status == 401
    client.session.cookie_jar.update_cookies({COOKIE: TOKEN})  # the token itself is no session id
    assert (await client.get("/")).status == 401


def test_console_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch):
    import io

    monkeypatch.delenv("ORCH_CONSOLE_TOKEN", raising=False)
    err = io.StringIO()
    assert console_cli._console_command(None, err) == 2  # type: ignore[arg-type]
    assert err.getvalue().count("\n") == 1 and "ORCH_CONSOLE_TOKEN is not set" in err.getvalue()
    monkeypatch.setenv("ORCH_CONSOLE_TOKEN", "short")
    err = io.StringIO()
    assert console_cli._console_command(None, err) == 2  # type: ignore[arg-type]
    assert "shorter than" in err.getvalue()

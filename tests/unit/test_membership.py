"""Journey membership: in_journey / not_in_journey conditions and entry.exclusive_with (issue 15, item 7)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.dev.drive import drive
from orchestrator.journey.loader import JourneyError, load_text, validate_paths
from orchestrator.state import CustomerState
from tests.unit.test_engine_constructs import T0, ev, sends, traces

CART = """
id: cart
version: 1
name: Cart
entry: {event: web.cart_abandoned}
start: wait_open
steps:
  wait_open: {type: wait, for: {event: web.purchase}, timeout: 2d, on_event: done, on_timeout: done}
  done: {type: end}
"""

NEWSLETTER = """
id: promo
version: 1
name: Promo
entry:
  event: web.page_view
  profile: [{not_in_journey: cart}]
start: route
steps:
  route:
    type: branch
    cases:
      - {name: loyal, when: [{in_journey: loyalty, at: [gold, done]}], next: loyal_offer}
    default: offer
  loyal_offer: {type: send, channel: email, template: loyal_offer, comm_type: commercial, next: done}
  offer: {type: send, channel: email, template: offer, comm_type: commercial, next: done}
  done: {type: end}
"""

LOYALTY = """
id: loyalty
version: 1
name: Loyalty
entry: {event: web.form_submitted}
start: gold
steps:
  gold: {type: wait, for: {event: web.refund}, timeout: 30d, on_event: done, on_timeout: done}
  done: {type: end}
"""


def test_not_in_journey_keeps_a_customer_out_while_they_are_in_it() -> None:
    js = load_text(CART, NEWSLETTER, LOYALTY)
    state = CustomerState.new("c1")
    state, _ = drive(state, ev("cart1", "web.cart_abandoned", cart_id="k", cart_value=40.0), js, T0)
    state, acts = drive(state, ev("pv1", "web.page_view", T0 + timedelta(minutes=1), url="/"), js, T0 + timedelta(minutes=1))
    refused = traces(acts, "not_entered")
    assert [t.journey_id for t in refused] == ["promo"] and "not_in_journey" in str(refused[0].detail), refused
    # the cart journey ends with the purchase: now the promo may enter
    state, _ = drive(state, ev("buy", "web.purchase", T0 + timedelta(minutes=2), order_id="o", value=40.0), js, T0 + timedelta(minutes=2))
    state, acts = drive(state, ev("pv2", "web.page_view", T0 + timedelta(minutes=3), url="/"), js, T0 + timedelta(minutes=3))
    assert [s.template for s in sends(acts)] == ["offer"]


def test_in_journey_at_a_step_is_read_by_a_branch() -> None:
    js = load_text(CART, NEWSLETTER, LOYALTY)
    state = CustomerState.new("c2")
    state, _ = drive(state, ev("f", "web.form_submitted", form_id="x"), js, T0)  # in loyalty, at gold
    state, acts = drive(state, ev("pv", "web.page_view", T0 + timedelta(minutes=1), url="/"), js, T0 + timedelta(minutes=1))
    assert [s.template for s in sends(acts)] == ["loyal_offer"]


COMPETING = """
id: winback
version: 1
name: Win-back
entry: {{event: web.page_view, exclusive_with: [{other}]}}
start: hello
steps:
  hello: {{type: send, channel: email, template: winback, comm_type: commercial, next: wait}}
  wait: {{type: wait, for: {{event: web.purchase}}, timeout: 7d, on_event: done, on_timeout: done}}
  done: {{type: end}}
"""


def test_exclusive_with_refuses_the_second_journey_either_way() -> None:
    js = load_text(CART, COMPETING.format(other="cart"))
    # in the cart journey: the win-back (which names it) is refused, with the journey the customer is in
    state, _ = drive(CustomerState.new("c3"), ev("cart1", "web.cart_abandoned", cart_id="k", cart_value=40.0), js, T0)
    state, acts = drive(state, ev("pv", "web.page_view", T0 + timedelta(minutes=1), url="/"), js, T0 + timedelta(minutes=1))
    (refused,) = traces(acts, "not_entered")
    assert refused.journey_id == "winback" and "exclusive_with: the customer is in the competing journey cart" in str(refused.detail)
    assert sends(acts) == []
    # in the win-back: the cart journey (which does not name it) is refused too
    state, acts = drive(CustomerState.new("c4"), ev("pv", "web.page_view", url="/"), js, T0)
    assert [s.template for s in sends(acts)] == ["winback"]
    state, acts = drive(state, ev("cart1", "web.cart_abandoned", T0 + timedelta(minutes=1), cart_id="k", cart_value=9.0), js, T0)
    (refused,) = traces(acts, "not_entered")
    assert refused.journey_id == "cart" and "competing journey winback" in str(refused.detail)


def test_membership_references_are_checked_with_their_location(tmp_path) -> None:
    (tmp_path / "cart.yaml").write_text(CART)
    (tmp_path / "promo.yaml").write_text(NEWSLETTER.replace("in_journey: loyalty, at: [gold, done]", "in_journey: cart, at: wait_opn"))
    (tmp_path / "winback.yaml").write_text(COMPETING.format(other="carts"))
    problems = validate_paths([tmp_path])
    assert any(p.startswith(f"{tmp_path / 'promo.yaml'}:13:") and "no step 'wait_opn' (did you mean 'wait_open'?)" in p for p in problems)
    assert any(
        p.startswith(f"{tmp_path / 'winback.yaml'}:5:") and "no journey 'carts' is loaded (did you mean 'cart'?)" in p for p in problems
    )
    assert len(problems) == 2, problems
    with pytest.raises(JourneyError, match="no journey 'loyalty'"):
        load_text(CART, NEWSLETTER)


def test_exactly_one_of_in_journey_or_not_in_journey() -> None:
    with pytest.raises(JourneyError, match="exactly one of in_journey"):
        load_text(CART, NEWSLETTER.replace("{not_in_journey: cart}", "{not_in_journey: cart, in_journey: cart}"), LOYALTY)


def test_the_campaign_scan_reads_the_instances_for_an_audience_with_membership() -> None:
    from orchestrator.state import Instance
    from tests.unit.test_campaign_scheduler import NEWSLETTER as CAMPAIGN
    from tests.unit.test_campaign_scheduler import T0 as RUN_AT
    from tests.unit.test_campaign_scheduler import Clock, customer, drain, published, scheduler, store_of

    js = load_text(CART, CAMPAIGN.replace("when: [{field: profile.segment, eq: gold}]", "when: [{not_in_journey: cart}]"))
    busy = customer("busy")
    busy = busy.model_copy(
        update={
            "instances": [Instance(instance_id="i1", journey_id="cart", version=1, entry_event_id="e", entered_at=RUN_AT, step="wait_open")]
        }
    )
    store = store_of({0: [busy, customer("free")]})
    clock = Clock()
    s, _ = scheduler(store, clock)
    out = drain(s, js, RUN_AT + timedelta(seconds=5), {0}, total=1, clock=clock)
    assert published(out) == ["free"]


def test_render_names_the_competing_journeys() -> None:
    from orchestrator.designer.render import render_mermaid

    js = load_text(CART, COMPETING.format(other="cart"))
    assert "not while in cart" in render_mermaid(js.newest("winback").journey)  # type: ignore[union-attr]

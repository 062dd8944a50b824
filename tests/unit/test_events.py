"""Inbound validation: every bad input gets a precise reason; good input a canonical envelope."""

from __future__ import annotations

import json

import pytest

from orchestrator.events import (
    FAMILIES,
    CustomerEvent,
    InvalidEvent,
    TimerFired,
    decode_internal,
    encode_internal,
    event_types,
    parse_inbound,
)

CART = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "occurred_at": "2026-11-02T10:00:00+01:00",
    "type": "cart_abandoned",
    "cart_id": "k-9",
    "cart_value": 59.9,
}


def test_valid_event_becomes_canonical_envelope() -> None:
    ev = parse_inbound("web", json.dumps(CART).encode(), key=b"c-1")
    assert ev.type == "web.cart_abandoned"
    assert ev.customer_id == "c-1"
    assert ev.data["cart_value"] == 59.9
    assert ev.data["currency"] == "EUR"
    assert ev.occurred_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (json.dumps({**CART, "type": "cart_exploded"}).encode(), "does not match any of the expected tags"),
        (json.dumps({**CART, "cart_value": -3}).encode(), "cart_abandoned.cart_value: Input should be greater than or equal to 0"),
        (
            json.dumps({**CART, "occurred_at": "2026-11-02T10:00:00"}).encode(),
            "cart_abandoned.occurred_at: Input should have timezone info",
        ),
        (json.dumps({k: v for k, v in CART.items() if k != "customer_id"}).encode(), "cart_abandoned.customer_id: Field required"),
        (json.dumps({**CART, "colour": "red"}).encode(), "cart_abandoned.colour: Extra inputs are not permitted"),
    ],
)
def test_invalid_events_say_exactly_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_inbound("web", raw)
    assert reason in info.value.reason


def test_key_must_match_customer() -> None:
    with pytest.raises(InvalidEvent, match="message key 'c-2' differs from customer_id 'c-1'"):
        parse_inbound("web", json.dumps(CART), key=b"c-2")


def test_unknown_family() -> None:
    with pytest.raises(InvalidEvent, match="unknown event family 'fax'"):
        parse_inbound("fax", json.dumps(CART))


def test_ccm_events_carry_the_send_id() -> None:
    doc = {"event_id": "o1", "customer_id": "c-1", "occurred_at": "2026-11-02T10:00:00Z", "type": "opened", "channel": "email"}
    with pytest.raises(InvalidEvent, match=r"opened\.send_id: Field required"):
        parse_inbound("ccm", json.dumps(doc))
    ev = parse_inbound("ccm", json.dumps({**doc, "send_id": "s-1"}))
    assert ev.type == "ccm.opened" and ev.data["send_id"] == "s-1"


def test_every_family_lists_its_types() -> None:
    types = event_types()
    assert {t.split(".")[0] for t in types} == set(FAMILIES)
    assert "ccm.opened" in types and "consent.unsubscribed" in types and "ops.service_incident" in types


def test_internal_round_trip() -> None:
    ev = parse_inbound("web", json.dumps(CART))
    assert decode_internal(encode_internal(ev)) == ev
    t = TimerFired(customer_id="c-1", timer_id="i:s:timeout", due_at=ev.occurred_at)
    back = decode_internal(encode_internal(t))
    assert isinstance(back, TimerFired) and back == t and back.event_id == "timer:i:s:timeout"
    assert isinstance(decode_internal(encode_internal(ev)), CustomerEvent)

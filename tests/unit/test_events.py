"""Inbound validation: every bad input gets a precise reason; good input a canonical envelope."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    ],
)
def test_undecodable_messages_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_inbound("web", raw)
    assert reason in info.value.reason


WEB_TYPES = "cart_abandoned, cart_updated, feature_used, form_submitted, loan_approved, page_view, purchase, refund"
CART_ = "invalid web event 'cart_abandoned': "


def without(*fields: str) -> dict[str, Any]:
    return {k: v for k, v in CART.items() if k not in fields}


@pytest.mark.parametrize(
    ("family", "doc", "reason"),
    [
        pytest.param(
            "web",
            {**CART, "type": "cart_abandon"},
            f"invalid web event: unknown type 'cart_abandon'; known types: {WEB_TYPES} (did you mean 'cart_abandoned'?)",
            id="unknown-type",
        ),
        pytest.param(
            "callcenter",
            {**CART, "type": "fax_sent"},
            "invalid callcenter event: unknown type 'fax_sent'; known types: call_completed",
            id="unknown-type-no-suggestion",
        ),
        pytest.param("web", without("type"), f"invalid web event: missing field type; known types: {WEB_TYPES}", id="missing-type"),
        pytest.param(
            "web", {**CART, "type": 7}, f"invalid web event: type: expected a string, got 7; known types: {WEB_TYPES}", id="type-not-string"
        ),
        pytest.param(
            "web",
            {**CART, "occurred_at": "2026-03-01T10:00:00"},
            CART_ + 'occurred_at "2026-03-01T10:00:00" has no time zone; send ISO 8601 with an offset or Z, e.g. "2026-03-01T10:00:00Z"',
            id="no-time-zone",
        ),
        pytest.param(
            "web",
            {**CART, "occurred_at": "yesterday"},
            CART_ + 'occurred_at: expected an ISO 8601 date-time with an offset or Z, e.g. "2026-03-01T10:00:00Z", got "yesterday"',
            id="not-a-date-time",
        ),
        pytest.param("web", without("cart_id"), CART_ + "missing field cart_id (string)", id="missing-field"),
        pytest.param(
            "ops",
            {**CART, "type": "service_incident", "incident_id": "i-1", "service": "payments"},  # cart_id, cart_value: not ops fields
            "invalid ops event 'service_incident': missing field severity (minor, major or critical); "
            "unknown fields cart_id, cart_value (leave them out, or send free-form values in attributes)",
            id="missing-choice",
        ),
        pytest.param("web", {**CART, "cart_value": "abc"}, CART_ + 'cart_value: expected a number, got "abc"', id="not-a-number"),
        pytest.param("web", {**CART, "items": 1.5}, CART_ + "items: expected a whole number, got 1.5", id="not-a-whole-number"),
        pytest.param("web", {**CART, "cart_id": 42}, CART_ + "cart_id: expected a string, got 42", id="not-a-string"),
        pytest.param("web", {**CART, "brand": ["a"]}, CART_ + 'brand: expected a string or null, got ["a"]', id="not-a-string-or-null"),
        pytest.param("web", {**CART, "cart_value": -3}, CART_ + "cart_value: must be at least 0, got -3", id="below-minimum"),
        pytest.param(
            "callcenter",
            {**without("cart_id", "cart_value"), "type": "call_completed", "sentiment": "neutral", "sentiment_score": 1.5},
            "invalid callcenter event 'call_completed': sentiment_score: must be at most 1, got 1.5",
            id="above-maximum",
        ),
        pytest.param("web", {**CART, "cart_id": ""}, CART_ + "cart_id: must not be empty", id="empty-id"),
        pytest.param("web", {**CART, "currency": "EU"}, CART_ + 'currency: must have at least 3 characters, got "EU"', id="too-short"),
        pytest.param("web", {**CART, "cart_id": "k" * 200}, CART_ + "cart_id: must have at most 128 characters (got 200)", id="too-long"),
        pytest.param(
            "consent",
            {**without("cart_id", "cart_value"), "type": "unsubscribed", "channel": "smss"},
            "invalid consent event 'unsubscribed': channel: expected email, sms, push, call_center, direct_mail, web_message, in_app "
            "or all, got \"smss\" (did you mean 'sms'?)",
            id="not-one-of",
        ),
        pytest.param(
            "web",
            {**CART, "attributes": {"colour": {"r": 255}}},
            CART_ + 'attributes.colour: expected a string, a number, a boolean or null, got {"r": 255}',
            id="attribute-not-scalar",
        ),
        pytest.param("web", {**CART, "attributes": "red"}, CART_ + 'attributes: expected an object, got "red"', id="attributes-not-object"),
        pytest.param(
            "web",
            {**CART, "colour": "red"},
            CART_ + "unknown field colour (leave it out, or send free-form values in attributes)",
            id="unknown-field",
        ),
        pytest.param(
            "web",
            {**without("cart_value"), "cart_valeu": 3},
            CART_ + "missing field cart_value (number); unknown field cart_valeu (did you mean cart_value?)",
            id="misspelt-field",
        ),
    ],
)
def test_invalid_events_say_what_to_send_instead(family: str, doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_inbound(family, json.dumps(doc).encode(), key=b"c-1")
    assert (info.value.reason, info.value.code) == (reason, "schema")


def test_many_problems_list_the_first_five_and_count_the_rest() -> None:
    doc = {**CART, "occurred_at": "2026-03-01", "cart_id": "", "cart_value": "abc", "currency": "E", "items": -1, "colour": "red"}
    doc.pop("customer_id")
    with pytest.raises(InvalidEvent) as info:
        parse_inbound("web", json.dumps(doc))
    assert info.value.reason == (
        CART_ + "missing field customer_id (string); "
        'occurred_at "2026-03-01" has no time zone; send ISO 8601 with an offset or Z, e.g. "2026-03-01T00:00:00Z"; '
        "cart_id: must not be empty; "
        'cart_value: expected a number, got "abc"; '
        'currency: must have at least 3 characters, got "E"; '
        "and 2 more problems"
    )


def test_reasons_stay_short_whatever_is_sent() -> None:
    long = "x" * 5000
    doc = {**CART, "cart_id": long, "currency": long, **{f"{long}{i}": i for i in range(200)}}
    with pytest.raises(InvalidEvent) as info:
        parse_inbound("web", doc)  # a decoded document: no byte limit applies
    cut = "x" * 39 + "…"
    assert info.value.reason == (
        CART_ + "cart_id: must have at most 128 characters (got 5000); "
        f"currency: must have at most 3 characters (got 5000); unknown fields {cut}, {cut}, {cut}, {cut}, {cut} and 195 more "
        "(leave them out, or send free-form values in attributes)"
    )
    with pytest.raises(InvalidEvent) as info:
        parse_inbound("web", json.dumps({**CART, "type": long}))
    assert info.value.reason == f"invalid web event: unknown type '{cut}'; known types: {WEB_TYPES}"


def test_key_must_match_customer() -> None:
    with pytest.raises(InvalidEvent, match="message key 'c-2' differs from customer_id 'c-1'"):
        parse_inbound("web", json.dumps(CART), key=b"c-2")


def test_unknown_family() -> None:
    with pytest.raises(InvalidEvent, match="unknown event family 'fax'"):
        parse_inbound("fax", json.dumps(CART))


def test_ccm_events_carry_the_send_id() -> None:
    doc = {"event_id": "o1", "customer_id": "c-1", "occurred_at": "2026-11-02T10:00:00Z", "type": "opened", "channel": "email"}
    with pytest.raises(InvalidEvent, match=r"^invalid ccm event 'opened': missing field send_id \(string\)$"):
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


def test_an_invalid_event_carries_its_readable_customer_id_for_the_dead_letter() -> None:
    from orchestrator.events import InvalidEvent, parse_inbound

    doc = {"event_id": "e1", "customer_id": "c-42", "occurred_at": "2026-03-02T10:00:00Z", "type": "cart_abandoned"}
    with pytest.raises(InvalidEvent) as exc:
        parse_inbound("web", {**doc, "cart_value": "lots"})
    assert (exc.value.code, exc.value.customer_id) == ("schema", "c-42")
    with pytest.raises(InvalidEvent) as exc:
        parse_inbound("web", {**doc, "cart_id": "k", "cart_value": 3.0}, key=b"other")
    assert (exc.value.code, exc.value.customer_id) == ("key_mismatch", "c-42")
    with pytest.raises(InvalidEvent) as exc:
        parse_inbound("web", {**doc, "customer_id": 7, "cart_value": 3.0})
    assert exc.value.customer_id is None  # not a readable id


def test_the_envelope_built_without_validation_equals_the_validated_one() -> None:
    """parse_inbound builds CustomerEvent with fast_new: for every inbound line of the fixture event files
    (all families), the result equals CustomerEvent validated from the same fields, field by field."""
    from pathlib import Path

    checked = set()
    for path in sorted((Path(__file__).parent.parent / "fixtures" / "events").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            doc = json.loads(line) if line.strip().startswith("{") else None
            if not isinstance(doc, dict) or "family" not in doc:
                continue
            family = doc.pop("family")
            try:
                ev = parse_inbound(family, json.dumps(doc).encode(), key=doc.get("customer_id", "").encode())
            except InvalidEvent:
                continue  # the fixtures hold refused events on purpose
            validated = CustomerEvent.model_validate(ev.model_dump())
            assert ev == validated and ev.model_dump_json() == validated.model_dump_json()
            assert ev.model_fields_set == validated.model_fields_set | {"kind", "data"}
            checked.add(family)
    assert {"ccm", "web", "consent", "crm"} <= checked, checked


def _typed(v: Any) -> Any:
    """A document with every value's type beside it (1 and 1.0, True and 1 compare unequal)."""
    if isinstance(v, dict):
        return {k: _typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_typed(x) for x in v]
    return (type(v).__name__, repr(v))


def _outcome(decode: Any, raw: bytes, limits: Any) -> Any:
    try:
        return ("doc", _typed(decode(raw, limits)))
    except InvalidEvent as exc:
        return ("refused", exc.code, exc.reason)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_docs = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20
)


@settings(max_examples=400, deadline=None)
@given(
    doc=st.dictionaries(st.text(max_size=6), _docs, max_size=5),
    ascii_only=st.booleans(),
    tweak=st.sampled_from(["", "bom", "deep", "long_float", "exp", "surrogate", "big_int"]),
    digits=st.sampled_from([20, 32, 40]),
)
def test_the_fast_json_path_answers_as_the_checked_one(doc: dict[str, Any], ascii_only: bool, tweak: str, digits: int) -> None:
    """decode_json's orjson path returns a document only where the json-with-guards path returns the same one."""
    from orchestrator.events import InboundLimits, _decode_checked, decode_json

    raw = json.dumps(doc, ensure_ascii=ascii_only).encode()
    inner = raw[1:-1]
    sep = b"," if inner else b""
    raw = {
        "": raw,
        "bom": b"\xef\xbb\xbf" + raw,
        "deep": b'{"d":' + b"[" * 20 + b"1" + b"]" * 20 + sep + inner + b"}",
        "long_float": b'{"f":0.' + b"1" * 40 + sep + inner + b"}",
        "exp": b'{"f":1e999' + sep + inner + b"}",
        "surrogate": b'{"s":"\\ud800"' + sep + inner + b"}",
        "big_int": b'{"i":-9223372036854775809,"f":1.5' + sep + inner + b"}",
    }[tweak]
    limits = InboundLimits(max_number_digits=digits)
    assert _outcome(decode_json, raw, limits) == _outcome(_decode_checked, raw, limits)

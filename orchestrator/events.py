"""Inbound event models: what upstream teams publish, and the canonical envelope.

Upstream systems publish one JSON object per Kafka message, keyed by customer id,
on one inbound topic per *family* (ccm, web, callcenter, geo, consent, crm, ops).
Each family is a pydantic discriminated union on ``type``; the JSON Schemas in
``schemas/events/`` are generated from these models (``orchestrator schemas``)
and a test fails when they drift.

A valid inbound event becomes a :class:`CustomerEvent` — the canonical envelope
the engine sees, with a qualified type such as ``web.cart_abandoned``. Timers
come back to the engine as :class:`TimerFired`. Both travel on the internal
customer topic as :data:`InternalMessage`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

Id = Annotated[str, Field(min_length=1, max_length=128)]
Scalar = str | int | float | bool | None
Channel = Literal["email", "sms", "push", "call_center", "direct_mail", "web_message", "in_app"]
CHANNELS: tuple[str, ...] = Channel.__args__  # type: ignore[attr-defined]


class _Inbound(BaseModel):
    """Fields every inbound event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id = Field(description="Unique id of this event; a redelivered duplicate carries the same id and is ignored.")
    customer_id: Id = Field(description="The customer; also the Kafka message key.")
    occurred_at: AwareDatetime = Field(description="When it happened, ISO 8601 with a UTC offset.")
    brand: str | None = Field(default=None, description="Brand the event belongs to, if any.")
    attributes: dict[str, Scalar] = Field(
        default_factory=dict, description="Free-form scalar attributes; conditions can read them as data.attributes.X."
    )


# --- ccm: the customer communications platform reports on the messages we sent ---


class _CcmEvent(_Inbound):
    send_id: Id = Field(description="The send request id we put on the send request; matches the exact message.")
    channel: Channel
    template: str | None = None


class CcmDelivered(_CcmEvent):
    type: Literal["delivered"]


class CcmOpened(_CcmEvent):
    type: Literal["opened"]


class CcmClicked(_CcmEvent):
    type: Literal["clicked"]
    link: str | None = None


class CcmBounced(_CcmEvent):
    type: Literal["bounced"]
    bounce_reason: str | None = None


CcmEvent = Annotated[CcmDelivered | CcmOpened | CcmClicked | CcmBounced, Field(discriminator="type")]


# --- web: activity on the website / app ---


class CartAbandoned(_Inbound):
    type: Literal["cart_abandoned"]
    cart_id: Id
    cart_value: float = Field(ge=0)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    items: int = Field(default=1, ge=0)


class FormSubmitted(_Inbound):
    type: Literal["form_submitted"]
    form_id: Id


class LoanApproved(_Inbound):
    type: Literal["loan_approved"]
    loan_id: Id
    amount: float = Field(ge=0)


class FeatureUsed(_Inbound):
    type: Literal["feature_used"]
    feature: Id


class PageView(_Inbound):
    type: Literal["page_view"]
    url: str


class Purchase(_Inbound):
    type: Literal["purchase"]
    order_id: Id
    value: float = Field(ge=0)
    currency: str = Field(default="EUR", min_length=3, max_length=3)


class Refund(_Inbound):
    type: Literal["refund"]
    order_id: Id
    amount: float = Field(ge=0)


WebEvent = Annotated[
    CartAbandoned | FormSubmitted | LoanApproved | FeatureUsed | PageView | Purchase | Refund,
    Field(discriminator="type"),
]


# --- callcenter ---


class CallCompleted(_Inbound):
    type: Literal["call_completed"]
    sentiment: Literal["negative", "neutral", "positive"]
    sentiment_score: float = Field(ge=-1, le=1, description="-1 very negative .. +1 very positive")
    topic: str | None = None
    agent_id: str | None = None


CallcenterEvent = Annotated[CallCompleted, Field(discriminator="type")]


# --- geo ---


class StoreEntered(_Inbound):
    type: Literal["store_entered"]
    store_id: Id
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class GeofenceEntered(_Inbound):
    type: Literal["geofence_entered"]
    geofence_id: Id
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


GeoEvent = Annotated[StoreEntered | GeofenceEntered, Field(discriminator="type")]


# --- consent ---


class Unsubscribed(_Inbound):
    type: Literal["unsubscribed"]
    channel: Channel | Literal["all"] = Field(description="Channel unsubscribed from, or 'all'.")
    # brand (inherited): None means every brand of the company.


class Resubscribed(_Inbound):
    type: Literal["resubscribed"]
    channel: Channel | Literal["all"]


ConsentEvent = Annotated[Unsubscribed | Resubscribed, Field(discriminator="type")]


# --- crm: customer master data and model scores ---


class CustomerRegistered(_Inbound):
    type: Literal["customer_registered"]
    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Berlin")
    segment: str | None = None


class ProfileUpdated(_Inbound):
    type: Literal["profile_updated"]
    timezone: str | None = Field(default=None, description="IANA time zone, e.g. Europe/Berlin")
    segment: str | None = None


class ChurnRiskScored(_Inbound):
    type: Literal["churn_risk_scored"]
    score: float = Field(ge=0, le=1)
    model: str | None = None


CrmEvent = Annotated[CustomerRegistered | ProfileUpdated | ChurnRiskScored, Field(discriminator="type")]


# --- ops: incidents that affect a customer (one event per affected customer) ---


class ServiceIncident(_Inbound):
    type: Literal["service_incident"]
    incident_id: Id
    service: str
    severity: Literal["minor", "major", "critical"]


OpsEvent = Annotated[ServiceIncident, Field(discriminator="type")]


FAMILIES: dict[str, Any] = {
    "ccm": CcmEvent,
    "web": WebEvent,
    "callcenter": CallcenterEvent,
    "geo": GeoEvent,
    "consent": ConsentEvent,
    "crm": CrmEvent,
    "ops": OpsEvent,
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(model) for name, model in FAMILIES.items()}


def event_types() -> list[str]:
    """Every qualified event type an inbound topic can carry, e.g. ``web.cart_abandoned``."""
    out: list[str] = []
    for family, union in FAMILIES.items():
        inner = get_args(union)[0]
        for model in get_args(inner) or (inner,):
            out.append(f"{family}.{model.model_fields['type'].annotation.__args__[0]}")
    return out


# --- the canonical envelope ---


class CustomerEvent(BaseModel):
    """A validated inbound event in canonical form: what the engine folds into state."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["event"] = "event"
    event_id: str
    customer_id: str
    type: str = Field(description="Qualified type: <family>.<type>, e.g. ccm.opened")
    occurred_at: datetime
    data: dict[str, Any] = Field(default_factory=dict, description="The family-specific fields, e.g. cart_value, send_id, attributes")


class TimerFired(BaseModel):
    """A durable timer that came due; published by the timer service onto the customer's partition."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["timer"] = "timer"
    customer_id: str
    timer_id: str
    due_at: datetime

    @property
    def event_id(self) -> str:
        return f"timer:{self.timer_id}"


InternalMessage = Annotated[CustomerEvent | TimerFired, Field(discriminator="kind")]
_INTERNAL = TypeAdapter(InternalMessage)


class InvalidEvent(ValueError):
    """An inbound message that cannot be accepted; ``reason`` says exactly why, ``code`` names the kind.

    Codes: ``too_large``, ``not_json``, ``too_deep``, ``number_too_large``, ``not_object``,
    ``unknown_family``, ``schema``, ``key_mismatch``. Both go on the dead-letter record.
    """

    def __init__(self, reason: str, code: str = "schema") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class InboundLimits:
    """Bounds on what an upstream message may be, checked before anything else is done with it."""

    max_bytes: int = 64 * 1024
    """Largest accepted message value (ORCH_MAX_EVENT_BYTES)."""
    max_depth: int = 16
    """Deepest accepted nesting of JSON objects/arrays (the schemas need 2)."""
    max_number_digits: int = 32
    """Longest accepted JSON number literal (guards the int parser and float overflow)."""


DEFAULT_INBOUND_LIMITS = InboundLimits()


def _number_guard(limit: int, convert: Any) -> Any:
    def parse(literal: str) -> Any:
        if len(literal) > limit:
            raise InvalidEvent(
                f"a number has {len(literal)} characters, more than the {limit} accepted; send it as a string or round it",
                "number_too_large",
            )
        value = convert(literal)
        if value in (float("inf"), float("-inf")):
            raise InvalidEvent(f"the number {literal} is out of range", "number_too_large")
        return value

    return parse


def _refuse_constant(name: str) -> Any:
    raise InvalidEvent(f"{name} is not valid JSON; send null or leave the field out", "not_json")


def _depth(doc: Any, limit: int) -> int:
    """Nesting depth of containers, iteratively (stops counting past ``limit``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, d + 1))
    return deepest


def decode_json(raw: bytes | str, limits: InboundLimits = DEFAULT_INBOUND_LIMITS) -> Any:
    """Bytes -> JSON document within ``limits``; :class:`InvalidEvent` with a precise reason otherwise."""
    if len(raw) > limits.max_bytes:
        raise InvalidEvent(
            f"message is {len(raw)} bytes, over the limit of {limits.max_bytes} (ORCH_MAX_EVENT_BYTES); send large payloads by reference",
            "too_large",
        )
    try:
        doc = json.loads(
            raw,
            parse_int=_number_guard(limits.max_number_digits, int),
            parse_float=_number_guard(limits.max_number_digits, float),
            parse_constant=_refuse_constant,
        )
    except InvalidEvent:
        raise
    except RecursionError:
        raise InvalidEvent(f"JSON nested deeper than {limits.max_depth} levels", "too_deep") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidEvent(f"not valid JSON: {exc}", "not_json") from None
    if isinstance(doc, (dict, list)) and _depth(doc, limits.max_depth) > limits.max_depth:
        raise InvalidEvent(f"JSON nested deeper than {limits.max_depth} levels", "too_deep")
    return doc


def parse_inbound(
    family: str,
    raw: bytes | str | dict[str, Any],
    key: bytes | str | None = None,
    limits: InboundLimits = DEFAULT_INBOUND_LIMITS,
) -> CustomerEvent:
    """Validate one inbound message of ``family`` and return its canonical envelope.

    Raises :class:`InvalidEvent` with a precise, human-readable reason (size, JSON
    error, depth, number size, unknown family, schema violation with the field path,
    key/customer mismatch).
    """
    if family not in _ADAPTERS:
        raise InvalidEvent(f"unknown event family {family!r}; known: {', '.join(FAMILIES)}", "unknown_family")
    doc = decode_json(raw, limits) if isinstance(raw, (bytes, str)) else raw
    if not isinstance(doc, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(doc).__name__}", "not_object")
    try:
        model = _ADAPTERS[family].validate_python(doc)
    except ValidationError as exc:
        raise InvalidEvent(_explain(family, exc), "schema") from None
    if key is not None:
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if k and k != model.customer_id:
            raise InvalidEvent(f"message key {k!r} differs from customer_id {model.customer_id!r}", "key_mismatch")
    data = model.model_dump(mode="json", exclude={"event_id", "customer_id", "occurred_at", "type"})
    return CustomerEvent(
        event_id=model.event_id,
        customer_id=model.customer_id,
        type=f"{family}.{model.type}",
        occurred_at=model.occurred_at,
        data=data,
    )


def _explain(family: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid {family} event: " + "; ".join(parts)


def encode_internal(msg: CustomerEvent | TimerFired) -> bytes:
    """Serialize a message for the internal customer topic."""
    return msg.model_dump_json().encode()


def decode_internal(raw: bytes | str) -> CustomerEvent | TimerFired:
    """Parse a message from the internal customer topic."""
    return _INTERNAL.validate_json(raw)


def family_json_schema(family: str) -> dict[str, Any]:
    """The JSON Schema upstream teams validate against for one family."""
    schema = _ADAPTERS[family].json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"{family} events"
    return schema

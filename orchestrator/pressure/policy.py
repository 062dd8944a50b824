"""The contact-pressure policy (``journeys/pressure.yaml``) and the pure rules both baskets share.

This module is the single source of the basket's semantics. The Redis gate
(``gate.lua`` driven by :mod:`orchestrator.pressure.redis_basket`) and the in-memory
twin (:mod:`orchestrator.pressure.memory`) both start from :class:`GatePlanner` (:func:`plan_gate`), which does
all policy arithmetic and time-zone math in Python, and both end in
:func:`decision_from_record`, which turns the stored decision record into a
:class:`~orchestrator.pressure.basket.Decision`. Only the stateful checks in between
live twice (Lua and Python), and a differential test keeps them identical.

Semantics
=========

**Period.** ``calendar_month`` (default): the basket is the calendar month in the
customer's time zone (``GateRequest.timezone``; an unknown zone falls back to UTC);
the period id is ``"YYYY-MM"`` and it ends at local midnight of the next month's 1st.
``rolling`` with ``days: N``: the basket holds every spend made less than N days ago
(a spend at ``t`` counts while ``now < t + N days``); the period id is ``"rolling-Nd"``.

**Cost and rounding.** A send costs ``points[comm_type] * channel_weights[channel]``.
All amounts (costs, capacity, reserve thresholds, balances) are kept as integer
hundredths of a point, rounded half-up once per amount (``10 * 1.5 = 15.00``,
``2 * 1.333 = 2.67``), so Lua and Python add exactly the same integers. Decisions
report them as floats (``units / 100``).

**Order of checks** for one gate request (the first that applies decides):

1. *Replay.* A send id decided before returns the stored decision verbatim with
   ``replayed=True`` and spends nothing, whatever the request now says.
2. *Suppression.* The customer is unsubscribed from the channel or from ``all``
   channels, for every brand or for the send's brand (members ``ch@brand``,
   ``all@brand``, ``ch``, ``all``, checked in that order) → ``suppressed``. This holds
   for calamity messages too: consent is never overridden.
3. *Calamity lock.* For a type listed in ``calamity.blocks`` while a lock is active →
   ``locked`` with ``retry_at`` = the end of the lock.
4. *Calamity.* A ``calamity`` send that got this far is always ``approved``: it spends
   its points (the balance may exceed the capacity) and locks the customer until
   ``now + calamity.lock`` (an existing longer lock is kept). It skips arbitration
   and capacity.
5. *Arbitration* (only when ``arbitration_window`` is set). If a send of a strictly
   higher priority ``q`` was approved for this customer within the window (at ``t``
   with ``now - window < t``), the send is ``capped`` with code ``arbitration`` and
   ``retry_at`` = the latest such ``t + window``. Equal or higher priorities still go.
   Every approved send except calamity is remembered for arbitration.
6. *Capacity and reserve* (skipped for ``exempt_types``). The send's limit is the
   smallest ``fill_up_to`` of the ``priority_reserve`` rules with
   ``priority <= max_priority`` (the capacity when none applies). It fits when
   ``balance + cost <= limit``; otherwise it is ``capped`` (code ``reserve`` when the
   full capacity would still have held it, else ``capacity``) with ``retry_at`` = when
   it would fit: the start of the next calendar period, or in a rolling period the
   moment enough of the oldest spends have expired; ``None`` when the cost alone
   exceeds the limit.
7. Otherwise ``approved`` and recorded under the send id.

Every decision (approved or not) is stored under the send id so that a redelivery
gets the same answer. Basket keys expire ``key_margin`` after their period ends;
the suppression list never expires (consent is not periodic).

**Consent** (:func:`apply_consent`). Unsubscribe adds ``channel[@brand]``
(``channel`` may be ``all``; no brand means every brand). Resubscribe to
``(channel, brand)`` lifts every suppression inside that scope, and splits an
``all`` suppression of the same brand scope into the other channels; a
company-wide (brand-less) suppression is *not* lifted by a brand-specific
resubscribe.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Iterable, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.events import CHANNELS
from orchestrator.pressure.basket import COMM_TYPES, BasketView, CommType, Decision, GateRequest, Spend
from orchestrator.yamlpos import format_yaml_error, load_yaml_with_positions, locate

__all__ = [
    "CalamityRule",
    "CalendarMonth",
    "ChannelWeights",
    "DecisionRecord",
    "GatePlan",
    "GatePlanner",
    "PeriodInfo",
    "Points",
    "PolicyError",
    "PressurePolicy",
    "ReserveRule",
    "Rolling",
    "apply_consent",
    "basket_view",
    "cost_units",
    "decision_from_record",
    "decode_spend",
    "encode_spend",
    "format_duration",
    "from_ms",
    "load_policy",
    "parse_duration",
    "period_bounds",
    "period_id",
    "period_info",
    "plan_gate",
    "policy_json_schema",
    "policy_json_schema_text",
    "record_cost",
    "resolve_tz",
    "send_cost",
    "suppression_candidates",
    "suppression_member",
    "to_ms",
]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# ---------------------------------------------------------------- durations

_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_RE = re.compile(r"^(?:\d+[wdhms])+$")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")


def parse_duration(value: Any) -> timedelta:
    """``"15m"``, ``"72h"``, ``"7d"``, ``"1h30m"``, ``"2w"`` or integer seconds → :class:`timedelta`."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "expected a duration like '15m', '72h' or '7d', got {value}", {"value": value})
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError("duration", "a duration cannot be negative, got {value}", {"value": value})
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _DURATION_RE.match(text):
            seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
            return timedelta(seconds=seconds)
    raise PydanticCustomError(
        "duration",
        "expected a duration like '15m', '72h', '7d' or '1h30m' (units w d h m s) or whole seconds, got {value}",
        {"value": repr(value)},
    )


def format_duration(value: timedelta) -> str:
    """The compact form :func:`parse_duration` reads back, e.g. ``timedelta(hours=72)`` → ``"3d"``."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+[wdhms])+$", "examples": ["15m", "72h", "7d"]},
                {"type": "integer", "minimum": 0, "description": "seconds"},
            ]
        }
    ),
]

# ---------------------------------------------------------------- the policy model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalendarMonth(_Strict):
    """The basket is the calendar month in the customer's time zone."""

    kind: Literal["calendar_month"] = Field(description="One basket per calendar month, in the customer's time zone.")


class Rolling(_Strict):
    """The basket holds the spends of the last ``days`` days."""

    kind: Literal["rolling"] = Field(description="A sliding window: spends count for `days` days after they were made.")
    days: int = Field(ge=1, le=366, description="Length of the sliding window in days.")


PeriodSpec = Annotated[Union[CalendarMonth, Rolling], Field(discriminator="kind")]


class Points(_Strict):
    """Points per communication type (before the channel weight)."""

    service: float = Field(default=2, ge=0, le=1_000_000, description="Service messages (confirmations, account notices).")
    editorial: float = Field(default=5, ge=0, le=1_000_000, description="Editorial content (newsletters, tips).")
    commercial: float = Field(default=10, ge=0, le=1_000_000, description="Commercial offers and reminders.")
    calamity: float = Field(default=20, ge=0, le=1_000_000, description="Calamity messages (outage, incident); always approved unless unsubscribed.")


class ChannelWeights(_Strict):
    """Multiplier per channel: intrusive channels weigh more."""

    email: float = Field(default=1, ge=0, le=1000, description="Weight of an email.")
    direct_mail: float = Field(default=1, ge=0, le=1000, description="Weight of a letter / direct mail.")
    push: float = Field(default=1, ge=0, le=1000, description="Weight of a push notification.")
    in_app: float = Field(default=1, ge=0, le=1000, description="Weight of an in-app message.")
    web_message: float = Field(default=1, ge=0, le=1000, description="Weight of a web message.")
    sms: float = Field(default=1.5, ge=0, le=1000, description="Weight of an SMS (more intrusive).")
    call_center: float = Field(default=2, ge=0, le=1000, description="Weight of an outbound call (most intrusive).")


class ReserveRule(_Strict):
    """Sends of priority ``<= max_priority`` may fill the basket only up to ``fill_up_to`` points."""

    max_priority: int = Field(ge=1, le=10, description="The rule applies to sends with priority 1..max_priority (10 is the highest priority).")
    fill_up_to: float = Field(ge=0, description="Those sends fit only while the balance after them stays at or below this many points.")


class CalamityRule(_Strict):
    """What an approved calamity message does to the customer's other messages."""

    lock: Duration = Field(default="72h", validate_default=True, description="How long the customer stays locked after a calamity message ('0s' = no lock).")
    blocks: list[Literal["service", "editorial", "commercial"]] = Field(
        default_factory=lambda: ["commercial", "editorial"],
        description="Communication types answered 'locked' while the lock lasts.",
    )


def _default_reserve() -> list[ReserveRule]:
    return [ReserveRule(max_priority=3, fill_up_to=15), ReserveRule(max_priority=6, fill_up_to=20)]


class PressurePolicy(_Strict):
    """The contact-pressure policy: one basket per customer and period, shared by every brand and channel."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Contact-pressure policy",
        json_schema_extra={"description": "journeys/pressure.yaml: how much contact a customer gets per period. See orchestrator/pressure/policy.py for the exact semantics."},
    )

    period: PeriodSpec = Field(default_factory=lambda: CalendarMonth(kind="calendar_month"), description="What one basket covers: {kind: calendar_month} or {kind: rolling, days: N}.")
    capacity: float = Field(default=25, ge=0, le=1_000_000, description="Points a customer's basket holds per period.")
    points: Points = Field(default_factory=Points, description="Points per communication type; omitted types keep their default.")
    channel_weights: ChannelWeights = Field(default_factory=ChannelWeights, description="Multiplier per channel; a send costs points[type] * weight[channel], rounded to 0.01.")
    priority_reserve: list[ReserveRule] = Field(
        default_factory=_default_reserve,
        description="Low priorities may fill the basket only up to a threshold, keeping room for higher ones. The smallest matching fill_up_to applies.",
    )
    arbitration_window: Duration | None = Field(
        default=None,
        description="Optional. Within this time after an approved send of priority P, sends of lower priority than P for the same customer are capped ('arbitration'). null = off.",
    )
    calamity: CalamityRule = Field(default_factory=CalamityRule, description="The calamity lock: its duration and the types it blocks.")
    exempt_types: list[CommType] = Field(
        default_factory=list,
        description="Types that bypass capacity and reserve (still recorded and counted). Calamity is always exempt.",
    )
    key_margin: Duration = Field(
        default="7d",
        validate_default=True,
        description="How long basket keys and recorded decisions outlive their period, so late redeliveries still get their decision.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "PressurePolicy":
        problems = self.problems()
        if problems:
            raise PydanticCustomError(
                "pressure_policy",
                "{summary}",
                {"summary": "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems), "problems": problems},
            )
        return self

    def problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Cross-field inconsistencies as ``(path, message)`` pairs (empty when consistent)."""
        out: list[tuple[tuple[Any, ...], str]] = []
        seen: dict[int, int] = {}
        for i, rule in enumerate(self.priority_reserve):
            if rule.fill_up_to > self.capacity:
                out.append((("priority_reserve", i, "fill_up_to"), f"fill_up_to {_num(rule.fill_up_to)} exceeds the capacity {_num(self.capacity)}"))
            if rule.max_priority in seen:
                out.append((("priority_reserve", i, "max_priority"), f"max_priority {rule.max_priority} is already used by priority_reserve[{seen[rule.max_priority]}]"))
            seen.setdefault(rule.max_priority, i)
        if self.arbitration_window is not None and self.arbitration_window <= timedelta(0):
            out.append((("arbitration_window",), "must be longer than 0s; use null to turn arbitration off"))
        if len(set(self.calamity.blocks)) != len(self.calamity.blocks):
            out.append((("calamity", "blocks"), "lists a type twice"))
        return out

    # -- derived values used by both baskets

    def limit_for(self, priority: int) -> float:
        """The most points a send of ``priority`` may fill the basket up to."""
        limits = [r.fill_up_to for r in self.priority_reserve if priority <= r.max_priority]
        return min(limits, default=self.capacity)


def _num(x: float) -> str:
    return f"{x:g}"


# ---------------------------------------------------------------- loading and the schema


class PolicyError(ValueError):
    """The policy file is invalid; ``problems`` (alias ``errors``, as on ``JourneyError``) holds one ``file:line:col: message`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.errors = problems


def _explain_loc(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(policy)"


def load_policy(path: str | os.PathLike[str]) -> PressurePolicy:
    """Read and validate a pressure policy file.

    Raises :class:`PolicyError` listing every problem as ``file:line:col: message``.
    An empty file means "all defaults".
    """
    name = os.fspath(path)
    try:
        data, positions = load_yaml_with_positions(path)
    except OSError as exc:
        raise PolicyError([f"{name}:1:1: cannot read the policy: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([format_yaml_error(name, exc)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([f"{name}:1:1: the policy must be a mapping of settings, got {type(data).__name__}"])
    try:
        return PressurePolicy.model_validate(data)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors(include_url=False):
            if err["type"] == "pressure_policy":
                for loc, msg in err["ctx"]["problems"]:
                    line, col = locate(positions, loc)
                    problems.append(f"{name}:{line}:{col}: {_explain_loc(loc)}: {msg}")
                continue
            loc = err["loc"]
            line, col = locate(positions, loc)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown setting (check the spelling; see schemas/pressure.json)"
            problems.append(f"{name}:{line}:{col}: {_explain_loc(_clean_loc(data, loc))}: {msg}")
        raise PolicyError(problems) from None


def _clean_loc(data: Any, loc: Iterable[Any]) -> tuple[Any, ...]:
    """A pydantic ``loc`` as the path a designer sees in the file.

    Drops what pydantic inserts for unions: validator tags such as
    ``function-after[...]`` and discriminator values (``period.rolling.days`` → ``period.days``).
    """
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(part, str) and part.endswith("]") and "[" in part:
            continue
        if isinstance(node, dict) and part not in node and part in node.values():
            continue  # the discriminator value of a tagged union
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``journeys/pressure.yaml`` (committed as ``schemas/pressure.json``)."""
    schema = PressurePolicy.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "pressure.json", **schema}


def policy_json_schema_text() -> str:
    """The exact text of ``schemas/pressure.json`` (rendered like ``orchestrator.schemas.render``)."""
    return json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------- time and periods


def resolve_tz(name: str | None) -> ZoneInfo:
    """The IANA zone ``name``; unknown or empty names fall back to UTC (a bad profile must not stop a worker)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. "Europe" is a directory
        return ZoneInfo("UTC")


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds (floored) of ``moment``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime for epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True)
class PeriodInfo:
    """The basket period containing a moment: id and bounds in epoch milliseconds.

    Calendar month: ``[start_ms, end_ms)``. Rolling: ``(start_ms, end_ms]`` with
    ``end_ms = now`` and ``window_ms`` the window length.
    """

    id: str
    kind: Literal["calendar_month", "rolling"]
    start_ms: int
    end_ms: int
    window_ms: int = 0


def period_info(policy: PressurePolicy, now: datetime, tz: str | None) -> PeriodInfo:
    """The period of ``policy`` containing ``now`` for a customer in time zone ``tz``."""
    now_ms = to_ms(now)
    spec = policy.period
    if isinstance(spec, Rolling):
        window = spec.days * 86_400_000
        return PeriodInfo(id=f"rolling-{spec.days}d", kind="rolling", start_ms=now_ms - window, end_ms=now_ms, window_ms=window)
    zone = resolve_tz(tz)
    local = from_ms(now_ms).astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    nxt = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=zone)
    return PeriodInfo(id=f"{local.year:04d}-{local.month:02d}", kind="calendar_month", start_ms=to_ms(start), end_ms=to_ms(nxt))


def period_id(policy: PressurePolicy, now: datetime, tz: str | None) -> str:
    """E.g. ``"2026-11"`` (calendar month in ``tz``) or ``"rolling-30d"``."""
    return period_info(policy, now, tz).id


def period_bounds(policy: PressurePolicy, now: datetime, tz: str | None) -> tuple[float, float]:
    """Start and end of the period containing ``now`` as epoch seconds (rolling: ``(now - N days, now)``)."""
    info = period_info(policy, now, tz)
    return info.start_ms / 1000, info.end_ms / 1000


def _units(value: float) -> int:
    """Hundredths of a point, rounded half-up."""
    return int((Decimal(repr(float(value))) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _mul_units(a: float, b: float) -> int:
    return int((Decimal(repr(float(a))) * Decimal(repr(float(b))) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def cost_units(policy: PressurePolicy, comm_type: str, channel: str) -> int:
    """The cost of a send in hundredths of a point (see the module docstring on rounding)."""
    return _mul_units(getattr(policy.points, comm_type), getattr(policy.channel_weights, channel))


def send_cost(policy: PressurePolicy, comm_type: str, channel: str) -> float:
    """``points[comm_type] * channel_weights[channel]`` rounded to 0.01 point."""
    return cost_units(policy, comm_type, channel) / 100


# ---------------------------------------------------------------- suppressions


def suppression_member(channel: str, brand: str | None) -> str:
    """The suppression-set member for an unsubscribe from ``channel`` (or ``all``) and ``brand`` (None = every brand)."""
    return f"{channel}@{brand}" if brand else channel


def suppression_candidates(channel: str, brand: str | None) -> list[str]:
    """Members that suppress a send on ``channel`` for ``brand``, most specific first."""
    if brand:
        return [f"{channel}@{brand}", f"all@{brand}", channel, "all"]
    return [channel, "all"]


def _split_member(member: str) -> tuple[str, str | None]:
    channel, _, brand = member.partition("@")
    return channel, (brand or None)


def apply_consent(members: Iterable[str], channel: str, brand: str | None, subscribed: bool) -> set[str]:
    """The suppression set after one consent change (see the module docstring)."""
    current = set(members)
    if not subscribed:
        return current | {suppression_member(channel, brand)}
    out: set[str] = set()
    for member in current:
        m_channel, m_brand = _split_member(member)
        inside_brand = brand is None or m_brand == brand
        if not inside_brand:
            out.add(member)
        elif channel == "all" or m_channel == channel:
            continue  # lifted
        elif m_channel == "all":
            out.update(suppression_member(c, m_brand) for c in CHANNELS if c != channel)
        else:
            out.add(member)
    return out


# ---------------------------------------------------------------- one gate request, planned


@dataclass(frozen=True)
class GatePlan:
    """Everything a basket needs to decide one request; all policy math already done.

    The Redis basket passes these fields as ARGV to ``gate.lua``; the twin reads them
    directly. Amounts are hundredths of a point, times epoch milliseconds.
    """

    customer_id: str
    send_id: str
    now_ms: int
    period: PeriodInfo
    cost: int
    limit: int
    capacity: int
    is_calamity: bool
    blocked_by_lock: bool
    exempt: bool
    lock_ms: int
    arbitration_ms: int
    priority: int
    comm_type: str
    channel: str
    brand: str
    ttl_ms: int
    spend_record: str


class GatePlanner:
    """:func:`plan_gate` for one policy, with its arithmetic done once.

    Costs per (type, channel), limits per priority and the current calendar period per
    time zone are cached on the instance (each basket owns one planner), so planning a
    request is a few dict lookups. The results are exactly those of the uncached helpers.
    """

    _MAX_ZONES = 4096  # bounds the period cache against garbage time-zone strings

    def __init__(self, policy: PressurePolicy) -> None:
        self.policy = policy
        self._costs = {(t, c): cost_units(policy, t, c) for t in COMM_TYPES for c in CHANNELS}
        self._limits = {p: _units(policy.limit_for(p)) for p in range(1, 11)}
        self._capacity = _units(policy.capacity)
        self._blocked = frozenset(policy.calamity.blocks)
        self._exempt = frozenset(policy.exempt_types) | {"calamity"}
        self._lock_ms = policy.calamity.lock // _MS
        self._arbitration_ms = policy.arbitration_window // _MS if policy.arbitration_window else 0
        self._margin_ms = policy.key_margin // _MS
        self._periods: dict[str | None, PeriodInfo] = {}

    def period(self, now: datetime, tz: str | None) -> PeriodInfo:
        """:func:`period_info`, reusing the last calendar period computed for ``tz`` while ``now`` is inside it."""
        if isinstance(self.policy.period, Rolling):
            return period_info(self.policy, now, tz)
        now_ms = to_ms(now)
        cached = self._periods.get(tz)
        if cached is not None and cached.start_ms <= now_ms < cached.end_ms:
            return cached
        info = period_info(self.policy, now, tz)
        if len(self._periods) >= self._MAX_ZONES:
            self._periods.clear()
        self._periods[tz] = info
        return info

    def plan(self, request: GateRequest) -> GatePlan:
        """Do the pure part of a gate decision for ``request``."""
        now_ms = to_ms(request.now)
        period = self.period(request.now, request.timezone)
        comm_type, channel, priority = request.comm_type, request.channel, request.priority
        cost = self._costs[(comm_type, channel)]
        if period.kind == "rolling":
            ttl = period.window_ms + self._margin_ms
        else:
            ttl = period.end_ms - now_ms + self._margin_ms
        brand = request.brand or ""
        return GatePlan(
            customer_id=request.customer_id,
            send_id=request.send_id,
            now_ms=now_ms,
            period=period,
            cost=cost,
            limit=self._limits[priority],
            capacity=self._capacity,
            is_calamity=comm_type == "calamity",
            blocked_by_lock=comm_type in self._blocked,
            exempt=comm_type in self._exempt,
            lock_ms=self._lock_ms,
            arbitration_ms=self._arbitration_ms,
            priority=priority,
            comm_type=comm_type,
            channel=channel,
            brand=brand,
            ttl_ms=max(ttl, 1),
            spend_record=encode_spend(now_ms, cost, priority, comm_type, channel, brand),
        )


def plan_gate(policy: PressurePolicy, request: GateRequest) -> GatePlan:
    """Do the pure part of a gate decision for ``request`` under ``policy`` (uncached; baskets use :class:`GatePlanner`)."""
    return GatePlanner(policy).plan(request)


def encode_spend(at_ms: int, cost: int, priority: int, comm_type: str, channel: str, brand: str) -> str:
    """``at|cost|priority|type|channel|brand`` — the brand last, so it may contain ``|``."""
    return f"{at_ms}|{cost}|{priority}|{comm_type}|{channel}|{brand}"


def decode_spend(send_id: str, record: str) -> Spend:
    """A stored spend record back as a :class:`Spend`."""
    at, cost, priority, comm_type, channel, brand = record.split("|", 5)
    return Spend(
        send_id=send_id,
        at=from_ms(int(at)),
        cost=int(cost) / 100,
        comm_type=comm_type,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        brand=brand or None,
        priority=int(priority),
    )


def record_cost(record: str | None) -> int:
    """The cost field (hundredths of a point) of an ``at|cost|...`` spend record; 0 for none."""
    if not record:
        return 0
    return int(record.split("|", 2)[1])


def basket_view(
    policy: PressurePolicy,
    customer_id: str,
    info: PeriodInfo,
    records: dict[str, str],
    balance: int,
    lock_until_ms: int,
    now: datetime,
    suppressions: Iterable[str],
) -> BasketView:
    """Assemble a :class:`BasketView` from the raw state both baskets read the same way."""
    return BasketView(
        customer_id=customer_id,
        period=info.id,
        capacity=policy.capacity,
        balance=balance / 100,
        spends=sorted((decode_spend(s, r) for s, r in records.items()), key=lambda s: (s.at, s.send_id)),
        locked_until=from_ms(lock_until_ms) if lock_until_ms > to_ms(now) else None,
        suppressions=sorted(suppressions),
    )


# ---------------------------------------------------------------- the decision record

DecisionRecord = list[Any]
"""``[outcome, code, cost, balance, limit, capacity, retry_ms, detail, period]``.

What both baskets store under a send id and return; amounts in hundredths of a
point, ``retry_ms`` 0 for none, ``detail`` a string (the matched suppression, the
lock end, the blocking priority, the exempt type)."""


def _pts(units: int) -> str:
    return f"{units / 100:g}"


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


def _reason(outcome: str, code: str, cost: int, balance: int, limit: int, capacity: int, retry_ms: int, detail: str) -> str:
    before = balance if outcome != "approved" else balance - cost
    if code == "fits":
        return f"fits: {_pts(before)} spent + {_pts(cost)} = {_pts(balance)} of {_pts(limit)}"
    if code == "exempt":
        return f"{detail} is exempt from capacity: {_pts(balance)} of {_pts(capacity)} spent"
    if code == "calamity":
        until = f"; locked until {_iso(int(detail))}" if detail else ""
        return f"calamity: approved regardless of capacity, {_pts(balance)} of {_pts(capacity)} spent{until}"
    if code == "suppressed":
        channel, brand = _split_member(detail)
        what = "all channels" if channel == "all" else channel
        return f"unsubscribed from {what}" + (f" for brand {brand}" if brand else "") + f" ({detail})"
    if code == "locked":
        return f"calamity lock until {_iso(int(detail))}"
    if code == "arbitration":
        return f"arbitration: a priority-{detail} send went out within the window; retry at {_iso(retry_ms)}"
    if code == "reserve":
        return f"reserve: priority {detail} may fill only up to {_pts(limit)}: {_pts(before)} spent + {_pts(cost)}"
    if code == "capacity":
        return f"capacity {_pts(capacity)} exceeded: {_pts(before)} spent + {_pts(cost)}"
    return f"{outcome}: {code}"


def decision_from_record(request: GateRequest | GatePlan, record: DecisionRecord, replayed: bool) -> Decision:
    """Turn a stored decision record into the :class:`Decision` both baskets return."""
    outcome, code, cost, balance, limit, capacity, retry_ms, detail, period = record
    cost, balance, limit, capacity, retry_ms = int(cost), int(balance), int(limit), int(capacity), int(retry_ms)
    detail = str(detail)
    # model_construct: every value comes from our own record and is already well-typed;
    # validating ~10 fields per decision would cost more than the rest of the client path.
    return Decision.model_construct(
        send_id=request.send_id,
        customer_id=request.customer_id,
        outcome=outcome,
        reason=_reason(outcome, code, cost, balance, limit, capacity, retry_ms, detail),
        cost=cost / 100,
        balance=balance / 100,
        capacity=capacity / 100,
        period=str(period),
        retry_at=from_ms(retry_ms) if retry_ms else None,
        replayed=replayed,
    )


if __name__ == "__main__":  # python -m orchestrator.pressure.policy > schemas/pressure.json
    sys.stdout.write(policy_json_schema_text())

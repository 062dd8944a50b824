"""The contact-pressure policy file (``journeys/pressure.yaml``): its model, loader and JSON Schema.

This docstring is the specification of the basket: every other module of
:mod:`orchestrator.pressure` implements a part of it and points here.

* :mod:`~orchestrator.pressure.policy` (this module): the file model
  (:class:`PressurePolicy`), :func:`load_policy` with ``file:line:col`` errors
  (:class:`PolicyError`), the JSON Schema, :data:`POLICY_FILE`.
* :mod:`~orchestrator.pressure.periods`: which period a moment falls in.
* :mod:`~orchestrator.pressure.costs`: what a send costs, in integer hundredths of a point.
* :mod:`~orchestrator.pressure.consent`: suppression members and :func:`~orchestrator.pressure.consent.apply_consent`.
* :mod:`~orchestrator.pressure.planner`: :class:`~orchestrator.pressure.planner.GatePlanner`
  does all policy arithmetic and time-zone math for one gate request.
* :mod:`~orchestrator.pressure.records`: the stored spend and decision records, the
  reason texts, :func:`~orchestrator.pressure.records.decision_from_record`.

The Redis gate (``gate.lua`` driven by :mod:`orchestrator.pressure.redis_basket`) and
the in-memory twin (:mod:`orchestrator.pressure.memory`) both start from a
:class:`~orchestrator.pressure.planner.GatePlan` and both end in
:func:`~orchestrator.pressure.records.decision_from_record`, which turns the stored
decision record into a :class:`~orchestrator.pressure.basket.Decision`. Only the
stateful checks in between live twice (Lua and Python), and a differential test keeps
them identical.

Semantics
=========

**Period.** ``calendar_month`` (default): the basket is the calendar month in the
customer's time zone (``GateRequest.timezone``; an unknown zone falls back to UTC);
the period id is ``"YYYY-MM"`` and it ends at local midnight of the next month's 1st.
``rolling`` with ``days: N``: the basket holds every spend made less than N days ago
(a spend at ``t`` counts while ``now < t + N days``); the period id is ``"rolling-Nd"``.

**Durations** (``calamity.lock``, ``arbitration_window``, ``key_margin``) use the
grammar of :mod:`orchestrator.durations` (``30s``, ``15m``, ``72h``, ``7d``, ``1mo``,
``1h30m``, or whole seconds). ``calamity.lock`` and ``key_margin`` may be ``0s`` (no
lock; keys expire when their period ends); ``arbitration_window`` must be longer than
``0s`` (``null`` turns arbitration off).

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
   ``all@brand``, ``ch``, ``all``, checked in that order) → ``suppressed`` (code ``unsubscribed``). This holds
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

**Decision codes.** Every :class:`~orchestrator.pressure.basket.Decision` carries a
machine-readable ``code`` (:data:`~orchestrator.pressure.basket.DecisionCode`) next to
its ``outcome`` and ``reason`` text; the outbound decision records carry it too:

* ``fits`` (approved): steps 6-7, the send fits within its limit (the capacity, or its reserve's ``fill_up_to``).
* ``exempt`` (approved): steps 6-7 for a type in ``exempt_types``: capacity and reserve are not checked.
* ``calamity`` (approved): step 4, a calamity send: approved regardless of capacity, and it locks.
* ``unsubscribed`` (suppressed): step 2, the customer unsubscribed from the channel or all channels,
  for the brand or every brand (stored as ``suppressed`` in decision records).
* ``locked`` (locked): step 3, a calamity lock is active and blocks this type.
* ``arbitration`` (capped): step 5, a higher-priority send was approved within the arbitration window.
* ``reserve`` (capped): step 6, over the priority reserve's ``fill_up_to`` although within the capacity.
* ``capacity`` (capped): step 6, over the basket's capacity.

A replay (step 1) returns the stored code. Stored records keep their internal codes
(records are replayed while they live); :data:`~orchestrator.pressure.records.PUBLIC_CODES`
names them.

Every decision (approved or not) is stored under the send id so that a redelivery
gets the same answer. Basket keys expire ``key_margin`` after their period ends;
the suppression list never expires (consent is not periodic).

**Consent** (:func:`~orchestrator.pressure.consent.apply_consent`). Unsubscribe adds ``channel[@brand]``
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
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.durations import Duration, DurationError, DurationOrZero, parse_duration
from orchestrator.errors import DefinitionError
from orchestrator.pressure.basket import CommType
from orchestrator.yamlpos import DuplicateKey, Positions, format_yaml_error, load_yaml_with_positions, locate

__all__ = [
    "POLICY_FILE",
    "CalamityRule",
    "CalendarMonth",
    "ChannelWeights",
    "Points",
    "PolicyError",
    "PressurePolicy",
    "ReserveRule",
    "Rolling",
    "load_policy",
    "policy_json_schema",
    "policy_json_schema_text",
    "validate_policy_file",
]

POLICY_FILE = "pressure.yaml"
"""The policy's file name: ``<journeys dir>/pressure.yaml`` (journey loading skips it)."""

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


PeriodSpec = Annotated[CalendarMonth | Rolling, Field(discriminator="kind")]


class Points(_Strict):
    """Points per communication type (before the channel weight)."""

    service: float = Field(default=2, ge=0, le=1_000_000, description="Service messages (confirmations, account notices).")
    editorial: float = Field(default=5, ge=0, le=1_000_000, description="Editorial content (newsletters, tips).")
    commercial: float = Field(default=10, ge=0, le=1_000_000, description="Commercial offers and reminders.")
    calamity: float = Field(
        default=20, ge=0, le=1_000_000, description="Calamity messages (outage, incident); always approved unless unsubscribed."
    )


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

    max_priority: int = Field(
        ge=1, le=10, description="The rule applies to sends with priority 1..max_priority (10 is the highest priority)."
    )
    fill_up_to: float = Field(ge=0, description="Those sends fit only while the balance after them stays at or below this many points.")


BlockableType = Literal["service", "editorial", "commercial"]


def _default_blocks() -> list[BlockableType]:
    return ["commercial", "editorial"]


class CalamityRule(_Strict):
    """What an approved calamity message does to the customer's other messages."""

    lock: DurationOrZero = Field(
        default="72h", validate_default=True, description="How long the customer stays locked after a calamity message ('0s' = no lock)."
    )
    blocks: list[BlockableType] = Field(
        default_factory=_default_blocks,
        description="Communication types answered 'locked' while the lock lasts.",
    )


def _zero_is_not_off(value: object) -> object:
    """Refuse a zero arbitration window with the way to turn arbitration off (other values: left to :data:`Duration`)."""
    try:
        length = parse_duration(value, allow_zero=True)
    except DurationError:
        return value
    if length == timedelta(0):
        reason = f"bad duration {value!r}: must be longer than 0s; use null to turn arbitration off"
        raise PydanticCustomError("bad_duration", "{reason}", {"reason": reason})
    return value


def _default_reserve() -> list[ReserveRule]:
    return [ReserveRule(max_priority=3, fill_up_to=15), ReserveRule(max_priority=6, fill_up_to=20)]


class PressurePolicy(_Strict):
    """The contact-pressure policy: one basket per customer and period, shared by every brand and channel."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Contact-pressure policy",
        json_schema_extra={
            "description": (
                "journeys/pressure.yaml: how much contact a customer gets per period. "
                "How the basket decides, with examples: journeys/README.md, section Contact pressure."
            )
        },
    )

    period: PeriodSpec = Field(
        default_factory=lambda: CalendarMonth(kind="calendar_month"),
        description="What one basket covers: {kind: calendar_month} or {kind: rolling, days: N}.",
    )
    capacity: float = Field(default=25, ge=0, le=1_000_000, description="Points a customer's basket holds per period.")
    points: Points = Field(default_factory=Points, description="Points per communication type; omitted types keep their default.")
    channel_weights: ChannelWeights = Field(
        default_factory=ChannelWeights, description="Multiplier per channel; a send costs points[type] * weight[channel], rounded to 0.01."
    )
    priority_reserve: list[ReserveRule] = Field(
        default_factory=_default_reserve,
        description=(
            "Low priorities may fill the basket only up to a threshold, keeping room for higher ones. "
            "The smallest matching fill_up_to applies."
        ),
    )
    arbitration_window: Annotated[Duration | None, BeforeValidator(_zero_is_not_off)] = Field(
        default=None,
        description=(
            "Optional. Within this time after an approved send of priority P, sends of lower priority than P "
            "for the same customer are capped ('arbitration'). Longer than 0s; null = off."
        ),
    )
    calamity: CalamityRule = Field(default_factory=CalamityRule, description="The calamity lock: its duration and the types it blocks.")
    exempt_types: list[CommType] = Field(
        default_factory=list,
        description="Types that bypass capacity and reserve (still recorded and counted). Calamity is always exempt.",
    )
    key_margin: DurationOrZero = Field(
        default="7d",
        validate_default=True,
        description="How long basket keys and recorded decisions outlive their period, so late redeliveries still get "
        "their decision ('0s' = they expire with the period).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PressurePolicy:
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
                out.append(
                    (
                        ("priority_reserve", i, "fill_up_to"),
                        f"fill_up_to {_num(rule.fill_up_to)} exceeds the capacity {_num(self.capacity)}",
                    )
                )
            if rule.max_priority in seen:
                out.append(
                    (
                        ("priority_reserve", i, "max_priority"),
                        f"max_priority {rule.max_priority} is already used by priority_reserve[{seen[rule.max_priority]}]",
                    )
                )
            seen.setdefault(rule.max_priority, i)
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


class PolicyError(DefinitionError):
    """The policy file is invalid; ``problems`` (alias ``errors``) holds one ``file:line:col: message`` per problem."""

    what = "pressure policy"


def _explain_loc(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(policy)"


def load_policy(path: str | os.PathLike[str]) -> PressurePolicy:
    """Read and validate a pressure policy file.

    Raises :class:`PolicyError` listing every problem as ``file:line:col: message``.
    An empty file means "all defaults".
    """
    name = os.fspath(path)
    duplicates: list[DuplicateKey] = []
    data, positions = _read_policy_yaml(path, duplicates)
    problems = [f"{name}:{d.position[0]}:{d.position[1]}: {d.message}" for d in duplicates]
    try:
        policy = PressurePolicy.model_validate(data)
    except ValidationError as exc:
        problems += _located_problems(name, data, positions, exc)
    if problems:
        raise PolicyError(sorted(problems, key=_line_col)) from None
    return policy


def _line_col(problem: str) -> tuple[int, int]:
    """The (line, col) of a ``file:line:col: message`` problem, for sorting."""
    found = _LINE_COL.search(problem)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


_LINE_COL = re.compile(r":(\d+):(\d+): ")


def validate_policy_file(path: str | os.PathLike[str]) -> list[str]:
    """Problems in a pressure policy file as ``file:line:col: message`` strings; empty when valid."""
    try:
        load_policy(path)
    except PolicyError as exc:
        return exc.problems
    return []


def _read_policy_yaml(path: str | os.PathLike[str], duplicates: list[DuplicateKey]) -> tuple[dict[str, Any], Positions]:
    """The policy file's mapping (``{}`` for an empty file) and the positions of its nodes; repeated keys go to ``duplicates``."""
    name = os.fspath(path)
    try:
        data, positions = load_yaml_with_positions(path, duplicates)
    except OSError as exc:
        raise PolicyError([f"{name}:1:1: cannot read the policy: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([format_yaml_error(name, exc)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([f"{name}:1:1: the policy must be a mapping of settings, got {type(data).__name__}"])
    return data, positions


def _located_problems(name: str, data: dict[str, Any], positions: Positions, exc: ValidationError) -> list[str]:
    """One ``file:line:col: path: message`` line per pydantic error (cross-field problems each on their own line)."""
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
    return problems


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


if __name__ == "__main__":  # python -m orchestrator.pressure.policy > schemas/pressure.json
    sys.stdout.write(policy_json_schema_text())

"""The journey file format: a pydantic model of ``journeys/*.yaml``.

``python -m orchestrator.journey.model > schemas/journey.json`` writes the JSON
Schema that editors use for completion; a unit test fails when the committed
schema drifts from this model. The designer's guide is ``journeys/README.md``.

The model checks the shape of one file (keys, types, durations, channels,
communication types, event types). Graph checks that need the whole journey
(unknown step references, unreachable steps, loops without a wait) are in
:func:`check_graph`; the loader runs both and reports ``file:line:col: message``.
When the model rejects a file, :func:`raw_reference_problems` still checks its step
references on the raw mapping, so that one run reports them with the other problems.
The payload fields conditions read are checked against the event schemas by
:mod:`orchestrator.journey.fields`.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.durations import Duration
from orchestrator.events import CHANNELS, Channel, event_types
from orchestrator.journey.conditions import Condition, FieldPath, Scalar, check_field_path, condition_fields
from orchestrator.journey.effects import EmitStep, UpdateProfileStep
from orchestrator.journey.scores import ScoreCrossing
from orchestrator.pressure.basket import COMM_TYPES, CommType
from orchestrator.timeutil import find_tz

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
StepType = Literal["send", "wait", "branch", "split", "delay", "window", "update_profile", "emit", "end"]
"""The step types of the journey language: each is a class in :data:`Step` (its ``type:`` tag), has an engine handler
(``engine.steps.HANDLERS``) and a render label (``designer.render.LABELS``); ``tests/unit/test_closed_sets.py`` checks all three."""
STEP_TYPES: tuple[StepType, ...] = get_args(StepType)
CCM_SHORTCUTS = {"opened_of": "ccm.opened", "clicked_of": "ccm.clicked", "delivered_of": "ccm.delivered", "bounced_of": "ccm.bounced"}


@lru_cache(maxsize=1)
def known_event_types() -> frozenset[str]:
    """Every qualified inbound event type (``web.cart_abandoned`` ...)."""
    return frozenset(event_types())


def _event_type(value: str) -> str:
    if value not in known_event_types():
        family = value.split(".", 1)[0]
        same = sorted(t for t in known_event_types() if t.startswith(family + "."))
        hint = f"; {family} events are: {', '.join(same)}" if same else "; write family.type, e.g. web.cart_abandoned"
        raise PydanticCustomError("unknown_event_type", f"unknown event type {value!r}" + hint)
    return value


def _channel(value: Any) -> Any:
    if isinstance(value, str) and value not in CHANNELS:
        raise PydanticCustomError("unknown_channel", f"unknown channel {value!r}: use one of " + ", ".join(CHANNELS))
    return value


def _comm_type(value: Any) -> Any:
    if isinstance(value, str) and value not in COMM_TYPES:
        raise PydanticCustomError(
            "unknown_comm_type",
            f"unknown communication type {value!r}: use one of " + ", ".join(COMM_TYPES),
        )
    return value


def _timezone(value: str) -> str:
    if find_tz(value) is None:
        raise PydanticCustomError("unknown_timezone", f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin or UTC")
    return value


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _clock(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 09:00 as a sexagesimal integer (540): accept it
        return f"{value // 60:02d}:{value % 60:02d}"
    if not isinstance(value, str) or not _HHMM.match(value):
        raise PydanticCustomError("bad_time", f'bad time of day {value!r}: write HH:MM in 24 h, e.g. "09:00"')
    return value


EventType = Annotated[str, AfterValidator(_event_type), Field(json_schema_extra={"enum": sorted(event_types())})]
ChannelName = Annotated[Channel, BeforeValidator(_channel)]
CommTypeName = Annotated[CommType, BeforeValidator(_comm_type)]
TimeZoneName = Annotated[str, AfterValidator(_timezone), Field(description="IANA time zone, e.g. Europe/Berlin")]
StepId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="A step id from steps:")]
CalendarName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", description="A calendar named in the journey's calendars:")]
JourneyIdRef = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", description="The id of another journey, e.g. abandoned_cart")]
ClockTime = Annotated[str, BeforeValidator(_clock), Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, 24 h")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)


# ------------------------------------------------------------------ entry / goals


class Reentry(_Model):
    """May a customer enter again? ``never``, ``after_exit`` (default: one live instance at a time) or ``always`` (concurrent instances)."""

    policy: Literal["never", "after_exit", "always"] = "after_exit"
    cooldown: Duration | None = Field(default=None, description="after_exit: time since the last exit; always: time since the last entry.")


def _single_or_list_event(schema: dict[str, Any]) -> None:
    """In the JSON Schema, ``event:`` takes one event type or a list of them."""
    prop = schema["properties"]["event"]
    one = prop["items"]
    schema["properties"]["event"] = {
        "anyOf": [one, {k: v for k, v in prop.items() if k not in ("description", "title")}],
        "description": prop.get("description", ""),
        "title": "Event",
    }


def _schedule_at(value: Any) -> Any:
    """YAML reads an unquoted date-time as a datetime and an unquoted 10:00 as the integer 600: take both as written."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


class Schedule(_Model):
    """When a campaign's audience is evaluated; each evaluation is one *run* (a customer enters at most once per run).

    Once: ``at: "2026-12-01T10:00:00Z"``. Recurring: ``every: day|week|month|hour`` with ``at: "HH:MM"``
    (``on: mon`` for weeks, ``day: 1`` for months; for hours only the minutes count). ``local: true``:
    the time is in each customer's time zone (a once-only ``at`` is then written without an offset).
    The semantics are in ``orchestrator/journey/schedule.py``.
    """

    at: Annotated[str, BeforeValidator(_schedule_at)] = Field(
        description="Once: an ISO date-time (with offset, or without one when local). Recurring: HH:MM."
    )
    every: Literal["hour", "day", "week", "month"] | None = Field(default=None, description="Repeat; omitted: once.")
    on: Weekday | None = Field(default=None, description="every: week: the weekday.")
    day: int | None = Field(default=None, ge=1, le=28, description="every: month: the day of the month (1-28).")
    local: bool = Field(default=False, description="At that time in each customer's time zone (profile.timezone; UTC when unknown).")

    @model_validator(mode="after")
    def _consistent(self) -> Schedule:
        from orchestrator.journey.schedule import schedule_problem  # the schedule's rules live with its semantics

        problem = schedule_problem(self)
        if problem is not None:
            raise PydanticCustomError("schedule", problem)
        return self


class Throttle(_Model):
    per_second: float = Field(
        default=100, gt=0, le=100_000, description="Most customers entered per second by this campaign, across all workers."
    )


class Audience(_Model):
    """Customers who enter without a trigger event: by conditions over what we know about them, on a schedule
    (a campaign) and/or as soon as they come to qualify (a segment)."""

    when: list[Condition] = Field(
        default_factory=list,
        description="Conditions over profile and history (profile.X, profile.lists, seen/not_seen, since); all must hold.",
    )
    schedule: Schedule | None = Field(default=None, description="Evaluate the audience at these times (a campaign run).")
    qualify: Literal["on_change"] | None = Field(
        default=None, description="on_change: also enter a customer as soon as one of their events makes them qualify."
    )
    throttle: Throttle = Field(default_factory=Throttle, description="How fast a scheduled run enters customers.")

    @model_validator(mode="after")
    def _when_it_runs(self) -> Audience:
        if self.schedule is None and self.qualify is None:
            raise PydanticCustomError("audience", "an audience needs a schedule, qualify: on_change, or both")
        for cond in self.when:
            for path in condition_fields(cond):
                if not path.startswith("profile."):
                    raise PydanticCustomError(
                        "audience",
                        "audience conditions read what we know about the customer (profile.X, seen/not_seen, since), "
                        "not {path}: there is no event payload when a campaign runs",
                        {"path": path},
                    )
        return self


class Entry(_Model):
    """What starts the journey: a trigger event plus conditions, and/or an audience."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, json_schema_extra=_single_or_list_event
    )

    event: Annotated[list[EventType], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)] = Field(
        default_factory=list,
        description="Qualified inbound event type, e.g. web.cart_abandoned, or a list of types (any of them).",
    )
    when: list[Condition] = Field(default_factory=list, description="Conditions on the trigger event (all must hold).")
    profile: list[Condition] = Field(default_factory=list, description="Conditions on the customer's profile and history (all must hold).")
    audience: Audience | None = Field(
        default=None, description="Enter customers by audience (campaigns, segments) instead of or besides an event."
    )
    score: ScoreCrossing | None = Field(
        default=None,
        description="Enter when a score of journeys/scores.yaml crosses a threshold upward: {name: lead, crosses: 50, hysteresis: 10}.",
    )
    reentry: Reentry = Field(default_factory=Reentry)
    exclusive_with: list[JourneyIdRef] = Field(
        default_factory=list,
        description=(
            "Journeys this one competes with: a customer in any of them (or, for those that list this one, in this one) "
            "is not entered (not_entered, with the journey they are in). Either side may say it."
        ),
    )

    @model_validator(mode="after")
    def _some_way_in(self) -> Entry:
        if not self.event and self.audience is None and self.score is None:
            raise PydanticCustomError(
                "entry", "an entry needs an event (event: TYPE), an audience (audience: ...) or a score crossing (score: ...)"
            )
        return self

    @property
    def events(self) -> list[str]:
        """The trigger event types."""
        return list(self.event)


class EventRule(_Model):
    """An event that ends the journey from any step (goal: counted as conversion; exit: not)."""

    name: str | None = None
    event: EventType
    when: list[Condition] = Field(default_factory=list)


class Window(_Model):
    """Days and hours in the customer's time zone when sends may go out. ``from`` > ``to`` wraps midnight."""

    days: list[Weekday] = Field(default_factory=lambda: list(_ALL_DAYS), min_length=1)
    from_: ClockTime = Field(alias="from", description="Opening time, HH:MM")
    to: ClockTime = Field(description="Closing time, HH:MM (exclusive)")
    timezone: TimeZoneName | None = Field(default=None, description="Override; default: the customer's time zone (profile), else UTC.")
    closed: list[date] = Field(
        default_factory=list,
        description="Dates (YYYY-MM-DD, in the window's time zone) when it does not open at all, e.g. public holidays.",
    )

    @model_validator(mode="after")
    def _span(self) -> Window:
        if self.from_ == self.to:
            raise PydanticCustomError("empty_window", f"window from and to are equal ({self.to}): the window would be empty")
        return self

    @property
    def opens(self) -> time:
        return time.fromisoformat(self.from_)

    @property
    def closes(self) -> time:
        return time.fromisoformat(self.to)


def _window_or_name(value: Any) -> str:
    return "calendar" if isinstance(value, str) else "window"


WindowRef = Annotated[
    Annotated[Window, Tag("window")] | Annotated[CalendarName, Tag("calendar")],
    Discriminator(_window_or_name),
]
"""A window written out, or the name of one of the journey's calendars."""


# ------------------------------------------------------------------ steps


class FallbackChannel(_Model):
    """One fallback channel with its own content: ``{channel: email, template: cc_script_email, variables: {...}}``."""

    channel: ChannelName
    template: str | None = Field(default=None, min_length=1, description="The template on this channel; default: the step's.")
    variables: dict[str, Scalar] = Field(
        default_factory=dict, description="Template variables on this channel, added to (and overriding) the step's."
    )


def _fallback_tag(value: Any) -> str:
    return "channel" if isinstance(value, str) else "entry"


FallbackEntry = Annotated[
    Annotated[ChannelName, Tag("channel")] | Annotated[FallbackChannel, Tag("entry")],
    Discriminator(_fallback_tag),
]
"""A fallback channel: its name (the step's template and variables), or ``{channel, template, variables}``."""


class OnCapped(_Model):
    """What a send step does when the basket says no (capped, suppressed, calamity lock)."""

    action: Literal["skip", "fallback", "defer"] = "skip"
    channels: list[FallbackEntry] = Field(
        default_factory=list,
        description="fallback: channels to try in order; each a channel name, or {channel, template, variables} for its own content.",
    )
    max_attempts: int = Field(default=5, ge=1, description="defer: give up (skip) after this many deferrals.")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return {"action": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> OnCapped:
        if self.action == "fallback" and not self.channels:
            raise PydanticCustomError("fallback_channels", "on_capped fallback needs channels: [..] to fall back to", {})
        if self.action != "fallback" and self.channels:
            raise PydanticCustomError("fallback_channels", "channels: only applies to action: fallback", {})
        return self

    def channel_names(self) -> list[Channel]:
        """The fallback channels' names, in order."""
        return [c if isinstance(c, str) else c.channel for c in self.channels]

    def fallback(self, index: int) -> FallbackChannel:
        """The ``index``-th fallback channel as ``{channel, template, variables}`` (a bare name: no content of its own)."""
        entry = self.channels[index]
        return FallbackChannel(channel=entry) if isinstance(entry, str) else entry


class SendStep(_Model):
    """Contact the customer (gated by the contact-pressure basket)."""

    type: Literal["send"]
    channel: ChannelName
    template: str = Field(min_length=1)
    comm_type: CommTypeName = Field(description="service | editorial | commercial | calamity")
    priority: int = Field(default=5, ge=1, le=10, description="1 lowest .. 10 highest")
    brand: str | None = None
    variables: dict[str, Scalar] = Field(default_factory=dict, description="Template variables, e.g. {tone: friendly}.")
    variables_from: dict[str, FieldPath] = Field(
        default_factory=dict, description="Template variables copied from fields, e.g. {cart_value: data.cart_value}."
    )
    on_capped: OnCapped = Field(default_factory=OnCapped)
    on_skip: StepId | None = Field(default=None, description="Where to go when the send does not happen; default: next.")
    expires_after: Duration | None = Field(
        default=None,
        description="A send still held (send window, deferral, calamity lock) this long after the step is reached is not sent: expired.",
    )
    on_expired: StepId | None = Field(default=None, description="Where to go when the send expired; default: on_skip, else next.")
    window: WindowRef | None = Field(
        default=None, description="Send window / quiet hours (or a calendar's name); outside it the send waits for the next opening."
    )
    next: StepId | None = Field(default=None, description="Next step; omitted = the journey ends here.")

    @field_validator("variables_from")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            check_field_path(path)
        return value

    @field_validator("on_expired")
    @classmethod
    def _expiring(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "expires_after" in info.data and info.data["expires_after"] is None:  # not when it failed
            raise PydanticCustomError("on_expired", "on_expired only applies with expires_after: (how long the send may be held)", {})
        return value


class Matcher(_Model):
    """An awaited event: ``{opened_of: STEP}``, ``{clicked_of: STEP}`` or ``{event: TYPE, when: [...]}``."""

    event: EventType | None = None
    of_send: StepId | None = Field(default=None, description="With event: a ccm event carrying the send id of this send step.")
    opened_of: StepId | None = Field(default=None, description="The ccm.opened of the message sent by this send step.")
    clicked_of: StepId | None = Field(default=None, description="The ccm.clicked of the message sent by this send step.")
    delivered_of: StepId | None = None
    bounced_of: StepId | None = None
    when: list[Condition] = Field(default_factory=list)
    next: StepId | None = Field(default=None, description="Override the wait's on_event for this match.")

    @model_validator(mode="after")
    def _one(self) -> Matcher:
        shortcuts = [k for k in CCM_SHORTCUTS if getattr(self, k) is not None]
        if len(shortcuts) + (self.event is not None) != 1:
            raise PydanticCustomError(
                "bad_matcher",
                "an awaited event needs exactly one of event: TYPE, opened_of: STEP, clicked_of: STEP, "
                "delivered_of: STEP, bounced_of: STEP",
                {},
            )
        if self.of_send is not None and (self.event is None or not self.event.startswith("ccm.")):
            raise PydanticCustomError("bad_matcher", "of_send: only applies to ccm.* events", {})
        return self

    @property
    def event_type(self) -> str:
        for key, etype in CCM_SHORTCUTS.items():
            if getattr(self, key) is not None:
                return etype
        return self.event or ""

    @property
    def send_step(self) -> str | None:
        for key in CCM_SHORTCUTS:
            value = getattr(self, key)
            if value is not None:
                return value
        return self.of_send


def _single_or_list_for(schema: dict[str, Any]) -> None:
    """In the JSON Schema, ``for:`` takes one matcher or a list of them."""
    prop = schema["properties"]["for"]
    one = prop["items"]
    schema["properties"]["for"] = {
        "anyOf": [one, {k: v for k, v in prop.items() if k not in ("description", "title")}],
        "description": prop.get("description", ""),
        "title": "For",
    }


class WaitStep(_Model):
    """Wait for an event (or one of several) with a timeout."""

    type: Literal["wait"]
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, json_schema_extra=_single_or_list_for
    )

    for_: Annotated[list[Matcher], BeforeValidator(lambda v: [v] if isinstance(v, dict) else v)] = Field(
        alias="for", default_factory=list, description="The awaited event, or a list (first match wins)."
    )
    timeout: Duration | None = Field(default=None, description="How long to wait at most, e.g. 24h, 48h, 7d (optional with quiet_for).")
    on_event: StepId | None = Field(default=None, description="Next step when the event arrives; omitted = end.")
    on_timeout: StepId | None = Field(default=None, description="Next step on timeout; omitted = end.")
    quiet_for: Duration | None = Field(
        default=None, description="End the wait once the customer has been quiet this long (no activity event), e.g. 10m."
    )
    activity: list[EventType] = Field(default_factory=list, description="With quiet_for: the events that count as activity.")
    on_quiet: StepId | None = Field(default=None, description="With quiet_for: next step once quiet; omitted = end.")

    @model_validator(mode="after")
    def _what_ends_it(self) -> WaitStep:
        if self.quiet_for is None:
            if not self.for_ or self.timeout is None:
                raise PydanticCustomError(
                    "wait_needs", "a wait needs for: (the awaited event) and timeout:, or quiet_for: with activity: (idle detection)"
                )
            if self.activity or self.on_quiet is not None:
                raise PydanticCustomError("wait_needs", "activity: and on_quiet: belong to quiet_for: (idle detection)")
        elif not self.activity:
            raise PydanticCustomError("wait_needs", "quiet_for: needs activity: [event types that count as activity], e.g. [web.page_view]")
        return self

    @property
    def matchers(self) -> list[Matcher]:
        return self.for_


class Case(_Model):
    name: str | None = None
    when: list[Condition] = Field(description="All must hold; evaluated on the event that last moved the instance and the profile.")
    next: StepId


class BranchStep(_Model):
    """Take the first case whose conditions hold, else default."""

    type: Literal["branch"]
    cases: list[Case] = Field(min_length=1)
    default: StepId | None = Field(default=None, description="When no case holds; omitted = end.")


class Variant(_Model):
    name: str = Field(min_length=1)
    weight: int = Field(ge=0, description="Relative weight; variants share customers in proportion.")
    next: StepId | None = None


class SplitStep(_Model):
    """A/B or multivariate split: deterministic and sticky per customer; the variant is recorded."""

    type: Literal["split"]
    variants: list[Variant] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> SplitStep:
        if sum(v.weight for v in self.variants) <= 0:
            raise PydanticCustomError("split_weights", "split weights add up to 0: give at least one variant a positive weight", {})
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise PydanticCustomError("split_names", "split variant names must be unique", {})
        return self


class DelayStep(_Model):
    """Wait a fixed time."""

    type: Literal["delay"]
    duration: Duration
    next: StepId | None = None


class WindowStep(_Model):
    """Continue only inside a time window (customer's time zone); otherwise wait for the next opening."""

    type: Literal["window"]
    window: WindowRef = Field(description="The window, or the name of one of the journey's calendars.")
    next: StepId | None = None


class EndStep(_Model):
    """End the journey (outcome recorded in history and traces)."""

    type: Literal["end"]
    outcome: str = Field(default="completed", description="e.g. completed, converted, escalated")


def _step_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        tag = value.get("type")
        return tag if isinstance(tag, str) else None
    return getattr(value, "type", None)


Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[DelayStep, Tag("delay")]
    | Annotated[WindowStep, Tag("window")]
    | Annotated[UpdateProfileStep, Tag("update_profile")]
    | Annotated[EmitStep, Tag("emit")]
    | Annotated[EndStep, Tag("end")],
    Discriminator(
        _step_tag,
        custom_error_type="bad_step_type",
        custom_error_message=f"missing or unknown step type: write type: {', '.join(STEP_TYPES[:-1])} or {STEP_TYPES[-1]}",
    ),
]


class Journey(_Model):
    """One version of one journey map."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
        title="Journey",
    )

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Stable journey id (lowercase, digits, _); versions share it.")
    version: int = Field(ge=1, description="Bump for every change; customers in flight finish on the version they entered.")
    name: str = Field(min_length=1)
    description: str | None = None
    status: Literal["live", "retired"] = Field(default="live", description="retired: no new entries; in-flight customers finish.")
    entry: Entry
    goals: list[EventRule] = Field(default_factory=list, description="Events that end the journey anywhere, counted as conversion.")
    exits: list[EventRule] = Field(default_factory=list, description="Events that end the journey anywhere (not a conversion).")
    send_window: WindowRef | None = Field(
        default=None, description="Default send window (or a calendar's name) for every send step without its own."
    )
    calendars: dict[CalendarName, Window] = Field(
        default_factory=dict,
        description=(
            "Named calendars (e.g. service_hours: days, from, to, timezone, closed dates), used by name as a send "
            "window, a window step or an {in_calendar: NAME} condition."
        ),
    )
    start: StepId
    steps: dict[StepId, Step] = Field(min_length=1)


# ------------------------------------------------------------------ graph checks


Loc = tuple[str | int, ...]


def edges(step_id: str, step: Any) -> Iterator[tuple[Loc, str | None, str]]:
    """(location of the reference, target step id or None = end, label) for every edge out of a step."""
    base: Loc = ("steps", step_id)
    if isinstance(step, SendStep):
        yield base + ("next",), step.next, "sent"
        if step.on_skip is not None:
            yield base + ("on_skip",), step.on_skip, "skipped"
        if step.on_expired is not None:
            yield base + ("on_expired",), step.on_expired, "expired"
    elif isinstance(step, WaitStep):
        yield from _wait_edges(base, step)
    elif isinstance(step, BranchStep):
        for i, case in enumerate(step.cases):
            yield base + ("cases", i, "next"), case.next, case.name or f"case {i + 1}"
        yield base + ("default",), step.default, "default"
    elif isinstance(step, SplitStep):
        for i, v in enumerate(step.variants):
            yield base + ("variants", i, "next"), v.next, f"{v.name} ({v.weight})"
    elif isinstance(step, (DelayStep, WindowStep, UpdateProfileStep, EmitStep)):
        yield base + ("next",), step.next, "next"


def _wait_edges(base: Loc, step: WaitStep) -> Iterator[tuple[Loc, str | None, str]]:
    for i, m in enumerate(step.matchers):
        if m.next is not None:
            yield base + ("for", i, "next"), m.next, m.event_type
    rest = [m.event_type for m in step.matchers if m.next is None]
    if rest:
        yield base + ("on_event",), step.on_event, " or ".join(dict.fromkeys(rest))
    if step.timeout is not None:
        yield base + ("on_timeout",), step.on_timeout, "timeout"
    if step.quiet_for is not None:
        yield base + ("on_quiet",), step.on_quiet, "quiet"


def parks(step: Any) -> bool:
    """Does the instance stop at this step until a timer or an event comes? (send steps do not: the gate answers at once)."""
    return isinstance(step, (WaitStep, DelayStep, WindowStep))


def check_graph(journey: Journey) -> list[tuple[Loc, str]]:
    """Semantic checks across steps: references, reachability, loops without a wait, awaited sends."""
    problems = _check_references(journey) + _check_calendars(journey)
    if journey.start in journey.steps:
        problems += _check_reachable(journey)
    problems += _check_loops(journey)
    return problems


def conditions_at(journey: Journey) -> Iterator[tuple[Loc, Any]]:
    """Every top-level condition of a journey (entry, audience, goals, exits, waits, branches) with its location."""
    places: list[tuple[Loc, list[Any]]] = [(("entry", "when"), journey.entry.when), (("entry", "profile"), journey.entry.profile)]
    if journey.entry.audience is not None:
        places.append((("entry", "audience", "when"), journey.entry.audience.when))
    places += [(("goals", i, "when"), r.when) for i, r in enumerate(journey.goals)]
    places += [(("exits", i, "when"), r.when) for i, r in enumerate(journey.exits)]
    for sid, step in journey.steps.items():
        if isinstance(step, BranchStep):
            places += [(("steps", sid, "cases", i, "when"), c.when) for i, c in enumerate(step.cases)]
        elif isinstance(step, WaitStep):
            places += [(("steps", sid, "for", i, "when"), mt.when) for i, mt in enumerate(step.matchers)]
    for loc, conds in places:
        for i, cond in enumerate(conds):
            yield (*loc, i), cond


def _check_calendars(journey: Journey) -> list[tuple[Loc, str]]:
    """Every calendar named (send windows, window steps, in_calendar conditions) is one of the journey's calendars."""
    from orchestrator.journey.conditions import calendar_names

    named: list[tuple[Loc, str]] = []
    if isinstance(journey.send_window, str):
        named.append((("send_window",), journey.send_window))
    for sid, step in journey.steps.items():
        if isinstance(step, (SendStep, WindowStep)) and isinstance(step.window, str):
            named.append((("steps", sid, "window"), step.window))
    named += calendar_names(journey)
    out = []
    for loc, name in named:
        if name not in journey.calendars:
            close = difflib.get_close_matches(name, list(journey.calendars), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (calendars: {', '.join(journey.calendars) or 'none: add calendars:'})"
            out.append((loc, f"unknown calendar {name!r}{hint}"))
    return out


class Reference(NamedTuple):
    """One step named somewhere: ``start``, an edge, or the send step an awaited ccm event belongs to."""

    loc: Loc
    target: str
    where: str
    """How a message names the place: ``in start``, ``referenced from step 'first'``, ``in opened_of``."""
    send_key: str | None = None
    """``opened_of`` ...: the target must be a send step."""


def _check_references(journey: Journey) -> list[tuple[Loc, str]]:
    """Every step named (start, edges, the send a wait awaits) exists and is of the right type."""
    refs = [Reference(("start",), journey.start, "in start")]
    for sid, step in journey.steps.items():
        refs += [Reference(loc, t, f"referenced from step {sid!r}") for loc, t, _label in edges(sid, step) if t is not None]
        if not isinstance(step, WaitStep):
            continue
        for i, mt in enumerate(step.matchers):
            if mt.send_step is not None:
                key = next((k for k in (*CCM_SHORTCUTS, "of_send") if getattr(mt, k) is not None), "of_send")
                refs.append(Reference(("steps", sid, "for", i, key), mt.send_step, f"in {key}", key))
    return reference_problems(refs, {sid: step.type for sid, step in journey.steps.items()})


def reference_problems(refs: Iterable[Reference], step_types: Mapping[str, str | None]) -> list[tuple[Loc, str]]:
    """Problems of step references: unknown steps (with the closest step id) and awaited sends that are not send steps.

    ``step_types`` maps every step id to its type (None when unknown: the model reports that).
    """
    problems: list[tuple[Loc, str]] = []
    known = ", ".join(str(s) for s in step_types)
    for ref in refs:
        if ref.target not in step_types:
            candidates = [s for s, t in step_types.items() if t == "send"] if ref.send_key else list(step_types)
            close = difflib.get_close_matches(ref.target, [str(c) for c in candidates], n=1)
            hint = f": did you mean {close[0]!r}?" if close else ""
            problems.append((ref.loc, f"unknown step {ref.target!r} {ref.where}{hint} (steps are: {known})"))
        elif ref.send_key and step_types[ref.target] not in (None, "send"):
            problems.append(
                (ref.loc, f"{ref.send_key} must name a send step, but {ref.target!r} is a step of type {step_types[ref.target]}")
            )
    return problems


_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RAW_EDGES = {"send": ("next", "on_skip", "on_expired"), "wait": (), "branch": ("default",), "delay": ("next",), "window": ("next",)}
_RAW_EDGES |= {"update_profile": ("next",), "emit": ("next",)}
_RAW_LISTS = {"branch": "cases", "split": "variants"}


def raw_reference_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """:func:`check_graph`'s reference problems, read from a journey mapping that does not pass the model.

    Lets one run of ``validate`` report a bad step reference next to the file's other
    problems. Only names the model would accept as step ids are looked at (the model
    reports the others), and only the keys the step's type has.
    """
    steps = data.get("steps")
    if not isinstance(steps, Mapping):
        return []
    step_types = {sid: _raw_type(step) for sid, step in steps.items()}
    refs: list[Reference] = []
    start = data.get("start")
    if isinstance(start, str) and _STEP_ID.match(start):
        refs.append(Reference(("start",), start, "in start"))
    for sid, step in steps.items():
        if isinstance(sid, str) and step_types[sid] is not None:
            refs += [r for r in _raw_step_references(sid, step, step_types[sid] or "") if _STEP_ID.match(r.target)]
    return reference_problems(refs, step_types)


def _raw_type(step: Any) -> str | None:
    kind = step.get("type") if isinstance(step, Mapping) else None
    return kind if kind in STEP_TYPES else None


def _raw_step_references(sid: str, step: Mapping[str, Any], kind: str) -> Iterator[Reference]:
    base: Loc = ("steps", sid)
    where = f"referenced from step {sid!r}"
    for key in _RAW_EDGES.get(kind, ()):
        if isinstance(step.get(key), str):
            yield Reference((*base, key), step[key], where)
    items = step.get(_RAW_LISTS.get(kind, ""))
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if isinstance(item, Mapping) and isinstance(item.get("next"), str):
            yield Reference((*base, _RAW_LISTS[kind], i, "next"), item["next"], where)
    if kind == "wait":
        yield from _raw_wait_references(sid, step)


def _raw_wait_references(sid: str, step: Mapping[str, Any]) -> Iterator[Reference]:
    base: Loc = ("steps", sid)
    where = f"referenced from step {sid!r}"
    matchers = step.get("for")
    matchers = [matchers] if isinstance(matchers, Mapping) else matchers if isinstance(matchers, list) else []
    for i, mt in enumerate(matchers):
        if not isinstance(mt, Mapping):
            continue
        if isinstance(mt.get("next"), str):
            yield Reference((*base, "for", i, "next"), mt["next"], where)
        for key in (*CCM_SHORTCUTS, "of_send"):
            if isinstance(mt.get(key), str):
                yield Reference((*base, "for", i, key), mt[key], f"in {key}", key)
    for key in ("on_event", "on_timeout"):
        uses = key == "on_timeout" or any(not isinstance(mt, Mapping) or mt.get("next") is None for mt in matchers)
        if uses and isinstance(step.get(key), str):
            yield Reference((*base, key), step[key], where)


def _check_reachable(journey: Journey) -> list[tuple[Loc, str]]:
    """Every step can be reached from ``start``."""
    steps = journey.steps
    seen = {journey.start}
    todo = [journey.start]
    while todo:
        cur = todo.pop()
        for _loc, target, _label in edges(cur, steps[cur]):
            if target is not None and target in steps and target not in seen:
                seen.add(target)
                todo.append(target)
    return [
        (("steps", sid), f"step {sid!r} is unreachable from start {journey.start!r}: remove it or point an edge at it")
        for sid in steps
        if sid not in seen
    ]


def _check_loops(journey: Journey) -> list[tuple[Loc, str]]:
    """No cycle among steps that do not park (it would spin until MAX_TRANSITIONS aborts it)."""
    steps = journey.steps
    problems: list[tuple[Loc, str]] = []
    graph = {sid: [t for _l, t, _x in edges(sid, s) if t is not None and t in steps] for sid, s in steps.items()}
    reported: set[frozenset[str]] = set()
    for cycle in _cycles_without_wait(graph, steps):
        members = frozenset(cycle)
        if members in reported:
            continue
        reported.add(members)
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(
            (("steps", cycle[0]), f"loop without a wait: {path}; put a wait or delay step in the loop so it can not spin forever")
        )
    return problems


def _cycles_without_wait(graph: dict[str, list[str]], steps: dict[str, Any]) -> list[list[str]]:
    nodes = [s for s in graph if not parks(steps[s])]
    sub = {s: [t for t in graph[s] if t in nodes] for s in nodes}
    out: list[list[str]] = []
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        color[n] = 1
        stack.append(n)
        for t in sub[n]:
            if color.get(t, 0) == 0:
                visit(t)
            elif color.get(t) == 1:
                out.append(stack[stack.index(t) :])
        stack.pop()
        color[n] = 2

    for n in nodes:
        if color.get(n, 0) == 0:
            visit(n)
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a journey file (what ``schemas/journey.json`` holds)."""
    schema = Journey.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://journey-orchestrator.local/schemas/journey.json"
    return schema


journey_json_schema = json_schema
"""Alias used by ``orchestrator schemas`` (``orchestrator/designer/schemas.py``)."""


def schema_text() -> str:
    """The exact text of ``schemas/journey.json`` (same rendering as ``orchestrator schemas``)."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m orchestrator.journey.model > schemas/journey.json
    sys.stdout.write(schema_text())

"""One customer's state: profile, live journey instances, history, split variants, dedupe.

The worker keeps it as JSON (``model_dump_json`` / ``model_validate_json``) in its state
store and changelog (``orchestrator.runtime.store``). The engine treats every object here
as immutable: ``engine.step`` never mutates the state it is given; it returns a new
:class:`CustomerState` that shares every part it did not change (copy-on-write, see
``orchestrator.engine.draft``), which keeps a step cheap.

The remembered event ids (dedupe by time: ``recent_event_ids``) have their codec in
:mod:`orchestrator.dedupe`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.actions import Send, TimerPurpose
from orchestrator.dedupe import (
    DEDUPE_ENTRY_CHARS,
    DEDUPE_KEY_CHARS,
    DEFAULT_LIMITS,
    RECENT_SEP,
    EngineLimits,
    dedupe_contains,
    dedupe_entries,
    recent_from_list,
)
from orchestrator.pressure.basket import Decision

Scalar = str | int | float | bool | None

PROFILE_LISTS = 64
"""How many named lists a profile remembers (the oldest-named are dropped first: lists are kept sorted)."""
PROFILE_TAGS = 64
"""How many tags journeys may set on a profile (``update_profile``; kept sorted, like lists: the first-sorted go first)."""
HISTORY_JOURNEYS = 256
"""How many journeys' entry/exit history a customer keeps (oldest exit evicted)."""


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TypeSeen(_State):
    """What the profile remembers about one event type."""

    count: int = 0
    first_at: datetime
    last_at: datetime
    values: dict[str, list[tuple[Scalar, datetime]]] = Field(
        default_factory=dict,
        description="Per declared payload field (journeys/profile.yaml): the last distinct values, each with the time it was last seen.",
    )
    complete_after: dict[str, datetime | None] = Field(
        default_factory=dict,
        description=(
            "Per declared payload field: values holds every value of the events of this type after this time "
            "(null: since the first); a field not listed is not recorded for this customer."
        ),
    )


class ScoreValue(_State):
    """One score of the customer (``journeys/scores.yaml``): its value at ``at``, halving every ``half_life_s`` seconds.

    Decay needs no timer: :meth:`value_at` computes the value at any later time. ``latched``: the
    crossings (threshold, re-armed below) of loaded ``entry.score`` journeys this score passed upward
    and has not yet been seen below the re-arm value since (``engine/scores.py``).
    """

    value: float
    at: datetime
    half_life_s: float | None = None
    latched: list[tuple[float, float]] = Field(default_factory=list)

    def value_at(self, when: datetime) -> float:
        """The value at ``when`` (never grown: a time before ``at`` gives the stored value)."""
        half = self.half_life_s
        if half is None or when <= self.at:
            return self.value
        return round(self.value * 0.5 ** ((when - self.at).total_seconds() / half), SCORE_DIGITS)


SCORE_DIGITS = 6
"""Decimals a score is rounded to (stored and read): keeps the state small and the results exact on replay."""


class Profile(_State):
    """The accumulated profile conditions can read as ``profile.X``."""

    timezone: str = "UTC"
    segment: str | None = None
    registered_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    attributes: dict[str, Scalar] = Field(default_factory=dict)
    lists: list[str] = Field(
        default_factory=list,
        description=f"Named lists the customer is on (crm.added_to_list / removed_from_list), sorted; at most {PROFILE_LISTS}.",
    )
    tags: list[str] = Field(
        default_factory=list,
        description=f"Tags journeys set (update_profile add_tags / remove_tags), sorted; at most {PROFILE_TAGS}.",
    )
    seen: dict[str, TypeSeen] = Field(default_factory=dict, description="Per qualified event type.")
    scores: dict[str, ScoreValue] = Field(default_factory=dict, description="Per score of journeys/scores.yaml (profile.scores.NAME).")


class TimerRef(_State):
    timer_id: str
    purpose: TimerPurpose
    due_at: datetime


class Awaited(_State):
    """One event a waiting instance is waiting for."""

    event_type: str
    send_id: str | None = Field(default=None, description="For ccm events: the exact send id awaited.")
    index: int = Field(description="Index of the matcher in the wait step's for: list.")


InstanceStatus = Literal["running", "waiting", "delayed", "deferred"]
"""Where an instance is (``Instance.status``). Earlier versions had ``gating`` too: read as ``running``."""


class Instance(_State):
    """One customer's run through one version of one journey."""

    instance_id: str
    journey_id: str
    version: int
    entry_event_id: str
    entered_at: datetime
    step: str = Field(description="The step the instance is at (parked at).")
    status: InstanceStatus = Field(
        default="running",
        description=(
            "What the instance is parked at: waiting (events and a timeout), delayed (a delay or window timer), deferred "
            "(a deferred send's timer). running: being run within one engine call, or at the basket (see gating); never stored."
        ),
    )
    awaiting: list[Awaited] = Field(default_factory=list)
    timers: list[TimerRef] = Field(default_factory=list, description="Pending timers (at most one in practice).")
    gating: Send | None = Field(
        default=None,
        exclude=True,
        description=(
            "In memory only, never stored: the send handed to the basket, from the Send action until its GateOutcome "
            "(the processor answers it within the same message, so a stored state never holds one)."
        ),
    )
    attempt: int = Field(default=0, description="Deferral attempts of the current send step.")
    window_ok: bool = Field(default=False, description="The send window of the current step was already satisfied.")
    deferred: Send | None = None
    deferred_decision: Decision | None = None
    expires_at: datetime | None = Field(
        default=None, description="The current send step's deadline (reached + expires_after): held until then at most, then expired."
    )
    sent: dict[str, str] = Field(default_factory=dict, description="step id -> send id of the approved send.")
    visits: dict[str, int] = Field(default_factory=dict, description="step id -> times entered.")
    entry_data: dict[str, Any] = Field(default_factory=dict, description="Payload of the entry event (entry.X in conditions).")
    ctx_type: str | None = Field(default=None, description="Type of the event that last moved the instance.")
    ctx_event_id: str | None = None
    ctx_at: datetime | None = None
    ctx_data: dict[str, Any] = Field(default_factory=dict, description="Its payload (branches and variables read it).")
    quiet_since: datetime | None = Field(default=None, description="A quiet_for wait: the last activity (or when the wait began).")
    wait_until: datetime | None = Field(default=None, description="A quiet_for wait with a timeout: when it times out.")

    @field_validator("status", mode="before")
    @classmethod
    def _status_of_older_states(cls, v: Any) -> Any:
        """States stored by earlier versions could say ``gating`` (a send at the basket): that is ``running`` now."""
        return "running" if v == "gating" else v


class JourneyHistory(_State):
    """Per journey id, for re-entry rules and reporting."""

    entries: int = 0
    last_entered_at: datetime | None = None
    last_exited_at: datetime | None = None
    last_outcome: str | None = None
    conversions: int = 0


class CustomerState(_State):
    """Everything the engine knows about one customer."""

    customer_id: str
    profile: Profile = Field(default_factory=Profile)
    instances: list[Instance] = Field(default_factory=list)
    history: dict[str, JourneyHistory] = Field(default_factory=dict)
    variants: dict[str, str] = Field(default_factory=dict, description="'journey_id/step_id' -> variant name (sticky).")
    recent_event_ids: str = Field(
        default="",
        description=(
            "The event ids seen within the dedupe window (EngineLimits), oldest first, in one ASCII string of "
            "17-char entries: 12 chars of base64 blake2b digest of the id (ending in '='), 5 chars of the minute first seen "
            "(see dedupe.remember); '' when empty. Older forms are accepted on input: a list of raw ids, or raw ids "
            "joined by \\x1f."
        ),
    )
    events_seen: int = 0

    @field_validator("recent_event_ids", mode="before")
    @classmethod
    def _recent_event_ids_form(cls, v: Any) -> Any:
        if isinstance(v, list):  # states stored before the one-string form held a JSON list of raw ids
            return recent_from_list([str(x) for x in v])
        if isinstance(v, str) and v:
            if v[0] == RECENT_SEP:
                if v[-1] != RECENT_SEP:
                    raise ValueError("recent_event_ids: a legacy \\x1f-joined string must end with \\x1f")
            elif len(v) % DEDUPE_ENTRY_CHARS or v[DEDUPE_KEY_CHARS - 1] != "=":
                raise ValueError(f"recent_event_ids: not a string of {DEDUPE_ENTRY_CHARS}-char entries")
        return v

    def remembered(self) -> list[tuple[str, datetime | None]]:
        """The remembered event ids as (digest key, minute first seen), oldest first (None: a legacy form, time unknown).

        The ids themselves are not kept; compare with :func:`dedupe_key` or ask :meth:`remembers`.
        """
        return dedupe_entries(self.recent_event_ids)

    def remembers(self, event_id: str, now: datetime | None = None, limits: EngineLimits = DEFAULT_LIMITS) -> bool:
        """Whether ``event_id`` is remembered; with ``now``: whether ``engine.step`` would drop it as a duplicate then."""
        return dedupe_contains(self.recent_event_ids, event_id, now, limits)

    @classmethod
    def new(cls, customer_id: str) -> CustomerState:
        """The state of a customer the orchestrator has never seen."""
        return cls(customer_id=customer_id)

    def pending_timers(self) -> list[TimerRef]:
        """Every timer armed by a live instance (what the worker's timer heap holds for this customer)."""
        return [t for inst in self.instances for t in inst.timers]

"""The draft: one customer's state while one message is folded in.

A :class:`Draft` starts from a :class:`~orchestrator.state.CustomerState` that is never
mutated. Instances the call changes are copied once (:meth:`Draft.own`) and then changed
in place; :meth:`Draft.finish` builds the new state, sharing every part that did not
change. The actions the call produces (sends, timers, traces, dispositions) are collected
in order in :attr:`Draft.actions`.

Every change to an instance is a verb here, named after what happens in the journey:
:meth:`enter_step`, :meth:`start_send`, :meth:`wait`, :meth:`delay`, :meth:`defer_send`,
:meth:`match`, :meth:`timer_fired`, :meth:`gate_answered`, :meth:`change_profile`, :meth:`publish`, :meth:`end`, ... The verbs
write an owned copy's ``__dict__`` directly (a pydantic attribute assignment costs several
times more, and the values are already typed); no other module of the engine does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from orchestrator.actions import Action, ArmTimer, CancelTimer, Disposition, Emit, Send, TimerPurpose, Trace
from orchestrator.durations import format_duration
from orchestrator.engine.ids import instance_id, send_id, timer_id
from orchestrator.events import CustomerEvent
from orchestrator.fastmodel import fast_copy, fast_new
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.journey.model import SendStep
from orchestrator.pressure.basket import Decision
from orchestrator.state import Awaited, CustomerState, Instance, JourneyHistory, Profile, TimerRef
from orchestrator.timeutil import iso_utc

_NEW_HISTORY: dict[str, Any] = {
    "entries": 0,
    "last_entered_at": None,
    "last_exited_at": None,
    "last_outcome": None,
    "conversions": 0,
}


def duplicate_trace(customer_id: str, journey_id: str, ev: CustomerEvent, now: datetime, run_id: str | None = None) -> Trace:
    """The one trace of a message seen before (an event id, or a campaign run: ``journey_id`` and ``run_id``): nothing else happens."""
    return fast_new(
        Trace,
        kind="trace",
        customer_id=customer_id,
        journey_id=journey_id,
        journey_version=0,
        instance_id="",
        step_id=None,
        what="duplicate",
        edge=None,
        detail={"event_id": ev.event_id, "type": ev.type},
        at=now,
        run_id=run_id,
    )


class Draft:
    """A copy-on-write working copy of one customer's state for one call of ``engine.step``."""

    __slots__ = ("_history", "_owned", "_variants", "actions", "customer_id", "instances", "journeys", "now", "profile", "state")

    def __init__(self, state: CustomerState, journeys: JourneySet, now: datetime, profile: Profile | None = None) -> None:
        self.state = state
        self.journeys = journeys
        self.now = now
        self.customer_id = state.customer_id
        self.actions: list[Action] = []
        self.profile = profile if profile is not None else state.profile
        self.instances: dict[str, Instance] = {i.instance_id: i for i in state.instances}
        self._history: dict[str, JourneyHistory] | None = None
        self._variants: dict[str, str] | None = None
        self._owned: set[int] = set()

    # ------------------------------------------------------------ reading

    def live(self) -> list[Instance]:
        """The live instances, as a list that may be iterated while instances end."""
        return list(self.instances.values())

    def history(self, journey_id: str) -> JourneyHistory | None:
        return (self._history if self._history is not None else self.state.history).get(journey_id)

    def variant(self, key: str) -> str | None:
        return (self._variants if self._variants is not None else self.state.variants).get(key)

    def context(self, inst: Instance) -> Ctx:
        """What a condition sees for ``inst``: the event that last moved it, the profile, now, its entry payload."""
        return Ctx(
            inst.ctx_type, inst.ctx_event_id, inst.ctx_at, inst.ctx_data, self.profile, self.now, inst.entry_data, self.instances.values()
        )

    # ------------------------------------------------------------ customer-level changes

    def remember_variant(self, key: str, name: str) -> None:
        """Pin the split variant ``name`` for ``journey/step`` (sticky for later visits)."""
        if self._variants is None:
            self._variants = dict(self.state.variants)
        self._variants[key] = name

    def _set_history(self, journey_id: str, **changes: Any) -> None:
        if self._history is None:
            self._history = dict(self.state.history)
        old = self._history.get(journey_id)
        self._history[journey_id] = (
            fast_copy(old, **changes) if old is not None else fast_new(JourneyHistory, **{**_NEW_HISTORY, **changes})
        )

    def emit(self, action: Action) -> None:
        self.actions.append(action)

    def trace(
        self, inst: Instance, what: str, step_id: str | None = None, edge: str | None = None, *, run_id: str | None = None, **detail: Any
    ) -> None:
        """Record what happened to ``inst`` on the journey log (``run_id``: ``Trace.run_id``, not a detail)."""
        self.actions.append(
            fast_new(
                Trace,
                kind="trace",
                customer_id=self.customer_id,
                journey_id=inst.journey_id,
                journey_version=inst.version,
                instance_id=inst.instance_id,
                step_id=step_id,
                what=what,
                edge=edge,
                detail=detail,
                at=self.now,
                run_id=run_id,
            )
        )

    def dispose(self, send: Send, decision: Decision | None, result: str, note: str) -> None:
        """Say what the journey made of the basket's decision on ``send`` (exactly once per decision; None: the basket was not asked)."""
        self.actions.append(fast_new(Disposition, kind="disposition", send=send, decision=decision, result=result, note=note))

    def change_profile(self, inst: Instance, profile: Profile, step_id: str, edge: str | None, **detail: Any) -> None:
        """An ``update_profile`` step of ``inst`` changed the profile: every later condition of this call sees ``profile``."""
        self.profile = profile
        self.trace(inst, "profile_updated", step_id, edge, **detail)

    def publish(self, inst: Instance, emit: Emit, edge: str | None) -> None:
        """An ``emit`` step of ``inst`` hands ``emit`` to the shell (published with the batch's outputs; never gated)."""
        self.actions.append(emit)
        self.trace(inst, "emitted", emit.step_id, edge, topic=emit.topic, record_id=emit.record_id)

    def finish(self, **extra: Any) -> CustomerState:
        """The new state: the old one where nothing changed, else a copy sharing every unchanged part."""
        update: dict[str, Any] = dict(extra)
        if self.profile is not self.state.profile:
            update["profile"] = self.profile
        if self._owned or len(self.instances) != len(self.state.instances):
            update["instances"] = list(self.instances.values())
        if self._history is not None:
            update["history"] = self._history
        if self._variants is not None:
            update["variants"] = self._variants
        if not update:
            return self.state
        return fast_copy(self.state, **update)

    # ------------------------------------------------------------ instance lifecycle

    def own(self, inst: Instance) -> Instance:
        """A private copy of ``inst`` that this call may change (copied once per call)."""
        if id(inst) in self._owned:
            return inst
        copy = fast_copy(inst)
        self._owned.add(id(copy))
        self.instances[copy.instance_id] = copy
        return copy

    def start_instance(self, journey: CompiledJourney, ev: CustomerEvent, run_id: str | None = None) -> Instance:
        """A new instance of ``journey`` entered by ``ev``, at the journey's first step (not run yet).

        ``run_id``: the campaign run that entered the customer (on the ``entered`` trace: ``Trace.run_id``).
        """
        inst = fast_new(
            Instance,
            instance_id=instance_id(journey.id, ev.event_id),
            journey_id=journey.id,
            version=journey.version,
            entry_event_id=ev.event_id,
            entered_at=self.now,
            step=journey.journey.start,
            status="running",
            awaiting=[],
            timers=[],
            gating=None,
            attempt=0,
            window_ok=False,
            deferred=None,
            deferred_decision=None,
            expires_at=None,
            sent={},
            visits={},
            entry_data=ev.data,
            ctx_type=ev.type,
            ctx_event_id=ev.event_id,
            ctx_at=ev.occurred_at,
            ctx_data=ev.data,
        )
        self._owned.add(id(inst))
        self.instances[inst.instance_id] = inst
        hist = self.history(journey.id)
        self._set_history(journey.id, entries=(hist.entries if hist else 0) + 1, last_entered_at=self.now)
        self.trace(inst, "entered", None, journey.journey.start, run_id=run_id, event_id=ev.event_id, event_type=ev.type)
        return inst

    def not_entered(self, journey: CompiledJourney, ev: CustomerEvent, reason: str, run_id: str | None = None) -> None:
        """``ev`` triggers ``journey`` but does not enter the customer: say why on the journey log (``run_id``: a campaign run's)."""
        self.actions.append(
            fast_new(
                Trace,
                kind="trace",
                customer_id=self.customer_id,
                journey_id=journey.id,
                journey_version=journey.version,
                instance_id="",
                step_id=None,
                what="not_entered",
                edge=None,
                detail={"reason": reason, "event_id": ev.event_id, "event_type": ev.type},
                at=self.now,
                run_id=run_id,
            )
        )

    def enter_step(self, inst: Instance, step_id: str, step_type: str) -> None:
        """``inst`` moves to ``step_id`` (one more visit of it)."""
        d = inst.__dict__
        d["visits"] = {**inst.visits, step_id: inst.visits.get(step_id, 0) + 1}
        d["step"] = step_id
        d["window_ok"] = False
        self.trace(inst, "step", step_id, None, type=step_type)

    def end(self, inst: Instance, journey: CompiledJourney | None, outcome: str, what: str, **detail: Any) -> None:
        """End ``inst``: cancel its timers and deferred send, record the history, trace, drop it."""
        self._cancel_timers(inst)
        if inst.deferred is not None and inst.deferred_decision is not None:
            self.dispose(inst.deferred, inst.deferred_decision, "cancelled", f"journey ended: {outcome}")
        hist = self.history(inst.journey_id)
        changes: dict[str, Any] = {"last_exited_at": self.now, "last_outcome": outcome}
        if outcome == "goal":
            changes["conversions"] = (hist.conversions if hist else 0) + 1
        self._set_history(inst.journey_id, **changes)
        self.trace(inst, what, inst.step, None, outcome=outcome, **detail)
        self.instances.pop(inst.instance_id, None)

    def end_unloaded(self, inst: Instance, reason: str | None = None) -> None:
        """End ``inst`` because its journey version is no longer loaded."""
        self.end(inst, None, "version_removed", "exited", reason=reason or f"journey {inst.journey_id} v{inst.version} is no longer loaded")

    # ------------------------------------------------------------ parking: every park arms a timer or awaits the gate

    def start_send(self, inst: Instance, send: Send) -> None:
        """Hand ``send`` to the basket; ``inst`` holds it until the decision (a GateOutcome, within the same message)."""
        d = inst.__dict__
        d["window_ok"] = False
        d["gating"] = send
        self.actions.append(send)

    def wait(self, inst: Instance, step_id: str, awaiting: list[Awaited], due: datetime) -> None:
        """``inst`` waits for one of ``awaiting`` until ``due`` (its timeout)."""
        d = inst.__dict__
        d["awaiting"] = awaiting
        d["status"] = "waiting"
        self._arm(inst, timer_id(self.customer_id, inst, step_id, "timeout"), "timeout", due)
        self.trace(
            inst,
            "waiting",
            step_id,
            None,
            until=iso_utc(due),
            awaiting=[a.event_type + (f"[{a.send_id}]" if a.send_id else "") for a in awaiting],
        )

    def wait_quiet(self, inst: Instance, step_id: str, awaiting: list[Awaited], quiet_for: timedelta, until: datetime | None) -> None:
        """``inst`` waits until the customer has been quiet for ``quiet_for`` (or one of ``awaiting``, or ``until``).

        One timer, at the earliest the wait can end; activity only moves ``quiet_since`` (:meth:`activity`),
        and the timer, when it fires early, is armed once more for the rest (:meth:`still_waiting`).
        """
        d = inst.__dict__
        d["quiet_since"] = self.now
        d["wait_until"] = until
        self.still_waiting(inst, step_id, awaiting, quiet_for)
        self.trace(
            inst,
            "waiting",
            step_id,
            None,
            quiet_for=format_duration(quiet_for),
            until=iso_utc(until) if until is not None else None,
            awaiting=[a.event_type + (f"[{a.send_id}]" if a.send_id else "") for a in awaiting],
        )

    def still_waiting(self, inst: Instance, step_id: str, awaiting: list[Awaited], quiet_for: timedelta) -> None:
        """Arm the quiet wait's one timer: when the customer is quiet if nothing happens, or its timeout if earlier."""
        assert inst.quiet_since is not None
        due = inst.quiet_since + quiet_for
        if inst.wait_until is not None and inst.wait_until < due:
            due = inst.wait_until
        d = inst.__dict__
        d["awaiting"] = awaiting
        d["status"] = "waiting"
        self._arm(inst, timer_id(self.customer_id, inst, step_id, "quiet", int(due.timestamp())), "quiet", due)

    def activity(self, inst: Instance, at: datetime) -> None:
        """An activity event of a quiet_for wait: the quiet period starts again at ``at`` (no timer is touched)."""
        since = inst.quiet_since
        if since is None or at > since:
            inst.__dict__["quiet_since"] = at

    def quiet_over(self, inst: Instance) -> None:
        """The quiet_for wait ended (quiet, timed out, an awaited event): its bookkeeping goes."""
        d = inst.__dict__
        d["quiet_since"] = None
        d["wait_until"] = None

    def delay(self, inst: Instance, step_id: str, purpose: Literal["delay", "window"], due: datetime, reason: str) -> None:
        """``inst`` sleeps until ``due`` (a delay step, a window step, or a send step outside its send window)."""
        inst.__dict__["status"] = "delayed"
        self._arm(inst, timer_id(self.customer_id, inst, step_id, purpose), purpose, due)
        self.trace(inst, "delayed", step_id, None, reason=reason, until=iso_utc(due))

    def defer_send(
        self, inst: Instance, send: Send, decision: Decision, due: datetime, in_window: bool = False, expires: datetime | None = None
    ) -> None:
        """The basket capped ``send``; keep it and retry at ``due`` (``in_window``: moved to the send window's opening).

        ``expires``: the step's deadline, when it comes before ``due``: the send is held until then (and expires then).
        """
        d = inst.__dict__
        d["deferred"] = send
        d["deferred_decision"] = decision
        d["status"] = "deferred"
        when = f"retry at {iso_utc(due)}" + (", when the send window opens" if in_window else "")
        if expires is not None:
            when += f", after the send expires at {iso_utc(expires)}: held until then"
            due = expires
        reason = decision.reason.split("; retry at ", 1)[0]  # an arbitration reason names the basket's retry: state it once
        self.dispose(send, decision, "deferred", f"{reason}; {when}")
        self._arm(inst, timer_id(self.customer_id, inst, inst.step, "deferred", inst.attempt + 1), "deferred_send", due)
        self.trace(inst, "delayed", inst.step, None, reason="send deferred", send_id=send.send_id, until=iso_utc(due))

    def hold_deferred(self, inst: Instance, opening: datetime) -> None:
        """The deferred send came due outside the send window: keep it until the window opens.

        The new timer has its own id (a redelivered TimerFired of the old one must not fire it).
        """
        inst.__dict__["status"] = "deferred"
        purpose = f"deferred-window-{opening.strftime('%Y%m%dT%H%M')}"
        self._arm(inst, timer_id(self.customer_id, inst, inst.step, purpose, inst.attempt + 1), "deferred_send", opening)
        self.trace(inst, "delayed", inst.step, None, reason="deferred send waits for the send window", until=iso_utc(opening))

    # ------------------------------------------------------------ resuming

    def match(self, inst: Instance, ev: CustomerEvent, next_step: str | None) -> None:
        """A waiting ``inst`` got an awaited event: it runs on with ``ev`` as its context."""
        self._cancel_timers(inst)
        if inst.quiet_since is not None:
            self.quiet_over(inst)
        d = inst.__dict__
        d["awaiting"] = []
        d["status"] = "running"
        d["ctx_type"] = ev.type
        d["ctx_event_id"] = ev.event_id
        d["ctx_at"] = ev.occurred_at
        d["ctx_data"] = ev.data
        self.trace(inst, "matched", inst.step, next_step, event_id=ev.event_id, event_type=ev.type)

    def timer_fired(self, inst: Instance, fired_timer_id: str) -> None:
        """Drop the timer that fired; ``inst`` runs again (what it does next is up to the caller)."""
        d = inst.__dict__
        d["timers"] = [t for t in inst.timers if t.timer_id != fired_timer_id]
        d["awaiting"] = []
        d["status"] = "running"

    def send_window_open(self, inst: Instance) -> None:
        """The send window of the current step is open: the next run of the step sends at once."""
        inst.__dict__["window_ok"] = True

    def retry_deferred(self, inst: Instance, step_def: SendStep) -> Send:
        """The deferred send comes due: a new attempt with its own send id goes to the basket (``inst`` runs: its timer fired)."""
        old = inst.deferred
        assert old is not None
        d = inst.__dict__
        d["attempt"] = inst.attempt + 1
        send = fast_copy(old, send_id=send_id(self.customer_id, inst, inst.step, old.channel, step_def, inst.attempt))
        d["deferred"] = None
        d["deferred_decision"] = None
        d["gating"] = send
        return send

    def gate_answered(self, inst: Instance) -> Send:
        """The basket decided on ``inst``'s send: it no longer holds it; returns the send."""
        send = inst.gating
        assert send is not None
        inst.__dict__["gating"] = None
        return send

    def sent(self, inst: Instance, send: Send) -> None:
        """``send`` was approved: remember its id for the step (waits on its opens/clicks use it)."""
        d = inst.__dict__
        d["sent"] = {**inst.sent, inst.step: send.send_id}
        d["attempt"] = 0
        if inst.expires_at is not None:
            d["expires_at"] = None

    def fall_back(self, inst: Instance, send: Send) -> None:
        """Try ``send`` (the next fallback channel) at the basket instead."""
        inst.__dict__["gating"] = send
        self.actions.append(send)

    def give_up_send(self, inst: Instance) -> None:
        """The current send step is over without a send (capped, suppressed, cancelled)."""
        inst.__dict__["attempt"] = 0
        if inst.expires_at is not None:
            inst.__dict__["expires_at"] = None

    def set_deadline(self, inst: Instance, at: datetime) -> None:
        """``inst`` reached a send step with ``expires_after``: its send is held until ``at`` at most."""
        inst.__dict__["expires_at"] = at

    def expire_send(self, inst: Instance) -> None:
        """The held send of the current step expired: drop it (its timer already fired) and the deadline; ``inst`` runs on."""
        d = inst.__dict__
        d["deferred"] = None
        d["deferred_decision"] = None
        d["status"] = "running"
        d["attempt"] = 0
        d["expires_at"] = None

    def cancel_deferred(self, inst: Instance) -> tuple[Send, Decision]:
        """Drop ``inst``'s deferred send and its timer; returns the send and the decision that deferred it."""
        send, decision = inst.deferred, inst.deferred_decision
        assert send is not None and decision is not None
        self._cancel_timers(inst)
        self.expire_send(inst)  # the same bookkeeping: no held send, no deadline, running again
        return send, decision

    # ------------------------------------------------------------ timers

    def _arm(self, inst: Instance, tid: str, purpose: TimerPurpose, due_at: datetime) -> None:
        inst.__dict__["timers"] = [*inst.timers, fast_new(TimerRef, timer_id=tid, purpose=purpose, due_at=due_at)]
        self.actions.append(
            fast_new(ArmTimer, kind="arm_timer", customer_id=self.customer_id, timer_id=tid, due_at=due_at, purpose=purpose)
        )

    def _cancel_timers(self, inst: Instance) -> None:
        for t in inst.timers:
            self.actions.append(fast_new(CancelTimer, kind="cancel_timer", customer_id=self.customer_id, timer_id=t.timer_id))
        inst.__dict__["timers"] = []

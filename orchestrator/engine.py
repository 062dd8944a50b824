"""The pure journey engine: ``step(state, message, journeys, now) -> (state, actions)``.

Deterministic and side-effect free: no I/O, no wall clock (``now`` is given), no
randomness (splits hash the customer id with blake2b). The input state is never
mutated; the returned state shares every part that did not change.

One call handles one message:

* :class:`~orchestrator.events.CustomerEvent` — deduplicated by event id (an id seen
  within ``limits.dedupe_window`` of engine time is a duplicate: one "duplicate"
  :class:`~orchestrator.actions.Trace`, nothing else; see ``state.remember``), folded into
  the profile, then: goals / exits end live instances, awaited events move waiting
  instances, and the event may start new instances (entry trigger + conditions +
  re-entry rule). Consent events also emit :class:`~orchestrator.actions.ConsentChange`.
* :class:`~orchestrator.events.TimerFired` — a timeout, delay, send window or
  deferred send came due. Unknown (stale, duplicate) timer ids are ignored.
* :class:`~orchestrator.actions.GateOutcome` — the basket's decision on a
  :class:`~orchestrator.actions.Send` the engine emitted; the engine answers with
  exactly one :class:`~orchestrator.actions.Disposition` and continues the journey.

An instance stops ("parks") at a send step (until the gate answers, at once), a
wait step (awaited events + a timeout timer), a delay or window (a timer), or a
deferred send (a timer). It never parks without a timer or a gate answer pending.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from orchestrator.actions import (
    Action,
    ArmTimer,
    CancelTimer,
    ConsentChange,
    Disposition,
    GateOutcome,
    Send,
    Trace,
)
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.journey import model as m
from orchestrator.journey.conditions import MISSING, Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.journey.windows import next_opening
from orchestrator.state import (
    DEFAULT_LIMITS,
    SEEN_VALUES_PER_FIELD,
    Awaited,
    CustomerState,
    EngineLimits,
    Instance,
    JourneyHistory,
    Profile,
    TimerRef,
    TypeSeen,
    fast_build,
    fast_copy,
    fast_new,
    remember,
)

MAX_TRANSITIONS = 100
"""Steps one instance may take in one call before it is aborted (a safety net; validate rejects loops without a wait)."""
MIN_RETRY = timedelta(seconds=1)
"""A deferred send is retried no sooner than this after the decision."""
CONSENT_TYPES = {"consent.unsubscribed": False, "consent.resubscribed": True}
MARKETING = ("commercial", "editorial")


def step(
    state: CustomerState,
    message: CustomerEvent | TimerFired | GateOutcome,
    journeys: JourneySet,
    now: datetime,
    limits: EngineLimits = DEFAULT_LIMITS,
) -> tuple[CustomerState, list[Action]]:
    """Fold one message into one customer's state; return the new state and the actions to carry out.

    ``limits`` bounds what a customer's state remembers (the dedupe window and id cap).
    """
    cls = type(message)  # exact types first: isinstance() on pydantic (ABC) classes costs more
    if cls is CustomerEvent:
        return _on_event(state, message, journeys, now, limits)  # type: ignore[arg-type]
    if cls is GateOutcome:
        return _on_gate(state, message, journeys, now)  # type: ignore[arg-type]
    if cls is TimerFired:
        return _on_timer(state, message, journeys, now)  # type: ignore[arg-type]
    if isinstance(message, CustomerEvent):
        return _on_event(state, message, journeys, now, limits)
    if isinstance(message, TimerFired):
        return _on_timer(state, message, journeys, now)
    if isinstance(message, GateOutcome):
        return _on_gate(state, message, journeys, now)
    raise TypeError(f"engine.step: unsupported message {type(message).__name__}")


# ---------------------------------------------------------------- working copy


class _Run:
    """A copy-on-write working area for one call of :func:`step`."""

    __slots__ = ("state", "journeys", "now", "cid", "actions", "profile", "instances", "history", "variants", "_own")

    def __init__(self, state: CustomerState, journeys: JourneySet, now: datetime) -> None:
        self.state = state
        self.journeys = journeys
        self.now = now
        self.cid = state.customer_id
        self.actions: list[Action] = []
        self.profile = state.profile
        self.instances: dict[str, Instance] = {i.instance_id: i for i in state.instances}
        self.history: dict[str, JourneyHistory] | None = None
        self.variants: dict[str, str] | None = None
        self._own: set[int] = set()

    def edit(self, inst: Instance) -> Instance:
        """A private copy of ``inst`` that this call may change (copied once)."""
        if id(inst) in self._own:
            return inst
        copy = fast_copy(inst)
        self._own.add(id(copy))
        self.instances[copy.instance_id] = copy
        return copy

    def put(self, inst: Instance) -> None:
        self._own.add(id(inst))
        self.instances[inst.instance_id] = inst

    def set_history(self, journey_id: str, **changes: Any) -> None:
        if self.history is None:
            self.history = dict(self.state.history)
        old = self.history.get(journey_id)
        self.history[journey_id] = fast_copy(old, **changes) if old is not None else fast_new(JourneyHistory, **{**_HISTORY_DEFAULTS, **changes})

    def get_history(self, journey_id: str) -> JourneyHistory | None:
        return (self.history if self.history is not None else self.state.history).get(journey_id)

    def get_variant(self, key: str) -> str | None:
        return (self.variants if self.variants is not None else self.state.variants).get(key)

    def set_variant(self, key: str, name: str) -> None:
        if self.variants is None:
            self.variants = dict(self.state.variants)
        self.variants[key] = name

    def trace(self, inst: Instance, what: str, step_id: str | None = None, edge: str | None = None, **detail: Any) -> None:
        obj = _new_object(Trace)
        _osa(obj, "__dict__", {
            "kind": "trace", "customer_id": self.cid, "journey_id": inst.journey_id, "journey_version": inst.version,
            "instance_id": inst.instance_id, "step_id": step_id, "what": what, "edge": edge, "detail": detail, "at": self.now,
        })
        _osa(obj, "__pydantic_fields_set__", _TRACE_FIELDS)
        _osa(obj, "__pydantic_extra__", None)
        _osa(obj, "__pydantic_private__", None)
        self.actions.append(obj)

    def arm(self, inst: Instance, timer_id: str, purpose: str, due_at: datetime) -> None:
        inst.__dict__["timers"] = [*inst.timers, fast_new(TimerRef, timer_id=timer_id, purpose=purpose, due_at=due_at)]
        self.actions.append(
            fast_new(ArmTimer, kind="arm_timer", customer_id=self.cid, timer_id=timer_id, due_at=due_at, purpose=purpose)
        )

    def cancel_timers(self, inst: Instance) -> None:
        for t in inst.timers:
            self.actions.append(fast_new(CancelTimer, kind="cancel_timer", customer_id=self.cid, timer_id=t.timer_id))
        inst.__dict__["timers"] = []

    def finish(self, **extra: Any) -> CustomerState:
        update: dict[str, Any] = dict(extra)
        if self.profile is not self.state.profile:
            update["profile"] = self.profile
        if self._own or len(self.instances) != len(self.state.instances):
            update["instances"] = list(self.instances.values())
        if self.history is not None:
            update["history"] = self.history
        if self.variants is not None:
            update["variants"] = self.variants
        if not update:
            return self.state
        return fast_copy(self.state, **update)


_osa = object.__setattr__
_new_object = object.__new__
_TRACE_FIELDS = set(Trace.model_fields)
_HISTORY_DEFAULTS = {"entries": 0, "last_entered_at": None, "last_exited_at": None, "last_outcome": None, "conversions": 0}


# ---------------------------------------------------------------- events


def _on_event(
    state: CustomerState, ev: CustomerEvent, journeys: JourneySet, now: datetime, limits: EngineLimits = DEFAULT_LIMITS
) -> tuple[CustomerState, list[Action]]:
    sd = state.__dict__
    ed = ev.__dict__
    eid = ed["event_id"]
    etype = ed["type"]
    # dedupe by time: None when eid was seen within limits.dedupe_window, else the remembered ids with it added
    recent = remember(sd["recent_event_ids"], eid, now, limits)
    if recent is None:
        return state, [
            fast_new(Trace,
                kind="trace", customer_id=sd["customer_id"], journey_id="", journey_version=0, instance_id="",
                step_id=None, what="duplicate", edge=None, detail={"event_id": eid, "type": etype}, at=now,
            )
        ]
    profile = fold_profile(sd["profile"], ev, journeys.tracked.get(etype, ()))
    subscribed = CONSENT_TYPES.get(etype)
    triggered = journeys.triggered_by(etype)

    # fast path: nothing listens to this event (the common case): only the profile changes
    if not triggered and subscribed is None:
        relevant = False
        if etype in journeys.listened:
            for inst in sd["instances"]:
                cj = journeys.get(inst.journey_id, inst.version)
                if cj is None or etype in cj.listens:
                    relevant = True
                    break
        else:  # no loaded journey listens: only an instance of an unloaded version needs the slow path
            versions = journeys.versions
            for inst in sd["instances"]:
                idict = inst.__dict__
                by_version = versions.get(idict["journey_id"])
                if not by_version or idict["version"] not in by_version:
                    relevant = True
                    break
        if not relevant:
            new = sd.copy()
            new["profile"] = profile
            new["recent_event_ids"] = recent
            new["events_seen"] = sd["events_seen"] + 1
            return fast_build(CustomerState, new), []

    run = _Run(state, journeys, now)
    run.profile = profile
    if subscribed is not None:
        run.actions.append(
            fast_new(ConsentChange,
                kind="consent", customer_id=state.customer_id, channel=ev.data.get("channel", "all"),
                brand=ev.data.get("brand"), subscribed=subscribed, at=ev.occurred_at,
            )
        )

    # 1. live instances: goals, exits, awaited events
    for inst in list(run.instances.values()):
        cj = journeys.get(inst.journey_id, inst.version)
        if cj is None:
            _end(run, run.edit(inst), None, "version_removed", "exited", reason=f"journey {inst.journey_id} v{inst.version} is no longer loaded")
            continue
        if ev.type not in cj.listens:
            continue
        ctx = Ctx(ev.type, ev.event_id, ev.occurred_at, ev.data, run.profile, now, inst.entry_data)
        rule = next((r for r in cj.goals.get(ev.type, ()) if r.predicate(ctx)), None)
        if rule is not None:
            _end(run, run.edit(inst), cj, "goal", "goal", goal=rule.name, event_id=ev.event_id)
            continue
        rule = next((r for r in cj.exits.get(ev.type, ()) if r.predicate(ctx)), None)
        if rule is not None:
            _end(run, run.edit(inst), cj, f"exit:{rule.name}", "exited", exit=rule.name, event_id=ev.event_id)
            continue
        if inst.status == "waiting":
            matchers = cj.matchers.get(inst.step, ())
            for aw in inst.awaiting:
                if aw.event_type != ev.type or (aw.send_id is not None and ev.data.get("send_id") != aw.send_id):
                    continue
                mt = matchers[aw.index]
                if not mt.predicate(ctx):
                    continue
                w = run.edit(inst)
                run.cancel_timers(w)
                w.__dict__["awaiting"] = []
                w.__dict__["status"] = "running"
                _set(w, ctx_type=ev.type, ctx_event_id=ev.event_id, ctx_at=ev.occurred_at, ctx_data=ev.data)
                run.trace(w, "matched", w.step, mt.next, event_id=ev.event_id, event_type=ev.type)
                _advance(run, w, cj, mt.next)
                break

    # 2. entries
    if triggered:
        ctx = Ctx(ev.type, ev.event_id, ev.occurred_at, ev.data, run.profile, now)
        for cj in triggered:
            if _may_enter(run, cj) and cj.entry_when(ctx) and cj.entry_profile(ctx):
                _enter(run, cj, ev)

    return run.finish(recent_event_ids=recent, events_seen=state.events_seen + 1), run.actions


def fold_profile(profile: Profile, ev: CustomerEvent, tracked: Sequence[str] = ()) -> Profile:
    """The profile after seeing ``ev``: counts and times per type, tracked payload values, CRM fields."""
    ed = ev.__dict__
    at = ed["occurred_at"]
    etype = ed["type"]
    pd = profile.__dict__
    seen = pd["seen"]
    old = seen.get(etype)
    if old is None:
        values = {}
    else:
        od = old.__dict__
        values = od["values"]
    if tracked:
        values = dict(values)
        for f in tracked:
            v = _dig(ed["data"], f)
            if v is None or isinstance(v, (dict, list)):
                continue
            kept = [(x, t) for (x, t) in values.get(f, ()) if x != v or isinstance(x, bool) != isinstance(v, bool)]
            kept.append((v, at))
            values[f] = kept[-SEEN_VALUES_PER_FIELD:]
    if old is None:
        stats = fast_build(TypeSeen, {"count": 1, "first_at": at, "last_at": at, "values": values})
    else:
        # min() / max() semantics: the old value wins a tie
        first = od["first_at"]
        last = od["last_at"]
        stats = fast_build(TypeSeen, {
            "count": od["count"] + 1, "first_at": at if at < first else first, "last_at": at if at > last else last,
            "values": values,
        })
    new = pd.copy()
    seen = seen.copy()  # dict.copy() + one store: about half the cost of {**seen, etype: stats}, same order
    seen[etype] = stats
    new["seen"] = seen
    first_seen = pd["first_seen_at"]
    if first_seen is None or at < first_seen:
        new["first_seen_at"] = at
    last_seen = pd["last_seen_at"]
    if last_seen is None or at > last_seen:
        new["last_seen_at"] = at
    if etype in _CRM_TYPES:
        data = ed["data"]
        if etype == "crm.customer_registered" and pd["registered_at"] is None:
            new["registered_at"] = at
        if data.get("timezone"):
            new["timezone"] = data["timezone"]
        if data.get("segment") is not None:
            new["segment"] = data["segment"]
        attrs = data.get("attributes") or {}
        if attrs:
            new["attributes"] = {**pd["attributes"], **attrs}
    return fast_build(Profile, new)


_CRM_TYPES = frozenset(("crm.customer_registered", "crm.profile_updated"))


def _dig(data: dict[str, Any], path: str) -> Any:
    cur: Any = data
    for p in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _may_enter(run: _Run, cj: CompiledJourney) -> bool:
    rule = cj.journey.entry.reentry
    hist = run.get_history(cj.id)
    live = any(i.journey_id == cj.id for i in run.instances.values())
    if rule.policy == "never":
        return hist is None or hist.entries == 0
    if rule.policy == "after_exit":
        if live:
            return False
        if rule.cooldown is not None and hist is not None and hist.last_exited_at is not None:
            return run.now - hist.last_exited_at >= rule.cooldown
        return True
    # always: concurrent instances allowed
    if rule.cooldown is not None and hist is not None and hist.last_entered_at is not None:
        return run.now - hist.last_entered_at >= rule.cooldown
    return True


def _enter(run: _Run, cj: CompiledJourney, ev: CustomerEvent) -> None:
    inst = fast_new(Instance,
        instance_id=f"{cj.id}@{ev.event_id}",
        journey_id=cj.id,
        version=cj.version,
        entry_event_id=ev.event_id,
        entered_at=run.now,
        step=cj.journey.start,
        status="running",
        awaiting=[],
        timers=[],
        gating=None,
        attempt=0,
        window_ok=False,
        deferred=None,
        deferred_decision=None,
        sent={},
        visits={},
        entry_data=ev.data,
        ctx_type=ev.type,
        ctx_event_id=ev.event_id,
        ctx_at=ev.occurred_at,
        ctx_data=ev.data,
    )
    run.put(inst)
    hist = run.get_history(cj.id)
    run.set_history(cj.id, entries=(hist.entries if hist else 0) + 1, last_entered_at=run.now)
    run.trace(inst, "entered", None, cj.journey.start, event_id=ev.event_id, event_type=ev.type)
    _advance(run, inst, cj, cj.journey.start)


# ---------------------------------------------------------------- timers


def _on_timer(state: CustomerState, tf: TimerFired, journeys: JourneySet, now: datetime) -> tuple[CustomerState, list[Action]]:
    owner = None
    ref = None
    for inst in state.instances:
        for t in inst.timers:
            if t.timer_id == tf.timer_id:
                owner, ref = inst, t
                break
        if owner is not None:
            break
    if owner is None or ref is None:
        return state, []  # stale or duplicate timer: nothing to do
    run = _Run(state, journeys, now)
    cj = journeys.get(owner.journey_id, owner.version)
    inst = run.edit(owner)
    inst.__dict__["timers"] = [t for t in inst.timers if t.timer_id != tf.timer_id]
    if cj is None:
        _end(run, inst, None, "version_removed", "exited", reason=f"journey {inst.journey_id} v{inst.version} is no longer loaded")
        return run.finish(), run.actions
    step_def = cj.steps[inst.step]
    if ref.purpose == "timeout":
        target = step_def.on_timeout if isinstance(step_def, m.WaitStep) else None
        inst.__dict__["awaiting"] = []
        inst.__dict__["status"] = "running"
        run.trace(inst, "timeout", inst.step, target, timer_id=tf.timer_id)
        _advance(run, inst, cj, target)
    elif ref.purpose == "delay":
        target = getattr(step_def, "next", None)
        inst.__dict__["status"] = "running"
        run.trace(inst, "resumed", inst.step, target, timer_id=tf.timer_id)
        _advance(run, inst, cj, target)
    elif ref.purpose == "window":
        inst.__dict__["status"] = "running"
        if isinstance(step_def, m.SendStep):
            inst.__dict__["window_ok"] = True
            run.trace(inst, "resumed", inst.step, inst.step, timer_id=tf.timer_id, reason="send window open")
            _advance(run, inst, cj, inst.step, resume=True)
        else:
            target = getattr(step_def, "next", None)
            run.trace(inst, "resumed", inst.step, target, timer_id=tf.timer_id, reason="window open")
            _advance(run, inst, cj, target)
    elif ref.purpose == "deferred_send" and inst.deferred is not None:
        old = inst.deferred
        inst.__dict__["attempt"] = inst.attempt + 1
        send = fast_copy(old, send_id=_send_id(run.cid, inst, inst.step, old.channel, step_def, inst.attempt))
        inst.__dict__["deferred"] = None
        inst.__dict__["deferred_decision"] = None
        inst.__dict__["status"] = "gating"
        inst.__dict__["gating"] = send
        run.trace(inst, "resumed", inst.step, inst.step, timer_id=tf.timer_id, reason="deferred send retried", attempt=inst.attempt)
        run.actions.append(send)
    else:  # a timer whose purpose no longer fits the step (should not happen): move on rather than park without a timer
        inst.__dict__["status"] = "running"
        target = getattr(step_def, "on_timeout", None) or getattr(step_def, "next", None)
        run.trace(inst, "resumed", inst.step, target, timer_id=tf.timer_id, reason=f"unexpected {ref.purpose} timer")
        _advance(run, inst, cj, target)
    return run.finish(), run.actions


# ---------------------------------------------------------------- gate outcomes


def _on_gate(state: CustomerState, go: GateOutcome, journeys: JourneySet, now: datetime) -> tuple[CustomerState, list[Action]]:
    sid = go.send.send_id
    owner = next((i for i in state.instances if i.gating is not None and i.gating.send_id == sid), None)
    if owner is None:
        return state, []  # not a send this customer is waiting on (stale/duplicate)
    cj = journeys.get(owner.journey_id, owner.version)
    run = _Run(state, journeys, now)
    inst = run.edit(owner)
    send, decision = inst.gating, go.decision
    assert send is not None
    inst.__dict__["gating"] = None
    inst.__dict__["status"] = "running"
    if cj is None:
        run.actions.append(_disposition(send, decision, "cancelled", "journey version no longer loaded"))
        _end(run, inst, None, "version_removed", "exited", reason=f"journey {inst.journey_id} v{inst.version} is no longer loaded")
        return run.finish(), run.actions
    step_def = cj.steps[inst.step]
    assert isinstance(step_def, m.SendStep)
    if decision.outcome == "approved":
        run.actions.append(_disposition(send, decision, "approved", decision.reason))
        inst.__dict__["sent"] = {**inst.sent, inst.step: send.send_id}
        inst.__dict__["attempt"] = 0
        run.trace(inst, "send", inst.step, step_def.next, result="approved", send_id=send.send_id, channel=send.channel,
                  template=send.template, reason=decision.reason)
        if send.comm_type == "calamity":
            _cancel_marketing(run, reason=f"calamity send {send.send_id} approved")
        _advance(run, inst, cj, step_def.next)
        return run.finish(), run.actions

    result = "capped" if decision.outcome == "capped" else "suppressed"
    policy = step_def.on_capped
    if policy.action == "fallback" and send.fallback_channels:
        channel = send.fallback_channels[0]
        nxt = fast_copy(
            send,
            send_id=_send_id(run.cid, inst, inst.step, channel, step_def, 0),
            channel=channel,
            fallback_channels=list(send.fallback_channels[1:]),
        )
        run.actions.append(_disposition(send, decision, "fallback", f"{decision.reason}; falling back to {channel}"))
        inst.__dict__["gating"] = nxt
        inst.__dict__["status"] = "gating"
        run.trace(inst, "send", inst.step, inst.step, result="fallback", send_id=send.send_id, channel=send.channel,
                  fallback_to=channel, reason=decision.reason)
        run.actions.append(nxt)
        return run.finish(), run.actions
    if policy.action == "defer" and decision.retry_at is not None and inst.attempt < policy.max_attempts:
        due = max(decision.retry_at, now + MIN_RETRY)
        inst.__dict__["deferred"] = send
        inst.__dict__["deferred_decision"] = decision
        inst.__dict__["status"] = "deferred"
        run.actions.append(_disposition(send, decision, "deferred", f"{decision.reason}; retry at {_iso(due)}"))
        run.arm(inst, _timer_id(run.cid, inst, inst.step, "deferred", inst.attempt + 1), "deferred_send", due)
        run.trace(inst, "delayed", inst.step, None, reason="send deferred", send_id=send.send_id, until=_iso(due))
        return run.finish(), run.actions
    note = decision.reason
    if policy.action == "defer":
        note += "; not deferred: " + ("no retry time" if decision.retry_at is None else f"gave up after {inst.attempt} deferrals")
    elif policy.action == "fallback":
        note += "; no fallback channel left"
    run.actions.append(_disposition(send, decision, result, note))
    target = step_def.on_skip if step_def.on_skip is not None else step_def.next
    run.trace(inst, "send", inst.step, target, result=result, send_id=send.send_id, channel=send.channel, reason=note)
    inst.__dict__["attempt"] = 0
    _advance(run, inst, cj, target)
    return run.finish(), run.actions


def _set(obj: Any, **values: Any) -> None:
    """Set fields on a model copy this call owns (no validation, no pydantic bookkeeping)."""
    obj.__dict__.update(values)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _disposition(send: Send, decision: Any, result: str, note: str) -> Disposition:
    return fast_new(Disposition, kind="disposition", send=send, decision=decision, result=result, note=note)


def _cancel_marketing(run: _Run, reason: str) -> None:
    """A calamity send went out: drop every deferred commercial/editorial send of this customer."""
    for inst in list(run.instances.values()):
        if inst.status != "deferred" or inst.deferred is None or inst.deferred.comm_type not in MARKETING:
            continue
        cj = run.journeys.get(inst.journey_id, inst.version)
        w = run.edit(inst)
        send, decision = w.deferred, w.deferred_decision
        run.cancel_timers(w)
        w.__dict__["deferred"] = None
        w.__dict__["deferred_decision"] = None
        w.__dict__["status"] = "running"
        w.__dict__["attempt"] = 0
        run.actions.append(_disposition(send, decision, "cancelled", reason))  # type: ignore[arg-type]
        if cj is None:
            _end(run, w, None, "version_removed", "exited", reason="journey version no longer loaded")
            continue
        step_def = cj.steps[w.step]
        target = step_def.on_skip if step_def.on_skip is not None else step_def.next
        run.trace(w, "send", w.step, target, result="cancelled", send_id=send.send_id, reason=reason)  # type: ignore[union-attr]
        _advance(run, w, cj, target)


# ---------------------------------------------------------------- running steps


def _ctx(run: _Run, inst: Instance) -> Ctx:
    return Ctx(inst.ctx_type, inst.ctx_event_id, inst.ctx_at, inst.ctx_data, run.profile, run.now, inst.entry_data)


def _suffix(inst: Instance, step_id: str) -> str:
    visit = inst.visits.get(step_id, 1)
    return f"#{visit}" if visit > 1 else ""


def _send_id(cid: str, inst: Instance, step_id: str, channel: str, step_def: m.SendStep, attempt: int) -> str:
    """customer:journey:vN:entry-event:step[#visit][:fallback-channel][:aN]."""
    out = f"{cid}:{inst.journey_id}:v{inst.version}:{inst.entry_event_id}:{step_id}{_suffix(inst, step_id)}"
    if channel != step_def.channel:
        out += f":{channel}"
    if attempt:
        out += f":a{attempt}"
    return out


def _timer_id(cid: str, inst: Instance, step_id: str, purpose: str, n: int = 0) -> str:
    out = f"{cid}:{inst.instance_id}:{step_id}{_suffix(inst, step_id)}:{purpose}"
    return f"{out}:{n}" if n else out


def split_bucket(customer_id: str, journey_id: str, step_id: str, total: int) -> int:
    """A stable bucket in ``[0, total)`` for a customer at a split (blake2b, never Python's hash())."""
    digest = hashlib.blake2b(f"{customer_id}\x1f{journey_id}\x1f{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % total


def choose_variant(customer_id: str, journey_id: str, step_def: m.SplitStep, step_id: str) -> m.Variant:
    """The variant a customer gets at a split (deterministic, proportional to the weights)."""
    total = sum(v.weight for v in step_def.variants)
    bucket = split_bucket(customer_id, journey_id, step_id, total)
    for v in step_def.variants:
        if bucket < v.weight:
            return v
        bucket -= v.weight
    return step_def.variants[-1]  # pragma: no cover


def _advance(run: _Run, inst: Instance, cj: CompiledJourney, step_id: str | None, resume: bool = False) -> None:
    """Run ``inst`` (an owned copy) from ``step_id`` until it parks or ends."""
    steps = cj.steps
    for _ in range(MAX_TRANSITIONS):
        if step_id is None:
            _end(run, inst, cj, "completed", "exited")
            return
        sd = steps[step_id]
        if not resume:
            inst.__dict__["visits"] = {**inst.visits, step_id: inst.visits.get(step_id, 0) + 1}
            inst.__dict__["step"] = step_id
            inst.__dict__["window_ok"] = False
            run.trace(inst, "step", step_id, None, type=sd.type)
        resume = False
        kind = _STEP_KINDS.get(type(sd)) or _step_kind(sd)
        if kind is m.SendStep:
            window = cj.windows.get(step_id)
            if window is not None and not inst.window_ok:
                opening = next_opening(window, run.profile.timezone, run.now)
                if opening is not None:
                    inst.__dict__["status"] = "delayed"
                    run.arm(inst, _timer_id(run.cid, inst, step_id, "window"), "window", opening)
                    run.trace(inst, "delayed", step_id, None, reason="send window", until=_iso(opening))
                    return
            inst.__dict__["window_ok"] = False
            send = _build_send(run, inst, cj, step_id, sd)
            inst.__dict__["status"] = "gating"
            inst.__dict__["gating"] = send
            run.actions.append(send)
            return
        if kind is m.WaitStep:
            awaiting = []
            for mt in cj.matchers[step_id]:
                if mt.send_step is not None:
                    sent = inst.sent.get(mt.send_step)
                    if sent is None:
                        continue  # that message never went out: nothing to open
                    awaiting.append(fast_new(Awaited, event_type=mt.event_type, send_id=sent, index=mt.index))
                else:
                    awaiting.append(fast_new(Awaited, event_type=mt.event_type, send_id=None, index=mt.index))
            inst.__dict__["awaiting"] = awaiting
            inst.__dict__["status"] = "waiting"
            due = run.now + sd.timeout
            run.arm(inst, _timer_id(run.cid, inst, step_id, "timeout"), "timeout", due)
            run.trace(inst, "waiting", step_id, None, until=_iso(due),
                      awaiting=[f"{a.event_type}" + (f"[{a.send_id}]" if a.send_id else "") for a in awaiting])
            return
        if kind is m.BranchStep:
            ctx = _ctx(run, inst)
            target, label = sd.default, "default"
            for pred, nxt, name in cj.cases[step_id]:
                if pred(ctx):
                    target, label = nxt, name
                    break
            run.trace(inst, "branch", step_id, target, case=label)
            step_id = target
            continue
        if kind is m.SplitStep:
            key = f"{cj.id}/{step_id}"
            name = run.get_variant(key)
            variant = next((v for v in sd.variants if v.name == name), None) if name else None
            sticky = variant is not None
            if variant is None:
                variant = choose_variant(run.cid, cj.id, sd, step_id)
                run.set_variant(key, variant.name)
            run.trace(inst, "split", step_id, variant.next, variant=variant.name, sticky=sticky)
            step_id = variant.next
            continue
        if kind is m.DelayStep:
            inst.__dict__["status"] = "delayed"
            due = run.now + sd.duration
            run.arm(inst, _timer_id(run.cid, inst, step_id, "delay"), "delay", due)
            run.trace(inst, "delayed", step_id, None, reason="delay", until=_iso(due))
            return
        if kind is m.WindowStep:
            opening = next_opening(sd.window, run.profile.timezone, run.now)
            if opening is None:
                step_id = sd.next
                continue
            inst.__dict__["status"] = "delayed"
            run.arm(inst, _timer_id(run.cid, inst, step_id, "window"), "window", opening)
            run.trace(inst, "delayed", step_id, None, reason="window", until=_iso(opening))
            return
        if kind is m.EndStep:
            _end(run, inst, cj, sd.outcome, "exited")
            return
        raise TypeError(f"unknown step type {type(sd).__name__}")  # pragma: no cover
    _end(run, inst, cj, "aborted", "exited", reason=f"more than {MAX_TRANSITIONS} steps without a wait")


_STEP_KINDS: dict[type, type] = {
    k: k for k in (m.SendStep, m.WaitStep, m.BranchStep, m.SplitStep, m.DelayStep, m.WindowStep, m.EndStep)
}


def _step_kind(sd: Any) -> type | None:
    """The step class ``sd`` is an instance of (for a subclass; exact classes are looked up in ``_STEP_KINDS``)."""
    for k in _STEP_KINDS:
        if isinstance(sd, k):
            return k
    return None


def _build_send(run: _Run, inst: Instance, cj: CompiledJourney, step_id: str, sd: m.SendStep) -> Send:
    variables = dict(sd.variables)
    getters = cj.variables_from.get(step_id)
    if getters:
        ctx = _ctx(run, inst)
        for name, get in getters:
            value = get(ctx)
            if value is not MISSING:
                variables[name] = value
    fallback = list(sd.on_capped.channels) if sd.on_capped.action == "fallback" else []
    return fast_new(Send,
        kind="send",
        send_id=_send_id(run.cid, inst, step_id, sd.channel, sd, 0),
        customer_id=run.cid,
        journey_id=inst.journey_id,
        journey_version=inst.version,
        instance_id=inst.instance_id,
        step_id=step_id,
        channel=sd.channel,
        template=sd.template,
        comm_type=sd.comm_type,
        priority=sd.priority,
        brand=sd.brand,
        variables=variables,
        timezone=run.profile.timezone or "UTC",
        on_capped=sd.on_capped.action,
        fallback_channels=fallback,
    )


def _end(run: _Run, inst: Instance, cj: CompiledJourney | None, outcome: str, what: str, **detail: Any) -> None:
    """End an instance: cancel its timers and deferred send, record history, trace, drop it."""
    run.cancel_timers(inst)
    if inst.deferred is not None and inst.deferred_decision is not None:
        run.actions.append(_disposition(inst.deferred, inst.deferred_decision, "cancelled", f"journey ended: {outcome}"))
    hist = run.get_history(inst.journey_id)
    changes: dict[str, Any] = {"last_exited_at": run.now, "last_outcome": outcome}
    if outcome == "goal":
        changes["conversions"] = (hist.conversions if hist else 0) + 1
    run.set_history(inst.journey_id, **changes)
    run.trace(inst, what, inst.step, None, outcome=outcome, **detail)
    run.instances.pop(inst.instance_id, None)

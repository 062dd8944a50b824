"""Campaign runs inside the workers: each worker reaches its own customers, from its own state, throttled.

A scheduled audience (``entry.audience.schedule``, semantics in ``journey/schedule.py``) is
carried out by every worker for the customers of the partitions it owns. There is no central
scan and no second database: the customer states the worker already holds (``store.py``) are
the input, and the customer-events topic is the output.

How a run proceeds
------------------
The worker's campaign loop (``campaign_loop.py``, its own asyncio task) calls
:meth:`CampaignScheduler.refresh` and :meth:`CampaignScheduler.work` about every
``ORCH_CAMPAIGN_TICK`` seconds, or at once while there is work and tokens.

1. **Runs.** For each journey in ``JourneySet.scheduled``, the runs ``open_runs(schedule, now)``
   (engine time: the demo's fast clock included) that can reach some customer now: a UTC run
   from its instant to the end of its reach (``Run.reach``: its grace, at most half the dedupe
   window); a local run from 14 h before its wall-clock time (UTC+14) to 14 h after it plus the
   reach. Runs outside that are dropped with their progress.
2. **Passes.** Per run and owned partition, a *pass*: a snapshot of the partition's customer
   ids (a list of the ids the store already holds) walked with a cursor, extended by the
   customers who first appear in the partition while the pass is open (see below). For each
   customer:

   - the state (the store's parsed-state cache, else :class:`AudienceView` parsed from the
     stored bytes and not kept) **remembers** the run's event id ``audience:<journey>:<run>``:
     reached before (by this or an earlier owner) → settled, nothing published;
   - the run is not due for them yet (``Run.due_for(profile.timezone)`` later than now: local
     runs) → parked by due time and revisited when due (their state is read again then: a
     zone that moved the due time later parks them again; see below for one that moved it
     earlier);
   - the run has closed for them (due + ``Run.reach`` passed) → settled;
   - else the audience conditions (``CompiledJourney.audience_when``, the engine's own
     predicate, over the same :class:`~orchestrator.journey.conditions.Ctx` the engine builds)
     are evaluated: not in the audience → settled; in it → an
     :class:`~orchestrator.events.AudienceCheck` is published onto the customer's own
     partition (as the timer loop publishes ``TimerFired``), taking one throttle token.

   The check then flows through the normal batch path (decode, state, engine, basket, outputs,
   state write, commit). **The engine decides**: it deduplicates the run per customer, checks
   the audience again on the state it holds then, and the re-entry rule. The scan is only a
   pre-filter and never enters anyone; a state that does not load is published anyway (the
   batch path dead-letters it with ``state_unreadable``: visible, not silently skipped).
3. **Completion.** A pass completes when its cursor is at the end and nothing is parked or in
   flight; its snapshot is released. A ``campaign_progress`` record (see
   :class:`~orchestrator.records.CampaignProgress`) goes to the journey-log topic every
   ``ORCH_CAMPAIGN_PROGRESS_EVERY`` customers settled and on completion (again on each
   completion of a pass opened again, with its counts then: the newest record is right).

Customers who first appear after their partition's pass started are not in its snapshot.
While a run has a pass over a partition, the store (``StateStore.put``) notes every customer
new to that partition (a state put for a key it did not hold) in the partition's
``arrivals``; each round (:meth:`CampaignScheduler.refresh` and :meth:`CampaignScheduler.work`)
appends them to every open pass of the partition taken from those states, before any new
snapshot is taken, so each pass has each customer once. They are then looked at like the
snapshot's customers: parked until due, reached at their due time, closed if it passed
beyond the reach. A pass that had completed is opened again for them (``customers`` grows;
``campaign_progress`` gauge and records follow). So a run reaches every customer who is in
the audience at their due time within the run's reach, wherever their state first appeared.
A partition read again from its changelog (a rebalance) gets a new pass from its states.

A parked customer's time zone may change before they are due (a CRM update). Woken at the
old due time, a later new due time parks them again. For an earlier one, local runs keep a
zone index per partition (``PartitionState.zones``, the zone each parked customer was parked
with); ``StateStore.put`` notes a parked customer whose new state has another zone in
``rezoned``, and the next round takes them out of the parking of every local pass of the
partition (found by the old zone's due time) and looks at them again: parked at the new due
time, or reached at once if it has come. Either way the engine decides on the state it holds
when the check arrives.

Why a redo is harmless (idempotent and resumable)
-------------------------------------------------
Progress is in memory only; after a crash or a rebalance the partition's new owner restores
the states and passes the partition again (a partition that stays with its worker, its
states kept as they were, keeps its pass). The durable progress is the customers' own
states: the engine remembers the run's event id in every customer a check reached (entered
or not). What a redo can do, and why nothing happens twice:

- **A check published again for a customer whose state already remembers the run** (the
  scan saw the state before the first check was processed, or the first check is still in
  flight on the topic): both are on the same partition, handled in order by its one writer;
  the second finds the run remembered and yields only a ``duplicate`` trace: no entry, no send.
- **A check processed, its outputs published, the worker killed before the state was
  written** (so the new owner replays it): the replay runs from the old state, enters again
  with the same instance id (``<journey>@audience:<journey>:<run>``) and the same send ids
  (derived from the instance), and the basket answers a send id it knows with its recorded
  decision (never a second charge); a send request may go out twice with the same
  ``send_id``, which the CCM platform deduplicates. This is the batch path's ordinary
  at-least-once replay.
- **A customer evaluated as outside the audience, evaluated again** by the next owner: a pure
  function of the state; if they qualify now, the run is still open for them, and entering
  them is what the run means.
- **A customer in a pass twice** cannot happen: the store's arrivals are handed to the passes
  open before the next snapshot is taken, and a customer is new to a partition only once
  (states are never deleted by a put); a zone change moves a parked customer, never copies
  them. A pass taken again (restart, rebalance) is the redo of the cases above.
- The run is remembered for ``ORCH_DEDUPE_WINDOW_DAYS`` (7) from when the check was
  processed (itself after the due time); the scan reaches a customer only until due +
  ``Run.reach`` (the grace, at most half that window), so a redo always finds the run still
  remembered. Whether a customer's state remembers the run is the engine's own check
  (``dedupe.dedupe_contains``). (A customer
  with more than ``ORCH_DEDUPE_MAX_IDS`` events in that time forgets the oldest ids first; the
  re-entry rule still holds then.)

How the throttle is shared
--------------------------
``audience.throttle.per_second`` is for the campaign across all workers. Each worker takes
the share of its partitions: ``per_second x owned / ORCH_PARTITIONS`` (the customer topic's
partition count; preflight makes sure they agree), in a token bucket per campaign (journey),
shared by its open runs, holding at most 0.2 s of tokens (so any window of W seconds sees at
most ``per_second x (W + 0.2)`` checks from all workers together) and starting empty. The
share follows every rebalance; while a dead worker's partitions wait for its session to
expire their share is simply unused. The bucket counts wall-clock seconds (it protects the
CCM platform and the triggered traffic), not the demo's fast engine clock.

Campaign publishing never blocks the batch loop: the scan runs in slices of
``ORCH_CAMPAIGN_SLICE`` customers between which the event loop runs the batch loop, and it
pauses while this worker's customer-events partitions lag more than ``ORCH_CAMPAIGN_MAX_LAG``.

Memory
------
Per (run, partition): the snapshot of ids (references to the store's own key strings, 8
bytes each plus the list), the parked ids of a local run, and counters; per campaign a token
bucket. So at most proportional to the owned customers per open run, and released when the
pass completes, the run closes, or the partition moves. Per partition while some run has a
pass over it: the ids of customers new to it since the last round (handed over and cleared
each round); while a local run has one: the zone index of its parked customers (a dict
entry, ~50 bytes each, the zone strings interned; a customer leaves it when woken, unless
another local run still has customers parked there). Nothing of this is kept while no run
has a pass over the partition. States are parsed for the scan into a light view (the profile
and the remembered ids; the profile is the engine's own model) and dropped at once; the
store's parsed cache is read, never filled.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.dedupe import DEFAULT_LIMITS, dedupe_contains, dedupe_key, recent_from_list
from orchestrator.engine import ids as engine_ids
from orchestrator.engine.audience import AUDIENCE_EVENT_TYPE
from orchestrator.events import AudienceCheck
from orchestrator.journey.conditions import Ctx
from orchestrator.journey.loader import CompiledJourney, JourneySet
from orchestrator.journey.schedule import Run, open_runs
from orchestrator.metrics import Metrics
from orchestrator.records import CampaignProgress
from orchestrator.runtime.logs import pseudonym
from orchestrator.runtime.store import PartitionState, StateStore
from orchestrator.state import Instance, Profile

log = logging.getLogger("orchestrator.campaigns")

BURST_SECONDS = 0.2
"""A campaign's token bucket holds at most this many seconds of its rate (at least one token)."""
CHUNK_SECONDS = 0.05
"""The loop waits for about this many seconds of tokens before it publishes again (fewer, larger sends)."""
LOCAL_SPREAD = timedelta(hours=14)
"""How far local times lie from UTC, at most (UTC+14 .. UTC-12): a local run reaches customers within this of its wall-clock time."""
CAMPAIGN_RUNS_KEPT = 4
"""Per journey, the newest runs whose metric series are kept; counts of older runs go to run="older"."""
OLDER = "older"


class AudienceView(BaseModel):
    """What the scan reads of a stored state: the profile (the engine's own model) and the remembered event ids.

    Parsing only these (``extra="ignore"``) skips building instances, history and variants.
    """

    model_config = ConfigDict(extra="ignore")

    profile: Profile = Field(default_factory=Profile)
    recent_event_ids: str | list[str] = ""

    def recent(self) -> str:
        """The remembered ids in the current string form (an old list form converted as the engine does)."""
        ids = self.recent_event_ids
        return ids if isinstance(ids, str) else recent_from_list([str(x) for x in ids])


class TokenBucket:
    """``rate`` tokens per second, at most ``max(1, rate x burst)`` held; starts empty. Times are monotonic seconds."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float, burst: float = BURST_SECONDS) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = 0.0
        self.stamp = now

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate * self.burst)

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.rate = rate
        self.tokens = min(self.tokens, self.capacity)

    def available(self, now: float) -> float:
        """Tokens at hand at ``now`` (fractional)."""
        self._refill(now)
        return self.tokens

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float, tokens: float = 1.0) -> float:
        """Seconds until ``tokens`` (at most the capacity) are available; inf at rate 0."""
        self._refill(now)
        want = min(tokens, self.capacity)
        if self.tokens >= want:
            return 0.0
        return (want - self.tokens) / self.rate if self.rate > 0 else float("inf")


@dataclass
class Pass:
    """One worker's walk of one run over one partition."""

    partition: int
    order: list[str]
    customers: int
    source: PartitionState | None = None
    """The store's PartitionState the snapshot was taken from: a partition read again from its changelog is a new one."""
    cursor: int = 0
    again: list[str] = field(default_factory=list)
    """Customers to look at again first: their publish failed, or the run came due for them."""
    parked: dict[float, list[str]] = field(default_factory=dict)
    """Customers the run has not reached yet, by due time (epoch seconds)."""
    inflight: int = 0
    evaluated: int = 0
    audience: int = 0
    remembered: int = 0
    closed: int = 0
    settled: int = 0
    reported: int = 0
    complete: bool = False
    reopened: int = 0
    """How often customers new to the partition opened the pass again after it had completed."""

    @property
    def pending(self) -> int:
        return sum(len(ids) for ids in self.parked.values())

    def arrive(self, ids: list[str]) -> None:
        """Customers new to the partition since the snapshot: walked after it; a completed pass is opened again for them."""
        if self.complete:
            self.complete = False
            self.reopened += 1
        self.order.extend(ids)
        self.customers += len(ids)

    def unpark(self, due_ts: float, cid: str) -> bool:
        """Take ``cid`` out of the customers parked for ``due_ts`` and look at them again; whether they were parked there."""
        ids = self.parked.get(due_ts)
        if ids is None:
            return False
        try:
            ids.remove(cid)
        except ValueError:
            return False
        if not ids:
            del self.parked[due_ts]
        self.again.append(cid)
        return True

    def next_customer(self) -> str | None:
        if self.again:
            return self.again.pop()
        if self.cursor < len(self.order):
            self.cursor += 1
            return self.order[self.cursor - 1]
        return None

    def wake(self, now_ts: float) -> list[list[str]]:
        """Customers whose due time has come are looked at again; returns them (by due time)."""
        woken = [self.parked.pop(due) for due in [d for d in self.parked if d <= now_ts]]
        for ids in woken:
            self.again.extend(ids)
        return woken

    def done(self) -> bool:
        return not self.again and self.cursor >= len(self.order) and not self.parked and self.inflight == 0

    def progress(self, run_id: str) -> CampaignProgress:
        return CampaignProgress(
            run=run_id,
            partition=self.partition,
            customers=self.customers,
            evaluated=self.evaluated,
            audience=self.audience,
            remembered=self.remembered,
            closed=self.closed,
            pending=self.pending,
            complete=self.complete,
        )


@dataclass
class RunState:
    """One open run of one campaign on this worker: its passes, and the due time per time zone."""

    journey_id: str
    run: Run
    reach: timedelta
    """How long after a customer's due time the scan still reaches them (``Run.reach`` of the worker's dedupe window)."""
    passes: dict[int, Pass] = field(default_factory=dict)
    event_id: str = field(init=False)
    """``audience:<journey>:<run>``: what the engine remembers in each customer the run reached."""
    key: str = field(init=False)
    data: dict[str, str] = field(init=False)
    dues: dict[str, tuple[datetime, float, float]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.event_id = engine_ids.audience_event_id(self.journey_id, self.run.run_id)
        self.key = dedupe_key(self.event_id)
        self.data = {"journey": self.journey_id, "run": self.run.run_id}

    def due(self, timezone: str | None) -> tuple[datetime, float, float]:
        """(due, due as epoch seconds, epoch seconds when the scan stops reaching the customer)."""
        zone = (timezone or "") if self.run.local else ""
        known = self.dues.get(zone)
        if known is None:
            at = self.run.due_for(zone or None)
            known = self.dues[zone] = (at, at.timestamp(), (at + self.reach).timestamp())
        return known

    def remembered_by(self, recent: str) -> bool:
        """Whether a customer's remembered ids hold this run (the engine's dedupe of ``AudienceCheck.event_id``)."""
        return dedupe_contains(recent, self.event_id, key=self.key)


@dataclass
class Campaign:
    """A scheduled journey on this worker: its token bucket and its open runs."""

    journey: CompiledJourney
    bucket: TokenBucket
    runs: dict[str, RunState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An AudienceCheck to publish on ``partition`` of the customer topic."""

    check: AudienceCheck
    partition: int
    pass_: Pass


@dataclass(frozen=True, slots=True)
class ProgressOut:
    """A campaign_progress record to publish on the journey-log topic, keyed by the journey id."""

    key: str
    run_id: str
    partition: int
    value: bytes


@dataclass
class Work:
    """What one :meth:`CampaignScheduler.work` call produced."""

    checks: list[Outgoing] = field(default_factory=list)
    records: list[ProgressOut] = field(default_factory=list)
    busy: bool = False
    """Stopped at the slice's end with more to do at once: call again after letting the batch loop run."""
    wait: float = float("inf")
    """Otherwise: seconds until more can be done (tokens); inf when only time (due customers, new runs) will tell."""


def run_reaches(run: Run, now: datetime, reach: timedelta) -> bool:
    """Whether ``run`` can be open for some customer at ``now`` (it may still be early or late for most)."""
    if not run.local:
        return run.moment <= now < run.moment + reach
    wall = run.moment.replace(tzinfo=UTC)
    return wall - LOCAL_SPREAD <= now < wall + LOCAL_SPREAD + reach


class CampaignScheduler:
    """The scan and the throttle of every campaign on one worker (no Kafka here: the pipeline publishes).

    ``clock``: monotonic seconds for the token buckets. ``dedupe_window``: the engine's
    (``EngineLimits.dedupe_window``); the scan reaches a customer until ``Run.reach`` of it after
    their due time (see the module doc).
    """

    def __init__(
        self,
        store: StateStore,
        metrics: Metrics,
        *,
        dedupe_window: timedelta = DEFAULT_LIMITS.dedupe_window,
        slice_size: int = 1000,
        progress_every: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        pseudo_key: bytes = b"",
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.dedupe_window = dedupe_window
        self.slice_size = slice_size
        self.progress_every = progress_every
        self.clock = clock
        self.campaigns: dict[str, Campaign] = {}
        self._runs_seen: dict[str, deque[str]] = {}
        self._unreported: dict[tuple[str, str, int], ProgressOut] = {}
        self._pseudo_key = pseudo_key
        self._turn = 0

    # ------------------------------------------------------------------ what is open, who owns what

    def restart(self) -> None:
        """Forget every pass: the next :meth:`refresh` starts them again from the states."""
        for campaign in self.campaigns.values():
            for run in campaign.runs.values():
                run.passes.clear()
        for part in self.store.partitions.values():  # nothing to report to until the passes are taken again
            part.arrivals = part.zones = None
            part.rezoned = []

    def refresh(self, journeys: JourneySet, now: datetime, owned: set[int], total_partitions: int) -> None:
        """Follow the live campaigns, their open runs and this worker's partitions (cheap: call every round)."""
        mono = self.clock()
        share = len(owned) / total_partitions if total_partitions > 0 else 0.0
        self._collect()  # before any new snapshot: what the store noted belongs to the passes open until now
        live: dict[str, Campaign] = {}
        for journey in journeys.scheduled:
            audience = journey.journey.entry.audience
            if audience is None or audience.schedule is None:  # pragma: no cover - JourneySet.scheduled has both
                continue
            rate = audience.throttle.per_second * share
            campaign = self.campaigns.get(journey.id)
            if campaign is None:
                campaign = Campaign(journey, TokenBucket(rate, mono))
            campaign.journey = journey  # a reload may have changed the audience or the version
            campaign.bucket.set_rate(rate, mono)
            self.metrics.campaign_rate.labels(journey.id).set(rate)
            self._open(campaign, open_runs(audience.schedule, now), now, owned)
            live[journey.id] = campaign
        for gone in set(self.campaigns) - set(live):
            self.metrics.campaign_rate.remove(gone)
        self.campaigns = live
        self._watch()

    def _open(self, campaign: Campaign, runs: list[Run], now: datetime, owned: set[int]) -> None:
        open_now: dict[str, RunState] = {}
        for run in runs:
            reach = run.reach(self.dedupe_window)
            if not run_reaches(run, now, reach):
                continue
            state = campaign.runs.get(run.run_id) or RunState(campaign.journey.id, run, reach)
            self._seen_run(campaign.journey.id, run.run_id)
            # a partition that moved away, or was read again from its changelog (a rebalance), is passed again from
            # its restored states; one that stayed with this worker as it was keeps its pass
            for p in [p for p, pass_ in state.passes.items() if p not in owned or self.store.partitions.get(p) is not pass_.source]:
                del state.passes[p]
            for p in sorted(owned - set(state.passes)):
                source = self.store.partitions.get(p)
                if source is not None:
                    order = self.store.customer_ids(p)
                    state.passes[p] = Pass(partition=p, order=order, customers=len(order), source=source)
            open_now[run.run_id] = state
        campaign.runs = open_now

    def _watch(self) -> None:
        """Which partitions the store reports on: arrivals where a run has a pass, zones where a local run has one.

        Called right after the snapshots are taken (no put in between), so a pass misses no customer and gets none twice.
        """
        watched: dict[int, bool] = {}  # partition -> a local run has a pass there
        for campaign in self.campaigns.values():
            for run in campaign.runs.values():
                for partition in run.passes:
                    watched[partition] = watched.get(partition, False) or run.run.local
        for partition, part in self.store.partitions.items():
            local = watched.get(partition)
            if local is None:
                part.arrivals = part.zones = None
                part.rezoned = []
                continue
            if part.arrivals is None:
                part.arrivals = []
            if not local:
                part.zones = None
                part.rezoned = []
            elif part.zones is None:
                part.zones = {}

    def _passes_of(self, partition: int, part: PartitionState) -> list[tuple[RunState, Pass]]:
        """The open passes over ``partition`` taken from ``part`` (the store's current state of it)."""
        return [
            (run, p)
            for campaign in self.campaigns.values()
            for run in campaign.runs.values()
            if (p := run.passes.get(partition)) is not None and p.source is part
        ]

    def _collect(self) -> None:
        """What the store noted since the last round: customers new to a partition join its open passes (a completed
        pass opens again); a parked customer whose time zone changed is taken out of parking and looked at again."""
        for partition, part in self.store.partitions.items():
            arrivals, rezoned = part.arrivals, part.rezoned
            if not arrivals and not rezoned:
                continue
            passes = self._passes_of(partition, part)
            if arrivals:
                for _, p in passes:
                    p.arrive(arrivals)
                arrivals.clear()
            if not rezoned:
                continue
            part.rezoned = []
            zones = part.zones
            if zones is not None:
                for cid in rezoned:
                    zone = zones.pop(cid, None)  # parked again (under the zone they have now) when looked at
                    if zone is None:
                        continue  # noted twice, or no longer parked
                    for run, p in passes:
                        if run.run.local:
                            p.unpark(run.due(zone)[1], cid)

    def _forget_zones(self, p: Pass, woken: list[list[str]]) -> None:
        """Woken customers leave the zone index, unless another local run still has customers parked on the partition
        (they may be among them: their entries stay and are dropped with the index)."""
        part = p.source
        zones = part.zones if part is not None else None
        if zones is None or part is None:
            return
        for other, q in self._passes_of(p.partition, part):
            if q is not p and other.run.local and q.parked:
                return
        for ids in woken:
            for cid in ids:
                zones.pop(cid, None)

    def _seen_run(self, journey_id: str, run_id: str) -> None:
        runs = self._runs_seen.setdefault(journey_id, deque())
        if run_id in runs:
            return
        runs.append(run_id)
        while len(runs) > CAMPAIGN_RUNS_KEPT:
            self.metrics.forget_campaign_run(journey_id, runs.popleft())

    def run_label(self, journey_id: str, run_id: str) -> str:
        """The ``run`` label for counts of this run: itself while it is among the newest runs seen, else "older"."""
        runs = self._runs_seen.get(journey_id)
        return run_id if runs is not None and run_id in runs else OLDER

    # ------------------------------------------------------------------ the scan

    def work(self, now: datetime) -> Work:
        """Walk the passes for up to one slice of customers, as far as each campaign's tokens allow."""
        self._collect()
        out = Work(records=self._take_unreported())
        mono = self.clock()
        budget = self.slice_size
        campaigns = list(self.campaigns.values())
        self._turn = (self._turn + 1) % max(1, len(campaigns))
        for campaign in campaigns[self._turn :] + campaigns[: self._turn]:  # each campaign starts a slice in turn
            for run in campaign.runs.values():
                for p in run.passes.values():
                    if p.complete:
                        continue
                    looked, starved = self._walk(campaign, run, p, now, mono, budget, out)
                    budget -= looked
                    self._report(campaign, run, p, now, out)
                    if budget <= 0:
                        out.busy = True
                        break
                    if starved:
                        out.wait = min(out.wait, campaign.bucket.wait(mono, max(1.0, campaign.bucket.rate * CHUNK_SECONDS)))
                self._progress(campaign, run)
                if out.busy:
                    return out
        return out

    def _walk(self, campaign: Campaign, run: RunState, p: Pass, now: datetime, mono: float, budget: int, out: Work) -> tuple[int, bool]:
        """Look at up to ``budget`` customers of one pass; returns (customers looked at, stopped for lack of tokens)."""
        now_ts = now.timestamp()
        woken = p.wake(now_ts)
        if woken and run.run.local:
            self._forget_zones(p, woken)
        evaluated = p.evaluated
        looked = 0
        starved = False
        bucket = campaign.bucket
        bucket.available(mono)  # refilled once: ``mono`` does not move within a call
        journey = campaign.journey
        while looked < budget:
            if bucket.tokens < 1.0:  # the next customer may qualify: only look with a token at hand
                starved = True
                break
            cid = p.next_customer()
            if cid is None:
                break
            looked += 1
            due = self._look(journey, run, p, cid, now, now_ts)
            if due is not None:
                bucket.take(mono)
                check = AudienceCheck(customer_id=cid, journey_id=journey.id, run_id=run.run.run_id, due_at=due)
                out.checks.append(Outgoing(check, p.partition, p))
                p.inflight += 1
        if p.evaluated > evaluated:
            self.metrics.campaign_evaluated.labels(journey.id, self.run_label(journey.id, run.run.run_id)).inc(p.evaluated - evaluated)
        return looked, starved

    def _look(self, journey: CompiledJourney, run: RunState, p: Pass, cid: str, now: datetime, now_ts: float) -> datetime | None:
        """One customer of a pass: their due time when a check is to be published; None when settled or parked."""
        profile: Profile | None
        try:
            seen = self._read(p.partition, cid)
        except ValueError as exc:
            log.warning(
                "campaign %s run %s: a stored state does not load (%s); its check goes to the batch path, which dead-letters it",
                journey.id,
                run.run.run_id,
                type(exc).__name__,
                extra={"event": "campaign_state_unreadable", "customer": pseudonym(cid, self._pseudo_key)},
            )
            profile, recent = None, ""
        else:
            if seen is None:  # deleted since the snapshot
                p.settled += 1
                return None
            profile, recent = seen
        if run.remembered_by(recent):
            p.remembered += 1
            p.settled += 1
            return None
        zone = profile.timezone if profile is not None else ""
        due, due_ts, closes_ts = run.due(zone)
        if now_ts < due_ts:
            p.parked.setdefault(due_ts, []).append(cid)
            zones = p.source.zones if p.source is not None else None
            if zones is not None:  # a local run: the store notes a change of zone (a due time earlier or later)
                zones[cid] = sys.intern(zone)
            return None
        if now_ts >= closes_ts:
            p.closed += 1
            p.settled += 1
            return None
        if profile is None:
            return due  # unreadable: the engine's path decides (and dead-letters it)
        p.evaluated += 1
        instances = self._instances(p.partition, cid) if journey.reads_membership else None
        if journey.audience_when(Ctx(AUDIENCE_EVENT_TYPE, run.event_id, due, run.data, profile, now, instances=instances)):
            return due
        p.settled += 1
        return None

    def _read(self, partition: int, cid: str) -> tuple[Profile, str] | None:
        """The customer's profile and remembered ids: from the store's parsed cache, else parsed from the bytes (not kept)."""
        state = self.store.cached(cid)
        if state is not None:
            return state.profile, state.recent_event_ids
        raw = self.store.get(partition, cid)
        if raw is None:
            return None
        view = AudienceView.model_validate_json(raw)
        return view.profile, view.recent()

    def _instances(self, partition: int, cid: str) -> list[Instance]:
        """The customer's live instances, for an audience with in_journey conditions (the whole state is parsed, not kept)."""
        return self.store.load(partition, cid).instances

    # ------------------------------------------------------------------ after publishing

    def published(self, checks: Iterable[Outgoing], ok: Iterable[bool]) -> None:
        """Kafka's answer for each check of a :class:`Work`: acknowledged ones are settled, failed ones looked at again."""
        for item, done in zip(checks, ok, strict=True):
            p = item.pass_
            p.inflight -= 1
            if done:
                p.audience += 1
                p.settled += 1
                label = self.run_label(item.check.journey_id, item.check.run_id)
                self.metrics.campaign_audience.labels(item.check.journey_id, label).inc()
            else:
                p.again.append(item.check.customer_id)

    def unreported(self, records: Iterable[ProgressOut]) -> None:
        """Progress records whose publishing failed: sent again with the next work (only the newest per pass)."""
        for r in records:
            self._unreported.setdefault((r.key, r.run_id, r.partition), r)

    def _take_unreported(self) -> list[ProgressOut]:
        records = list(self._unreported.values())
        self._unreported.clear()
        return records

    # ------------------------------------------------------------------ progress

    def _report(self, campaign: Campaign, run: RunState, p: Pass, now: datetime, out: Work) -> None:
        """A progress record every ``progress_every`` customers settled, and one when the pass completes."""
        if p.done():
            p.complete = True
            p.order, p.cursor = [], 0  # the snapshot is no longer needed (customers new to the partition may follow)
        elif p.settled - p.reported < self.progress_every:
            return
        p.reported = p.settled
        record = p.progress(run.run.run_id).record(campaign.journey.id, campaign.journey.version, now)
        value = record.model_dump_json().encode()
        out.records.append(ProgressOut(campaign.journey.id, run.run.run_id, p.partition, value))
        self._unreported.pop((campaign.journey.id, run.run.run_id, p.partition), None)  # superseded
        if p.complete:
            log.log(
                logging.INFO if p.reopened == 0 else logging.DEBUG,  # again after customers new to the partition: quieter
                "campaign %s run %s: partition %d passed: %d customers, %d evaluated, %d in the audience, %d reached before, %d closed",
                campaign.journey.id,
                run.run.run_id,
                p.partition,
                p.customers,
                p.evaluated,
                p.audience,
                p.remembered,
                p.closed,
            )

    def _progress(self, campaign: Campaign, run: RunState) -> None:
        customers = sum(p.customers for p in run.passes.values())
        settled = sum(p.settled for p in run.passes.values())
        share = settled / customers if customers else (1.0 if run.passes else 0.0)
        label = self.run_label(campaign.journey.id, run.run.run_id)
        self.metrics.campaign_progress.labels(campaign.journey.id, label).set(min(1.0, share))


__all__ = [
    "AudienceView",
    "CampaignScheduler",
    "Outgoing",
    "ProgressOut",
    "TokenBucket",
    "Work",
    "run_reaches",
]

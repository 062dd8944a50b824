"""The README's main job: the committed journeys, a real worker, real Kafka and Redis.

``orchestrator demo`` (run by ``make demo``, which also starts and stops the local
stack) does what production does, with a faster clock:

1. starts one worker process on its own topics (``demo-<tag>.*``, consumer group
   ``demo-<tag>-app``; ``<tag>`` is the run's start time in base 36) with the
   journeys in ``journeys/`` and the engine clock sped up (default 1 s = 12 h, so
   a 24 h reminder fires after 2 s and a 30-day onboarding delay after 60 s);
   its customers are ``cust-<tag>-0000``... too, so a second run on the same stack
   starts from empty baskets in Redis (no calamity lock, spend or send id of an
   earlier run applies to it);
2. publishes a realistic event stream for a few hundred customers, as upstream
   teams would: abandoned carts, purchases, call-center sentiment, store visits,
   sign-ups and feature use, refunds, churn scores, a service incident,
   unsubscribes, prospects whose lead score crosses 50, idle full carts, public
   mentions of the brand — and a few malformed events;
3. plays the CCM platform: answers each send request with delivered / opened /
   clicked events carrying its ``send_id`` (some customers never open);
4. while it runs, shows a progress line from the worker's ``/metrics``
   (``demo_progress.py``);
5. reads what came out (journey log, decisions, send requests, dead letters),
   prints each journey's map with the customers of the run on its edges and writes
   the maps to ``build/demo-maps.md`` (``demo_maps.py``), prints a summary, then
   stops the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from orchestrator.definitions import load_definitions
from orchestrator.dev import kafkatools
from orchestrator.dev.demo_maps import journey_maps, maps_markdown, write_maps
from orchestrator.dev.demo_progress import ProgressReporter
from orchestrator.dev.processes import WorkerProcess, worker_env

ROOT = Path(__file__).resolve().parents[2]
MAPS_PATH = ROOT / "build" / "demo-maps.md"
"""Where the demo writes its journey maps (``build/`` is git-ignored)."""
HOUR = 3600.0
OUTPUT_TOPICS = ("journey-log", "decisions", "sends", "dead-letter", "out.sales", "out.webcare")
"""The topics the summary reads back after the run (``<prefix>.<name>``)."""


def run_tag(now: float | None = None) -> str:
    """This run's tag: its start time (Unix seconds) in base 36, e.g. ``tdzq5c``.

    The run's topic prefix (``demo-<tag>``), consumer group and customer ids carry it, so
    nothing of an earlier run on the same Kafka and Redis (states, basket spends, calamity
    locks, remembered send ids) applies to this one.
    """
    n = int(time.time() if now is None else now)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def customer_id(i: int, tag: str = "") -> str:
    """The demo's ``i``-th customer of run ``tag``: ``cust-<tag>-0042`` (``cust-0042`` without a tag)."""
    return f"cust-{tag}-{i:04d}" if tag else f"cust-{i:04d}"


@dataclass(frozen=True)
class DemoDeployment:
    """Where the demo's worker is: what a tool started next to it (the console) needs to find it."""

    kafka: str
    redis_url: str
    prefix: str
    app_id: str
    web_port: int
    env: Mapping[str, str]
    """The worker's ``ORCH_*`` environment (``processes.worker_env``)."""


ConsoleHook = Callable[[DemoDeployment], AbstractContextManager[str | None]]
"""Starts a console on the demo's deployment once the worker is ready: entering the context gives the
console's URL with its token (printed before the run, None: nothing to print), leaving it stops the console.

The CLI passes :func:`orchestrator.dev.demo_console.console_process` (``orchestrator console`` beside the worker).
"""


@dataclass(order=True)
class Planned:
    at: float  # engine time, epoch seconds
    family: str = field(compare=False)
    doc: dict[str, Any] = field(compare=False)


class Clock:
    """Engine time = origin + (wall - origin) * speed, the same formula the worker uses."""

    def __init__(self, speed: float) -> None:
        self.origin = time.time()
        self.speed = speed

    def engine(self, wall: float | None = None) -> float:
        wall = time.time() if wall is None else wall
        return self.origin + (wall - self.origin) * self.speed

    def wall(self, engine: float) -> float:
        return self.origin + (engine - self.origin) / self.speed

    def iso(self, engine: float) -> str:
        return datetime.fromtimestamp(engine, UTC).isoformat()


class _AddEvent(Protocol):
    def __call__(self, at: float, family: str, customer: str, type_: str, **fields: Any) -> None: ...


PERSONAS = [
    "cart",
    "cart",
    "cart",
    "cart_buyer",
    "call_negative",
    "call_positive",
    "store",
    "newbie",
    "refund",
    "churn",
    "outage",
    "unsub",
    "loan",
    "idle_cart",
    "prospect",
]
"""Assigned round-robin; "cart" thrice so the abandoned-cart journey has the most customers."""


def plan_events(customers: int, clock: Clock, seed: int = 42, tag: str = "") -> tuple[list[Planned], dict[str, str]]:
    """A seeded, realistic stream: each customer gets a persona and that persona's events.

    ``tag``: the run's tag, in every customer id (:func:`customer_id`) and event id.
    """
    rnd = random.Random(seed)
    t0 = clock.engine() + 60  # a minute of engine time after start
    plan: list[Planned] = []
    personas: dict[str, str] = {}
    n = 0

    def add(at: float, family: str, customer: str, type_: str, **fields: Any) -> None:
        nonlocal n
        n += 1
        event_id = f"demo-{tag}-{n}" if tag else f"demo-{n}"
        doc = {"event_id": event_id, "customer_id": customer, "occurred_at": clock.iso(at), "type": type_, **fields}
        plan.append(Planned(at, family, doc))

    for i in range(customers):
        c = customer_id(i, tag)
        kind = PERSONAS[i % len(PERSONAS)]
        personas[c] = kind
        start = t0 + rnd.uniform(0, 6 * HOUR)
        tz = rnd.choice(["Europe/Berlin", "Europe/Amsterdam", "Europe/London", "UTC"])
        if kind == "newbie":
            add(start, "crm", c, "customer_registered", timezone=tz, segment="retail")
            if rnd.random() < 0.4:  # these try the export feature within ten days: no nudge
                add(start + rnd.uniform(1, 10) * 24 * HOUR, "web", c, "feature_used", feature="export")
            continue
        add(start - 60, "crm", c, "profile_updated", timezone=tz, segment=rnd.choice(["retail", "premium"]))
        if i % 3 == 0:  # on the newsletter list: the monthly newsletter campaign (1st of the month, 10:00 local) reaches them
            add(start - 30, "crm", c, "added_to_list", list="newsletter")
        add(start, "web", c, "page_view", url="/home")
        _persona_events(add, rnd, i, c, kind, start)
        if i % 10 == 7:  # every tenth customer mentions the brand on social media: the webcare hand-off
            _social_events(add, rnd, i, c, start)
    # a few malformed events, as happens in real life
    bad = f"cust-{tag}-bad" if tag else "cust-bad"
    plan.append(Planned(t0, "web", {"event_id": f"{bad}-1", "customer_id": bad, "type": "cart_abandoned", "cart_value": "lots"}))
    plan.append(Planned(t0, "geo", {"event_id": f"{bad}-2", "customer_id": bad, "occurred_at": clock.iso(t0), "type": "teleported"}))
    plan.sort()
    return plan, personas


def _social_events(add: _AddEvent, rnd: random.Random, i: int, c: str, start: float) -> None:
    """A public mention (negative complaint, question, praise, or on the customer's own blog), sometimes a reply in its thread."""
    where = rnd.choice([("x", "public"), ("trustpilot", "public"), ("own_community", "own"), ("other", "customer_owned")])
    sentiment = rnd.choice(["negative", "negative", "neutral", "positive"])
    score = {"negative": -0.7, "neutral": 0.0, "positive": 0.8}[sentiment]
    thread = {"platform": where[0], "platform_kind": where[1], "handle": f"@{c}", "mention_id": f"m{i}"}
    add(start + 90, "social", c, "mention", **thread, link=f"https://social.example/{c}/1", excerpt="about my order",
        sentiment=sentiment, sentiment_score=score, is_complaint=sentiment == "negative", is_question=sentiment == "neutral")  # fmt: skip
    if rnd.random() < 0.5:
        add(start + 2 * HOUR, "social", c, "reply", **thread, reply_id=f"r{i}", link=f"https://social.example/{c}/2",
            sentiment=sentiment, sentiment_score=score)  # fmt: skip


def _persona_events(add: _AddEvent, rnd: random.Random, i: int, c: str, kind: str, start: float) -> None:
    """What a (non-newbie) customer of persona ``kind`` does after its profile update and first page view."""
    more = _PERSONAS_OF_ISSUE_15.get(kind)
    if more is not None:
        more(add, rnd, i, c, start)
    elif kind in ("cart", "cart_buyer", "unsub"):
        add(start + 60, "web", c, "cart_abandoned", cart_id=f"k{i}", cart_value=round(rnd.uniform(25, 400), 2), items=rnd.randint(1, 5))
        if kind == "cart_buyer":
            add(start + rnd.uniform(2, 10) * HOUR, "web", c, "purchase", order_id=f"o{i}", value=round(rnd.uniform(25, 400), 2))
        if kind == "unsub":
            add(start + 3 * HOUR, "consent", c, "unsubscribed", channel="email")
    elif kind in ("call_negative", "call_positive"):
        neg = kind == "call_negative"
        add(
            start,
            "callcenter",
            c,
            "call_completed",
            sentiment="negative" if neg else "positive",
            sentiment_score=round(rnd.uniform(-0.9, -0.4) if neg else rnd.uniform(0.4, 0.9), 2),
            topic="billing",
        )
    elif kind == "store":
        add(start, "geo", c, "store_entered", store_id=f"s{rnd.randint(1, 9)}", latitude=52.37, longitude=4.89)
    elif kind == "refund":
        add(start, "web", c, "refund", order_id=f"o{i}", amount=round(rnd.uniform(10, 90), 2))
    elif kind == "churn":
        add(start, "crm", c, "churn_risk_scored", score=round(rnd.uniform(0.75, 0.99), 2), model="churn-v3")
    elif kind == "outage":
        add(start, "web", c, "cart_abandoned", cart_id=f"k{i}", cart_value=round(rnd.uniform(25, 400), 2))
        add(start + 30 * 60, "ops", c, "service_incident", incident_id="inc-42", service="payments", severity="major")
    elif kind == "loan":
        add(start, "web", c, "loan_approved", loan_id=f"l{i}", amount=round(rnd.uniform(5000, 50000), -2))
        if rnd.random() < 0.3:
            add(start + rnd.uniform(12, 30) * HOUR, "web", c, "form_submitted", form_id="loan_contract")


def _idle_cart(add: _AddEvent, rnd: random.Random, i: int, c: str, start: float) -> None:
    """Puts something in the cart, browses a little, then goes quiet (some buy first): the idle-cart chat offer.

    Spread over a day (every 3 hours of journey time), so that some go quiet inside the service hours and some outside.
    """
    start += (i % 8) * 3 * HOUR
    add(start + 120, "web", c, "cart_updated", cart_id=f"k{i}", cart_value=round(rnd.uniform(25, 400), 2), items=rnd.randint(1, 4))
    add(start + 120 + rnd.uniform(1, 5) * 60, "web", c, "page_view", url=f"/product/{rnd.randint(1, 99)}")
    if rnd.random() < 0.3:
        add(start + 120 + 7 * 60, "web", c, "purchase", order_id=f"o{i}", value=round(rnd.uniform(25, 400), 2))


def _prospect(add: _AddEvent, rnd: random.Random, i: int, c: str, start: float) -> None:
    """Reads the pricing pages and asks for a quote: the lead score crosses 50 and the lead goes to sales (an emit)."""
    for k in range(3):
        add(start + (k + 1) * 600, "web", c, "page_view", url=f"/pricing/{['basic', 'pro', 'team'][k]}")
    add(start + 2 * HOUR, "web", c, "form_submitted", form_id="quote_request")
    if rnd.random() < 0.5:
        add(start + 3 * HOUR, "web", c, "form_submitted", form_id="demo_booking")


_PERSONAS_OF_ISSUE_15 = {"idle_cart": _idle_cart, "prospect": _prospect}
"""Personas with their own function: the idle full cart (quiet_for, service hours) and the prospect (lead score, emit)."""


async def publish_plan(
    kafka: str, prefix: str, plan: list[Planned], clock: Clock, stop: asyncio.Event, counts: Counter[str] | None = None
) -> int:
    """Publish the plan at its engine times until done or ``stop``; counts ``counts["upstream"]`` as it goes."""
    counts = Counter() if counts is None else counts
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        for p in plan:
            delay = clock.wall(p.at) - time.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    return sent
                except TimeoutError:
                    pass
            await producer.send(f"{prefix}.in.{p.family}", json.dumps(p.doc).encode(), key=p.doc["customer_id"].encode())
            sent += 1
            counts["upstream"] += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def play_ccm_platform(
    kafka: str,
    prefix: str,
    clock: Clock,
    personas: dict[str, str],
    stop: asyncio.Event,
    seed: int = 7,
    counts: Counter[str] | None = None,
) -> Counter[str]:
    """Answer every send request like a CCM platform: delivered, and for some customers opened/clicked.

    Returns the feedback events published by type; counts ``counts["ccm"]`` as it goes.
    """
    counts = Counter() if counts is None else counts
    rnd = random.Random(seed)
    consumer = AIOKafkaConsumer(f"{prefix}.sends", bootstrap_servers=kafka, group_id=f"{prefix}-ccm", auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    stats: Counter[str] = Counter()
    pending: list[tuple[float, dict[str, Any]]] = []
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = clock.engine()
            for records in batch.values():
                for r in records:
                    send = json.loads(r.value)
                    c = send["customer_id"]
                    base = {"customer_id": c, "send_id": send["send_id"], "channel": send["channel"], "template": send["template"]}
                    pending.append((now + 60, {**base, "type": "delivered", "event_id": f"{send['send_id']}:d"}))
                    # 'cart' persona customers never open the first mail (they get the reminder)
                    opens = personas.get(c) != "cart" and rnd.random() < 0.6
                    if opens:
                        pending.append((now + rnd.uniform(1, 5) * 3600, {**base, "type": "opened", "event_id": f"{send['send_id']}:o"}))
                        if rnd.random() < 0.5:
                            pending.append((now + 6 * 3600, {**base, "type": "clicked", "event_id": f"{send['send_id']}:c"}))
            due = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            for at, doc in due:
                doc["occurred_at"] = clock.iso(at)
                await producer.send(f"{prefix}.in.ccm", json.dumps(doc).encode(), key=doc["customer_id"].encode())
                stats[doc["type"]] += 1
                counts["ccm"] += 1
    finally:
        await consumer.stop()
        await producer.stop()
    return stats


def _brief_scenarios(
    log: list[dict[str, Any]], decisions: list[dict[str, Any]], sends: list[dict[str, Any]], records: dict[str, list[kafkatools.Record]]
) -> list[str]:
    """The three scenarios of the brief: lead scores handed to sales, webcare hand-offs, the idle full cart."""
    outcomes = Counter((t["journey_id"], t["detail"].get("outcome")) for t in log if t["what"] in ("exited", "goal"))
    leads = [r.json() for r in records.get("out.sales", [])]
    webcare = Counter((r.json()["record"].get("kind"), r.json()["record"].get("priority")) for r in records.get("out.webcare", []))
    quiet = sum(1 for t in log if t["what"] == "quiet" and t["journey_id"] == "idle_cart")
    offers = Counter(s["template"] for s in sends if s["template"] in ("live_chat_offer", "chat_bot_offer"))
    expired = sum(1 for d in decisions if d["result"] == "expired" and d.get("journey_id") == "idle_cart")
    handoffs = ", ".join(f"{kind} {prio}" if prio else f"{kind}" for (kind, prio) in sorted(webcare, key=str)) or "no hand-offs"
    own = outcomes[("webcare_handoff", "customer_owned_platform")]
    lead_line = f"  lead scores: {len(leads)} leads crossed 50 and went to sales on out.sales (nobody contacted by it)"
    webcare_line = f"  webcare: {sum(webcare.values())} records on out.webcare ({handoffs}); {own} on a customer's own platform: no contact"
    idle_line = (
        f"  idle full cart: {quiet} went quiet for 10 min -> live chat {offers['live_chat_offer']}, chat bot "
        f"{offers['chat_bot_offer']}; {outcomes[('idle_cart', 'goal')]} bought first; offers expired unsent: {expired}"
    )
    return ["", "the brief's scenarios:", lead_line, webcare_line, idle_line]


NOT_SENT = ("capped", "suppressed", "expired", "cancelled")
"""The results of a journey-log ``send`` record that sent nothing (``fallback`` is a step on the way to another channel)."""

JOURNEY_COLUMNS = (
    "    entered: instances started; sent: send requests published to the CCM platform; not sent: sends capped, suppressed,",
    "    expired or cancelled; timeouts: wait timeouts fired; goals: goals reached; ended: left at an end step or by an exit",
)


def _journey_table(log: list[dict[str, Any]], sends: list[dict[str, Any]]) -> list[str]:
    """Per journey version: entered, send requests, sends that did not go out, wait timeouts, goals, ended."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for t in log:
        if not t.get("customer_id"):  # a campaign run's progress record
            continue
        key = f"{t['journey_id']} v{t['journey_version']}"
        if t["what"] != "send":
            per[key][t["what"]] += 1
        elif t["detail"].get("result") in NOT_SENT:
            per[key]["not_sent"] += 1
    for s in sends:
        per[f"{s['journey_id']} v{s['journey_version']}"]["sent"] += 1
    lines = [
        "journeys:",
        f"  {'journey':<28}{'entered':>8}{'sent':>6}{'not sent':>9}{'timeouts':>9}{'goals':>7}{'ended':>7}",
    ]
    for j, c in sorted(per.items()):
        row = (c["entered"], c["sent"], c["not_sent"], c["timeout"], c["goal"], c["exited"])
        lines.append(f"  {j:<28}{row[0]:>8}{row[1]:>6}{row[2]:>9}{row[3]:>9}{row[4]:>7}{row[5]:>7}")
    return [*lines, *JOURNEY_COLUMNS]


def timeouts_and_reminders(log: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(wait timeouts fired, reminders): a reminder is a send request of the instance after a timeout, before it waits again.

    ``log`` in each customer's order (one partition's order, as read). A timeout whose path sends nothing
    (it goes on to another wait, a capped send, an end) is not a reminder.
    """
    after_timeout: set[tuple[str, str]] = set()
    timeouts = reminders = 0
    for t in log:
        inst, what = (str(t.get("customer_id")), str(t.get("instance_id"))), t.get("what")
        if what == "timeout":
            timeouts += 1
            after_timeout.add(inst)
        elif inst not in after_timeout:
            continue
        elif what == "send":
            result = (t.get("detail") or {}).get("result")
            if result == "approved":
                reminders += 1
            if result != "fallback":
                after_timeout.discard(inst)
        elif what in ("waiting", "matched", "quiet", "exited", "goal"):
            after_timeout.discard(inst)
    return timeouts, reminders


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _decisions(decisions: list[dict[str, Any]]) -> list[str]:
    """The journey's results by comm type, then what was not approved: by result and basket code, with one reason in full."""
    lines = ["basket decisions (what the journey made of them):", f"  {'result':<11} {'comm type':<11} {'decisions':>9}"]
    for (res, ctype), n in sorted(Counter((d["result"], d["comm_type"]) for d in decisions).items()):
        lines.append(f"  {res:<11} {ctype:<11} {n:>9}")
    refused = [d for d in decisions if d["result"] != "approved"]
    if refused:
        lines.append("  not approved (result, basket code, decisions, one of their reasons in full):")
        groups = Counter((d["result"], d.get("code") or "-") for d in refused)
        example = {(d["result"], d.get("code") or "-"): d["reason"] for d in refused}
        for (res, code), n in groups.most_common():
            lines.append(f"    {res:<11} {code:<12} {n:>5}  {_one_line(example[(res, code)])}")
    return lines


def summarise(records: dict[str, list[kafkatools.Record]], published: int, ccm: Mapping[str, int], speed: float, wall_s: float) -> str:
    """The run's summary from the records read back (``OUTPUT_TOPICS``)."""
    log = [r.json() for r in records["journey-log"]]
    decisions = [r.json() for r in records["decisions"]]
    sends = [r.json() for r in records["sends"]]
    lines = [
        "",
        (
            f"== demo: {published} upstream events published, {sum(ccm.values())} CCM feedback events, "
            f"{wall_s:.0f} s wall = {wall_s * speed / 3600:.0f} h of journey time =="
        ),
        "",
        *_journey_table(log, sends),
        "",
        *_decisions(decisions),
        "",
        "send requests to the CCM platform:",
        f"  {'template':<28} {'channel':<12} {'requests':>8}",
    ]
    for (tpl, ch), n in sorted(Counter((s["template"], s["channel"]) for s in sends).items()):
        lines.append(f"  {tpl:<28} {ch:<12} {n:>8}")
    lines += _brief_scenarios(log, decisions, sends, records)
    timeouts, reminders = timeouts_and_reminders(log)
    lines.append(
        f"\nwait timeouts fired: {timeouts}; reminders (a send request after a timeout): {reminders}; "
        f"timeouts that sent nothing: {timeouts - reminders}"
    )
    dead = records["dead-letter"]
    lines.append(f"dead-lettered events: {len(dead)}")
    for r in dead[:5]:
        code = r.headers.get("dlq.code", "")
        lines.append(f"  {r.headers.get('dlq.source.topic')} [{code}]: {_one_line(r.headers.get('dlq.reason', ''))}")
    if sends:
        c = sends[0]["customer_id"]
        lines += ["", f"one customer's journey ({c}):"]
        for t in [t for t in log if t["customer_id"] == c][:12]:
            edge = f"-> {t['edge']}" if t.get("edge") else ""
            lines.append(f"  {t['at'][:16]}  {t['journey_id']:<20} {t['what']:<9} {t.get('step_id') or '':<16} {edge}")
    return "\n".join(lines)


async def read_outputs(kafka: str, prefix: str, timeout: float = 3.0) -> dict[str, list[kafkatools.Record]]:
    """Every record of the run's output topics (``OUTPUT_TOPICS``), read side by side."""
    names = list(OUTPUT_TOPICS)
    read = [kafkatools.consume(kafka, [f"{prefix}.{name}"], until=lambda rs: False, timeout=timeout) for name in names]
    return dict(zip(names, await asyncio.gather(*read), strict=True))


def run_demo(
    customers: int = 300,
    clock_speed: float = 43200.0,
    seconds: float = 80.0,
    *,
    console: ConsoleHook | None = None,
    maps_path: Path | None = MAPS_PATH,
) -> int:
    """Run the demo on the broker and Redis given by KAFKA_BOOTSTRAP_SERVERS / REDIS_URL.

    ``console``: started once the worker is ready, its URL (with its token) printed before the run,
    stopped at the end (see :data:`ConsoleHook`). ``maps_path``: where the journey maps go (None: printed only).
    """
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = run_tag()
    prefix = f"demo-{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="orchestrator-demo-"))
    clock = Clock(clock_speed)
    env = worker_env(
        kafka,
        redis_url,
        prefix,
        ROOT / "journeys",
        tmp / "data",
        partitions=4,
        ORCH_CLOCK_SPEED=str(clock_speed),
        ORCH_CLOCK_ORIGIN=str(clock.origin),
        ORCH_TIMER_TICK="0.1",
        ORCH_CAMPAIGN_TICK="0.1",  # at 1 s = 12 h a campaign run stays open for 2 s of wall time
    )
    print(f"demo: topics {prefix}.*, consumer group (app id) {env['ORCH_APP_ID']}, worker log {tmp / 'worker.log'}")
    print(f"demo: customers {customer_id(0, tag)} .. {customer_id(customers - 1, tag)} (this run's own: empty baskets in Redis)")
    worker = WorkerProcess(env, tmp / "worker.log")
    worker.start()
    try:
        worker.wait_ready(timeout=120)
        deployment = DemoDeployment(kafka, redis_url, prefix, env["ORCH_APP_ID"], worker.web_port, env)
        with console(deployment) if console is not None else nullcontext(None) as console_url:
            if console_url:
                print(f"demo: console on {console_url}")
            return _run(worker, deployment, clock, customers, seconds, maps_path)
    finally:
        code = worker.stop()
        print(f"\ndemo: worker stopped (exit {code})")
        shutil.rmtree(tmp / "data", ignore_errors=True)


def _run(worker: WorkerProcess, dep: DemoDeployment, clock: Clock, customers: int, seconds: float, maps_path: Path | None) -> int:
    """Publish and play the CCM platform for ``seconds`` (with the progress line), then print the maps and the summary."""
    kafka, prefix, speed = dep.kafka, dep.prefix, clock.speed
    print(
        f"demo: worker ready (metrics on http://127.0.0.1:{dep.web_port}/metrics); running {seconds:.0f} s at 1 s = {speed / 3600:g} h ..."
    )
    plan, personas = plan_events(customers, clock, tag=prefix.removeprefix("demo-"))
    counts: Counter[str] = Counter()
    progress = ProgressReporter(worker.metrics, counts, seconds)

    async def scenario() -> tuple[int, Counter[str]]:
        stop, done = asyncio.Event(), asyncio.Event()
        line = asyncio.create_task(progress.run(done))
        pub = asyncio.create_task(publish_plan(kafka, prefix, plan, clock, stop, counts))
        ccm = asyncio.create_task(play_ccm_platform(kafka, prefix, clock, personas, stop, counts=counts))
        await asyncio.sleep(seconds)
        stop.set()
        result = await pub, await ccm
        done.set()
        await line
        return result

    started = time.time()
    published, ccm = asyncio.run(scenario())
    wall = time.time() - started
    records = asyncio.run(read_outputs(kafka, prefix))
    log = [r.json() for r in records["journey-log"]]
    maps = journey_maps(load_definitions(ROOT / "journeys").journeys, log)
    title = f"Journey maps of demo run {prefix} ({customers} customers, {wall:.0f} s at 1 s = {speed / 3600:g} h)"
    print("\n" + maps_markdown(maps, title))
    print(summarise(records, published, ccm, speed, wall))
    shown = ("orchestrator_timers_pending", "orchestrator_processed_total")
    lag = [line for line in worker.metrics().splitlines() if line.startswith(shown)]
    print("\nworker metrics:\n  " + "\n  ".join(lag))
    print(f"\nprogress when the run stopped: {progress.last}")
    if maps_path is not None:
        print(f"journey maps with the customers per edge (Markdown, renders on GitHub): {write_maps(maps_path, maps, title)}")
    ok = bool(records["sends"]) and bool(records["journey-log"])
    if not ok:
        print("\ndemo: FAILED — no journey advanced; worker log tail:\n" + worker.log_tail())
    return 0 if ok else 1

"""What a scored event and an activity event in a quiet_for wait cost the pure engine, per event.

    python bench/bench_constructs.py [--customers 20000] [--rounds 5]

All with the shipped journeys and ``journeys/scores.yaml``, on one core, GC off in the timed
loop; each kind of event goes through ``engine.step`` once per customer per round (fresh event
ids, so nothing is a duplicate). Measured in the same run:

* baseline: ``geo.geofence_entered``, which no journey and no score listens to: the engine's
  fast path (dedupe and profile fold);
* scored event: ``web.form_submitted`` of a customer in no journey (a lead rule adds 20
  points; the scores stay below the crossing at 50 for the rounds run);
* quiet-wait activity: the same event for a customer waiting in ``idle_cart``'s quiet wait
  (scored too, and the instance's quiet_since moves; no timer is armed or cancelled): its
  difference to "scored event" is what the activity costs.

Writes ``bench/results/constructs.json`` and ``bench/results/constructs.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.definitions import load_definitions  # noqa: E402
from orchestrator.engine import step  # noqa: E402
from orchestrator.events import CustomerEvent  # noqa: E402
from orchestrator.journey.loader import JourneySet  # noqa: E402
from orchestrator.state import CustomerState  # noqa: E402

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def event(cid: str, etype: str, eid: str, at: datetime, **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=eid, customer_id=cid, type=etype, occurred_at=at, data=data)


def timed(
    states: dict[str, CustomerState], make: Callable[[str], CustomerEvent], journeys: JourneySet, at: datetime
) -> tuple[float, dict[str, CustomerState]]:
    """Seconds per event for one pass over every customer; returns the new states too."""
    events = [(cid, make(cid)) for cid in states]
    out: dict[str, CustomerState] = {}
    gc.disable()
    try:
        started = time.perf_counter()
        for cid, ev in events:
            out[cid], _ = step(states[cid], ev, journeys, at)
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return elapsed / len(events), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    journeys = load_definitions(ROOT / "journeys").journeys
    plain = {f"p{i}": CustomerState.new(f"p{i}") for i in range(args.customers)}
    idle: dict[str, CustomerState] = {}
    for i in range(args.customers):  # waiting in idle_cart's quiet wait
        cid = f"q{i}"
        idle[cid], _ = step(
            CustomerState.new(cid), event(cid, "web.cart_updated", f"{cid}-cart", T0, cart_id="k", cart_value=59.0, items=2), journeys, T0
        )
    assert all(s.instances and s.instances[0].quiet_since is not None for s in idle.values())
    results: dict[str, list[float]] = {"baseline (no listener)": [], "scored event": [], "quiet-wait activity (scored too)": []}
    for r in range(args.rounds):
        at = T0 + timedelta(seconds=r + 1)

        def geofence(c: str, r: int = r, at: datetime = at) -> CustomerEvent:
            return event(c, "geo.geofence_entered", f"{c}-g{r}", at, geofence_id="g", latitude=1.0, longitude=1.0)

        def form(c: str, r: int = r, at: datetime = at) -> CustomerEvent:
            return event(c, "web.form_submitted", f"{c}-f{r}", at, form_id="x")

        cost, plain = timed(plain, geofence, journeys, at)
        results["baseline (no listener)"].append(cost)
        cost, plain = timed(plain, form, journeys, at)
        results["scored event"].append(cost)
        cost, idle = timed(idle, form, journeys, at)
        results["quiet-wait activity (scored too)"].append(cost)
    assert all(s.instances[0].quiet_since == T0 + timedelta(seconds=args.rounds) for s in idle.values())  # activity recorded
    medians = {k: statistics.median(v) for k, v in results.items()}
    base = medians["baseline (no listener)"]
    lines = [
        "# Per-event cost of scores and quiet waits (pure engine, one core, GC off in the loop)",
        "",
        f"`python bench/bench_constructs.py --customers {args.customers} --rounds {args.rounds}`, shipped journeys and scores.yaml.",
        "",
        "| event | µs per event (median of rounds) | ratio to the baseline |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v * 1e6:.2f} | {v / base:.2f} |" for k, v in medians.items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "constructs.md").write_text("\n".join(lines) + "\n")
    (out / "constructs.json").write_text(json.dumps({k: v * 1e6 for k, v in medians.items()}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

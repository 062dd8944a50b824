"""What would a policy change do? Two simulations of the same event file, compared.

``orchestrator simulate EVENTS.jsonl --journeys DIR --compare-policy OTHER.yaml`` simulates the
event file under the current policy (the one ``simulate`` chooses: ``--policy``, else
``DIR/pressure.yaml``, else the built-in default) and under ``OTHER.yaml``, then calls
:func:`compare` on the two :class:`~orchestrator.designer.simulate.SimulationResult` and prints
:func:`format_comparison` (``--json``: the :class:`PolicyComparison` as one JSON object).

Everything here is pure: no files, no clock. What is compared:

* **Per journey and send step**, the journey's dispositions by result (approved, capped,
  deferred, fallback, suppressed, cancelled) and the basket's decisions by code (fits, reserve,
  capacity, arbitration, locked, ...). These count decisions, not messages: a deferred send
  that is retried counts once as ``deferred`` and once more with what its retry got; a send
  that falls back counts as ``fallback`` on its first channel and again on the next.
* **Customers contacted more or less**: approved sends per customer under each policy, how many
  customers get more and how many fewer, and a few of them (largest change first) with the
  send steps they gain or lose (``journey.step``).
* **Points spent**: the cost of the approved sends, in total and per communication type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.actions import Disposition
from orchestrator.designer.simulate import SimulationResult

RESULTS = ("approved", "capped", "deferred", "fallback", "suppressed", "cancelled")
"""The journey's results, in the order they are listed."""

EXAMPLES = 5
"""Customers listed per direction (contacted more / less) by default."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Count(_Model):
    """A number of decisions or customers under both policies."""

    current: int
    proposed: int
    change: int = Field(description="proposed - current")


class Points(_Model):
    """Points spent under both policies."""

    current: float
    proposed: float
    change: float = Field(description="proposed - current")


class StepComparison(_Model):
    """One send step of one journey (all its versions) under both policies."""

    journey: str
    step: str
    results: dict[str, Count] = Field(description="Dispositions by result (approved, capped, deferred, ...); only results that occur.")
    codes: dict[str, Count] = Field(description="Basket decisions by code (fits, capacity, reserve, arbitration, ...).")
    changed: bool


class CustomerChange(_Model):
    """A customer who gets more or fewer messages under the proposed policy."""

    customer: str
    current: int = Field(description="Approved sends under the current policy.")
    proposed: int = Field(description="Approved sends under the proposed policy.")
    lost: list[str] = Field(description="journey.step of approved sends they no longer get (one entry per send).")
    gained: list[str] = Field(description="journey.step of approved sends they get in addition.")


class PointsComparison(_Model):
    """Points spent on approved sends (basket cost), in total and per communication type."""

    total: Points
    by_comm_type: dict[str, Points]


class PolicyComparison(_Model):
    """What the proposed policy changes against the current one, for the same event file and journeys."""

    current_policy: str
    proposed_policy: str
    changed: bool = Field(description="Whether any decision, customer's count or point total differs.")
    results: dict[str, Count] = Field(description="All send steps: dispositions by result.")
    codes: dict[str, Count] = Field(description="All send steps: basket decisions by code.")
    customers: int = Field(description="Customers with at least one send decision under either policy.")
    contacted_more: int = Field(description="Customers with more approved sends under the proposed policy.")
    contacted_less: int = Field(description="Customers with fewer approved sends under the proposed policy.")
    more: list[CustomerChange] = Field(description="A few of those contacted more, largest change first.")
    less: list[CustomerChange] = Field(description="A few of those contacted less, largest change first.")
    points: PointsComparison
    steps: list[StepComparison] = Field(description="Every send step with a decision under either policy, in order of first decision.")


def _counts(current: Counter[str], proposed: Counter[str], order: Iterable[str] = ()) -> dict[str, Count]:
    """``Count`` per key that occurs under either policy: ``order`` first, then the others sorted."""
    keys = [k for k in order if current[k] or proposed[k]]
    keys += sorted(k for k in set(current) | set(proposed) if k not in keys and (current[k] or proposed[k]))
    return {k: Count(current=current[k], proposed=proposed[k], change=proposed[k] - current[k]) for k in keys}


def _points(current: int, proposed: int) -> Points:
    """Points from hundredths of a point."""
    return Points(current=current / 100, proposed=proposed / 100, change=(proposed - current) / 100)


def _step(d: Disposition) -> tuple[str, str]:
    return d.send.journey_id, d.send.step_id


class _Tally:
    """One simulation's dispositions, counted the ways the comparison needs."""

    def __init__(self, result: SimulationResult, customers: set[str] | None) -> None:
        self.results: dict[tuple[str, str], Counter[str]] = {}
        self.codes: dict[tuple[str, str], Counter[str]] = {}
        self.approved: dict[str, Counter[str]] = {}
        self.spent: Counter[str] = Counter()
        """Hundredths of a point per communication type (the basket counts in them too)."""
        self.customers: set[str] = set()
        for d in result.dispositions:
            cid = d.send.customer_id
            if customers is not None and cid not in customers:
                continue
            self.customers.add(cid)
            self.results.setdefault(_step(d), Counter())[d.result] += 1
            if d.decision is None:  # the basket was not asked (expired in the send window): no code, no cost
                continue
            self.codes.setdefault(_step(d), Counter())[d.decision.code] += 1
            if d.result == "approved":
                self.approved.setdefault(cid, Counter())[f"{d.send.journey_id}.{d.send.step_id}"] += 1
                self.spent[d.send.comm_type] += round(d.decision.cost * 100)

    def total(self, by_step: dict[tuple[str, str], Counter[str]]) -> Counter[str]:
        out: Counter[str] = Counter()
        for counter in by_step.values():
            out.update(counter)
        return out


def _customer_changes(cur: _Tally, prop: _Tally) -> tuple[list[CustomerChange], list[CustomerChange]]:
    """Customers contacted more and less under the proposed policy, largest change first (then by id)."""
    more: list[CustomerChange] = []
    less: list[CustomerChange] = []
    for cid in sorted(cur.customers | prop.customers):
        before, after = cur.approved.get(cid, Counter()), prop.approved.get(cid, Counter())
        n_before, n_after = sum(before.values()), sum(after.values())
        if n_before == n_after:
            continue
        change = CustomerChange(
            customer=cid,
            current=n_before,
            proposed=n_after,
            lost=sorted((before - after).elements()),
            gained=sorted((after - before).elements()),
        )
        (more if n_after > n_before else less).append(change)
    for group in (more, less):
        group.sort(key=lambda c: (-abs(c.proposed - c.current), c.customer))
    return more, less


def compare(
    current: SimulationResult,
    proposed: SimulationResult,
    *,
    current_label: str = "the first simulation's policy",
    proposed_label: str = "the second simulation's policy",
    customers: Iterable[str] | None = None,
    examples: int = EXAMPLES,
) -> PolicyComparison:
    """Compare two simulations of the same event file and journeys under two policies.

    ``customers``: only these customers' sends (default: everyone); ``examples``: how many
    customers to list per direction (the counts cover everyone).
    """
    wanted = set(customers) if customers is not None else None
    cur, prop = _Tally(current, wanted), _Tally(proposed, wanted)
    steps = []
    for key in dict.fromkeys([*cur.results, *prop.results]):
        results = _counts(cur.results.get(key, Counter()), prop.results.get(key, Counter()), RESULTS)
        codes = _counts(cur.codes.get(key, Counter()), prop.codes.get(key, Counter()))
        changed = any(c.change for c in [*results.values(), *codes.values()])
        steps.append(StepComparison(journey=key[0], step=key[1], results=results, codes=codes, changed=changed))
    more, less = _customer_changes(cur, prop)
    by_type = {t: _points(cur.spent[t], prop.spent[t]) for t in sorted(set(cur.spent) | set(prop.spent))}
    points = PointsComparison(total=_points(sum(cur.spent.values()), sum(prop.spent.values())), by_comm_type=by_type)
    return PolicyComparison(
        current_policy=current_label,
        proposed_policy=proposed_label,
        changed=bool(more or less or points.total.change or any(s.changed for s in steps)),
        results=_counts(cur.total(cur.results), prop.total(prop.results), RESULTS),
        codes=_counts(cur.total(cur.codes), prop.total(prop.codes)),
        customers=len(cur.customers | prop.customers),
        contacted_more=len(more),
        contacted_less=len(less),
        more=more[:examples],
        less=less[:examples],
        points=points,
        steps=steps,
    )


# ------------------------------------------------------------------ text


def _num(x: float) -> str:
    """A count or points (hundredths at most), without a needless fraction or exponent: ``12``, ``7.5``, ``1250000``."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _count_text(name: str, c: Count | Points) -> str:
    if not c.change:
        return f"{name} {_num(c.current)} (same)"
    sign = "+" if c.change > 0 else ""
    return f"{name} {_num(c.current)} -> {_num(c.proposed)} ({sign}{_num(c.change)})"


def _counts_text(counts: dict[str, Count]) -> str:
    return ", ".join(_count_text(k, c) for k, c in counts.items()) or "none"


def _customer_text(c: CustomerChange) -> str:
    parts = [f"lost {', '.join(c.lost)}"] if c.lost else []
    parts += [f"gained {', '.join(c.gained)}"] if c.gained else []
    return f"{c.customer} {c.current} -> {c.proposed}" + (f" ({'; '.join(parts)})" if parts else "")


def _customers_lines(comparison: PolicyComparison) -> list[str]:
    c = comparison
    lines = [f"  customers: {c.customers} with sends; {c.contacted_less} contacted less, {c.contacted_more} contacted more"]
    for word, group, total in (("less", c.less, c.contacted_less), ("more", c.more, c.contacted_more)):
        if group:
            rest = f" (and {total - len(group)} more)" if total > len(group) else ""
            lines.append(f"    {word}: " + "; ".join(_customer_text(x) for x in group) + rest)
    return lines


def format_comparison(comparison: PolicyComparison) -> str:
    """The comparison for a designer: the summary first (sends, codes, customers, points), then per journey and send step."""
    c = comparison
    verdict = "what changes" if c.changed else "no change: the proposed policy decides every send as the current one does"
    lines = [
        f"current policy:  {c.current_policy}",
        f"proposed policy: {c.proposed_policy}",
        "",
        f"summary ({verdict})",
        f"  sends: {_counts_text(c.results)}",
        f"  basket codes: {_counts_text(c.codes)}",
        *_customers_lines(c),
        f"  points spent: {_count_text('total', c.points.total)}"
        + "".join(f", {_count_text(t, p)}" for t, p in c.points.by_comm_type.items()),
        "",
        "per journey and send step (changed first)",
    ]
    for s in sorted(c.steps, key=lambda s: not s.changed):  # stable: in order of first decision within each group
        if s.changed:
            lines.append(f"  {s.journey} {s.step}: {_counts_text(s.results)}")
            lines.append(f"    codes: {_counts_text(s.codes)}")
        else:
            lines.append(f"  {s.journey} {s.step}: no change ({', '.join(f'{k} {v.current}' for k, v in s.results.items())})")
    if not c.steps:
        lines.append("  (no send decisions)")
    return "\n".join(lines) + "\n"

"""processor.process_batch: many customers side by side, one basket round trip per round, failures isolated."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.events import CustomerEvent
from orchestrator.journey.loader import load_journeys
from orchestrator.pressure.basket import Decision, GateRequest
from orchestrator.pressure.memory import MemoryBasket
from orchestrator.pressure.policy import load_policy
from orchestrator.processor import CustomerWork, Failure, Result, StateTooLarge, process, process_batch
from orchestrator.state import CustomerState

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = load_journeys([ROOT / "journeys"])
POLICY = load_policy(ROOT / "journeys" / "pressure.yaml")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def cart(cid: str, n: int, value: float = 80.0, **attributes: object) -> CustomerEvent:
    return CustomerEvent(
        event_id=f"{cid}-cart-{n}",
        customer_id=cid,
        type="web.cart_abandoned",
        occurred_at=NOW,
        data={"cart_id": f"k{n}", "cart_value": value, "currency": "EUR", "items": 1, "attributes": attributes},
    )


def page(cid: str, n: int) -> CustomerEvent:
    return CustomerEvent(event_id=f"{cid}-pv-{n}", customer_id=cid, type="web.page_view", occurred_at=NOW, data={"url": "/x"})


class CountingBasket(MemoryBasket):
    """The in-memory twin, counting round trips; optionally failing one send id with an error reply."""

    def __init__(self, fail_send_id: str | None = None) -> None:
        super().__init__(POLICY)
        self.round_trips: list[int] = []
        self.gates = 0
        self.fail_send_id = fail_send_id

    async def gate(self, request: GateRequest) -> Decision:
        self.gates += 1
        return await super().gate(request)

    async def gate_many(self, requests: Sequence[GateRequest], *, return_exceptions: bool = False) -> list[Decision | BaseException]:
        self.round_trips.append(len(requests))
        out: list[Decision | BaseException] = []
        for r in requests:
            if r.send_id == self.fail_send_id:
                out.append(RuntimeError("ERR something Redis did not like"))
            else:
                out.append(await self.gate(r))
        return out


def _summary(results: list[Result | Failure]) -> list[object]:
    out: list[object] = []
    for r in results:
        if isinstance(r, Failure):
            out.append(("failed", r.reason))
        else:
            dumps = [d.model_dump() for d in r.dispositions], [t.model_dump() for t in r.traces], [t.model_dump() for t in r.timer_ops]
            out.append(dumps)
    return out


def test_a_batch_gives_what_one_message_at_a_time_gives() -> None:
    rnd = random.Random(3)
    customers = [f"c{i}" for i in range(30)]
    messages = []
    for n in range(120):
        c = rnd.choice(customers)
        messages.append(cart(c, n, value=rnd.choice([5.0, 50.0, 120.0])) if rnd.random() < 0.5 else page(c, n))

    sequential = CountingBasket()
    want: dict[str, list[object]] = {}
    states: dict[str, CustomerState] = {}
    for m in messages:
        res = asyncio.run(process(states.get(m.customer_id) or CustomerState.new(m.customer_id), m, JOURNEYS, NOW, sequential))
        states[m.customer_id] = res.state
        want.setdefault(m.customer_id, []).extend(_summary([res]))

    batched = CountingBasket()
    work: dict[str, CustomerWork] = {}
    for m in messages:
        work.setdefault(m.customer_id, CustomerWork(CustomerState.new(m.customer_id), [])).messages.append(m)
    outcomes = asyncio.run(process_batch(list(work.values()), JOURNEYS, NOW, batched))

    assert {c: _summary(o.results) for c, o in zip(work, outcomes, strict=True)} == want
    assert {c: o.state for c, o in zip(work, outcomes, strict=True)} == {c: states[c] for c in work}
    # every customer's first send is decided in the first round trip, together
    first_senders = {m.customer_id for m in messages if m.type == "web.cart_abandoned" and m.data["cart_value"] >= 20}
    assert batched.round_trips[0] == len(first_senders)
    assert batched.gates == sequential.gates > 0
    assert len(batched.round_trips) <= 3 < sequential.gates  # rounds, not one round trip per send


def test_a_failing_message_leaves_the_state_as_it_was_and_the_rest_goes_on() -> None:
    bad_send = "c1:abandoned_cart:v1:c1-cart-2:send_first"
    basket = CountingBasket(fail_send_id=bad_send)
    work = [
        CustomerWork(CustomerState.new("c1"), [page("c1", 1), cart("c1", 2), page("c1", 3)]),
        CustomerWork(CustomerState.new("c2"), [cart("c2", 1)]),
    ]
    c1, c2 = asyncio.run(process_batch(work, JOURNEYS, NOW, basket))
    ok1, failed, ok3 = c1.results
    assert isinstance(failed, Failure) and "something Redis did not like" in failed.reason
    assert isinstance(ok1, Result) and isinstance(ok3, Result)
    assert c1.state.instances == [] and c1.state.events_seen == 2  # the cart never happened for c1
    assert c1.encoded is not None and CustomerState.model_validate_json(c1.encoded) == c1.state
    assert isinstance(c2.results[0], Result) and [d.result for d in c2.results[0].dispositions] == ["approved"]


def test_a_state_over_the_limit_refuses_the_message_and_keeps_the_old_state() -> None:
    work = [CustomerWork(CustomerState.new("c1"), [page("c1", 1), cart("c1", 2, blob="x" * 5000), page("c1", 3)])]
    [out] = asyncio.run(process_batch(work, JOURNEYS, NOW, MemoryBasket(POLICY), max_state_bytes=4096))
    assert isinstance(out.results[1], Failure) and isinstance(out.results[1].error, StateTooLarge)
    assert "over the limit of 4096" in out.results[1].reason
    assert out.state.instances == [] and out.state.events_seen == 2
    assert out.encoded is not None and len(out.encoded) <= 4096


def test_unchanged_state_is_not_rewritten() -> None:
    state = asyncio.run(process(CustomerState.new("c1"), page("c1", 1), JOURNEYS, NOW, MemoryBasket(POLICY))).state
    [out] = asyncio.run(process_batch([CustomerWork(state, [page("c1", 1)])], JOURNEYS, NOW + timedelta(seconds=1), MemoryBasket(POLICY)))
    assert out.encoded is None and out.state is state  # a duplicate event id changes nothing


def consent(cid: str, n: int, type_: str, channel: str, brand: str | None = None) -> CustomerEvent:
    data: dict[str, object] = {"channel": channel}
    if brand:
        data["brand"] = brand
    return CustomerEvent(event_id=f"{cid}-consent-{n}", customer_id=cid, type=f"consent.{type_}", occurred_at=NOW, data=data)


def test_a_consent_change_reports_the_suppressions_after_the_batchs_last_change() -> None:
    basket = CountingBasket()
    work = [
        CustomerWork(CustomerState(customer_id="a"), [consent("a", 1, "unsubscribed", "sms"), consent("a", 2, "unsubscribed", "email")]),
        CustomerWork(CustomerState(customer_id="b"), [cart("b", 1)]),
        CustomerWork(CustomerState(customer_id="c"), [consent("c", 1, "unsubscribed", "all"), consent("c", 2, "resubscribed", "all")]),
    ]
    outcomes = asyncio.run(process_batch(work, JOURNEYS, NOW, basket))
    assert [o.suppressions for o in outcomes] == [["email", "sms"], None, []]

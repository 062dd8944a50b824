"""Fault tests on the real stack: what arrives is counted against an oracle.

- Redis replies OOM mid-stream: the batch waits and retries (``/ready`` says 503 meanwhile);
  every customer gets its send exactly once (one send id, charged once), nothing is dead-lettered.
- Poison messages (too large, nested 100,000 deep, a 5,000-digit number, NaN, garbage
  on the internal topic, an event that would grow a state past its cap) are
  dead-lettered with a code and their source; every good customer is served; the
  worker stays up.
- kill -9 of one of two workers under load: every expected send id appears (first
  message and the reminder after the timer), no customer is charged twice.
- The broker is killed and comes back: the worker rides it out without a flood of log
  lines and every event is handled; /ready says 503 within a lag interval and a few seconds,
  the Kafka retry counter counts and the lag gauge's timestamp stops; SIGTERM while the
  broker is down exits in time and closes every client.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
import redis

from orchestrator.dev.private_stack import PrivateStack
from tests.integration.helpers import (
    Deployment,
    basket_balances,
    cart,
    event,
    install_journey,
    metric,
    send_ids_by_customer,
    wait_until,
)

pytestmark = pytest.mark.integration


def _cores_over(pid: int, seconds: float) -> float:
    """Average cores a process used over the next ``seconds`` (user + system time from /proc)."""

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    return (cpu() - c0) / (time.monotonic() - t0)


def test_redis_oom_replies_mid_stream_delay_but_lose_nothing(deployment: Deployment, private_redis) -> None:
    _, url = private_redis
    dep = deployment
    dep.redis = url
    install_journey(dep, timeout="1h")
    worker = dep.start_worker()
    customers = [f"{dep.prefix}-c{i}" for i in range(30)]
    dep.publish("web", *(cart(c) for c in customers[:10]))
    send_ids_by_customer(dep, until=10, timeout=60)

    r = redis.Redis.from_url(url)
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)  # every write now answers "OOM command not allowed"
    try:
        dep.publish("web", *(cart(c) for c in customers[10:]))
        assert wait_until(lambda: metric(worker.metrics(), "orchestrator_dependency_retries_total", dependency="redis") >= 2, 30)
        held = send_ids_by_customer(dep, until=10_000, timeout=2)
        assert set(held) == set(customers[:10]), "a send went out while Redis refused writes"
        # PING still answers under OOM: /ready must tell the stall from the retries, within a lag interval and a few seconds
        assert wait_until(lambda: worker.ready() is None, 5 + 5), "/ready stayed 200 while every batch was stalled on Redis OOM"
    finally:
        r.config_set("maxmemory", 0)
    assert wait_until(lambda: worker.ready() is not None, 30), "/ready must come back once Redis takes writes again"

    sends = send_ids_by_customer(dep, until=30, timeout=60)
    time.sleep(1.5)
    sends = send_ids_by_customer(dep, until=10_000, timeout=2)
    assert sorted(sends) == sorted(customers)
    assert all(len(ids) == 1 for ids in sends.values()), {c: ids for c, ids in sends.items() if len(ids) != 1}
    assert asyncio.run(basket_balances(url, customers)) == dict.fromkeys(customers, 10.0)
    assert dep.read("dead-letter", until=lambda rs: False, timeout=1.5) == []
    assert worker.proc is not None and worker.proc.poll() is None


def test_poison_messages_are_dead_lettered_and_everyone_else_is_served(deployment: Deployment) -> None:
    dep = deployment
    install_journey(dep, timeout="1h")
    worker = dep.start_worker(ORCH_MAX_STATE_BYTES="8192")
    good = [f"{dep.prefix}-g{i}" for i in range(20)]
    fat = f"{dep.prefix}-fat"
    huge = json.dumps({**cart(f"{dep.prefix}-x"), "attributes": {"blob": "x" * 900_000}}).encode()
    deepest = b"[" * 100_000 + b"]" * 100_000  # 200 kB: refused for its size before it is parsed
    deep = b"[" * 20_000 + b"]" * 20_000  # 40 kB: within the size limit, refused for its depth
    digits = json.dumps(cart(f"{dep.prefix}-y")).replace('"cart_value": 99.0', '"cart_value": 1' + "0" * 5000).encode()
    nan = json.dumps(cart(f"{dep.prefix}-z")).replace('"cart_value": 99.0', '"cart_value": NaN').encode()
    assert b"0" * 5000 in digits and b"NaN" in nan
    fat_event = {**cart(fat, 1), "attributes": {"blob": "y" * 20_000}}  # valid and < 64 KiB, but its state > 8 KiB

    dep.publish("web", *(cart(c) for c in good[:10]))
    dep.publish("web", raw=huge, key=f"{dep.prefix}-x")
    dep.publish("web", raw=deepest, key=f"{dep.prefix}-d")
    dep.publish("web", raw=deep, key=f"{dep.prefix}-d")
    dep.publish("web", raw=digits, key=f"{dep.prefix}-y")
    dep.publish("web", raw=nan, key=f"{dep.prefix}-z")
    dep.publish("web", fat_event)
    asyncio.run(_produce_raw(dep, dep.topic("customer-events"), fat, b"\x00garbage"))
    dep.publish("web", *(cart(c) for c in good[10:]), cart(fat, 2))  # the fat customer's state was kept: it still works

    dead = dep.read("dead-letter", until=lambda rs: len(rs) >= 7, timeout=60)
    codes = sorted(r.headers["dlq.code"] for r in dead)
    assert codes == ["not_json", "number_too_large", "processing_failed", "too_deep", "too_large", "too_large", "undecodable"]
    by_code = {r.headers["dlq.code"]: r for r in dead}
    cut = {r.headers["dlq.truncated"]: r for r in dead if "dlq.truncated" in r.headers}
    assert sorted(cut) == sorted([str(len(huge)), str(len(deepest))])
    assert all(r.headers["dlq.code"] == "too_large" and len(r.value) == 64 * 1024 for r in cut.values())
    assert huge.startswith(cut[str(len(huge))].value) and deepest.startswith(cut[str(len(deepest))].value)
    assert by_code["too_deep"].value == deep
    assert "5001 characters" in by_code["number_too_large"].headers["dlq.reason"]
    failed = by_code["processing_failed"]
    assert failed.headers["dlq.exception"] == "StateTooLarge"
    assert failed.headers["dlq.customer"] == fat
    assert failed.headers["dlq.source.topic"] == dep.topic("in.web")  # keyed by its customer: handled in one hop, where it failed
    assert "over the limit of 8192" in failed.headers["dlq.reason"]
    assert by_code["undecodable"].value == b"\x00garbage"
    for r in dead:
        assert int(r.headers["dlq.source.offset"]) >= 0 and r.headers["dlq.source.partition"] in ("0", "1")

    sends = send_ids_by_customer(dep, until=len(good) + 1, timeout=60)
    assert sorted(sends) == sorted([*good, fat])
    assert all(len(ids) == 1 for ids in sends.values())
    assert worker.proc is not None and worker.proc.poll() is None
    assert worker.ready() is not None
    text = worker.metrics()
    assert metric(text, "orchestrator_dead_letters_total", code="processing_failed") == 1
    assert metric(text, "orchestrator_events_total", family="web", outcome="dead_lettered") == 5


async def _produce_raw(dep: Deployment, topic: str, key: str, value: bytes) -> None:
    from orchestrator.dev import kafkatools

    await kafkatools.produce(dep.kafka, [(topic, key, value)])


def test_kill_9_of_one_of_two_workers_loses_no_send_and_charges_nobody_twice(deployment: Deployment) -> None:
    dep = deployment
    install_journey(dep, timeout="5s")
    first = dep.start_worker(ORCH_PARTITIONS="4")
    second = dep.start_worker(ORCH_PARTITIONS="4")
    assert wait_until(
        lambda: (
            len(set((first.ready() or {}).get("partitions", ())) | set((second.ready() or {}).get("partitions", ()))) == 4
            and all((w.ready() or {}).get("partitions") for w in (first, second))
        ),
        60,
    )
    victim = first if 0 in first.ready()["partitions"] else second  # type: ignore[index]
    customers = [f"{dep.prefix}-c{i}" for i in range(300)]
    for i in range(0, len(customers), 50):
        dep.publish("web", *(cart(c) for c in customers[i : i + 50]))
        if i == 100:
            victim.kill()  # SIGKILL while the group is busy with these customers
        time.sleep(0.3)

    sends = send_ids_by_customer(dep, until=2 * len(customers), timeout=150)
    time.sleep(2)
    sends = send_ids_by_customer(dep, until=10_000, timeout=3)
    missing = [c for c in customers if {t for _, t in sends.get(c, ())} != {"cart_reminder", "cart_reminder_2"}]
    assert not missing, f"{len(missing)} customers without both messages, e.g. {[(c, sends.get(c)) for c in missing[:3]]}"
    assert all(len(ids) == 2 for ids in sends.values()), "one send id per message: a replay reuses it"
    balances = asyncio.run(basket_balances(dep.redis, customers))
    assert {c: b for c, b in balances.items() if b != 20.0} == {}, "a customer was charged twice (or not at all)"


def test_broker_outage_is_ridden_out_quietly_and_sigterm_exits_while_it_is_down(
    deployment: Deployment, private_stack: PrivateStack
) -> None:
    dep = deployment
    dep.kafka, dep.redis = private_stack.kafka, private_stack.redis
    install_journey(dep, timeout="1h")
    worker = dep.start_worker()
    before = [f"{dep.prefix}-b{i}" for i in range(10)]
    dep.publish("web", *(cart(c) for c in before))
    send_ids_by_customer(dep, until=10, timeout=60)

    text = worker.metrics()
    retries_before = metric(text, "orchestrator_dependency_retries_total", dependency="kafka")
    read_at = metric(text, "orchestrator_consumer_lag_read_timestamp_seconds")
    assert read_at > time.time() - 30, "the lag gauge's timestamp follows the lag reads"
    assert worker.proc is not None
    private_stack.stop_kafka()
    killed = time.monotonic()
    # within ORCH_LAG_INTERVAL (5 s) and a few seconds: the lag read gives up after 5 s
    assert wait_until(lambda: worker.ready() is None, 5 + 5 + 5), "/ready must turn 503 while Kafka is down"
    print(f"/ready said 503 {time.monotonic() - killed:.1f}s after the broker went")
    cpu = _cores_over(worker.proc.pid, 12)  # measured, not asserted: bench/bench_outage.py has the A/B
    print(f"idle worker with the broker down: {cpu:.3f} cores")
    text = worker.metrics()
    assert metric(text, "orchestrator_dependency_retries_total", dependency="kafka") > retries_before, "retries counted in the outage"
    frozen = metric(text, "orchestrator_consumer_lag_read_timestamp_seconds")
    assert time.time() - frozen > 10, "the lag gauge's timestamp stops while the lag cannot be read (its age shows)"
    private_stack.start_kafka()
    assert wait_until(lambda: worker.ready() is not None, 90), worker.log_tail()
    after = [f"{dep.prefix}-a{i}" for i in range(10)]
    dep.publish("web", *(cart(c) for c in after))
    sends = send_ids_by_customer(dep, until=20, timeout=90)
    assert sorted(sends) == sorted(before + after)
    log_lines = worker.log_path.read_text(errors="replace").splitlines()
    noisy = [line for line in log_lines if "ERROR" in line or "WARNING" in line]
    assert len(noisy) < 300, f"{len(noisy)} warning/error lines for a 20 s outage:\n" + "\n".join(noisy[-20:])

    private_stack.stop_kafka()
    time.sleep(3)
    assert worker.proc is not None
    started = time.monotonic()
    code = worker.stop(timeout=40)
    took = time.monotonic() - started
    assert took < 30, f"SIGTERM with Kafka down took {took:.1f}s"
    assert code in (0, -15), worker.log_tail()
    log_text = worker.log_path.read_text(errors="replace")
    assert "did not close cleanly" not in log_text and "never awaited" not in log_text, worker.log_tail()


def test_no_customer_data_on_the_web_port_and_orch_settings_win(deployment: Deployment) -> None:
    dep = deployment
    install_journey(dep, timeout="1h")
    # Faust's own variables must not beat ours: the worker listens on ORCH_WEB_PORT (wait_ready polls it)
    worker = dep.start_worker(WEB_PORT="1", WEB_HOST="0.0.0.0", APP_WEB_TABLES_ENABLED="true", BROKER_URL="kafka://nowhere:1")
    c = f"{dep.prefix}-secret-customer"
    dep.publish("web", event(c, "cart_abandoned", f"{c}-1", cart_id="k", cart_value=80.0))
    assert set(send_ids_by_customer(dep, until=1, timeout=60)) == {c}  # the worker holds this customer's state
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{worker.web_port}"
    for path in ("/table/", "/table/customer-state/", f"/table/customer-state/{c}/", "/router/", "/graph/", "/stats/", "/"):
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                body = resp.read().decode(errors="replace")
                status = resp.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read().decode(errors="replace"), exc.code
        assert c not in body, f"{path} shows the customer id"
        assert status in (404, 405), f"{path} answered {status}"  # "/" too: Faust's index page is off
    for path in ("/metrics", "/ready", "/health"):
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            assert c not in resp.read().decode(errors="replace"), path


def test_a_redelivery_after_many_other_events_is_still_a_duplicate(deployment: Deployment) -> None:
    dep = deployment
    install_journey(dep, timeout="1h")
    dep.start_worker()
    c = f"{dep.prefix}-c"
    first = cart(c)
    views = [event(c, "page_view", f"{c}-pv-{i}", url=f"/p/{i}") for i in range(150)]
    dep.publish("web", first, *views)
    send_ids_by_customer(dep, until=1, timeout=60)
    dep.publish("web", first)  # an upstream redelivery, 150 events later (the old engine forgot after 64)
    marker = f"{dep.prefix}-marker"
    dep.publish("web", cart(marker))
    log = dep.read("journey-log", until=lambda rs: any(r.json()["what"] == "duplicate" for r in rs), timeout=60)
    assert [r.json()["detail"]["event_id"] for r in log if r.json()["what"] == "duplicate"] == [first["event_id"]]
    send_ids_by_customer(dep, until=2, timeout=60)
    time.sleep(1)
    records = dep.read("sends", until=lambda rs: False, timeout=2)
    assert sorted(r.key or "" for r in records) == sorted([c, marker]), "the redelivered cart was sent again"

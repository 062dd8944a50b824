"""No raw customer id in any log line (issue 16, item 3), checked on a real worker's log after a run with dead letters.

The run: good carts, key mismatches (the reason names the key and the customer id), schema
errors with a readable customer id, a state over ORCH_MAX_STATE_BYTES (the reason names the
customer). The oracle is every id the test used: none may appear in the worker's log, every
dead letter of a readable id carries it in ``dlq.customer``, and the log has their pseudonyms.
"""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from orchestrator.runtime.logs import pseudonym
from orchestrator.settings import Settings
from tests.integration.helpers import Deployment, cart, event, install_journey, wait_until

pytestmark = pytest.mark.integration

KEY = "quiet-logs-test-secret"


def test_the_worker_log_holds_no_raw_customer_id(deployment: Deployment) -> None:
    dep = deployment
    install_journey(dep, timeout="1h")
    worker = dep.start_worker(ORCH_MAX_STATE_BYTES="8192", ORCH_PSEUDONYM_KEY=KEY, ORCH_LOG_FORMAT="json")
    good = [f"{dep.prefix}-good{i}" for i in range(5)]
    mismatched = [f"{dep.prefix}-mm{i}" for i in range(3)]
    wrong_keys = [f"{dep.prefix}-key{i}" for i in range(3)]
    broken = [f"{dep.prefix}-bad{i}" for i in range(3)]
    fat = f"{dep.prefix}-fat"
    dep.publish("web", *(cart(c) for c in good))
    for cid, key in zip(mismatched, wrong_keys, strict=True):
        dep.publish("web", raw=json.dumps(cart(cid)).encode(), key=key)
    for cid in broken:
        dep.publish("web", raw=json.dumps(event(cid, "cart_abandoned", f"{cid}-e", cart_value="lots")).encode(), key=cid)
    dep.publish("web", {**cart(fat, 1), "attributes": {"blob": "y" * 20_000}})  # its state would be over 8 KiB

    dead = dep.read("dead-letter", until=lambda rs: len(rs) >= 7, timeout=60)
    by_code: dict[str, list] = {}
    for r in dead:
        by_code.setdefault(r.headers["dlq.code"], []).append(r)
    assert sorted((code, len(rs)) for code, rs in by_code.items()) == [("key_mismatch", 3), ("processing_failed", 1), ("schema", 3)]
    # the dead-letter topic carries the real id, also for inbound events whose id was readable
    assert sorted(r.headers["dlq.customer"] for r in by_code["schema"]) == sorted(broken)
    assert sorted(r.headers["dlq.customer"] for r in by_code["key_mismatch"]) == sorted(mismatched)
    assert by_code["processing_failed"][0].headers["dlq.customer"] == fat
    assert all(any(k in r.headers["dlq.reason"] for k in wrong_keys) for r in by_code["key_mismatch"])  # the topic keeps the truth

    assert wait_until(lambda: worker.log_path.read_text().count('"event": "dead_letter"') >= 7, 20), worker.log_tail()
    log = worker.log_path.read_text()
    leaked = [cid for cid in [*good, *mismatched, *wrong_keys, *broken, fat] if cid in log]
    assert leaked == [], f"raw customer ids in the worker log: {leaked[:3]}"
    secret = Settings(pseudonym_key=SecretStr(KEY)).log_pseudonym_key()
    for cid in [*mismatched, *wrong_keys, *broken, fat]:  # named by their pseudonyms instead, under the secret key
        assert pseudonym(cid, secret) in log, cid

"""`orchestrator console` on the real stack: a worker runs the abandoned cart, the console reads the topics,
Debian's headless chromium loads the journey page, and the numbers in its DOM are what this test published.

Seven carts are abandoned; three customers open their first email (so the two edges out of the wait
differ: 3 took the open, 4 still wait, the wait's timeout being an hour). The page is also saved as
``docs/console.png`` (the README shows it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchestrator.dev.processes import free_port
from tests.integration.helpers import ROOT, Deployment, cart, event, install_journey, wait_until

pytestmark = pytest.mark.integration

N = 7
OPENERS = 3
JOURNEY = "/journey/abandoned_cart/1"


def chromium() -> str:
    """Debian's chromium, installed with apt-get when it is missing (fails, not skips, when that does not work)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    tried = []
    for cmd in (
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        [*sudo, "apt-get", "update"],
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{' '.join(cmd)}: {exc}")
            continue
        tried.append(f"{' '.join(cmd)}: exit {done.returncode} {done.stderr.strip()[-300:]}")
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        if found:
            return found
    pytest.fail("chromium is not installed and could not be installed:\n" + "\n".join(tried))


def browse(binary: str, url: str, tmp: Path, *extra: str) -> str:
    profile = tmp / f"chromium-{secrets.token_hex(4)}"
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *extra,
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dom_value(dom: str, element_id: str) -> str:
    m = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', dom)
    assert m is not None, f"no element {element_id} in the page"
    return m.group(1).strip()


def api(port: int, path: str, token: str) -> dict[str, Any] | None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


EXPECTED = {
    "v-entered": N,
    "v-live": N - OPENERS,
    "v-converted": 0,
    "now-wait_open": N - OPENERS,
    "now-send_first": 0,
    "edge-start--send_first": N,
    "edge-send_first--wait_open": N,
    "edge-wait_open--done": OPENERS,
    "edge-wait_open--send_reminder": 0,
    "send-send_first-total": N,
    "send-send_first-approved": N,
    "send-send_first-capped": 0,
    "send-send_first-deferred": 0,
    "send-send_first-expired": 0,
    "send-send_reminder-total": 0,
}


def test_console_journey_page_in_chromium(deployment: Deployment, tmp_path: Path) -> None:
    binary = chromium()
    dep = deployment
    install_journey(dep, timeout="1h")  # the non-openers stay at the wait while the test looks
    dep.start_worker()
    customers = [f"{dep.prefix}-c{i}" for i in range(N)]
    dep.publish("web", *(cart(c) for c in customers))
    sends = dep.read("sends", until=lambda rs: {r.key for r in rs} >= set(customers), timeout=90)
    first = {r.key: r.json()["send_id"] for r in sends}
    dep.publish("ccm", *(event(c, "opened", f"{c}-open", send_id=first[c], channel="email") for c in customers[:OPENERS]))
    dep.publish("web", raw=b"{not json", key=customers[0])  # one dead letter, keyed by the customer

    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **dep.env(), "ORCH_CONSOLE_TOKEN": token, "ORCH_CONSOLE_PORT": str(port)}
    log_path = tmp_path / "console.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "console"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        last: dict[str, Any] = {}

        def read_them() -> bool:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            got = api(port, f"/api{JOURNEY}", token)
            if got is None:
                return False
            last.update(got)
            return bool(got["caught_up"]) and all(got["values"].get(k) == v for k, v in EXPECTED.items())

        assert wait_until(read_them, timeout=90, interval=0.5), f"the console's numbers: {last}\n{log_path.read_text(errors='replace')}"

        dom = browse(binary, f"http://127.0.0.1:{port}{JOURNEY}?token={token}", tmp_path, "--dump-dom")
        assert 'id="journey-map"' in dom, dom[:2000]
        assert {k: int(dom_value(dom, k)) for k in EXPECTED} == EXPECTED
        assert "journey-log" in dom_value(dom, "status")
        steps = set(re.findall(r'data-step="([^"]+)"', dom))
        assert {"start", "send_first", "wait_open", "send_reminder", "done"} <= steps

        home = browse(binary, f"http://127.0.0.1:{port}/?token={token}", tmp_path, "--dump-dom")
        assert int(dom_value(home, "home-abandoned_cart-1-entered")) == N
        assert int(dom_value(home, "home-abandoned_cart-1-live")) == N - OPENERS

        shot = ROOT / "docs" / "console.png"
        shot.parent.mkdir(exist_ok=True)
        browse(binary, f"http://127.0.0.1:{port}{JOURNEY}?token={token}", tmp_path, f"--screenshot={shot}", "--window-size=1400,1000")
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # the other pages, with the bearer token: the dead letter by code, the lag, a customer's story
        assert wait_until(lambda: (api(port, "/api/dead-letters", token) or {}).get("values", {}).get("dlq-not_json") == 1, timeout=30)
        lag = (api(port, "/api/dead-letters", token) or {})["values"]
        assert any(k.startswith(f"lag-{dep.topic('customer-events')}-") and k.endswith("-records") for k in lag), lag
        req = urllib.request.Request(f"http://127.0.0.1:{port}/customer?id={customers[0]}", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            story = resp.read().decode()
        assert "entered on web.cart_abandoned" in story and "dead-lettered" in story and "not_json" in story, story[-3000:]

        # without the token: 401 and nothing else, on the page and on its numbers
        for path in (JOURNEY, f"/api{JOURNEY}", "/", "/customer?id=" + customers[0]):
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert denied.value.code == 401
            assert b"abandoned_cart" not in denied.value.read()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, log_path.read_text(errors="replace")

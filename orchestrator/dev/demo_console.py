"""The demo's console: ``orchestrator console`` started beside the demo's worker, with a token of its own.

:func:`console_process` is the demo's :data:`~orchestrator.dev.demo.ConsoleHook`: it starts the
console as a child process on a free port with the worker's ``ORCH_*`` environment and a fresh
``ORCH_CONSOLE_TOKEN``, waits until it answers (401 without the token), yields the URL to open
(with ``?token=``, which sets the session cookie), and stops it when the demo ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from orchestrator.dev.demo import DemoDeployment
from orchestrator.dev.processes import free_port


@contextlib.contextmanager
def console_process(dep: DemoDeployment) -> Iterator[str | None]:
    """Start the console for ``dep``; yields its URL with the token (None if it did not come up in 30 s)."""
    token, port = secrets.token_urlsafe(24), free_port()
    env = {**os.environ, **dep.env, "ORCH_CONSOLE_TOKEN": token, "ORCH_CONSOLE_PORT": str(port), "ORCH_CONSOLE_HOST": "127.0.0.1"}
    log_path = Path(tempfile.mkdtemp(prefix="orchestrator-console-")) / "console.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "console"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}/?token={token}" if _answers(port, proc) else None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    """Whether the console answers on ``port`` (a 401 without the token is an answer) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.2)
    return False

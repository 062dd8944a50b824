"""Python's cyclic garbage collector, timed: a full collection over millions of live objects stops the worker.

The worker tunes the collector at start (``pipeline.py``: a larger young generation, and the
restored states frozen out of it). What is left is measured here: every collection's pause
goes to ``orchestrator_gc_pause_seconds{generation}``, and a pause of a second or more is
logged, because while it runs no loop runs (timers fire late, ``/metrics`` does not answer).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger("orchestrator.dependency")  # rate-limited like the other repeating warnings

LONG_PAUSE = 1.0
"""Seconds from which a collection is logged."""


class GcWatch:
    """A ``gc.callbacks`` entry that observes each collection's pause (install with :meth:`install`)."""

    def __init__(self, pauses: Histogram) -> None:
        self.pauses = pauses
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = str(info.get("generation", "?"))
        self.pauses.labels(generation).observe(pause)
        if pause >= LONG_PAUSE:
            log.warning(
                "garbage collection of generation %s paused the worker for %.1fs (%d objects collected)",
                generation,
                pause,
                info.get("collected", 0),
                extra={"event": "gc_pause", "generation": generation, "seconds": round(pause, 3)},
            )

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

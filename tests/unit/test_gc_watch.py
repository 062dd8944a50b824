"""Garbage-collector pauses are measured per generation and a long one is logged (runtime/gc_watch.py)."""

from __future__ import annotations

import gc
import logging

import pytest

from orchestrator.metrics import Metrics
from orchestrator.runtime import gc_watch
from orchestrator.runtime.gc_watch import GcWatch


def test_every_collection_is_timed_and_a_long_pause_is_logged(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Metrics()
    watch = GcWatch(m.gc_pause)
    watch.install()
    try:
        gc.collect(2)
        assert (m.registry.get_sample_value("orchestrator_gc_pause_seconds_count", {"generation": "2"}) or 0) >= 1
        monkeypatch.setattr(gc_watch, "LONG_PAUSE", 0.0)  # every pause is "long" now
        with caplog.at_level(logging.WARNING, logger="orchestrator.dependency"):
            gc.collect(1)
        assert any("garbage collection of generation 1 paused the worker" in r.getMessage() for r in caplog.records)
    finally:
        watch.uninstall()
    assert watch not in gc.callbacks

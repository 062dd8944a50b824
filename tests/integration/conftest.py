"""Integration fixtures: one isolated deployment per test on the shared broker and Redis."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.helpers import ROOT, Deployment


@pytest.fixture
def deployment(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Deployment]:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    shutil.copy(ROOT / "journeys" / "pressure.yaml", journeys / "pressure.yaml")
    dep = Deployment(prefix=unique, kafka=kafka_bootstrap, redis=redis_url, journeys_dir=journeys, tmp=tmp_path)
    try:
        yield dep
    finally:
        for worker in dep.workers:
            code = worker.stop()
            if code not in (0, None, -15):
                print(worker.log_tail())

"""The demo's live progress line: what the demo published and what the worker's ``/metrics`` says it did.

On a terminal the line is rewritten in place about once a second; otherwise (a log, CI)
a plain line is printed every few seconds. Every number the worker reports is read from
its Prometheus page, so the line shows what an SRE's dashboard would:

* ``processed``: ``orchestrator_processed_total`` (events and timers run through the engine);
* ``sends``: ``orchestrator_sends_total`` (send requests published to the CCM platform);
* ``timers fired``: ``orchestrator_timers_fired_total``;
* ``dead-lettered``: ``orchestrator_dead_letters_total``;
* ``lag``: the sum of ``orchestrator_consumer_lag`` over the partitions (records not yet
  committed by the group), with the largest ``orchestrator_consumer_lag_seconds`` when the
  worker reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import math
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ProgressReporter", "Snapshot", "format_progress", "parse_metrics"]


@dataclass(frozen=True)
class Snapshot:
    """What the worker's metrics page said at one moment (None: the page did not answer)."""

    processed: int
    sends: int
    timers_fired: int
    dead_lettered: int
    lag: int
    lag_seconds: float | None


def parse_metrics(text: str) -> Snapshot:
    """The numbers of the progress line from a Prometheus text page (absent metrics count 0)."""
    total: Counter[str] = Counter()
    lag_seconds: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created") or math.isnan(sample.value):
                continue
            if sample.name == "orchestrator_consumer_lag_seconds":
                lag_seconds = max(lag_seconds or 0.0, sample.value)
            else:
                total[sample.name] += int(sample.value)
    return Snapshot(
        processed=total["orchestrator_processed_total"],
        sends=total["orchestrator_sends_total"],
        timers_fired=total["orchestrator_timers_fired_total"],
        dead_lettered=total["orchestrator_dead_letters_total"],
        lag=total["orchestrator_consumer_lag"],
        lag_seconds=lag_seconds,
    )


def format_progress(elapsed: float, duration: float, published: Mapping[str, int], snap: Snapshot | None) -> str:
    """``[ 12s/80s] published 830 events + 95 CCM feedback | processed 1204 | sends 95 | timers fired 40 | lag 3 (0.2 s)``."""
    head = f"[{elapsed:>3.0f}s/{duration:.0f}s] published {published.get('upstream', 0)} events + {published.get('ccm', 0)} CCM feedback"
    if snap is None:
        return f"{head} | worker metrics: no answer"
    lag = f"lag {snap.lag}" + (f" ({snap.lag_seconds:.1f} s)" if snap.lag_seconds is not None else "")
    dead = f" | dead-lettered {snap.dead_lettered}" if snap.dead_lettered else ""
    return f"{head} | processed {snap.processed} | sends {snap.sends} | timers fired {snap.timers_fired}{dead} | {lag}"


class ProgressReporter:
    """Polls ``fetch`` (the worker's ``/metrics`` text) and writes the progress line to ``out`` until stopped.

    ``published`` is read live (the demo's publishers count into it). On a TTY the line is
    rewritten every ``tty_interval`` seconds; otherwise one line is printed every ``plain_interval``.
    """

    def __init__(
        self,
        fetch: Callable[[], str],
        published: Mapping[str, int],
        duration: float,
        *,
        out: TextIO | None = None,
        tty: bool | None = None,
        tty_interval: float = 1.0,
        plain_interval: float = 5.0,
    ) -> None:
        self.fetch = fetch
        self.published = published
        self.duration = duration
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.interval = tty_interval if self.tty else plain_interval
        self.started = time.monotonic()
        self.last = ""

    def snapshot(self) -> Snapshot | None:
        """The worker's numbers now, or None when its page does not answer (or cannot be read)."""
        try:
            return parse_metrics(self.fetch())
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def line(self) -> str:
        """The progress line now (fetches the metrics: call it off the event loop)."""
        return format_progress(time.monotonic() - self.started, self.duration, self.published, self.snapshot())

    def show(self, text: str) -> None:
        """Write ``text``: in place on a TTY (cut to the terminal's width, clearing the rest of the line), as a line otherwise."""
        self.last = text
        if self.tty:
            width = shutil.get_terminal_size((160, 24)).columns - 1  # a wrapped line could not be rewritten in place
            self.out.write(f"\r{text[:width]}\x1b[K")
        else:
            self.out.write(f"{text}\n")
        self.out.flush()

    async def run(self, stop: asyncio.Event) -> None:
        """Show the line every interval until ``stop`` is set, then once more (and end the TTY line)."""
        self.started = time.monotonic()
        while not stop.is_set():
            self.show(await asyncio.to_thread(self.line))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
        self.finish(await asyncio.to_thread(self.line))

    def finish(self, text: str) -> None:
        """The final line, ended with a newline on a TTY too."""
        self.show(text)
        if self.tty:
            self.out.write("\n")
            self.out.flush()

"""Lag in seconds per partition, from end-offset samples only (as kafka-lag-exporter computes it).

Each lag read gives, per partition, the end offset at that moment. Kept as a short history,
those samples say roughly when each offset was produced: the offset the group committed was
produced when the end offset passed it, interpolated linearly between the two samples around
it. The time lag is how long ago that was: how far behind real time the group is on that
partition, whatever the record rate. No message is read.

- caught up (committed = end): 0;
- the committed offset older than the oldest sample: at least the age of that sample (the
  history holds ``HISTORY`` samples per partition, one per ``ORCH_LAG_INTERVAL``);
- never committed: unknown (None), like the lag in records.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field

HISTORY = 720
"""End-offset samples kept per partition (an hour at the default 5-second lag interval)."""


@dataclass
class _Samples:
    times: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    ends: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY))


class TimeLag:
    """End-offset history per partition and the time lag it implies."""

    def __init__(self) -> None:
        self._samples: dict[tuple[str, int], _Samples] = {}

    def observe(self, topic: str, partition: int, end: int, at: float) -> None:
        """One sample: ``end`` was the partition's end offset at Unix time ``at`` (samples come in time order)."""
        s = self._samples.setdefault((topic, partition), _Samples())
        if s.ends and end < s.ends[-1]:  # the topic was deleted and made again: its history no longer applies
            s.times.clear()
            s.ends.clear()
        s.times.append(at)
        s.ends.append(end)

    def produced_at(self, topic: str, partition: int, offset: int) -> float | None:
        """About when the record at ``offset`` was produced (None: no sample yet, or it is not produced yet)."""
        s = self._samples.get((topic, partition))
        if s is None or not s.ends or offset >= s.ends[-1]:
            return None
        ends = list(s.ends)
        i = bisect_right(ends, offset)  # the first sample whose end offset is past ``offset``
        if i == 0:
            return s.times[0]  # produced before the oldest sample: at least that old
        t0, e0, t1, e1 = s.times[i - 1], ends[i - 1], s.times[i], ends[i]
        return t0 + (t1 - t0) * (offset - e0) / (e1 - e0)

    def seconds(self, topic: str, partition: int, committed: int | None, end: int, now: float) -> float | None:
        """The group's lag in seconds on one partition (0 caught up, None if it never committed)."""
        if committed is None:
            return None
        if committed >= end:
            return 0.0
        produced = self.produced_at(topic, partition, committed)
        return 0.0 if produced is None else max(0.0, now - produced)


__all__ = ["HISTORY", "TimeLag"]

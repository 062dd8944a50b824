"""The outbound topics of ``emit`` steps (``<prefix>.out.<topic>``): which ones the journeys need, and creating them.

The worker creates them like its other topics (``preflight.ensure_topics``, ``ORCH_PARTITIONS``
partitions): at start, when a reload brings a journey that emits on a new one, and, as a
safety net, before it publishes the first record of a batch on a topic it has not created
yet (a reload and a batch can meet). Creating a topic that exists is a no-op, so several
workers may race for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.journey.effects import emit_topics
from orchestrator.journey.loader import JourneySet
from orchestrator.runtime.preflight import ensure_topics
from orchestrator.settings import Settings


def journey_out_topics(journeys: JourneySet, settings: Settings) -> set[str]:
    """The full names of the topics the loaded journeys (every version) emit on."""
    return {settings.topic(f"out.{name}") for journey in journeys for name in emit_topics(journey.steps.values())}


class OutTopics:
    """The outbound topics this worker has made sure exist (so a batch checks a set, not the broker)."""

    def __init__(self, settings: Settings, **client_kw: Any) -> None:
        self.s = settings
        self.client_kw = client_kw
        self.known: set[str] = set()

    def name(self, topic: str) -> str:
        """``webcare`` -> ``<prefix>.out.webcare``."""
        return self.s.topic(f"out.{topic}")

    async def ensure(self, topics: Iterable[str]) -> list[str]:
        """Create those of ``topics`` (full names) not known to exist yet; returns the ones created. Raises KafkaError."""
        missing = sorted(set(topics) - self.known)
        if not missing:
            return []
        created = await ensure_topics(
            self.s.kafka_bootstrap_servers, missing, self.s.partitions, self.s.replication_factor, **self.client_kw
        )
        self.known.update(missing)
        return created

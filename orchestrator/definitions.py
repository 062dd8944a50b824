"""Everything a designer commits, loaded and checked together: journeys, the pressure policy, the profile facts.

The worker at start and on every hot reload, and ``orchestrator validate``, go through
:func:`load_definitions`, so they refuse exactly the same things and report every problem of
every file in one run: a broken journey and a broken ``pressure.yaml`` come together.

A journeys directory the worker accepts holds:

* journey files (``*.yaml``/``*.yml``): ``validate`` refuses a directory without any; the worker
  starts without journeys (it records profiles and waits for the first file, saying so in its log);
* ``pressure.yaml``, the contact-pressure policy (or the file ``ORCH_POLICY_FILE`` names);
* ``profile.yaml``, the profile facts (``journey/facts.py``): what every profile records;
* optionally ``scores.yaml``, the lead scores (``journey/scores.py``): without it no score is kept,
  and a journey reading ``profile.scores.X`` or entering on a score crossing is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import DefinitionError
from orchestrator.journey.facts import FACTS_FILE, Facts, FactsError, load_facts
from orchestrator.journey.loader import JourneySet, journey_files, load_journeys
from orchestrator.journey.scores import SCORES_FILE, Scores, describe, scores_beside
from orchestrator.pressure.policy import POLICY_FILE, PolicyError, PressurePolicy, load_policy


class DefinitionsError(DefinitionError):
    """Journeys, the policy or the facts cannot be used; ``problems`` lists every problem of every file."""

    what = "journeys, policy or profile facts"


@dataclass(frozen=True)
class Definitions:
    """A journeys directory, loaded: what the worker runs with."""

    journeys: JourneySet
    policy: PressurePolicy
    facts: Facts
    journey_files: int
    policy_file: Path
    facts_file: Path
    scores: Scores | None = None
    """The lead scores (``scores.yaml``; its ``source`` is None without the file)."""
    scores_file: Path | None = None

    def summary(self) -> str:
        """``13 journeys (14 versions), 1 policy, 1 facts file (3 fields)``: what was checked."""
        ids = len(self.journeys.ids())
        versions = len(self.journeys)
        what = f"{ids} journey{'s' if ids != 1 else ''}"
        if versions != ids:
            what += f" ({versions} versions)"
        fields = self.facts.count()
        text = f"{what}, 1 policy, 1 facts file ({fields} field{'s' if fields != 1 else ''} recorded)"
        scored = describe(self.scores) if self.scores is not None else ""
        return f"{text}, {scored}" if scored else text


def load_definitions(
    journeys_dir: str | os.PathLike[str], policy_file: str | os.PathLike[str] | None = None, *, require_journeys: bool = False
) -> Definitions:
    """Load and check a journeys directory; raises :class:`DefinitionsError` with every problem, sorted by file and line.

    ``require_journeys``: a directory without journey files is a problem too (``validate``).
    """
    directory = Path(journeys_dir)
    policy_path = Path(policy_file) if policy_file is not None else directory / POLICY_FILE
    facts_path = directory / FACTS_FILE
    problems: list[str] = []
    if not directory.is_dir():
        raise DefinitionsError([f"{os.fspath(directory)}:1:1: no such directory (ORCH_JOURNEYS_DIR names the journeys directory)"])
    policy = _policy(policy_path, problems)
    facts = _facts(facts_path, problems)
    scores = scores_beside([directory], problems)  # optional: EMPTY_SCORES without the file
    files = journey_files([directory])
    if not files and require_journeys:
        problems.append(
            f"{os.fspath(directory)}:1:1: no journey files (*.yaml) in the directory: add at least one journey (see journeys/README.md)"
        )
    journeys: JourneySet | None = JourneySet([], facts, scores)
    if files:
        try:
            journeys = load_journeys(files, facts, scores)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            journeys = None
    if problems or policy is None or facts is None or journeys is None:
        raise DefinitionsError(problems)
    scores_path = directory / SCORES_FILE if scores.source is not None else None
    return Definitions(journeys, policy, facts, len(files), policy_path, facts_path, scores, scores_path)


def _policy(path: Path, problems: list[str]) -> PressurePolicy | None:
    if not path.is_file():
        problems.append(
            f"{os.fspath(path)}:1:1: missing: the contact-pressure policy is required (copy journeys/pressure.yaml as a "
            "start; an empty file means all defaults; see schemas/pressure.json)"
        )
        return None
    try:
        return load_policy(path)
    except PolicyError as exc:
        problems.extend(exc.problems)
        return None


def _facts(path: Path, problems: list[str]) -> Facts | None:
    if not path.is_file():
        problems.append(
            f"{os.fspath(path)}:1:1: missing: the profile facts say which payload fields every profile records "
            "(`events: {}` records none; see schemas/profile.json and journeys/profile.yaml)"
        )
        return None
    try:
        return load_facts(path)
    except FactsError as exc:
        problems.extend(exc.problems)
        return None


__all__ = ["Definitions", "DefinitionsError", "load_definitions"]

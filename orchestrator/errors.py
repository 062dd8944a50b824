"""The one error a designer's file can cause: :class:`DefinitionError`.

A journey file or the pressure policy that cannot be used raises a subclass of
:class:`DefinitionError` (:class:`~orchestrator.journey.loader.JourneyError`,
:class:`~orchestrator.pressure.policy.PolicyError`). Its ``problems`` are
``file:line:col: message`` lines, ready to print; a caller that loads either kind of
file catches this one class and prints them.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DefinitionError"]


class DefinitionError(ValueError):
    """A file a designer wrote (a journey or the pressure policy) is invalid.

    ``problems`` holds one ``file:line:col: message`` line per problem; ``errors`` is
    the same list (the name older callers use). ``str(error)`` is a headline naming
    what was being loaded, then the problems, one per line.
    """

    what = "definitions"
    """What was being loaded, for the headline (``invalid <what>:``)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__(f"invalid {self.what}:\n" + "\n".join(self.problems))

    @property
    def errors(self) -> list[str]:
        """The same list as :attr:`problems`."""
        return self.problems

"""Load YAML and remember where every value came from, for ``file:line:col`` errors.

Designers edit journey files and the pressure policy by hand; when pydantic rejects a
value we want to point at the exact line. PyYAML can *compose* a document into nodes
that carry start marks; this module constructs the plain Python data from those nodes
and, alongside it, a map from each value's path to its position::

    data, positions = load_yaml_with_positions("journeys/pressure.yaml")
    positions[("capacity",)]                     # -> (3, 1)
    positions[("priority_reserve", 0, "fill_up_to")]  # -> (7, 22)
    line, col = locate(positions, err["loc"])    # pydantic error loc -> nearest position

Positions are 1-based ``(line, column)``. A mapping entry is located at its *key*
(that is the line a reader looks for: ``capacity: lots``), a sequence item at the
item itself, and the document root at ``()``.

YAML syntax errors propagate as :class:`yaml.YAMLError`; :func:`format_yaml_error`
turns one into the same ``file:line:col: message`` form.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import yaml

Path = tuple[Hashable, ...]
Position = tuple[int, int]
Positions = dict[Path, Position]

__all__ = ["Path", "Position", "Positions", "format_yaml_error", "load_yaml_with_positions", "loads_yaml_with_positions", "locate"]


def load_yaml_with_positions(path: str | os.PathLike[str]) -> tuple[Any, Positions]:
    """Read the YAML file at ``path``; return ``(data, positions)``.

    ``data`` is what :func:`yaml.safe_load` would return (``None`` for an empty file).
    ``positions`` maps a path tuple such as ``("capacity",)`` or
    ``("priority_reserve", 0, "fill_up_to")`` to its 1-based ``(line, col)``; the
    root ``()`` is always present.

    Raises :class:`OSError` when the file cannot be read and :class:`yaml.YAMLError`
    when it is not valid YAML (or holds more than one document).
    """
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return loads_yaml_with_positions(text)


def loads_yaml_with_positions(text: str) -> tuple[Any, Positions]:
    """Like :func:`load_yaml_with_positions` but for YAML already in a string."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {(): (1, 1)}
        # construct_document flattens merge keys (``<<: *x``) in the node tree in
        # place, so walking the nodes afterwards sees the same entries as the data.
        data = loader.construct_document(root)
        positions: Positions = {}
        _walk(loader, root, (), positions)
        return data, positions
    finally:
        loader.dispose()


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: Path, out: Positions, at: Position | None = None) -> None:
    """Record ``path -> position`` for ``node`` and, recursively, its children."""
    out.setdefault(path, at or _mark(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # complex keys: data construction already rejected most
                continue
            _walk(loader, value_node, path + (key,), out, _mark(key_node))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(loader, item, path + (index,), out)


def locate(positions: Mapping[Path, Position], loc: Sequence[Any]) -> Position:
    """The position for a pydantic error ``loc``, or for its nearest existing parent.

    An exact match wins. Otherwise the path is walked from the root, following each
    element that exists and skipping those that do not (pydantic inserts union tags
    such as ``"rolling"`` or ``"function-after[...]"`` into ``loc``), and the deepest
    position reached is returned. Falls back to the root, then to ``(1, 1)``.
    """
    full = tuple(loc)
    if full in positions:
        return positions[full]
    best: Path = ()
    for element in full:
        candidate = best + (element,)
        if candidate in positions:
            best = candidate
    return positions.get(best, (1, 1))


def format_yaml_error(path: str | os.PathLike[str], exc: yaml.YAMLError) -> str:
    """``file:line:col: message`` for a YAML syntax error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}: {problem}" if context else problem
    if mark is None:
        return f"{os.fspath(path)}:1:1: invalid YAML: {message}"
    return f"{os.fspath(path)}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {message}"

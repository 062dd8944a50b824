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

Booleans are YAML 1.2's: only ``true``/``false`` (any case) are booleans. PyYAML follows
YAML 1.1, where ``on``, ``off``, ``yes`` and ``no`` are booleans too, so the key of
``{every: week, on: mon}`` would become ``True``; here it stays the string ``on``. (pydantic
still reads ``yes``/``on`` as true where a field is a boolean.)

Duplicate keys in one mapping (PyYAML silently keeps the last one) are errors: by
default the loaders raise :class:`DuplicateKeyError` (a :class:`yaml.YAMLError`, so a
caller that reports syntax errors reports them too, all in one message); a caller that
wants to report them next to its other problems passes a ``duplicates`` list, which
receives one :class:`DuplicateKey` per repeated key while loading goes on. Either way
``data`` and ``positions`` describe the value that wins (the last one).
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import yaml

from orchestrator.errors import DefinitionError

Path = tuple[Hashable, ...]
Position = tuple[int, int]
Positions = dict[Path, Position]

__all__ = [
    "DuplicateKey",
    "DuplicateKeyError",
    "Path",
    "Position",
    "Positions",
    "format_yaml_error",
    "format_yaml_errors",
    "load_yaml_with_positions",
    "loads_yaml_with_positions",
    "locate",
    "parse_definition",
    "read_definition",
]

MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (``true``/``false`` only)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class DuplicateKey(NamedTuple):
    """A key given twice in one mapping: where the repeat is, and where the key was first."""

    path: Path
    """Path of the key (``("steps", "wait", "timeout")``)."""
    position: Position
    """Position of the repeated key (the one whose value wins)."""
    first: Position
    """Position of the key's first occurrence."""

    @property
    def key(self) -> Hashable:
        return self.path[-1]

    @property
    def message(self) -> str:
        return f"duplicate key {self.key!r} (first at line {self.first[0]}): YAML keeps only the last value"


class DuplicateKeyError(yaml.MarkedYAMLError):
    """The document repeats a key in a mapping; ``duplicates`` lists every repeat (in file order)."""

    def __init__(self, duplicates: Sequence[DuplicateKey], mark: yaml.Mark | None = None) -> None:
        first = duplicates[0]
        more = "".join(f"; duplicate key {d.key!r} at line {d.position[0]} (first at line {d.first[0]})" for d in duplicates[1:])
        super().__init__(problem=first.message + more, problem_mark=mark)
        self.duplicates = list(duplicates)


def load_yaml_with_positions(path: str | os.PathLike[str], duplicates: list[DuplicateKey] | None = None) -> tuple[Any, Positions]:
    """Read the YAML file at ``path``; return ``(data, positions)``.

    ``data`` is what :func:`yaml.safe_load` would return (``None`` for an empty file).
    ``positions`` maps a path tuple such as ``("capacity",)`` or
    ``("priority_reserve", 0, "fill_up_to")`` to its 1-based ``(line, col)``; the
    root ``()`` is always present.

    Raises :class:`OSError` when the file cannot be read and :class:`yaml.YAMLError`
    when it is not valid YAML (or holds more than one document). A key repeated in
    a mapping raises :class:`DuplicateKeyError`, unless ``duplicates`` is a list:
    then each repeat is appended to it and loading goes on (the last value wins).
    """
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return loads_yaml_with_positions(text, duplicates)


def loads_yaml_with_positions(text: str, duplicates: list[DuplicateKey] | None = None) -> tuple[Any, Positions]:
    """Like :func:`load_yaml_with_positions` but for YAML already in a string."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {(): (1, 1)}
        found = _duplicate_keys(loader, root)
        if found and duplicates is None:
            raise DuplicateKeyError([d for d, _ in found], found[0][1])
        if duplicates is not None:
            duplicates.extend(d for d, _ in found)
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


def _key(loader: _Loader, key_node: yaml.Node) -> Hashable | None:
    """The constructed key of a mapping entry, or None for a complex (unhashable) key."""
    key = loader.construct_object(key_node, deep=True)
    return key if isinstance(key, Hashable) else None


def _duplicate_keys(loader: _Loader, root: yaml.Node) -> list[tuple[DuplicateKey, yaml.Mark]]:
    """Every key repeated in one mapping of the composed (not yet merged) tree, in file order.

    Runs before ``construct_document``: keys a merge (``<<: *x``) brings in may be
    overridden, that is no duplicate. A node reached twice through an alias is checked once.
    """
    found: list[tuple[DuplicateKey, yaml.Mark]] = []
    done: set[int] = set()
    todo: list[tuple[yaml.Node, Path]] = [(root, ())]
    while todo:
        node, path = todo.pop()
        if id(node) in done:
            continue
        done.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend((item, path + (i,)) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            firsts: dict[Hashable, Position] = {}
            for key_node, value_node in node.value:
                key = None if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode) else _key(loader, key_node)
                todo.append((value_node, path + (key,) if key is not None else path))
                if key is None:
                    continue
                if key in firsts:
                    found.append((DuplicateKey(path + (key,), _mark(key_node), firsts[key]), key_node.start_mark))
                else:
                    firsts[key] = _mark(key_node)
    loader.constructed_objects = {}
    return sorted(found, key=lambda f: f[0].position)


def _walk(loader: _Loader, node: yaml.Node, path: Path, out: Positions, at: Position | None = None) -> None:
    """Record ``path -> position`` for ``node`` and, recursively, its children (a repeated key: its last entry, the one that wins)."""
    out.setdefault(path, at or _mark(node))
    if isinstance(node, yaml.MappingNode):
        entries: dict[Hashable, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = _key(loader, key_node)
            if key is not None:  # complex keys: data construction already rejected most
                entries[key] = (key_node, value_node)
        for key, (key_node, value_node) in entries.items():
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


def format_yaml_errors(path: str | os.PathLike[str], exc: yaml.YAMLError) -> list[str]:
    """Like :func:`format_yaml_error`, but one ``file:line:col: message`` per repeated key of a :class:`DuplicateKeyError`."""
    if isinstance(exc, DuplicateKeyError):
        return [f"{os.fspath(path)}:{d.position[0]}:{d.position[1]}: {d.message}" for d in exc.duplicates]
    return [format_yaml_error(path, exc)]


def format_yaml_error(path: str | os.PathLike[str], exc: yaml.YAMLError) -> str:
    """``file:line:col: message`` for a YAML syntax error (every repeat of a :class:`DuplicateKeyError` in one message)."""
    if isinstance(exc, DuplicateKeyError):
        first = exc.duplicates[0].position
        return f"{os.fspath(path)}:{first[0]}:{first[1]}: {exc.problem}"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}: {problem}" if context else problem
    if mark is None:
        return f"{os.fspath(path)}:1:1: invalid YAML: {message}"
    return f"{os.fspath(path)}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {message}"


# ------------------------------------------------------------------ a designer's file, read and parsed


def read_definition(path: str | os.PathLike[str], error: type[DefinitionError], what: str) -> str:
    """The text of a designer's file; ``error`` (``file:1:1: cannot read the <what>: ...``) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise error([f"{os.fspath(path)}:1:1: cannot read the {what}: {exc.strerror or exc}"]) from None


def parse_definition(
    text: str, name: str, error: type[DefinitionError], shape: str
) -> tuple[dict[str, Any], Positions, list[tuple[Position, str]]]:
    """A designer's YAML file as a mapping (``{}`` when empty), its positions and its repeated keys as located problems.

    Raises ``error`` for a syntax error or a file that is not a mapping (``shape`` says what it must
    be, e.g. ``a mapping with events:``).
    """
    duplicates: list[DuplicateKey] = []
    try:
        data, positions = loads_yaml_with_positions(text, duplicates)
    except yaml.YAMLError as exc:
        raise error([format_yaml_error(name, exc)]) from None
    problems = [(d.position, f"{name}:{d.position[0]}:{d.position[1]}: {d.message}") for d in duplicates]
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise error([f"{name}:1:1: {shape}, got {type(data).__name__}"])
    return data, positions, problems

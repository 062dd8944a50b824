"""The steps that do not contact the customer: ``update_profile`` and ``emit`` (file format and their compiled values).

Both run at once (they never park) and go on to ``next``. Neither goes through the
contact-pressure basket: an ``update_profile`` changes what the orchestrator knows about
the customer, an ``emit`` hands a record to another team's system (a webcare desk, a CRM
task queue) on ``<prefix>.out.<topic>``; nobody is contacted by either.

A value in ``set:`` or ``record:`` is a literal (string, number, boolean, null) or
``{from: FIELD}`` (``data.X``, ``entry.X``, ``event.type|id|occurred_at``, ``profile.X``),
read when the step runs, with an optional ``default`` for when the field is missing::

    mark_case:
      type: update_profile
      set:
        attributes.webcare_case: open
        attributes.webcare_platform: {from: data.platform}
      clear: [attributes.webcare_snoozed]
      add_tags: [webcare]
      next: wait_reply

    hand_off:
      type: emit
      topic: webcare                      # published on <prefix>.out.webcare
      record:
        priority: high
        link: {from: data.link}
        excerpt: {from: data.excerpt, default: ""}
      next: mark_case

Bounds (so a record and a profile stay small whatever an event carries): a record has at
most :data:`MAX_RECORD_FIELDS` fields, every string (literal or read) at most
:data:`MAX_VALUE_CHARS` characters — a longer value read from an event is cut and its field
named in the record's ``truncated`` list; at most :data:`MAX_PROFILE_CHANGES` attribute
changes and tags per step. The engine's side is ``orchestrator/engine/effects.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.journey.conditions import MISSING, Ctx, FieldPath, check_field_path, field_getter

MAX_RECORD_FIELDS = 32
"""Most fields in one emitted record."""
MAX_VALUE_CHARS = 512
"""Longest string in an emitted record or set on a profile attribute (longer values read from an event are cut)."""
MAX_PROFILE_CHANGES = 32
"""Most attributes set or cleared plus tags added or removed by one update_profile step."""
TOPIC_PATTERN = r"^[a-z][a-z0-9_-]{0,47}$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
KEY_PATTERN = rf"^{_NAME}$"
ATTRIBUTE_PATTERN = rf"^(profile\.)?attributes\.{_NAME}$"

Scalar = str | int | float | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)


def _literal(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        kind = "a list" if isinstance(value, list) else type(value).__name__
        raise PydanticCustomError("bad_value", f"a value is a string, number, boolean, null or {{from: FIELD}}, not {kind}", {"kind": kind})
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise PydanticCustomError("bad_value", f"a value has at most {MAX_VALUE_CHARS} characters (this one has {len(value)})")
    return value


Literal_ = Annotated[
    Any,
    AfterValidator(_literal),
    Field(json_schema_extra={"type": ["string", "number", "integer", "boolean", "null"], "maxLength": MAX_VALUE_CHARS}),
]


class FromField(_Model):
    """A value read when the step runs: ``{from: data.platform}``, ``{from: data.excerpt, default: ""}``."""

    from_: FieldPath = Field(alias="from", description="data.X, entry.X, event.type|id|occurred_at or profile.X")
    default: Literal_ = Field(
        default=None, description="When the field is missing or null (without it: null in a record, no change on a profile)."
    )

    @field_validator("from_")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_field_path(value)


def _value_tag(value: Any) -> str:
    return "from" if isinstance(value, (dict, FromField)) else "literal"


Value = Annotated[
    Annotated[Literal_, Tag("literal")] | Annotated[FromField, Tag("from")],
    Discriminator(_value_tag),
]

Reader = Callable[[Ctx], Any]


def _reader(value: Any) -> tuple[Reader | None, Any, bool]:
    """(a field reader or None for a literal, the literal or default, whether a default was given)."""
    if isinstance(value, FromField):
        return field_getter(value.from_), value.default, "default" in value.model_fields_set
    return None, value, True


def read_values(plan: Iterable[tuple[str, Reader | None, Any, bool]], ctx: Ctx) -> Iterator[tuple[str, Any, bool]]:
    """(name, value, cut) per planned value; a missing (or null) field without a default gives :data:`MISSING`.

    A value read from a field that is not a single value (an object, a list) counts as missing;
    a string longer than :data:`MAX_VALUE_CHARS` is cut to it (``cut`` True).
    """
    for name, get, fixed, has_default in plan:
        if get is None:
            yield name, fixed, False
            continue
        value = get(ctx)
        if value is MISSING or value is None or isinstance(value, (dict, list, tuple)):
            yield name, (fixed if has_default else MISSING), False
        elif isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            yield name, value[:MAX_VALUE_CHARS], True
        elif hasattr(value, "isoformat"):  # event.occurred_at, profile times: ISO text, as in the JSON of the event
            yield name, value.isoformat(), False
        else:
            yield name, value, False


def _paths(values: dict[str, Any], key: str) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for name, value in values.items():
        if isinstance(value, FromField):
            yield (key, name, "from"), value.from_


# ------------------------------------------------------------------ update_profile


def _attribute(key: str) -> str:
    return key.rsplit(".", 1)[1]


def _matching(pattern: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise PydanticCustomError("bad_name", "{value} is not {what}", {"value": repr(value), "what": what})
        return value

    return check


AttributeKey = Annotated[
    str,
    AfterValidator(
        _matching(
            ATTRIBUTE_PATTERN,
            "a profile attribute: write attributes.NAME (NAME: letters, digits and _, starting with a letter); "
            "tags go in add_tags / remove_tags",
        )
    ),
    Field(json_schema_extra={"pattern": ATTRIBUTE_PATTERN}, description="attributes.NAME (read by conditions as profile.attributes.NAME)"),
]
TagName = Annotated[
    str,
    AfterValidator(_matching(TAG_PATTERN, "a tag: letters, digits and _ . : -, at most 64, starting with a letter or digit")),
    Field(json_schema_extra={"pattern": TAG_PATTERN}, description="A tag (profile.tags): letters, digits, _ . : -"),
]
TopicName = Annotated[
    str,
    AfterValidator(_matching(TOPIC_PATTERN, "a topic name: lowercase letters, digits, _ and -, at most 48, starting with a letter")),
    Field(json_schema_extra={"pattern": TOPIC_PATTERN}),
]


class UpdateProfileStep(_Model):
    """Set or clear profile attributes, add or remove tags; every later condition (this and other journeys) sees them."""

    type: Literal["update_profile"]
    set: dict[AttributeKey, Value] = Field(default_factory=dict, description="attributes.NAME: a literal or {from: FIELD, default: ...}.")
    clear: list[AttributeKey] = Field(default_factory=list, description="Attributes to remove, e.g. [attributes.webcare_case].")
    add_tags: list[TagName] = Field(default_factory=list, description="Tags to add to profile.tags.")
    remove_tags: list[TagName] = Field(default_factory=list, description="Tags to remove from profile.tags.")
    next: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        default=None, description="Next step; omitted = the journey ends here."
    )

    _plan: tuple[tuple[str, Reader | None, Any, bool], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _consistent(self) -> UpdateProfileStep:
        changes = len(self.set) + len(self.clear) + len(self.add_tags) + len(self.remove_tags)
        if changes == 0:
            raise PydanticCustomError("update_profile", "update_profile changes nothing: give set, clear, add_tags or remove_tags")
        if changes > MAX_PROFILE_CHANGES:
            raise PydanticCustomError(
                "update_profile", f"update_profile makes {changes} changes, at most {MAX_PROFILE_CHANGES} are allowed: split the step"
            )
        both = sorted({_attribute(k) for k in self.set} & {_attribute(k) for k in self.clear})
        if both:
            raise PydanticCustomError("update_profile", f"attributes.{both[0]} is both set and cleared: keep one")
        tags = sorted(set(self.add_tags) & set(self.remove_tags))
        if tags:
            raise PydanticCustomError("update_profile", f"tag {tags[0]!r} is both added and removed: keep one")
        self._plan = tuple((_attribute(k), *_reader(v)) for k, v in self.set.items())
        return self

    @property
    def plan(self) -> tuple[tuple[str, Reader | None, Any, bool], ...]:
        """Per attribute set: (name, reader or None, literal or default, has default) (see :func:`read_values`)."""
        return self._plan

    @property
    def cleared(self) -> list[str]:
        """The attribute names to remove."""
        return [_attribute(k) for k in self.clear]

    def field_paths(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(location inside the step, field path) of every ``from:``."""
        return list(_paths(self.set, "set"))


# ------------------------------------------------------------------ emit


RecordKey = Annotated[
    str,
    AfterValidator(_matching(KEY_PATTERN, "a field name: letters, digits and _, at most 64, starting with a letter")),
    Field(json_schema_extra={"pattern": KEY_PATTERN}),
]


class EmitStep(_Model):
    """Publish a JSON record on ``<prefix>.out.<topic>`` for another team's system; nobody is contacted, the basket is not asked."""

    type: Literal["emit"]
    topic: TopicName = Field(
        description="The outbound topic's name: the record goes to <prefix>.out.<topic> (lowercase, digits, _ and -).",
    )
    record: dict[RecordKey, Value] = Field(
        min_length=1,
        max_length=MAX_RECORD_FIELDS,
        description=f"The record's fields (at most {MAX_RECORD_FIELDS}): a literal or {{from: FIELD, default: ...}}.",
    )
    next: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        default=None, description="Next step; omitted = the journey ends here."
    )

    _plan: tuple[tuple[str, Reader | None, Any, bool], ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        self._plan = tuple((k, *_reader(v)) for k, v in self.record.items())

    @property
    def plan(self) -> tuple[tuple[str, Reader | None, Any, bool], ...]:
        """Per record field: (name, reader or None, literal or default, has default) (see :func:`read_values`)."""
        return self._plan

    def field_paths(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(location inside the step, field path) of every ``from:``."""
        return list(_paths(self.record, "record"))


def emit_topics(steps: Iterable[Any]) -> set[str]:
    """The outbound topic names (``webcare``) the emit steps among ``steps`` publish on."""
    return {s.topic for s in steps if isinstance(s, EmitStep)}

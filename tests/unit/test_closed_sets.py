"""Closed sets are spelled once, and everything that handles one member per case handles all of them.

A new step type or timer purpose cannot be added half-way: it needs a model class (with its
``type:`` tag), an engine handler, a render label; a timer purpose needs its engine handler.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

from orchestrator.actions import TIMER_PURPOSES, ArmTimer
from orchestrator.designer.render import LABELS
from orchestrator.engine.messages import ON_TIMER
from orchestrator.engine.steps import HANDLERS
from orchestrator.journey import model as m
from orchestrator.state import TimerRef


def step_classes() -> dict[str, type[Any]]:
    """The ``Step`` union's members by tag: ``Annotated[Union[Annotated[cls, Tag(t)], ...], Discriminator]``."""
    union = get_args(m.Step)[0]
    out: dict[str, type[Any]] = {}
    for member in get_args(union):
        assert get_origin(member) is Annotated
        cls, tag = get_args(member)[:2]
        out[tag.tag] = cls
    return out


def test_the_step_union_is_the_step_types_with_their_own_tags():
    classes = step_classes()
    assert tuple(classes) == m.STEP_TYPES
    for tag, cls in classes.items():
        assert get_args(cls.model_fields["type"].annotation) == (tag,), cls


def test_every_step_type_has_an_engine_handler_and_a_render_label():
    classes = set(step_classes().values())
    assert set(HANDLERS) == classes
    assert set(LABELS) == classes


def test_every_step_type_has_its_raw_references_known_to_validate():
    assert set(m._RAW_EDGES) | set(m._RAW_LISTS) | {"end"} == set(m.STEP_TYPES)


def test_an_unknown_step_type_is_told_every_known_one():
    message = "missing or unknown step type: write type: send, wait, branch, split, delay, window, update_profile, emit or end"
    assert m.Step.__metadata__[0].custom_error_message == message  # type: ignore[attr-defined]


def test_every_timer_purpose_has_an_engine_handler_and_the_models_take_exactly_them():
    assert set(ON_TIMER) == set(TIMER_PURPOSES)
    assert get_args(TimerRef.model_fields["purpose"].annotation) == TIMER_PURPOSES
    assert get_args(ArmTimer.model_fields["purpose"].annotation) == TIMER_PURPOSES

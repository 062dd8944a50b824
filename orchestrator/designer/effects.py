"""How the designer's tools show ``update_profile`` and ``emit`` steps: render labels and simulate lines."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.journey.effects import EmitStep, FromField, UpdateProfileStep

SHOWN_FIELDS = 6
"""Record fields a render label lists before "+N more"."""


def value_text(value: Any) -> str:
    """``"open"``, ``data.platform``, ``data.excerpt or ""``."""
    if isinstance(value, FromField):
        default = f" or {json.dumps(value.default)}" if "default" in value.model_fields_set else ""
        return f"{value.from_}{default}"
    return json.dumps(value)


def update_profile_label(step: UpdateProfileStep) -> str:
    lines = ["update profile"]
    lines += [f"set {key} = {value_text(value)}" for key, value in step.set.items()]
    lines += [f"clear {key}" for key in step.clear]
    tags = [f"+{t}" for t in step.add_tags] + [f"-{t}" for t in step.remove_tags]
    if tags:
        lines.append("tags " + " ".join(tags))
    return "<br/>".join(lines)


def emit_label(step: EmitStep) -> str:
    fields = [f"{key}: {value_text(value)}" for key, value in step.record.items()]
    more = len(fields) - SHOWN_FIELDS
    shown = fields[:SHOWN_FIELDS] + ([f"+{more} more"] if more > 0 else [])
    return "<br/>".join([f"emit to out.{step.topic}", *shown])


def shape(node: str, step: Any, text: str) -> str | None:
    """The Mermaid node: a cylinder (stored data) for update_profile, a subroutine for emit (None for other steps)."""
    if isinstance(step, UpdateProfileStep):
        return f'{node}[("{text}")]'
    if isinstance(step, EmitStep):
        return f'{node}[["{text}"]]'
    return None


def profile_trace_text(head: str, step_id: str | None, detail: dict[str, Any], edge: str | None) -> str:
    """``webcare_handoff v1 open_case: profile updated: set webcare_case="open"; tags +webcare -> wait_reply``."""
    parts = []
    if detail.get("set"):
        parts.append("set " + ", ".join(f"{k}={json.dumps(v)}" for k, v in detail["set"].items()))
    if detail.get("cleared"):
        parts.append("cleared " + ", ".join(detail["cleared"]))
    tags = [f"+{t}" for t in detail.get("tags_added") or ()] + [f"-{t}" for t in detail.get("tags_removed") or ()]
    if tags:
        parts.append("tags " + " ".join(tags))
    if detail.get("unchanged"):
        parts.append("left alone (field missing): " + ", ".join(detail["unchanged"]))
    return f"{head} {step_id}: profile updated: {'; '.join(parts) or 'nothing changed'} -> {edge or 'end'}"


def emit_text(head: str, step_id: str | None, topic: str, record: dict[str, Any], record_id: str, edge: str | None) -> str:
    """``webcare_handoff v1 hand_off: emit out.webcare {"priority": "high", ...} [c1:webcare_handoff:v1:m1:hand_off] -> open_case``."""
    return f"{head} {step_id}: emit out.{topic} {json.dumps(record, ensure_ascii=False)} [{record_id}] -> {edge or 'end'}"

"""Draw a journey as a Mermaid flowchart, optionally with customers counted per edge.

``orchestrator render journeys/abandoned_cart.yaml`` prints the map; with
``--events EVENTS.jsonl`` (simulated) or ``--counts SIM.jsonl`` (the output of
``simulate --json``) every edge carries the number of distinct customers that took it.
Paste the output into any Mermaid viewer (GitHub renders ```mermaid blocks).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orchestrator.designer import effects
from orchestrator.durations import format_duration
from orchestrator.journey import model as m
from orchestrator.journey.scores import crossing_text

EdgeCounts = Mapping[tuple[str, str], int]


def _esc(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _node(sid: str) -> str:
    return f"s_{sid}"


def _cond_text(conds: list[Any]) -> str:
    parts = []
    for c in conds:
        data = c.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        if "field" in data:
            field = data.pop("field")
            parts.append(" ".join([field] + [f"{op} {json.dumps(v)}" for op, v in data.items()]))
        else:
            parts.append(json.dumps(data, separators=(",", ":")))
    return " and ".join(parts)


def _window_text(window: m.Window | str) -> str:
    """``09:00-18:00`` or a calendar's name."""
    return window if isinstance(window, str) else f"{window.from_}-{window.to}"


def _fallback_text(entry: str | m.FallbackChannel) -> str:
    """``sms``, or ``email: cc_script_email`` for a fallback channel with its own template."""
    if isinstance(entry, str):
        return entry
    return f"{entry.channel}: {entry.template}" if entry.template else entry.channel


def _wait_label(step: m.WaitStep) -> str:
    """``wait for ccm.opened of first`` / ``until quiet for 10m (web.page_view)`` / ``timeout 24h``, a line each."""
    what = [f"{mt.event_type}{f' of {mt.send_step}' if mt.send_step else ''}" for mt in step.matchers]
    parts = [f"wait for {' or '.join(what)}"] if what else []
    if step.quiet_for is not None:
        parts.append(f"until quiet for {format_duration(step.quiet_for)} ({', '.join(step.activity)})")
    if step.timeout is not None:
        parts.append(f"timeout {format_duration(step.timeout)}")
    return "<br/>".join(parts)


def _send_label(step: m.SendStep) -> str:
    text = f"send {step.channel}: {step.template}<br/>{step.comm_type}, priority {step.priority}"
    if step.on_capped.action != "skip":
        extra = f" {'/'.join(_fallback_text(c) for c in step.on_capped.channels)}" if step.on_capped.channels else ""
        text += f"<br/>if capped: {step.on_capped.action}{extra}"
    if step.window is not None:
        text += f"<br/>window {_window_text(step.window)}"
    if step.expires_after is not None:
        text += f"<br/>expires after {format_duration(step.expires_after)}"
    return text


LABELS: dict[type[Any], Callable[[Any], str]] = {
    m.SendStep: _send_label,
    m.WaitStep: _wait_label,
    m.BranchStep: lambda step: "branch",
    m.SplitStep: lambda step: "split " + " / ".join(f"{v.name} {v.weight}" for v in step.variants),
    m.DelayStep: lambda step: f"delay {format_duration(step.duration)}",
    m.WindowStep: lambda step: f"window {_window_text(step.window)}",
    m.UpdateProfileStep: effects.update_profile_label,
    m.EmitStep: effects.emit_label,
    m.EndStep: lambda step: f"end: {step.outcome}",
}
"""One node label per step type (``journey.model.StepType``; a test checks that none is missing)."""


def _shape(sid: str, step: Any) -> str:
    text = _esc(f"{sid}<br/>{LABELS[type(step)](step)}").replace("#lt;br/#gt;", "<br/>")
    node = _node(sid)
    if isinstance(step, m.WaitStep):
        return f'{node}{{{{"{text}"}}}}'
    if isinstance(step, (m.BranchStep, m.SplitStep)):
        return f'{node}{{"{text}"}}'
    if isinstance(step, (m.DelayStep, m.WindowStep)):
        return f'{node}[/"{text}"/]'
    if isinstance(step, m.EndStep):
        return f'{node}(["{text}"])'
    return effects.shape(node, step, text) or f'{node}["{text}"]'


def _edge_label(label: str, count: int | None) -> str:
    if count is None:
        return f'|"{_esc(label)}"|' if label else ""
    return f'|"{_esc(label)}: {count}"|' if label else f'|"{count}"|'


def _start_label(journey: m.Journey) -> str:
    """The entry node: name and version, what enters (events, a score crossing), its conditions, competing journeys."""
    entry = " or ".join([*journey.entry.events, *filter(None, [crossing_text(journey.entry)])])
    cond = _cond_text(journey.entry.when + journey.entry.profile)
    label = f"{journey.name} (v{journey.version})<br/>on {entry}" + (f"<br/>if {cond}" if cond else "")
    if journey.entry.exclusive_with:
        label += f"<br/>not while in {', '.join(journey.entry.exclusive_with)}"
    return label


def render_mermaid(journey: m.Journey, counts: EdgeCounts | None = None) -> str:
    """The journey as a Mermaid ``flowchart TD``; with ``counts`` ((from, to) -> customers) on the edges."""
    lines = ["flowchart TD"]
    start_text = _esc(_start_label(journey)).replace("#lt;br/#gt;", "<br/>")
    lines.append(f'  start(("{start_text}"))')
    for sid, step in journey.steps.items():
        lines.append(f"  {_shape(sid, step)}")
    needs_end = False
    c = counts if counts is not None else None
    lines.append(f"  start -->{_edge_label('', c.get(('start', journey.start), 0) if c is not None else None)} {_node(journey.start)}")
    for sid, step in journey.steps.items():
        for _loc, target, label in m.edges(sid, step):
            if isinstance(step, m.SendStep) and label == "sent" and step.on_skip is None and step.on_expired is None:
                label = ""
            if target is None:
                needs_end = True
                dest = "finish"
            else:
                dest = _node(target)
            n = c.get((sid, target or "finish"), 0) if c is not None else None
            lines.append(f"  {_node(sid)} -->{_edge_label(label, n)} {dest}")
    if needs_end:
        lines.append('  finish(["end"])')
    for kind, rules in (("goal", journey.goals), ("exit", journey.exits)):
        if not rules:
            continue
        text = "<br/>".join(_esc(f"{kind}: {r.name or r.event} ({r.event})") for r in rules)
        shape = f'((("{text}")))' if kind == "goal" else f'>"{text}"]'
        lines.append(f"  {kind}{shape}")
        if c is not None:
            for (src, dst), n in sorted(c.items()):
                if dst == kind and n:
                    origin = "start" if src == "start" else _node(src)
                    lines.append(f'  {origin} -.->|"{n}"| {kind}')
    return "\n".join(lines) + "\n"


def count_edges(items: Iterable[Mapping[str, Any]], journey_id: str) -> Counter[tuple[str, str]]:
    """Distinct customers per edge of one journey, from trace-like dicts.

    Each item needs ``customer``, ``journey``, ``what``, ``step_id``, ``edge`` and, for
    exits, ``outcome`` (the shape of ``simulate --json`` lines).
    """
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in items:
        if t.get("journey") != journey_id:
            continue
        what, step, edge, cid = t.get("what"), t.get("step_id"), t.get("edge"), str(t.get("customer"))
        if what == "entered" and edge:
            seen[("start", edge)].add(cid)
        elif what == "goal":
            seen[(step or "start", "goal")].add(cid)
        elif what == "exited" and str(t.get("outcome", "")).startswith("exit:"):
            seen[(step or "start", "exit")].add(cid)
        elif (
            what in ("branch", "split", "matched", "timeout", "quiet", "resumed", "send", "profile_updated", "emitted")
            and step
            and edge != step
        ):
            seen[(step, edge or "finish")].add(cid)
    return Counter({k: len(v) for k, v in seen.items()})


def counts_from_json_lines(lines: Iterable[str], journey_id: str) -> Counter[tuple[str, str]]:
    """Edge counts from the output of ``simulate --json``."""
    items = []
    for line in lines:
        line = line.strip()
        if line:
            items.append(json.loads(line))
    return count_edges(items, journey_id)

"""A journey map as a layered layout, drawn as SVG on the server.

:func:`journey_graph` takes the steps and their next-step edges from the journey file's model
(``journey.model.edges``, the same edges ``orchestrator render`` draws), plus an entry node
``start``, an ``finish`` node when a path ends without an end step, and ``goal`` / ``exit``
nodes when the journey declares goals or exit rules (their edges are drawn where counted).
:func:`observed_graph` builds one from counted edges only, for a version whose file is gone.

:func:`layout` places the nodes in layers (longest path from ``start`` over the graph without
its back edges, so a loop does not stretch the map), orders each layer by the mean position of
its predecessors (one barycenter pass), and :func:`svg` draws it: a box per step with its id,
what it does and ``now N`` (customers there now), an arrow per edge with its label and count.
Every number has a stable ``id`` (``now-<step>``, ``edge-<from>--<to>``) so the page's script
can refresh it and a test can read it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from itertools import pairwise

from orchestrator.journey import model as m

NODE_W, NODE_H = 200, 64
GAP_X, GAP_Y = 48, 84
MARGIN = 24


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    """The step type (``send``, ``wait`` ...), or ``start`` / ``finish`` / ``goal`` / ``exit``."""
    label: str


@dataclass(frozen=True)
class GraphEdge:
    src: str
    dst: str
    label: str


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[GraphEdge] = field(default_factory=list)

    def add_edge(self, src: str, dst: str, label: str) -> None:
        """One edge per (from, to): a second way between the same steps joins its label (the count is per pair)."""
        for i, e in enumerate(self.edges):
            if e.src == src and e.dst == dst:
                if label and label not in e.label.split(" / "):
                    self.edges[i] = GraphEdge(src, dst, f"{e.label} / {label}" if e.label else label)
                return
        self.edges.append(GraphEdge(src, dst, label))


def _step_label(step: object) -> str:
    if isinstance(step, m.SendStep):
        return f"send {step.channel}: {step.template}"
    if isinstance(step, m.WaitStep):
        what = [mt.event_type for mt in step.matchers]
        return "wait" + (f" for {' or '.join(what)}" if what else "")
    if isinstance(step, m.SplitStep):
        return "split " + " / ".join(f"{v.name} {v.weight}" for v in step.variants)
    if isinstance(step, m.EndStep):
        return f"end: {step.outcome}"
    return str(getattr(step, "type", type(step).__name__))


def journey_graph(journey: m.Journey, counted: Iterable[tuple[str, str]] = ()) -> Graph:
    """The journey's steps and edges; ``counted`` adds the goal/exit edges that were taken."""
    g = Graph()
    g.nodes["start"] = Node("start", "start", f"{journey.id} v{journey.version}")
    for sid, step in journey.steps.items():
        g.nodes[sid] = Node(sid, str(getattr(step, "type", "step")), _step_label(step))
    g.add_edge("start", journey.start, "entered")
    for sid, step in journey.steps.items():
        for _loc, target, label in m.edges(sid, step):
            if target is None:
                g.nodes.setdefault("finish", Node("finish", "finish", "end"))
            g.add_edge(sid, target or "finish", label)
    for kind, rules in (("goal", journey.goals), ("exit", journey.exits)):
        if rules:
            g.nodes[kind] = Node(kind, kind, f"{kind}: " + ", ".join(r.name or r.event for r in rules))
    for src, dst in counted:
        if dst in ("goal", "exit") and src in g.nodes:
            g.nodes.setdefault(dst, Node(dst, dst, dst))
            g.add_edge(src, dst, dst)
    return g


def observed_graph(journey_id: str, version: int, counted: Iterable[tuple[str, str]]) -> Graph:
    """A graph of the counted edges only (the journey file of this version is not loaded)."""
    g = Graph()
    g.nodes["start"] = Node("start", "start", f"{journey_id} v{version}")
    for src, dst in sorted(counted):
        for nid in (src, dst):
            if nid not in g.nodes:
                kind = nid if nid in ("finish", "goal", "exit") else "step"
                g.nodes[nid] = Node(nid, kind, "end" if nid == "finish" else kind)
        g.add_edge(src, dst, "")
    return g


@dataclass(frozen=True)
class Placed:
    node: Node
    x: float
    y: float
    layer: int


def _back_edges(g: Graph) -> set[tuple[str, str]]:
    """The edges that close a loop, found by a depth-first walk from ``start`` (iterative: no recursion limit)."""
    succ: dict[str, list[str]] = defaultdict(list)
    for e in g.edges:
        succ[e.src].append(e.dst)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    for root in ["start", *g.nodes]:
        if root not in g.nodes or root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return back


def _layers(g: Graph) -> dict[str, int]:
    """Each node's layer: the longest path to it from ``start`` over the edges without the back edges."""
    back = _back_edges(g)  # (computed again by layout(): cheap, and keeps each function small)
    layer = dict.fromkeys(g.nodes, 0)
    forward = [(e.src, e.dst) for e in g.edges if (e.src, e.dst) not in back and e.src != e.dst and e.dst in layer]
    for _ in range(len(g.nodes)):  # at most |V| rounds on a DAG
        changed = False
        for src, dst in forward:
            if layer[dst] < layer[src] + 1:
                layer[dst] = layer[src] + 1
                changed = True
        if not changed:
            break
    bottom = max((d for nid, d in layer.items() if nid not in ("goal", "exit")), default=0)
    for nid in ("goal", "exit"):  # the outcomes at the bottom, beside the end of the paths
        if nid in layer:
            layer[nid] = max(layer[nid], bottom)
    return layer


DUMMY_W = 24
"""The width of the slot a long edge takes in each layer it passes (so it goes around the boxes there)."""


@dataclass(frozen=True)
class Layout:
    placed: list[Placed]
    width: float
    height: float
    waypoints: dict[tuple[str, str], list[tuple[float, float]]]
    """A forward edge spanning several layers -> the centre of its slot in each layer between (top to bottom)."""


def _order_rows(
    g: Graph, layer: Mapping[str, int], back: set[tuple[str, str]]
) -> tuple[dict[int, list[str]], dict[tuple[str, str], list[str]]]:
    """The nodes per layer, with a dummy slot per layer a long forward edge passes, ordered by one barycenter pass."""
    rows: dict[int, list[str]] = defaultdict(list)
    for nid in g.nodes:  # the journey file's order first
        rows[layer[nid]].append(nid)
    pred: dict[str, list[str]] = defaultdict(list)
    chains: dict[tuple[str, str], list[str]] = {}
    for e in g.edges:
        lo, hi = layer[e.src], layer[e.dst]
        if (e.src, e.dst) in back or hi <= lo:
            continue
        chain = [f"~{e.src}~{e.dst}~{d}" for d in range(lo + 1, hi)]
        for d, dummy in zip(range(lo + 1, hi), chain, strict=True):
            rows[d].append(dummy)
        if chain:
            chains[(e.src, e.dst)] = chain
        path = [e.src, *chain, e.dst]
        for a, b in pairwise(path):
            pred[b].append(a)
    pos: dict[str, float] = {}
    for depth in sorted(rows):
        row = rows[depth]
        order = {nid: i for i, nid in enumerate(row)}

        def key(nid: str, order: Mapping[str, int] = order) -> tuple[float, int]:
            above = [pos[p] for p in pred[nid] if p in pos]
            return (sum(above) / len(above) if above else float(order[nid]), order[nid])

        row.sort(key=key)
        for i, nid in enumerate(row):
            pos[nid] = float(i)
    return rows, chains


def layout(g: Graph) -> Layout:
    """The nodes placed in layers, the drawing's size, and the waypoints of the long edges."""
    back = _back_edges(g)
    layer = _layers(g)
    rows, chains = _order_rows(g, layer, back)

    def span(row: list[str]) -> float:
        return sum(NODE_W if nid in g.nodes else DUMMY_W for nid in row) + (len(row) - 1) * GAP_X

    width = MARGIN * 2 + max((span(r) for r in rows.values()), default=NODE_W) + 80  # room for loops on the right
    placed: list[Placed] = []
    slots: dict[str, tuple[float, float]] = {}
    for depth, row in sorted(rows.items()):
        x = (width - 80 - span(row)) / 2
        y = MARGIN + depth * (NODE_H + GAP_Y)
        for nid in row:
            if nid in g.nodes:
                placed.append(Placed(g.nodes[nid], x, y, depth))
                x += NODE_W + GAP_X
            else:
                slots[nid] = (x + DUMMY_W / 2, y)
                x += DUMMY_W + GAP_X
    height = MARGIN * 2 + (max(rows, default=0) + 1) * NODE_H + max(rows, default=0) * GAP_Y + 20
    waypoints = {edge: [slots[d] for d in chain] for edge, chain in chains.items()}
    return Layout(placed, width, height, waypoints)


def edge_id(src: str, dst: str) -> str:
    return f"edge-{src}--{dst}"


def now_id(step: str) -> str:
    return f"now-{step}"


_FILL = {
    "start": "#e8f0fe",
    "send": "#fff4e5",
    "wait": "#eef7ee",
    "split": "#f3e8fd",
    "branch": "#f3e8fd",
    "end": "#eeeeee",
    "finish": "#eeeeee",
    "goal": "#e3f6e8",
    "exit": "#fdecea",
}


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def svg(g: Graph, now: Mapping[str, int], counts: Mapping[tuple[str, str], int]) -> str:
    """The map as an ``<svg>`` element: ``now`` customers per step, ``counts`` per edge."""
    lay = layout(g)
    placed, width, height = lay.placed, lay.width, lay.height
    at = {p.node.id: p for p in placed}
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="journey-map" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="journey map">'
        ),
        (
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
            '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>'
        ),
    ]
    for e in g.edges:
        a, b = at.get(e.src), at.get(e.dst)
        if a is None or b is None:
            continue
        out.append(_edge_svg(e, a, b, counts.get((e.src, e.dst), 0), lay.waypoints.get((e.src, e.dst), [])))
    for p in placed:
        out.append(_node_svg(p, now))
    out.append("</svg>")
    return "\n".join(out)


def _down(x1: float, y1: float, x2: float, y2: float) -> str:
    """A smooth curve down from (x1, y1) to (x2, y2), leaving and arriving vertically."""
    mid = (y1 + y2) / 2
    return f" C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}"


def _edge_svg(e: GraphEdge, a: Placed, b: Placed, count: int, via: list[tuple[float, float]]) -> str:
    x1, y1 = a.x + NODE_W / 2, a.y + NODE_H
    x2, y2 = b.x + NODE_W / 2, b.y
    dashed = ' stroke-dasharray="5 4"' if e.dst in ("goal", "exit") else ""
    if b.layer <= a.layer:  # a loop back up (or sideways): around the right of the source
        x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
        x2, y2 = b.x + NODE_W, b.y + NODE_H / 2
        bend = max(x1, x2) + 60
        path = f"M{x1:.0f},{y1:.0f} C{bend:.0f},{y1:.0f} {bend:.0f},{y2:.0f} {x2 + 2:.0f},{y2:.0f}"
        lx, ly = bend - 4, (y1 + y2) / 2
    elif via:  # through its slot in each layer between: around the boxes there
        path = f"M{x1:.0f},{y1:.0f}"
        x, y = x1, y1
        for vx, vy in via:
            path += _down(x, y, vx, vy) + f" L{vx:.0f},{vy + NODE_H:.0f}"
            x, y = vx, vy + NODE_H
        path += _down(x, y, x2, y2 - 2)
        lx, ly = via[0][0], via[0][1] + NODE_H / 2
    else:
        path = f"M{x1:.0f},{y1:.0f}" + _down(x1, y1, x2, y2 - 2)
        lx, ly = x1 + (x2 - x1) * 0.6, y1 + (y2 - y1) * 0.6  # nearer the target: labels of a fan-out apart
    label = escape(_short(e.label, 28))
    eid = escape(edge_id(e.src, e.dst))
    return (
        f'<g class="edge" data-from="{escape(e.src)}" data-to="{escape(e.dst)}">'
        f'<path d="{path}" fill="none" stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"{dashed}/>'
        f'<text x="{lx + 6:.0f}" y="{ly - 3:.0f}" class="edge-label">{label}</text>'
        f'<text x="{lx + 6:.0f}" y="{ly + 12:.0f}" class="edge-count" id="{eid}">{count}</text></g>'
    )


def _node_svg(p: Placed, now: Mapping[str, int]) -> str:
    n = p.node
    fill = _FILL.get(n.kind, "#ffffff")
    rx = 28 if n.kind in ("start", "finish", "goal", "exit", "end") else 6
    cx = p.x + NODE_W / 2
    lines = [
        f'<g class="node" data-step="{escape(n.id)}" data-kind="{escape(n.kind)}">',
        f'<rect x="{p.x:.0f}" y="{p.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="{rx}" fill="{fill}" stroke="#333"/>',
        f'<text x="{cx:.0f}" y="{p.y + 18:.0f}" text-anchor="middle" class="node-id">{escape(_short(n.id, 26))}</text>',
        f'<text x="{cx:.0f}" y="{p.y + 35:.0f}" text-anchor="middle" class="node-label">{escape(_short(n.label))}</text>',
    ]
    if n.kind not in ("start", "finish", "goal", "exit"):
        nid = escape(now_id(n.id))
        lines.append(
            f'<text x="{cx:.0f}" y="{p.y + 54:.0f}" text-anchor="middle" class="node-now">now '
            f'<tspan id="{nid}" class="now">{now.get(n.id, 0)}</tspan></text>'
        )
    lines.append("</g>")
    return "".join(lines)


__all__ = ["Graph", "GraphEdge", "Layout", "Node", "Placed", "edge_id", "journey_graph", "layout", "now_id", "observed_graph", "svg"]

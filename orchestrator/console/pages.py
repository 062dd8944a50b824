"""The console's pages (server-rendered HTML) and the numbers their script refreshes.

Each page is built from a :class:`Numbers` document: element id -> value. The page puts each
value in the element with that id; ``/api/<page>`` returns the same document as JSON and the
page's script (``/console.js``) writes the values into the elements every few seconds. So the
numbers a page shows and the numbers its endpoint returns are made by one function, and a test
finds any number by its id (``v-entered``, ``now-<step>``, ``edge-<from>--<to>``,
``send-<step>-<result>``, ``split-<step>-<variant>-<what>``, ``home-<journey>-<version>-<what>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from html import escape
from urllib.parse import quote

from pydantic import BaseModel

from orchestrator.actions import DispositionResult
from orchestrator.console.layout import edge_id, journey_graph, now_id, observed_graph, svg
from orchestrator.console.state import ConsoleState, VersionStats
from orchestrator.designer.report_build import _uplift  # the report's own uplift and verdict, on the console's counts
from orchestrator.designer.report_model import MIN_N, Interval, VariantRow
from orchestrator.designer.report_stats import sample_ratio_p, wilson_interval
from orchestrator.journey import model as m
from orchestrator.timeutil import iso_utc

RESULTS: tuple[DispositionResult, ...] = ("approved", "capped", "suppressed", "deferred", "fallback", "cancelled", "expired")
"""The decisions' ``result`` values, in the order the send table shows them."""

Value = int | float | str


class Numbers(BaseModel):
    """What ``/api/<page>`` returns: the page's numbers by element id, and how far the console has read."""

    values: dict[str, Value]
    status: str
    caught_up: bool
    records: dict[str, int]


def _status(state: ConsoleState) -> tuple[str, bool]:
    caught = state.caught_up()
    read = ", ".join(f"{n} {topic}" for topic, n in state.records_read().items()) or "nothing yet"
    text = f"read {read}; " + ("live" if caught else "catching up with the topics")
    if state.read_problem:
        text += f"; Kafka: {state.read_problem}"
    return text, caught


def numbers(state: ConsoleState, values: Mapping[str, Value]) -> Numbers:
    status, caught = _status(state)
    return Numbers(values=dict(values), status=status, caught_up=caught, records=state.records_read())


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def _interval(iv: Interval | None) -> str:
    return "–" if iv is None else f"{iv.low * 100:.1f} – {iv.high * 100:.1f} %"


def _num(values: Mapping[str, Value], eid: str) -> str:
    return f'<span class="num" id="{escape(eid)}">{escape(str(values.get(eid, "")))}</span>'


# ------------------------------------------------------------------ the frame

NAV = (("/", "Journeys"), ("/campaigns", "Campaigns"), ("/customer", "Customer"), ("/dead-letters", "Dead letters & lag"))

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f2937;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center}
header a{color:#cbd5e1;text-decoration:none}header a.on{color:#fff;font-weight:600}
main{padding:12px 16px}h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f1f5f9}td.l,th.l{text-align:left}.num{font-variant-numeric:tabular-nums}
#status{color:#555;font-size:12px;margin-left:auto}.cards{display:flex;gap:10px;margin:8px 0}
.card{background:#fff;border:1px solid #ddd;padding:6px 12px}.card b{display:block;font-size:20px}
svg text{font:12px system-ui,sans-serif}.node-id{font-weight:600}.node-now{fill:#0b5394;font-weight:600}
.edge-count{fill:#b45309;font-weight:600}.edge-label{fill:#555}pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto}
.note{color:#666}.map{overflow:auto;background:#fff;border:1px solid #ddd;display:inline-block;max-width:100%}
"""


def page(title: str, body: str, api: str | None, state: ConsoleState, here: str) -> str:
    """A whole page: the navigation, the read status, ``body``; ``api``: the numbers endpoint the script polls."""
    status, _ = _status(state)
    nav = "".join(f'<a href="{href}"{" class=on" if href == here else ""}>{escape(text)}</a>' for href, text in NAV)
    data = f' data-numbers="{escape(api)}"' if api else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · journey console</title><style>{CSS}</style></head>"
        f"<body{data}><header><b>journey console</b>{nav}"
        f'<span id="status">{escape(status)}</span></header><main><h1>{escape(title)}</h1>{body}</main>'
        '<script src="/console.js"></script></body></html>'
    )


SCRIPT = """(function () {
  var src = document.body.getAttribute("data-numbers");
  if (!src) return;
  function tick() {
    fetch(src, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (!r.ok) return null;
      return r.json();
    }).then(function (d) {
      if (!d) return;
      var missing = false;
      Object.keys(d.values).forEach(function (id) {
        var el = document.getElementById(id);
        if (!el) { missing = true; return; }
        var text = String(d.values[id]);
        if (el.textContent !== text) el.textContent = text;
      });
      var s = document.getElementById("status");
      if (s) s.textContent = d.status;
      // something new (a journey version, a step, a run): draw the page again, at most every 30 s
      var last = Number(sessionStorage.getItem("console-reload") || 0);
      if (missing && Date.now() - last > 30000) {
        sessionStorage.setItem("console-reload", String(Date.now()));
        location.reload();
      }
    }).catch(function () {});
  }
  setInterval(tick, 3000);
  tick();
})();
"""


# ------------------------------------------------------------------ home


def _home_id(journey_id: str, version: int, what: str) -> str:
    return f"home-{journey_id}-{version}-{what}"


def home_numbers(state: ConsoleState) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for jid, ver in state.version_keys():
        vs = state.versions.get((jid, ver)) or VersionStats()
        out[_home_id(jid, ver, "entered")] = vs.entered
        out[_home_id(jid, ver, "live")] = vs.live
        out[_home_id(jid, ver, "converted")] = vs.converted
        out[_home_id(jid, ver, "rate")] = _pct(vs.converted / vs.entered if vs.entered else None)
    return out


def _version_status(state: ConsoleState, jid: str, ver: int) -> str:
    if state.journeys is None:
        return "?"
    j = state.journeys.get(jid, ver)
    if j is None:
        return "not loaded"
    newest = state.journeys.newest(jid)
    return "live (new entrants)" if newest is not None and newest.version == ver else str(j.journey.status)


def home_page(state: ConsoleState) -> str:
    values = home_numbers(state)
    rows = []
    for jid, ver in state.version_keys():
        link = f"/journey/{quote(jid)}/{ver}"
        cells = "".join(f"<td>{_num(values, _home_id(jid, ver, w))}</td>" for w in ("entered", "live", "converted", "rate"))
        rows.append(
            f'<tr><td class="l"><a href="{escape(link)}">{escape(jid)}</a></td><td>v{ver}</td>'
            f'<td class="l">{escape(_version_status(state, jid, ver))}</td>{cells}</tr>'
        )
    note = f'<p class="note">journey files: {escape(state.journeys_problem)}</p>' if state.journeys_problem else ""
    body = (
        '<table id="journeys"><tr><th class="l">journey</th><th>version</th><th class="l">status</th><th>entered</th>'
        "<th>now in journey</th><th>converted</th><th>conversion</th></tr>"
        + "".join(rows)
        + "</table>"
        + note
        + '<p class="note">Counted from the journey log since each version was deployed (as far back as the topic keeps '
        "records): entered = instances started, now in journey = entered and not ended, converted = ended with a goal.</p>"
    )
    return page("Journeys", body, "/api/home", state, "/")


# ------------------------------------------------------------------ a journey version


def _send_steps(journey: m.Journey | None, vs: VersionStats) -> list[str]:
    steps = [sid for sid, s in journey.steps.items() if isinstance(s, m.SendStep)] if journey is not None else []
    return steps + sorted(s for s in vs.sends if s not in steps)


def _split_rows(journey: m.Journey | None, vs: VersionStats, step: str) -> list[VariantRow]:
    declared: list[tuple[str, int]] = []
    if journey is not None and isinstance(journey.steps.get(step), m.SplitStep):
        split = journey.steps[step]
        assert isinstance(split, m.SplitStep)
        declared = [(v.name, v.weight) for v in split.variants]
    counts = vs.splits.get(step, {})
    names = [n for n, _ in declared] + sorted(v for v in counts if v not in dict(declared))
    rows = []
    for name in names:
        c = counts.get(name)
        n, x = (c.entered, c.converted) if c is not None else (0, 0)
        rows.append(
            VariantRow(
                variant=name,
                entered=n,
                customers=n,
                converted=x,
                open=0,
                rate=x / n if n else None,
                interval=Interval.of(wilson_interval(x, n)),
                n_too_small=n < MIN_N,
                sends={},
                weight=dict(declared).get(name),
            )
        )
    base = next((r for r in rows if r.entered), rows[0] if rows else None)
    for row in rows:
        if base is not None and row is not base and row.entered and base.entered:
            row.uplift = _uplift(row, base)
    return rows


def _split_steps(journey: m.Journey | None, vs: VersionStats) -> list[str]:
    steps = [sid for sid, s in journey.steps.items() if isinstance(s, m.SplitStep)] if journey is not None else []
    return steps + sorted(s for s in vs.splits if s not in steps)


def _split_id(step: str, variant: str, what: str) -> str:
    return f"split-{step}-{variant}-{what}"


def journey_numbers(state: ConsoleState, jid: str, ver: int) -> dict[str, Value]:
    vs = state.versions.get((jid, ver)) or VersionStats()
    compiled = state.journeys.get(jid, ver) if state.journeys is not None else None
    journey = compiled.journey if compiled is not None else None
    out: dict[str, Value] = {
        "v-entered": vs.entered,
        "v-live": vs.live,
        "v-converted": vs.converted,
        "v-ended": vs.ended,
        "v-not-entered": vs.not_entered,
        "v-rate": _pct(vs.converted / vs.entered if vs.entered else None),
    }
    now = state.now_at(jid, ver)
    steps = list(journey.steps) if journey is not None else sorted({s for e in vs.edges for s in e} | set(now))
    for sid in steps:
        out[now_id(sid)] = now.get(sid, 0)
    graph = journey_graph(journey, vs.edges) if journey is not None else observed_graph(jid, ver, vs.edges)
    for e in graph.edges:
        out[edge_id(e.src, e.dst)] = vs.edges.get((e.src, e.dst), 0)
    for sid in _send_steps(journey, vs):
        results: Mapping[str, int] = vs.sends.get(sid, {})
        out[f"send-{sid}-total"] = sum(results.values())
        for result in RESULTS:
            out[f"send-{sid}-{result}"] = results.get(result, 0)
    for sid in _split_steps(journey, vs):
        for row in _split_rows(journey, vs, sid):
            out[_split_id(sid, row.variant, "entered")] = row.entered
            out[_split_id(sid, row.variant, "converted")] = row.converted
            out[_split_id(sid, row.variant, "rate")] = _pct(row.rate)
            out[_split_id(sid, row.variant, "interval")] = _interval(row.interval)
            up = row.uplift
            out[_split_id(sid, row.variant, "uplift")] = (
                "baseline"
                if up is None
                else f"{_pct(up.relative)} (Δ {up.difference * 100:+.1f} pp, {_interval(up.difference_interval)}): {up.verdict}"
            )
    return out


def journey_page(state: ConsoleState, jid: str, ver: int) -> str | None:
    """The page of one journey version, or None when the version is neither loaded nor seen."""
    if (jid, ver) not in state.version_keys():
        return None
    vs = state.versions.get((jid, ver)) or VersionStats()
    compiled = state.journeys.get(jid, ver) if state.journeys is not None else None
    journey = compiled.journey if compiled is not None else None
    values = journey_numbers(state, jid, ver)
    cards = "".join(
        f'<div class="card">{escape(label)}<b>{_num(values, eid)}</b></div>'
        for eid, label in (
            ("v-entered", "entered"),
            ("v-live", "now in journey"),
            ("v-converted", "converted"),
            ("v-rate", "conversion"),
            ("v-ended", "ended otherwise"),
            ("v-not-entered", "did not enter"),
        )
    )
    graph = journey_graph(journey, vs.edges) if journey is not None else observed_graph(jid, ver, vs.edges)
    counts = {(e.src, e.dst): int(values.get(edge_id(e.src, e.dst), 0)) for e in graph.edges}
    now = {k[4:]: int(v) for k, v in values.items() if k.startswith("now-") and isinstance(v, int)}
    missing = (
        "" if journey is not None else '<p class="note">The journey file of this version is not loaded: the map shows the edges taken.</p>'
    )
    body = (
        f'<div class="cards">{cards}</div>{missing}<div class="map">{svg(graph, now, counts)}</div>'
        + _sends_table(journey, vs, values)
        + _splits_table(journey, vs, values)
        + '<p class="note">On the map: <b>now N</b> = customers at that step now; on each edge the times it was taken since this '
        "version was deployed (from the journey log). Sends: the basket's decisions on each send step, by what the journey "
        "made of them (the decisions topic).</p>"
    )
    api = f"/api/journey/{quote(jid)}/{ver}"
    return page(f"{jid} v{ver}", body, api, state, "/")


def _sends_table(journey: m.Journey | None, vs: VersionStats, values: Mapping[str, Value]) -> str:
    steps = _send_steps(journey, vs)
    if not steps:
        return ""
    head = "".join(f"<th>{r}</th>" for r in RESULTS)
    rows = "".join(
        f'<tr data-step="{escape(sid)}"><td class="l">{escape(sid)}</td><td>{_num(values, f"send-{sid}-total")}</td>'
        + "".join(f"<td>{_num(values, f'send-{sid}-{r}')}</td>" for r in RESULTS)
        + "</tr>"
        for sid in steps
    )
    return f'<h2>Send steps</h2><table id="sends"><tr><th class="l">step</th><th>sends</th>{head}</tr>{rows}</table>'


def _splits_table(journey: m.Journey | None, vs: VersionStats, values: Mapping[str, Value]) -> str:
    parts = []
    for sid in _split_steps(journey, vs):
        rows = _split_rows(journey, vs, sid)
        srm = ""
        weighted = [r for r in rows if r.weight is not None]
        p = sample_ratio_p([r.entered for r in weighted], [r.weight or 0 for r in weighted]) if weighted else None
        if p is not None:
            srm = (
                f'<p class="note">assignment check against the weights: p = {p:.3g}'
                + (" — sample ratio mismatch" if p < 0.001 else "")
                + "</p>"
            )
        body = "".join(
            f'<tr><td class="l">{escape(r.variant)}</td><td>{r.weight if r.weight is not None else "–"}</td>'
            + "".join(
                f'<td class="{"l" if w == "uplift" else ""}">{_num(values, _split_id(sid, r.variant, w))}</td>'
                for w in ("entered", "converted", "rate", "interval", "uplift")
            )
            + "</tr>"
            for r in rows
        )
        parts.append(
            f"<h2>Split {escape(sid)}</h2><table><tr><th class=l>variant</th><th>weight</th><th>entered</th><th>converted</th>"
            f'<th>conversion</th><th>95 % interval</th><th class="l">uplift vs {escape(rows[0].variant if rows else "-")}</th></tr>'
            f"{body}</table>{srm}"
        )
    if not parts:
        return ""
    return "".join(parts) + (
        f'<p class="note">Conversion per variant with a 95 % Wilson interval; uplift against the first variant declared, '
        f"with the Newcombe interval of the difference that decides the verdict (as <code>orchestrator report</code>); rows "
        f"under {MIN_N} instances get no verdict.</p>"
    )


# ------------------------------------------------------------------ campaigns


def campaign_numbers(state: ConsoleState) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for (jid, run), c in sorted(state.campaigns.items()):
        base = f"run-{jid}-{run}"
        customers = c.total("customers")
        settled = customers - c.total("pending")
        out[f"{base}-progress"] = _pct(settled / customers if customers else None) + (" (complete)" if c.complete else "")
        out[f"{base}-customers"] = customers
        out[f"{base}-audience"] = c.total("audience")
        out[f"{base}-entered"] = c.entered
        out[f"{base}-answers"] = ", ".join(f"{k} {n}" for k, n in sorted(c.decisions.items())) or "–"
    return out


def campaigns_page(state: ConsoleState) -> str:
    values = campaign_numbers(state)
    rows = []
    for (jid, run), c in sorted(state.campaigns.items()):
        base = f"run-{jid}-{run}"
        versions = ", ".join(f"v{v}" for v in sorted(c.versions))
        cells = "".join(
            f'<td class="{"l" if w == "answers" else ""}">{_num(values, f"{base}-{w}")}</td>'
            for w in ("progress", "customers", "audience", "entered", "answers")
        )
        rows.append(
            f'<tr><td class="l">{escape(jid)}</td><td class="l">{escape(run)}</td><td>{escape(versions)}</td>'
            f"<td>{len(c.progress)}</td>{cells}</tr>"
        )
    table = (
        '<table id="campaigns"><tr><th class="l">journey</th><th class="l">run</th><th>version</th><th>partitions</th>'
        '<th>progress</th><th>customers</th><th>audience</th><th>entered</th><th class="l">basket answers</th></tr>'
        + "".join(rows)
        + "</table>"
        if rows
        else "<p>No campaign run in the journey log yet.</p>"
    )
    body = table + (
        '<p class="note">From the campaign_progress records of the journey log (the newest per partition): customers passed, '
        "audience qualified, progress = customers settled / customers; entered = instances the run started; basket answers = "
        "the decisions on the run's sends, by result.</p>"
    )
    return page("Campaigns", body, "/api/campaigns", state, "/campaigns")


# ------------------------------------------------------------------ customer lookup


def customer_page(state: ConsoleState, customer: str | None, story: str | None, problem: str | None) -> str:
    value = escape(customer or "")
    form = (
        '<form method="get" action="/customer"><label>customer id <input name="id" id="customer-id" '
        f'value="{value}" autocomplete="off" size="40"></label> <button type="submit">explain</button></form>'
    )
    out = form
    if problem:
        out += f'<p id="problem">{escape(problem)}</p>'
    if story is not None:
        out += f'<pre id="story">{escape(story)}</pre>'
    out += (
        '<p class="note">The story as <code>orchestrator explain</code> tells it: only this customer\'s partition of the journey '
        "log, the decisions, customer-events, the inbound topics and the dead letters, read when you ask.</p>"
    )
    return page("Customer", out, None, state, "/customer")


# ------------------------------------------------------------------ dead letters and lag


def dead_letter_numbers(state: ConsoleState) -> dict[str, Value]:
    out: dict[str, Value] = {f"dlq-{code}": n for code, n in sorted(state.dead_letter_codes.items())}
    for row in state.lag:
        base = f"lag-{row.topic}-{row.partition}"
        out[f"{base}-records"] = row.lag
        out[f"{base}-seconds"] = "–" if row.seconds is None else f"{row.seconds:.1f}"
        out[f"{base}-end"] = row.end
        out[f"{base}-committed"] = "–" if row.committed is None else row.committed
    out["lag-at"] = iso_utc(state.lag_at) if state.lag_at else "–"
    out["lag-problem"] = state.lag_problem or ""
    return out


def _hours_table(state: ConsoleState) -> str:
    if not state.dead_letters:
        return "<p>No dead letters.</p>"
    rows = []
    for hour in sorted(state.dead_letters, reverse=True):
        for (code, reason), n in sorted(state.dead_letters[hour].items()):
            rows.append(
                f'<tr><td class="l">{hour.astimezone(UTC):%Y-%m-%d %H}:00Z</td><td class="l">{escape(code)}</td>'
                f'<td class="l">{escape(reason)}</td><td>{n}</td></tr>'
            )
    return (
        '<table id="dead-letter-hours"><tr><th class="l">hour</th><th class="l">code</th><th class="l">reason</th><th>n</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def dead_letters_page(state: ConsoleState) -> str:
    values = dead_letter_numbers(state)
    codes = "".join(
        f'<tr><td class="l">{escape(code)}</td><td>{_num(values, f"dlq-{code}")}</td></tr>' for code in sorted(state.dead_letter_codes)
    )
    lag_rows = "".join(
        f'<tr><td class="l">{escape(r.topic)}</td><td>{r.partition}</td>'
        + "".join(f"<td>{_num(values, f'lag-{r.topic}-{r.partition}-{w}')}</td>" for w in ("committed", "end", "records", "seconds"))
        + "</tr>"
        for r in state.lag
    )
    body = (
        "<h2>Dead letters by code</h2>"
        + (f'<table id="dead-letter-codes"><tr><th class="l">code</th><th>n</th></tr>{codes}</table>' if codes else "")
        + "<h2>Per hour (when dead-lettered), by code and reason</h2>"
        + _hours_table(state)
        + f"<h2>Consumer lag</h2><p>group {escape(state.group_state or '?')}, read at {_num(values, 'lag-at')} "
        f'<span class="note">{_num(values, "lag-problem")}</span></p>'
        + '<table id="lag"><tr><th class="l">topic</th><th>partition</th><th>committed</th><th>end</th><th>lag (records)</th>'
        f"<th>lag (s)</th></tr>{lag_rows}</table>"
        + '<p class="note">Lag as <code>orchestrator lag</code> reads it (the group\'s committed offsets against the end '
        "offsets of the inbound topics and customer-events); seconds from the end-offset history (as the worker's "
        "orchestrator_consumer_lag_seconds).</p>"
    )
    return page("Dead letters & lag", body, "/api/dead-letters", state, "/dead-letters")


def not_found_page(state: ConsoleState, what: str) -> str:
    return page("Not found", f"<p>{escape(what)}</p>", None, state, "")


__all__ = [
    "RESULTS",
    "SCRIPT",
    "Numbers",
    "campaign_numbers",
    "campaigns_page",
    "customer_page",
    "dead_letter_numbers",
    "dead_letters_page",
    "home_numbers",
    "home_page",
    "journey_numbers",
    "journey_page",
    "not_found_page",
    "numbers",
    "page",
]

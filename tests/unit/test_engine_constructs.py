"""The pure engine: branches, splits, delays, windows, multi-event waits, time conditions, profile."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from orchestrator.actions import ArmTimer, Send, Trace
from orchestrator.dev.drive import drive
from orchestrator.engine import choose_variant, fold_profile
from orchestrator.events import CustomerEvent, TimerFired
from orchestrator.journey.loader import load_text
from orchestrator.state import CustomerState

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # Monday 10:00 UTC


def ev(eid, etype, at=T0, cid="c1", **data):
    return CustomerEvent(event_id=eid, customer_id=cid, type=etype, occurred_at=at, data=data)


def sends(actions):
    return [a for a in actions if isinstance(a, Send)]


def traces(actions, what):
    return [a for a in actions if isinstance(a, Trace) and a.what == what]


def fire(state, arm, js):
    return drive(state, TimerFired(customer_id=state.customer_id, timer_id=arm.timer_id, due_at=arm.due_at), js, arm.due_at)


def arms(actions):
    return [a for a in actions if isinstance(a, ArmTimer)]


SENTIMENT = """
id: sentiment
version: 1
name: Sentiment
entry: {event: callcenter.call_completed}
start: route
steps:
  route:
    type: branch
    cases:
      - {name: negative, when: [{field: data.sentiment, eq: negative}], next: sorry}
      - {name: positive, when: [{any: [{field: data.sentiment, eq: positive}, {field: data.sentiment_score, gte: 0.5}]}], next: yay}
    default: done
  sorry: {type: send, channel: direct_mail, template: conciliatory_letter, comm_type: service, variables: {tone: conciliatory}, next: done}
  yay: {type: send, channel: email, template: enthusiastic_note, comm_type: editorial, variables: {tone: enthusiastic}, next: done}
  done: {type: end}
"""


def test_branch_on_payload():
    js = load_text(SENTIMENT)
    for sentiment, score, expected, edge in [
        ("negative", -0.8, ["conciliatory_letter"], "sorry"),
        ("positive", 0.9, ["enthusiastic_note"], "yay"),
        ("neutral", 0.6, ["enthusiastic_note"], "yay"),
        ("neutral", 0.0, [], "done"),
    ]:
        _, acts = drive(CustomerState.new("c1"), ev("k1", "callcenter.call_completed", sentiment=sentiment, sentiment_score=score), js, T0)
        assert [s.template for s in sends(acts)] == expected
        (br,) = traces(acts, "branch")
        assert br.edge == edge and br.step_id == "route"


SPLIT = """
id: ab
version: 1
name: AB
entry: {{event: web.form_submitted, reentry: {{policy: always}}}}
start: pick
steps:
  pick:
    type: split
    variants:
      - {{name: A, weight: {a}, next: a}}
      - {{name: B, weight: {b}, next: b}}
      - {{name: C, weight: {c}, next: c}}
  a: {{type: send, channel: email, template: ta, comm_type: editorial}}
  b: {{type: send, channel: email, template: tb, comm_type: editorial}}
  c: {{type: send, channel: email, template: tc, comm_type: editorial}}
"""


def test_split_is_deterministic_weighted_and_recorded():
    js = load_text(SPLIT.format(a=50, b=30, c=20))
    counts: Counter[str] = Counter()
    for i in range(3000):
        cid = f"cust-{i}"
        state, acts = drive(CustomerState.new(cid), ev("f1", "web.form_submitted", cid=cid, form_id="x"), js, T0)
        (tr,) = traces(acts, "split")
        counts[tr.detail["variant"]] += 1
        assert state.variants == {"ab/pick": tr.detail["variant"]}
        # the same customer always lands in the same variant, even from a fresh state
        _, again = drive(CustomerState.new(cid), ev("f9", "web.form_submitted", cid=cid, form_id="x"), js, T0)
        assert traces(again, "split")[0].detail["variant"] == tr.detail["variant"]
    assert abs(counts["A"] / 3000 - 0.5) < 0.04
    assert abs(counts["B"] / 3000 - 0.3) < 0.04
    assert abs(counts["C"] / 3000 - 0.2) < 0.04


def test_split_is_sticky_when_weights_change():
    js1 = load_text(SPLIT.format(a=50, b=50, c=0))
    js2 = load_text(SPLIT.format(a=0, b=0, c=100))
    state, acts = drive(CustomerState.new("c7"), ev("f1", "web.form_submitted", cid="c7", form_id="x"), js1, T0)
    first = traces(acts, "split")[0].detail["variant"]
    state, acts = drive(state, ev("f2", "web.form_submitted", cid="c7", form_id="x"), js2, T0)
    tr = traces(acts, "split")[0]
    assert tr.detail == {"variant": first, "sticky": True}


def test_zero_weight_variant_never_chosen():
    js = load_text(SPLIT.format(a=0, b=1, c=0))
    ab = js.newest("ab")
    assert ab is not None
    sd = ab.steps["pick"]
    assert {choose_variant(f"x{i}", "ab", sd, "pick").name for i in range(200)} == {"B"}


DELAY = """
id: onboarding
version: 1
name: Onboarding
entry: {event: crm.customer_registered}
start: wait30
steps:
  wait30: {type: delay, duration: 30d, next: check}
  check:
    type: branch
    cases:
      - name: export unused
        when:
          - {since: profile.registered_at, older_than: 30d}
          - {not_seen: web.feature_used, where: [{field: data.feature, eq: export}]}
        next: nudge
    default: done
  nudge: {type: send, channel: email, template: export_nudge, comm_type: service}
  done: {type: end}
"""


def test_delay_then_time_condition_and_not_seen_feature():
    js = load_text(DELAY)
    assert js.facts.fields_of("web.feature_used") == {"feature"}
    state, acts = drive(CustomerState.new("c1"), ev("r1", "crm.customer_registered", timezone="Europe/Berlin"), js, T0)
    (arm,) = arms(acts)
    assert arm.purpose == "delay" and arm.due_at == T0 + timedelta(days=30)
    assert state.profile.registered_at == T0 and state.profile.timezone == "Europe/Berlin"
    # used another feature: still nudged
    used_other, _ = drive(state, ev("u1", "web.feature_used", T0 + timedelta(days=3), feature="search"), js, T0 + timedelta(days=3))
    _, acts = fire(used_other, arm, js)
    assert [s.template for s in sends(acts)] == ["export_nudge"]
    assert [t.edge for t in traces(acts, "resumed")] == ["check"]
    # used export: no nudge
    used, _ = drive(used_other, ev("u2", "web.feature_used", T0 + timedelta(days=4), feature="export"), js, T0 + timedelta(days=4))
    _, acts = fire(used, arm, js)
    assert sends(acts) == [] and traces(acts, "branch")[0].edge == "done"


def test_profile_tracking_is_bounded():
    from orchestrator.journey.facts import DEFAULT_VALUES, TrackedField
    from orchestrator.state import Profile

    p = Profile()
    for i in range(DEFAULT_VALUES + 10):
        p = fold_profile(p, ev(f"u{i}", "web.feature_used", T0 + timedelta(seconds=i), feature=f"f{i}"), (TrackedField("feature"),))
    seen = p.seen["web.feature_used"]
    vals = seen.values["feature"]
    assert len(vals) == DEFAULT_VALUES and vals[-1][0] == f"f{DEFAULT_VALUES + 9}"
    assert seen.count == DEFAULT_VALUES + 10
    # the ten oldest were forgotten: the values are complete only after the last forgotten one was seen
    assert seen.complete_after["feature"] == T0 + timedelta(seconds=9)


WINDOW = """
id: win
version: 1
name: Window
entry: {event: geo.store_entered}
start: offer
steps:
  offer:
    type: send
    channel: push
    template: in_store_offer
    comm_type: commercial
    window: {days: [mon, tue, wed, thu, fri, sat], from: "09:00", to: "20:00"}
"""


def test_send_window_in_customer_timezone_delays_to_next_opening():
    js = load_text(WINDOW)
    state = CustomerState.new("c1")
    state, _ = drive(state, ev("r1", "crm.customer_registered", timezone="America/New_York"), js, T0)
    # 10:00 UTC Monday = 05:00 in New York (EST in early March 2026: DST starts Mar 8)
    state, acts = drive(state, ev("s1", "geo.store_entered", store_id="s", latitude=1, longitude=1), js, T0)
    assert sends(acts) == []
    (arm,) = arms(acts)
    assert arm.purpose == "window" and arm.due_at == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert traces(acts, "delayed")[0].detail["reason"] == "send window"
    state, acts = fire(state, arm, js)
    assert [s.template for s in sends(acts)] == ["in_store_offer"]
    assert sends(acts)[0].timezone == "America/New_York"
    assert len(traces(acts, "step")) == 0  # resumed, not re-run
    assert state.instances == []


def test_send_window_open_sends_at_once_and_sunday_waits_for_monday():
    js = load_text(WINDOW)
    _, acts = drive(CustomerState.new("c1"), ev("s1", "geo.store_entered", T0, store_id="s", latitude=1, longitude=1), js, T0)
    assert [s.template for s in sends(acts)] == ["in_store_offer"]  # Monday 10:00 UTC
    sunday = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    _, acts = drive(CustomerState.new("c1"), ev("s1", "geo.store_entered", sunday, store_id="s", latitude=1, longitude=1), js, sunday)
    assert arms(acts)[0].due_at == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)


def test_quiet_hours_window_wrapping_midnight():
    from orchestrator.journey.model import Window
    from orchestrator.journey.windows import in_window, next_opening

    night = Window.model_validate({"from": "22:00", "to": "06:00", "days": ["fri"]})
    fri_23 = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)
    sat_03 = datetime(2026, 3, 7, 3, 0, tzinfo=UTC)
    sat_23 = datetime(2026, 3, 7, 23, 0, tzinfo=UTC)
    assert in_window(night, "UTC", fri_23) and in_window(night, "UTC", sat_03)
    assert not in_window(night, "UTC", sat_23)
    assert next_opening(night, "UTC", sat_23) == datetime(2026, 3, 13, 22, 0, tzinfo=UTC)
    assert next_opening(night, "Not/AZone", sat_23) is not None  # unknown zone falls back to UTC


WINDOW_STEP = """
id: ws
version: 1
name: Window step
entry: {event: web.form_submitted}
start: office
steps:
  office: {type: window, window: {from: "08:00", to: "18:00", timezone: Europe/Berlin}, next: call}
  call: {type: send, channel: call_center, template: callback, comm_type: service}
"""


def test_window_step():
    js = load_text(WINDOW_STEP)
    late = datetime(2026, 3, 2, 19, 0, tzinfo=UTC)  # 20:00 Berlin
    state, acts = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", late, form_id="x"), js, late)
    (arm,) = arms(acts)
    assert arm.due_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    state, acts = fire(state, arm, js)
    assert [s.template for s in sends(acts)] == ["callback"]
    assert [t.edge for t in traces(acts, "resumed")] == ["call"]


MULTI_WAIT = """
id: mw
version: 1
name: Multi wait
entry: {event: web.form_submitted}
start: s
steps:
  s: {type: send, channel: email, template: t, comm_type: service, next: w}
  w:
    type: wait
    for:
      - {clicked_of: s, next: clicked}
      - {event: web.page_view, when: [{field: data.url, contains: /pricing}], next: pricing}
      - {opened_of: s}
    timeout: 2d
    on_event: opened
    on_timeout: quiet
  clicked: {type: end, outcome: clicked}
  pricing: {type: end, outcome: pricing}
  opened: {type: end, outcome: opened}
  quiet: {type: end, outcome: quiet}
"""


def test_wait_for_several_events_takes_the_matching_edge():
    js = load_text(MULTI_WAIT)
    state, _ = drive(CustomerState.new("c1"), ev("f1", "web.form_submitted", form_id="x"), js, T0)
    sid = "c1:mw:v1:f1:s"
    for event, outcome in [
        (ev("x1", "ccm.clicked", send_id=sid, channel="email"), "clicked"),
        (ev("x2", "web.page_view", url="/pricing/pro"), "pricing"),
        (ev("x3", "ccm.opened", send_id=sid, channel="email"), "opened"),
    ]:
        after, acts = drive(state, event, js, T0)
        assert after.history["mw"].last_outcome == outcome, outcome
    after, acts = drive(state, ev("x4", "web.page_view", url="/home"), js, T0)
    assert acts == [] and after.instances[0].status == "waiting"


def test_branch_after_wait_reads_matched_event_and_entry_payload():
    js = load_text("""
id: bw
version: 1
name: Branch after wait
entry: {event: web.cart_abandoned}
start: w
steps:
  w: {type: wait, for: {event: web.page_view}, timeout: 1h, on_event: b}
  b:
    type: branch
    cases:
      - {when: [{field: data.url, eq: /cart}, {field: entry.cart_value, gt: 100}], next: big}
    default: small
  big: {type: send, channel: email, template: big, comm_type: commercial, variables_from: {value: entry.cart_value, url: data.url}}
  small: {type: end}
""")
    state, _ = drive(CustomerState.new("c1"), ev("e1", "web.cart_abandoned", cart_id="k", cart_value=150.0), js, T0)
    _, acts = drive(state, ev("p1", "web.page_view", url="/cart"), js, T0)
    (send,) = sends(acts)
    assert send.template == "big" and send.variables == {"value": 150.0, "url": "/cart"}


def test_entry_profile_conditions_and_segment():
    js = load_text("""
id: gold
version: 1
name: Gold only
entry:
  event: web.page_view
  profile: [{field: profile.segment, eq: gold}, {seen: web.purchase, min_count: 2}]
start: s
steps:
  s: {type: send, channel: email, template: t, comm_type: editorial}
""")
    state = CustomerState.new("c1")
    state, _ = drive(state, ev("r", "crm.customer_registered", segment="gold"), js, T0)
    state, acts = drive(state, ev("v1", "web.page_view", url="/"), js, T0)
    assert sends(acts) == []
    for i in range(2):
        state, _ = drive(state, ev(f"p{i}", "web.purchase", order_id="o", value=1.0), js, T0)
    state, acts = drive(state, ev("v2", "web.page_view", url="/"), js, T0)
    assert [s.template for s in sends(acts)] == ["t"]


def test_removed_version_exits_in_flight_instance():
    j1 = load_text(DELAY)
    other = load_text(WINDOW)
    state, acts = drive(CustomerState.new("c1"), ev("r1", "crm.customer_registered"), j1, T0)
    state, acts = fire(state, arms(acts)[0], other)
    (tr,) = traces(acts, "exited")
    assert tr.detail["outcome"] == "version_removed" and state.instances == []

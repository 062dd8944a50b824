"""The journey file model: schema drift, durations, conditions, the loader and versioning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.durations import PATTERN, DurationError, format_duration, parse_duration
from orchestrator.errors import DefinitionError
from orchestrator.journey import model
from orchestrator.journey.conditions import Ctx, compile_all
from orchestrator.journey.loader import JourneyError, JourneySet, load_journeys, load_text
from orchestrator.state import Profile, Scalar, TypeSeen
from orchestrator.timeutil import find_tz, from_ms, iso_utc, resolve_tz, to_ms

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_committed_schema_matches_the_model():
    text = (ROOT / "schemas" / "journey.json").read_text()
    hint = "schemas/journey.json is out of date: run `python -m orchestrator.journey.model > schemas/journey.json`"
    assert json.loads(text) == model.json_schema(), hint
    assert text == model.schema_text(), hint


def test_schema_offers_completion_for_the_main_keys():
    schema = model.json_schema()
    defs = schema["$defs"]
    assert set(schema["required"]) >= {"id", "version", "name", "entry", "start", "steps"}
    assert "web.cart_abandoned" in defs["Entry"]["properties"]["event"]["anyOf"][0]["enum"]
    send = defs["SendStep"]["properties"]
    assert {"channel", "template", "comm_type", "priority", "brand", "variables", "on_capped", "window", "next"} <= set(send)
    assert set(defs["WaitStep"]["properties"]) >= {"for", "timeout", "on_event", "on_timeout", "quiet_for", "activity", "on_quiet"}
    timeout = defs["WaitStep"]["properties"]["timeout"]  # optional with quiet_for: a duration or null
    assert timeout["anyOf"][0]["anyOf"][0]["pattern"] == PATTERN and timeout["anyOf"][1] == {"type": "null"}, timeout


@pytest.mark.parametrize(
    "text,expected",
    [
        ("3s", timedelta(seconds=3)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("2mo", timedelta(days=60)),
        ("1M", timedelta(days=30)),
        ("1h30m", timedelta(minutes=90)),
        ("1d 12h", timedelta(hours=36)),
        (45, timedelta(seconds=45)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "3x", "h", "-1h", "0s", "1.5h", "24 hours", True])
def test_bad_durations(text):
    with pytest.raises(DurationError, match="bad duration"):
        parse_duration(text)


def test_format_duration_round_trips():
    for text in ("30s", "15m", "1d", "1h30m", "2w", "1mo", "3M", "1w2d3h4m5s", 90):
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
    assert format_duration(timedelta(0)) == "0s" and parse_duration("0s", allow_zero=True) == timedelta(0)
    assert format_duration(timedelta(days=30)) == "4w2d"  # months are never written back, only read


@pytest.mark.parametrize(
    "value,allow_zero,message",
    [
        ("0s", False, "bad duration '0s': must be longer than 0s; use a whole number followed by a unit"),
        (0, False, "bad duration 0: must be longer than 0s"),
        (-5, True, "bad duration -5: must not be negative"),
        (1.5, True, "bad duration 1.5: use a whole number followed by a unit: s, m, h, d, w or mo (30 days)"),
        ("90", True, "bad duration '90': use a whole number followed by a unit"),
    ],
)
def test_duration_errors_say_what_is_accepted(value, allow_zero, message):
    with pytest.raises(DurationError) as err:
        parse_duration(value, allow_zero=allow_zero)
    assert str(err.value).startswith(message) and "e.g. 30s, 15m, 24h" in str(err.value)


def test_zero_is_allowed_only_when_asked():
    assert parse_duration("0s", allow_zero=True) == parse_duration(0, allow_zero=True) == timedelta(0)
    assert parse_duration("0h30m") == timedelta(minutes=30)  # a zero part is fine when the total is not


def test_zero_duration_in_a_journey_is_located():
    text = V1.format(v=1, status="live").replace("timeout: 1h", "timeout: 0s")
    with pytest.raises(JourneyError) as err:
        load_text(text)
    [problem] = err.value.problems
    assert problem.startswith("<journey 1>:") and "steps.w.timeout: bad duration '0s': must be longer than 0s" in problem
    assert isinstance(err.value, DefinitionError) and err.value.errors is err.value.problems


def test_time_zones_resolve_to_utc_when_unknown():
    assert resolve_tz("Europe/Berlin").key == "Europe/Berlin"
    for bad in (None, "", "Not/AZone", "Europe", "../etc/passwd", "/abs"):
        assert resolve_tz(bad).key == "UTC", bad
    assert find_tz("Europe") is None and find_tz("Europe/Berlin") is not None


def test_a_directory_name_is_an_unknown_time_zone_not_a_crash():
    text = V1.format(v=1, status="live").replace("name: J\n", 'name: J\nsend_window: {timezone: Europe, from: "09:00", to: "20:00"}\n')
    with pytest.raises(JourneyError) as err:
        load_text(text)
    assert "unknown time zone 'Europe': use an IANA name" in err.value.problems[0]


def test_iso_utc_and_epoch_milliseconds():
    berlin = datetime(2026, 3, 2, 11, 0, 0, tzinfo=resolve_tz("Europe/Berlin"))
    assert iso_utc(berlin) == "2026-03-02T10:00:00Z"
    assert iso_utc(datetime(2026, 3, 2, 10, 0, 0, 500000, tzinfo=UTC)) == "2026-03-02T10:00:00.500000Z"
    assert iso_utc(datetime(2026, 3, 2, 10, 0)) == "2026-03-02T10:00:00Z"  # naive: taken as UTC  # noqa: DTZ001
    assert to_ms(NOW) == 1772445600000 and from_ms(to_ms(NOW)) == NOW


def _profile(**kw) -> Profile:
    return Profile(**kw)


def cond(*conds, data=None, profile=None, now=NOW, etype="web.x", entry=None):
    adapter_conds = [model.EventRule.model_validate({"event": "web.purchase", "when": list(conds)}).when][0]
    return compile_all(adapter_conds)(Ctx(etype, "e1", now, data or {}, profile or _profile(), now, entry))


def test_compare_operators():
    d = {"v": 10, "s": "negative", "tags": ["a", "b"], "nested": {"x": 1}}
    assert cond({"field": "data.v", "gte": 10}, data=d)
    assert not cond({"field": "data.v", "gt": 10}, data=d)
    assert cond({"field": "data.v", "lt": 11, "gte": 5}, data=d)
    assert cond({"field": "data.v", "lte": 10}, data=d)
    assert cond({"field": "data.s", "eq": "negative"}, data=d)
    assert cond({"field": "data.s", "ne": "positive"}, data=d)
    assert cond({"field": "data.s", "in": ["negative", "neutral"]}, data=d)
    assert cond({"field": "data.s", "not_in": ["positive"]}, data=d)
    assert cond({"field": "data.s", "contains": "neg"}, data=d)
    assert cond({"field": "data.tags", "contains": "b"}, data=d)
    assert cond({"field": "data.nested.x", "eq": 1}, data=d)
    assert cond({"field": "data.missing", "exists": False}, data=d)
    assert not cond({"field": "data.missing", "eq": 1}, data=d)
    assert cond({"field": "data.missing", "ne": 1}, data=d)
    assert not cond({"field": "data.s", "gt": 3}, data=d)  # type mismatch is false, not an error
    assert not cond({"field": "data.v", "eq": True}, data={"v": 1})  # bool is not 1


def test_combinators():
    d = {"v": 10}
    assert cond({"any": [{"field": "data.v", "eq": 1}, {"field": "data.v", "eq": 10}]}, data=d)
    assert cond({"all": [{"field": "data.v", "gt": 1}, {"not": {"field": "data.v", "eq": 3}}]}, data=d)
    assert not cond({"not": {"field": "data.v", "eq": 10}}, data=d)


def test_profile_and_entry_fields():
    p = _profile(segment="gold", attributes={"tier": 3}, timezone="Europe/Berlin")
    assert cond({"field": "profile.segment", "eq": "gold"}, profile=p)
    assert cond({"field": "profile.attributes.tier", "gte": 3}, profile=p)
    assert cond({"field": "profile.timezone", "eq": "Europe/Berlin"}, profile=p)
    assert cond({"field": "entry.cart_value", "gt": 5}, data={}, entry={"cart_value": 6})
    assert cond({"field": "event.type", "eq": "web.x"})


def test_time_conditions():
    p = _profile(registered_at=NOW - timedelta(days=31))
    assert cond({"since": "profile.registered_at", "older_than": "30d"}, profile=p)
    assert not cond({"since": "profile.registered_at", "younger_than": "30d"}, profile=p)
    assert not cond({"since": "profile.registered_at", "older_than": "30d"})  # unknown registration date


def test_seen_and_not_seen():
    at = NOW - timedelta(days=2)
    values: dict[str, list[tuple[Scalar, datetime]]] = {"feature": [("search", at), ("alerts", at)]}
    seen = TypeSeen(count=2, first_at=at, last_at=at, values=values, complete_after={"feature": None})
    p = _profile(seen={"web.feature_used": seen})
    assert cond({"seen": "web.feature_used"}, profile=p)
    assert cond({"seen": "web.feature_used", "min_count": 2}, profile=p)
    assert not cond({"seen": "web.feature_used", "min_count": 3}, profile=p)
    assert cond({"not_seen": "web.feature_used", "where": [{"field": "data.feature", "eq": "export"}]}, profile=p)
    assert not cond({"not_seen": "web.feature_used", "where": [{"field": "data.feature", "eq": "search"}]}, profile=p)
    assert cond({"not_seen": "web.feature_used", "within": "1d"}, profile=p)
    assert cond({"not_seen": "web.refund"}, profile=p)


def test_seen_where_on_history_the_profile_does_not_have_is_false_both_ways():
    at = NOW - timedelta(days=2)
    export = [{"field": "data.feature", "eq": "export"}]
    values: dict[str, list[tuple[Scalar, datetime]]] = {"feature": [("search", at)]}
    # the field was not recorded for this customer (a type seen before the facts file declared it)
    unknown = _profile(seen={"web.feature_used": TypeSeen(count=2, first_at=at, last_at=at, values={})})
    assert not cond({"not_seen": "web.feature_used", "where": export}, profile=unknown)
    assert not cond({"seen": "web.feature_used", "where": export}, profile=unknown)
    assert cond({"not": {"seen": "web.feature_used", "where": export}}, profile=unknown)  # "not provably seen"
    assert cond({"not_seen": "web.feature_used", "where": export, "within": "1d"}, profile=unknown)  # no event in the last day
    # complete only after 3 days ago: enough for a 2-day look-back, not for ever
    partial = TypeSeen(count=3, first_at=at, last_at=at, values=values, complete_after={"feature": NOW - timedelta(days=3)})
    p = _profile(seen={"web.feature_used": partial})
    assert cond({"not_seen": "web.feature_used", "where": export, "within": "2d12h"}, profile=p)
    assert not cond({"not_seen": "web.feature_used", "where": export, "within": "4d"}, profile=p)
    assert not cond({"not_seen": "web.feature_used", "where": export}, profile=p)
    assert not cond({"not_seen": "web.feature_used", "where": [{"field": "data.feature", "eq": "search"}]}, profile=p)


def test_seen_where_must_use_one_payload_field():
    with pytest.raises(ValidationError, match="ONE payload field"):
        model.EventRule.model_validate(
            {
                "event": "web.purchase",
                "when": [{"not_seen": "web.feature_used", "where": [{"field": "data.a", "eq": 1}, {"field": "data.b", "eq": 2}]}],
            }
        )


def test_condition_shapes_are_checked():
    for bad, msg in [
        ({"field": "data.x"}, "has no operator"),
        ({"field": "cart.x", "eq": 1}, "unknown field root"),
        ({"field": "profile.shoe_size", "eq": 1}, "unknown profile field"),
        ({"since": "profile.registered_at"}, "needs older_than or younger_than"),
        ({"frobnicate": 1}, "not a condition"),
        ({"field": "data.x", "eq": 1, "bogus": 2}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=msg):
            model.EventRule.model_validate({"event": "web.purchase", "when": [bad]})


V1 = """
id: j
version: {v}
status: {status}
name: J
entry: {{event: web.form_submitted}}
start: w
steps:
  w: {{type: wait, for: {{event: web.page_view}}, timeout: 1h, on_event: s}}
  s: {{type: send, channel: email, template: t{v}, comm_type: service}}
"""


def test_versions_newest_live_takes_new_entrants():
    js = load_text(V1.format(v=1, status="live"), V1.format(v=2, status="live"))
    newest = js.newest("j")
    assert newest is not None and newest.version == 2
    assert [cj.version for cj in js.triggered_by("web.form_submitted")] == [2]
    assert js.get("j", 1) is not None and js.get("j", 3) is None


def test_retired_version_takes_no_new_entrants():
    js = load_text(V1.format(v=1, status="live"), V1.format(v=2, status="retired"))
    newest = js.newest("j")
    assert newest is not None and newest.version == 1
    js = load_text(V1.format(v=1, status="retired"))
    assert js.triggered_by("web.form_submitted") == [] and js.get("j", 1) is not None


def test_in_flight_customers_finish_on_their_version():
    from orchestrator.dev.drive import drive
    from orchestrator.events import CustomerEvent
    from orchestrator.state import CustomerState

    v1 = load_text(V1.format(v=1, status="live"))
    both = load_text(V1.format(v=1, status="live"), V1.format(v=2, status="live"))
    form_a = CustomerEvent(event_id="f1", customer_id="a", type="web.form_submitted", occurred_at=NOW, data={})
    form_b = CustomerEvent(event_id="f1", customer_id="b", type="web.form_submitted", occurred_at=NOW, data={})
    old, _ = drive(CustomerState.new("a"), form_a, v1, NOW)
    new, _ = drive(CustomerState.new("b"), form_b, both, NOW)
    assert old.instances[0].version == 1 and new.instances[0].version == 2
    pv = CustomerEvent(event_id="p1", customer_id="a", type="web.page_view", occurred_at=NOW, data={"url": "/"})
    _, acts = drive(old, pv, both, NOW)
    assert [a.template for a in acts if a.kind == "send"] == ["t1"]
    _, acts = drive(new, pv.model_copy(update={"customer_id": "b"}), both, NOW)
    assert [a.template for a in acts if a.kind == "send"] == ["t2"]


def test_duplicate_id_and_version_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(V1.format(v=1, status="live"))
    (tmp_path / "b.yaml").write_text(V1.format(v=1, status="live"))
    with pytest.raises(JourneyError) as err:
        load_journeys([tmp_path])
    (msg,) = err.value.errors
    assert msg.startswith(f"{tmp_path / 'b.yaml'}:3:1: journey 'j' version 1 is already defined in")


def test_directory_loading_skips_pressure_policy(tmp_path):
    (tmp_path / "a.yaml").write_text(V1.format(v=1, status="live"))
    (tmp_path / "pressure.yaml").write_text("capacity: 25\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    js = load_journeys([tmp_path])
    assert isinstance(js, JourneySet) and js.ids() == ["j"]


def test_the_shipped_journeys_load():
    js = load_journeys([ROOT / "journeys"])
    assert "abandoned_cart" in js.ids()
    cart = js.newest("abandoned_cart")
    assert cart is not None
    assert cart.journey.entry.events == ["web.cart_abandoned"]

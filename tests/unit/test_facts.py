"""Profile facts (journeys/profile.yaml): history that does not depend on which journeys were loaded (issue 14, item 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.designer.simulate import simulate_files
from orchestrator.engine.profile import fold_profile
from orchestrator.events import CustomerEvent
from orchestrator.journey.facts import FactsError, TrackedField, load_facts, loads_facts
from orchestrator.journey.loader import JourneyError, load_journeys, load_text, validate_paths
from orchestrator.state import Profile

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)

ANNOUNCE = """
id: announce
version: 1
name: Announce export
entry:
  audience:
    when:
      - {since: profile.last_seen_at, younger_than: 30d}
      - {not_seen: web.feature_used, where: [{field: data.feature, eq: export}]}
    schedule: {at: "2026-01-08T10:00:00Z"}
  reentry: {policy: never}
start: send
steps:
  send: {type: send, channel: email, template: export_announcement, comm_type: editorial, next: done}
  done: {type: end}
"""

FACTS = "events:\n  web.feature_used:\n    fields:\n      data.feature: {}\n"


def line(cid: str, etype: str, at: str, n: int = 0, **data: object) -> str:
    family, kind = etype.split(".")
    return json.dumps({"family": family, "type": kind, "event_id": f"{cid}-{kind}-{n}", "customer_id": cid, "occurred_at": at, **data})


def feature_history(tmp_path: Path, facts: str | None) -> Path:
    """journeys/ (policy, optional facts), scenario/ with the announcement deployed on 01-08 and the events before it."""
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "pressure.yaml").write_text("capacity: 25\n")
    if facts is not None:
        (journeys / "profile.yaml").write_text(facts)
    sc = tmp_path / "scenario"
    sc.mkdir()
    (sc / "announce.yaml").write_text(ANNOUNCE)
    events = sc / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                line("u1", "web.feature_used", "2026-01-05T09:00:00Z", feature="export"),  # used it: must not get the announcement
                line("u2", "web.feature_used", "2026-01-05T09:00:00Z", feature="search"),  # used another feature
                line("u3", "web.page_view", "2026-01-05T09:00:00Z", url="/"),  # never used a feature
                json.dumps({"deploy": "announce.yaml", "at": "2026-01-08T00:00:00Z"}),
                line("u3", "web.page_view", "2026-01-09T09:00:00Z", n=1, url="/"),
            ]
        )
        + "\n"
    )
    return events


def announced(tmp_path: Path, facts: str | None) -> set[str]:
    events = feature_history(tmp_path, facts)
    result = simulate_files(tmp_path / "journeys", events)
    return {d.send.customer_id for d in result.sends() if d.send.template == "export_announcement"}


def test_a_campaign_deployed_later_knows_who_used_the_feature_before(tmp_path: Path) -> None:
    # the facts file records data.feature from the start, whatever journeys are loaded
    assert announced(tmp_path, FACTS) == {"u2", "u3"}


def test_without_the_field_recorded_a_customer_who_had_the_event_is_not_taken_for_never(tmp_path: Path) -> None:
    # no facts file (fields implied by the journeys loaded at the time): u1's and u2's history of data.feature is unknown,
    # so neither is "never used export"; u3 never had web.feature_used at all
    assert announced(tmp_path, None) == {"u3"}


# ------------------------------------------------------------------ the file


def test_facts_file_problems_come_with_file_line_col(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        "events:\n"
        "  web.feature_used:\n"
        "    fields:\n"
        "      data.featur: {}\n"
        "      data.feature: {values: 0}\n"
        "  web.featureused: {}\n"
        "  web.cart_abandoned:\n"
        "    fields:\n"
        "      cart_value: {}\n"
        "      data.cart_value: {keep: soon}\n"
    )
    with pytest.raises(FactsError) as exc:
        load_facts(path)
    problems = exc.value.problems
    assert any(p.startswith(f"{path}:4:7:") and "did you mean 'data.feature'" in p for p in problems), problems
    assert any(p.startswith(f"{path}:5:") and "values" in p for p in problems), problems
    assert any(p.startswith(f"{path}:6:3:") and "did you mean 'web.feature_used'" in p for p in problems), problems
    assert any(p.startswith(f"{path}:9:7:") and "data.cart_value" in p for p in problems), problems
    assert any(p.startswith(f"{path}:10:") and "keep" in p for p in problems), problems


def test_only_single_values_can_be_remembered() -> None:
    with pytest.raises(FactsError, match="attributes is an object"):
        loads_facts("events:\n  web.feature_used:\n    fields:\n      data.attributes: {}\n")


def test_a_journey_reading_a_field_the_facts_do_not_record_is_refused_with_the_line_to_add(tmp_path: Path) -> None:
    (tmp_path / "profile.yaml").write_text("events:\n  web.feature_used:\n    fields:\n      data.attributes.plan: {}\n")
    (tmp_path / "announce.yaml").write_text(ANNOUNCE.replace("schedule:", "qualify: on_change\n    # schedule:"))
    problems = validate_paths([tmp_path])
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{tmp_path / 'announce.yaml'}:9:") and "web.feature_used data.feature is not recorded" in problems[0]
    assert "add `data.feature: {}` under events.web.feature_used.fields in" in problems[0] and "(line 2)" in problems[0]
    with pytest.raises(JourneyError):
        load_journeys([tmp_path])
    (tmp_path / "profile.yaml").write_text(FACTS)
    assert load_journeys([tmp_path]).facts.fields_of("web.feature_used") == {"feature"}


def test_the_facts_decide_what_is_recorded_not_the_journeys() -> None:
    facts = loads_facts(FACTS)
    journeys = load_text(
        "id: j\nversion: 1\nname: J\nentry: {event: web.purchase}\nstart: e\nsteps: {e: {type: end}}\n",
        facts=facts,
    )
    assert journeys.tracked == {"web.feature_used": (TrackedField("feature"),)}


def test_the_shipped_facts_file_is_valid_and_covers_the_shipped_journeys() -> None:
    facts = load_facts(ROOT / "journeys" / "profile.yaml")
    assert "feature" in facts.fields_of("web.feature_used")
    assert load_journeys([ROOT / "journeys"]).facts.source == str(ROOT / "journeys" / "profile.yaml")


# ------------------------------------------------------------------ the fold: limits and completeness


def event(etype: str, at: datetime, n: int, **data: object) -> CustomerEvent:
    return CustomerEvent(event_id=f"e{n}", customer_id="u", type=etype, occurred_at=at, data=data)


def test_a_field_declared_after_the_customer_had_the_type_is_complete_only_after_that() -> None:
    p = fold_profile(Profile(), event("web.feature_used", T0, 1, feature="export"))  # not declared yet
    assert p.seen["web.feature_used"].complete_after == {}
    tracked = (TrackedField("feature"),)
    p = fold_profile(p, event("web.feature_used", T0 + timedelta(days=2), 2, feature="search"), tracked)
    seen = p.seen["web.feature_used"]
    assert seen.complete_after == {"feature": T0}  # every event after the last unrecorded one
    assert [v for v, _ in seen.values["feature"]] == ["search"]
    # no longer declared: the values are dropped with their history
    p = fold_profile(p, event("web.feature_used", T0 + timedelta(days=3), 3, feature="x"))
    assert p.seen["web.feature_used"].values == {} and p.seen["web.feature_used"].complete_after == {}


def test_keep_forgets_old_values_and_says_so() -> None:
    tracked = (TrackedField("feature", values=8, keep=timedelta(days=30)),)
    p = fold_profile(Profile(), event("web.feature_used", T0, 1, feature="export"), tracked)
    assert p.seen["web.feature_used"].complete_after == {"feature": None}
    p = fold_profile(p, event("web.feature_used", T0 + timedelta(days=40), 2, feature="search"), tracked)
    seen = p.seen["web.feature_used"]
    assert [v for v, _ in seen.values["feature"]] == ["search"]
    assert seen.complete_after == {"feature": T0}


def test_a_late_event_does_not_make_a_value_older() -> None:
    tracked = (TrackedField("feature"),)
    p = fold_profile(Profile(), event("web.feature_used", T0 + timedelta(days=5), 1, feature="export"), tracked)
    p = fold_profile(p, event("web.feature_used", T0 + timedelta(days=6), 2, feature="search"), tracked)
    p = fold_profile(p, event("web.feature_used", T0, 3, feature="export"), tracked)  # arrives late
    assert p.seen["web.feature_used"].values["feature"] == [("export", T0 + timedelta(days=5)), ("search", T0 + timedelta(days=6))]


def test_campaign_preview_says_from_when_the_history_is_known(tmp_path: Path) -> None:
    from orchestrator.designer.campaign import preview

    events = feature_history(tmp_path, FACTS)
    (events.parent / "events.jsonl").write_text("\n".join(events.read_text().splitlines()[:3]) + "\n")  # no deploy line
    result = preview(str(events.parent / "announce.yaml"), tmp_path / "journeys", events, at=datetime(2026, 1, 8, tzinfo=UTC))
    assert any(
        "looks back ever, but the history of web.feature_used data.feature starts at 2026-01-05T09:00:00Z" in n for n in result.notes
    ), result.notes
    assert result.runs[0].entered == 2  # u2 and u3: u1 used export
    (tmp_path / "journeys" / "profile.yaml").write_text("events: {}\n")
    result = preview(str(events.parent / "announce.yaml"), tmp_path / "journeys", events, at=datetime(2026, 1, 8, tzinfo=UTC))
    assert any("web.feature_used data.feature is not recorded by the profile facts" in n for n in result.notes), result.notes

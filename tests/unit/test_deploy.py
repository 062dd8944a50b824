"""deploy/: Prometheus' config and alert rules pass promtool (and the rules fire as their
tests in alerts_test.yml say), the Grafana dashboard and the rules ask only for metrics a
worker exports, and docker-compose.yml mounts what exists.

promtool comes from Debian's ``prometheus`` package: ``stack/stack tool promtool`` installs it
when it is not on PATH. A machine where that fails fails these tests with the reason; they are
never skipped.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.metrics import Metrics
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stack" / "stack"
DEPLOY = ROOT / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
DATASOURCES_YML = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARDS_YML = DEPLOY / "grafana" / "provisioning" / "dashboards" / "orchestrator.yml"
COMPOSE = ROOT / "docker-compose.yml"

OUR_METRIC = re.compile(r"\borchestrator_[a-z_]+")
# a metric name right before a label matcher: `name{...}` (functions and `by (...)` take parentheses)
SELECTED = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")
PROMETHEUS_OWN = {"up"}


# ----------------------------------------------------------------------------- helpers


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included; rows themselves too."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_exprs() -> list[str]:
    data = _dashboard()
    exprs = [t["expr"] for p in _panels(data["panels"]) for t in p.get("targets", []) if "expr" in t]
    for var in data["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load_yaml(ALERTS_YML)["groups"] for rule in group["rules"]]


def _exported() -> set[str]:
    """Every series name a worker can export: its registry plus the scrape-time collector."""
    metrics = Metrics()
    metrics.watch(lambda: [("t", 0, 1, 2.0)], lambda: (0, 0.0), lambda: 0.0)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names: set[str] = set()
    for family in metrics.registry.collect():
        assert family.type in suffixes, f"{family.name}: a {family.type} — teach this test its series names"
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def _used(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in OUR_METRIC.findall(expr)}


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool's path, installed with apt by stack/stack when missing (failing with the reason if that fails)."""
    try:
        res = subprocess.run([str(STACK), "tool", "promtool"], capture_output=True, text=True, timeout=280)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"stack/stack tool promtool did not finish in 280 s:\n{exc.stderr!r}", pytrace=False)
    if res.returncode != 0 or not res.stdout.strip():
        pytest.fail(f"stack/stack tool promtool failed (exit {res.returncode}):\n{res.stderr}", pytrace=False)
    return res.stdout.strip().splitlines()[-1]


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"


# ----------------------------------------------------------------------------- promtool


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    _run([promtool, "check", "rules", str(ALERTS_YML)])


def test_prometheus_config_passes_promtool_check_with_its_rule_file(promtool: str) -> None:
    _run([promtool, "check", "config", str(PROMETHEUS_YML)])
    assert _load_yaml(PROMETHEUS_YML)["rule_files"] == ["alerts.yml"]


def test_alerts_fire_as_their_unit_tests_say(promtool: str) -> None:
    _run([promtool, "test", "rules", str(ALERTS_TEST_YML)])


# ----------------------------------------------------------------------------- metric names


def test_the_exported_set_is_what_a_worker_serves() -> None:
    names = _exported()
    # a sample of each kind: counter, histogram, registry gauge, scrape-time gauges
    assert {"orchestrator_events_total", "orchestrator_timer_lateness_seconds_bucket", "orchestrator_journeys_loaded"} <= names
    assert {"orchestrator_consumer_lag", "orchestrator_consumer_lag_seconds", "orchestrator_timer_oldest_overdue_seconds"} <= names
    assert "orchestrator_events" not in names


def test_dashboard_asks_only_for_exported_metrics() -> None:
    exprs = _dashboard_exprs()
    unknown = sorted(_used(exprs) - _exported())
    assert not unknown, f"the dashboard uses metrics no worker exports: {unknown}"
    others = sorted({n for e in exprs for n in SELECTED.findall(e)} - _exported() - PROMETHEUS_OWN)
    assert not others, f"the dashboard selects series that are neither ours nor Prometheus': {others}"


def test_alert_rules_ask_only_for_exported_metrics() -> None:
    exprs = [rule["expr"] for rule in _rules()]
    unknown = sorted(_used(exprs) - _exported())
    assert not unknown, f"the alert rules use metrics no worker exports: {unknown}"
    others = sorted({n for e in exprs for n in SELECTED.findall(e)} - _exported() - PROMETHEUS_OWN)
    assert not others, f"the alert rules select series that are neither ours nor Prometheus': {others}"
    assert any(re.search(r"\bup\{", e) for e in exprs), "no rule watches Prometheus' `up` (worker down)"


def test_the_dashboard_covers_the_metrics_an_sre_looks_at() -> None:
    used = _used(_dashboard_exprs())
    for name in (
        "orchestrator_consumer_lag",
        "orchestrator_consumer_lag_seconds",
        "orchestrator_consumer_lag_read_timestamp_seconds",
        "orchestrator_events_total",
        "orchestrator_inbound_direct_total",
        "orchestrator_processed_total",
        "orchestrator_decisions_total",
        "orchestrator_sends_total",
        "orchestrator_dead_letters_total",
        "orchestrator_timers_pending",
        "orchestrator_timer_oldest_overdue_seconds",
        "orchestrator_timer_lateness_seconds_bucket",
        "orchestrator_gate_seconds_bucket",
        "orchestrator_event_to_send_seconds_bucket",
        "orchestrator_batch_seconds_bucket",
        "orchestrator_rebalances_total",
        "orchestrator_dependency_retries_total",
        "orchestrator_invalid_definition_files",
        "orchestrator_journeys_loaded",
        "orchestrator_journey_steps_total",
        "orchestrator_campaign_progress",
    ):
        assert name in used, f"no dashboard panel shows {name}"
    funnel = " ".join(e for e in _dashboard_exprs() if "orchestrator_journey_steps_total" in e)
    assert 'what="entered"' in funnel and 'what="goal"' in funnel


# ----------------------------------------------------------------------------- the files themselves


def test_every_alert_says_how_bad_for_how_long_and_what_to_do() -> None:
    rules = _rules()
    assert len(rules) >= 10
    for rule in rules:
        name = rule.get("alert")
        assert name, f"a recording rule in alerts.yml: {rule}"
        assert rule.get("for"), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        assert notes.get("summary") and notes.get("runbook"), f"{name}: needs a summary and a runbook hint"
        presence = rule["expr"].startswith(("up{", "absent("))  # its value is a flag: nothing to tell
        assert presence or "$value" in notes.get("description", ""), f"{name}: the description should give the value"
    assert len({r["alert"] for r in rules}) == len(rules), "alert names repeat"


def test_dashboard_parses_and_every_panel_queries_something() -> None:
    data = _dashboard()
    assert data["schemaVersion"] >= 38
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= variables.keys()
    panels = [p for p in _panels(data["panels"]) if p["type"] != "row"]
    assert len(panels) >= 20
    ids = [p["id"] for p in _panels(data["panels"])]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel.get("title"), f"panel {panel['id']} has no title"
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr") for t in targets), f"{panel['title']}: a panel without a query"
        for ref in [panel["datasource"], *(t["datasource"] for t in targets)]:
            assert ref == {"type": "prometheus", "uid": "${datasource}"}, f"{panel['title']}: not on the $datasource variable"
        for t in targets:
            assert '$job"' in t["expr"] and '$instance"' in t["expr"], f"{panel['title']}: ignores the job/instance variables"


def test_compose_mounts_the_deploy_files_and_checks_readiness() -> None:
    compose = _load_yaml(COMPOSE)
    services = compose["services"]
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= services.keys()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"

    def mounts(service: str) -> dict[str, str]:
        return {v.split(":")[0]: v.split(":")[1] for v in services[service]["volumes"] if v.startswith(".")}

    assert mounts("prometheus") == {"./deploy/prometheus": "/etc/prometheus"}
    grafana = mounts("grafana")
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard_at = grafana["./deploy/grafana/dashboard.json"]
    [provider] = _load_yaml(DASHBOARDS_YML)["providers"]
    assert Path(dashboard_at).parent == Path(provider["options"]["path"]), "the provider does not look where the dashboard is"
    [source] = _load_yaml(DATASOURCES_YML)["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"

    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")

    worker = services["worker"]
    port = int(worker["environment"]["ORCH_WEB_PORT"])
    assert "/ready" in " ".join(worker["healthcheck"]["test"]) and "/health" not in " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/ready" in " ".join(worker["healthcheck"]["test"])
    assert port == Settings.model_fields["web_port"].default
    [job] = [j for j in _load_yaml(PROMETHEUS_YML)["scrape_configs"] if j["job_name"] == "orchestrator"]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"] == [{"names": ["worker"], "type": "A", "port": port, "refresh_interval": "15s"}]

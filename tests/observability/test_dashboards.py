"""The Grafana provisioning of deploy/grafana as Grafana reads it: a Prometheus datasource, a
file provider for the dashboards' directory, and the three dashboards (portfolio overview,
trading activity, system health) whose every query is valid PromQL (``promtool check rules`` on
them as recording rules). That they read only exported names: test_live_prometheus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.observability._obs import DASHBOARDS, DEPLOY, PROMTOOL, dashboard_queries, promql_metric_names

PROVISIONING = DEPLOY / "grafana" / "provisioning"


def test_provisioning() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["url"], d["uid"]) for d in ds] == [("prometheus", "http://cdb_prometheus:9090",
                                                              "claire-prometheus")]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "claire.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"] == "/etc/grafana/dashboards"


def test_three_dashboards_with_the_asked_panels() -> None:
    dashes = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
    assert set(dashes) == {"portfolio-overview", "trading-activity", "system-health"}
    assert len({d["uid"] for d in dashes.values()}) == 3
    for name, d in dashes.items():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in d["panels"]:
            assert p["datasource"]["uid"] == "claire-prometheus" and p["targets"], (name, p["title"])
    health = " ".join(t["expr"] for p in dashes["system-health"]["panels"] for t in p["targets"])
    for needle in ("claire_marketdata_last_event_age_seconds", "histogram_quantile(0.95",
                   "process_start_time_seconds", "claire_heartbeat_timestamp_seconds"):
        assert needle in health, needle


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query:{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries)]}]}
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    res = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(queries)} rules found" in res.stdout


def test_promql_metric_names() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.95, sum by (le, service) (rate(claire_event_processing_seconds_bucket{job="claire"}[5m])))'
    ) == {"claire_event_processing_seconds_bucket"}
    assert promql_metric_names("time() - claire_heartbeat_timestamp_seconds > 2e9") == {"claire_heartbeat_timestamp_seconds"}
    assert promql_metric_names('max by (state) (claire_trading_state{state="halted"}) == 1 and on() up') == {
        "claire_trading_state", "up"}

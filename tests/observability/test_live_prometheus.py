"""A real Prometheus (Debian's /usr/bin/prometheus) against a running ``claire paper`` run, as an
operator deploys it (issue 13 points 5-7):

* Prometheus scrapes the run every second and evaluates deploy/prometheus/rules plus one
  test-only copy of ``ClaireDrawdownHigh`` with the threshold at 0.3 % (the run loses that much;
  the real 3 % would take a long run): it FIRES, seen through Prometheus' HTTP API;
* ``portfolio_equity_usd`` as Prometheus holds it is the equity of a snapshot the database stores,
  within 1 % of the latest one (not 0.0, as before);
* every Grafana panel's PromQL reads only metric names the components export (the names scraped
  from the live paper run and from each distributed service);
* the run writes its logs as JSON lines per UTC day into the run directory, says where its
  endpoints are, reports progress while its output is not a terminal, and never writes the
  password that is in the database URL, the Redis URL and the notification URL.

One paper run (synthetic bars at 1200x: ~25 s) serves every test of the module.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.conftest import PG_ADMIN_URL
from tests.observability._obs import (
    PROMETHEUS,
    PROMETHEUS_SERIES,
    RULES,
    dashboard_queries,
    exposed_names,
    promql_metric_names,
)
from tests.support.ports import free_port

#: one paper run for the whole module: its tests stay on one xdist worker (`make test`: --dist loadgroup)
pytestmark = pytest.mark.xdist_group(name="observability_live_prometheus")

BARS, SPEED = 500, 1200  # 500 one-minute bars per symbol at 1200x: 25 s
FORCED_THRESHOLD = 0.003


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    body = json.loads(_get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success", body
    return body["data"]["result"]


def _forced_rules(path: Path) -> None:
    """The real drawdown rule with a low threshold and no wait, labelled as the test's."""
    real = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "ClaireDrawdownHigh")
    forced = {**real, "expr": real["expr"].replace("0.03", str(FORCED_THRESHOLD)), "for": "0s",
              "labels": {**real["labels"], "test": "forced"}}
    assert forced["expr"] != real["expr"]
    path.write_text(yaml.safe_dump({"groups": [{"name": "forced-drawdown", "rules": [forced]}]}))


def _db_equities(libpq_url: str) -> tuple[set[float], float | None]:
    """Every snapshot equity the database stores, and the latest one."""
    with psycopg.connect(libpq_url, connect_timeout=5) as c:
        rows = c.execute("SELECT equity, ts FROM portfolio_snapshots ORDER BY ts").fetchall()
    return {float(r[0]) for r in rows}, (float(rows[-1][0]) if rows else None)


class LiveRun:
    """What the module's run saw."""

    def __init__(self) -> None:
        self.paper_metrics = ""
        self.equity_checks: list[tuple[float, bool, float]] = []  # (prometheus value, in the db, latest db)
        self.firing: list[dict[str, Any]] = []
        self.heartbeat: list[dict[str, Any]] = []
        self.up: list[float] = []  # up{job="claire"} at each poll
        self.run_info: list[dict[str, Any]] = []
        self.stdout = self.stderr = ""
        self.returncode: int | None = None
        self.out = Path()
        self.secret = ""


def _wait_ready(url: str, proc: subprocess.Popen[Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {url} answered")
        try:
            _get(url, 1.0)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _observe(run: LiveRun, paper: subprocess.Popen[Any], prom: str, port: int, db: str) -> None:
    """Poll Prometheus (and once the paper endpoint) while the run lasts."""
    deadline = time.monotonic() + 90
    while paper.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        with contextlib.suppress(OSError):
            run.paper_metrics = run.paper_metrics or _get(f"http://127.0.0.1:{port}/metrics").decode()
        eq = _query(prom, "portfolio_equity_usd")
        if eq:
            value = float(eq[0]["value"][1])
            for _ in range(10):  # the writer persists within moments; the gauge shows a stored snapshot
                stored, latest = _db_equities(db)
                if any(abs(value - e) < 1e-6 * max(1.0, abs(e)) for e in stored):
                    break
                time.sleep(0.2)
            if not stored:  # before the first snapshot: the start cash, never 0.0
                run.equity_checks.append((value, value == 100_000.0, value))
            else:
                run.equity_checks.append((value, any(abs(value - e) < 1e-6 * max(1.0, abs(e)) for e in stored),
                                          latest))
        alerts = json.loads(_get(f"{prom}/api/v1/alerts"))["data"]["alerts"]
        run.firing += [a for a in alerts if a["state"] == "firing" and a["labels"].get("test") == "forced"]
        run.heartbeat = _query(prom, "claire_heartbeat_timestamp_seconds") or run.heartbeat
        run.up += [float(x["value"][1]) for x in _query(prom, 'up{job="claire"}')]
        run.run_info = _query(prom, "claire_run_info") or run.run_info


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    if not Path(PROMETHEUS).exists():
        pytest.fail(f"{PROMETHEUS} is missing: install Debian's prometheus package (`make test` does)")
    tmp = tmp_path_factory.mktemp("live")
    run = LiveRun()
    run.secret = f"Pw{uuid.uuid4().hex[:12]}x"  # trust authentication: PostgreSQL ignores it
    name = f"claire_obs_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(PG_ADMIN_URL)
    host = parts.hostname or "127.0.0.1"
    libpq = f"postgresql://{parts.username or 'postgres'}:{run.secret}@{host}:{parts.port or 5432}/{name}"
    db_url = libpq.replace("postgresql://", "postgresql+psycopg://", 1)
    port, prom_port = free_port(), free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    forced = tmp / "forced.rules.yml"
    _forced_rules(forced)
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES), str(forced)],
        "scrape_configs": [{"job_name": "claire", "honor_labels": True,
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": "paper"}}]}],
    }))
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp)
    run.out = tmp / "run"
    env = {**os.environ, "CLAIRE_NOTIFY_URLS": f"json://alerts:{run.secret}@127.0.0.1:9/hook",
           "CLAIRE_REDIS_URL": f"redis://:{run.secret}@127.0.0.1:6379/0", "COLUMNS": "120"}
    env.pop("CLAIRE_DATABASE_URL", None)
    paper = None
    try:
        _wait_ready(f"{prom}/-/ready", prometheus, 30)
        paper = subprocess.Popen(
            [sys.executable, "-m", "claire.cli.main", "paper", "--synthetic", str(BARS), "--speed", str(SPEED),
             "--strategy", "momentum", "--db", db_url, "--port", str(port), "--out", str(run.out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
        _observe(run, paper, prom, port, libpq)
        run.stdout, run.stderr = paper.communicate(timeout=60)
        run.returncode = paper.returncode
        yield run
    finally:
        for proc in (paper, prometheus):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_the_run_completes(live: LiveRun) -> None:
    assert live.returncode == 0, live.stderr[-3000:]
    assert live.up.count(1.0) >= 10, live.up  # scraped while it ran


def test_prometheus_sees_the_equity_of_the_database(live: LiveRun) -> None:
    assert len(live.equity_checks) >= 10, live.equity_checks
    values = [v for v, _, _ in live.equity_checks]
    assert min(values) > 90_000 and len(set(values)) > 3, values  # a live equity, not 0.0 or a constant
    for value, stored, latest in live.equity_checks:
        assert stored, f"portfolio_equity_usd {value} is no snapshot equity in the database"
        assert abs(value - latest) / latest < 0.01, (value, latest)


def test_a_forced_drawdown_fires_the_rule(live: LiveRun) -> None:
    assert live.firing, "ClaireDrawdownHigh (threshold 0.3 %) never fired"
    alert = live.firing[0]
    assert alert["labels"]["alertname"] == "ClaireDrawdownHigh" and alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) > FORCED_THRESHOLD
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#clairedrawdownhigh"


def test_heartbeat_and_run_info_reach_prometheus(live: LiveRun) -> None:
    assert live.heartbeat, "no claire_heartbeat_timestamp_seconds"
    beat = live.heartbeat[0]
    assert beat["metric"]["service"] == "paper"
    assert abs(float(beat["value"][1]) - time.time()) < 120  # wall clock (the run ended moments ago)
    assert live.run_info and live.run_info[0]["metric"]["strategy"] == "momentum"


def test_dashboards_use_only_exported_names(live: LiveRun, redis_url: str, redis_prefix: str,
                                            pg_database: str, tmp_path: Path) -> None:
    from tests.observability.test_metrics import distributed_expositions

    assert live.paper_metrics, "never scraped the paper run"
    exported = exposed_names(live.paper_metrics)
    for text in distributed_expositions(redis_url, redis_prefix, pg_database, tmp_path).values():
        exported |= exposed_names(text)
    queries = dashboard_queries()
    assert len(queries) >= 25
    titles = {q[1] for q in queries}
    assert {"Equity over time", "Data freshness per symbol (seconds since the last event)",
            "Event processing latency (p50, p95, p99)", "Restarts (1 h)", "Heartbeat age"} <= titles
    assert any("histogram_quantile" in e for _, _, e in queries)
    unknown = {(d, t, n) for d, t, e in queries for n in promql_metric_names(e) if n not in exported | PROMETHEUS_SERIES}
    assert not unknown, sorted(unknown)
    for name in ("portfolio_equity_usd", "claire_marketdata_last_event_age_seconds",
                 "claire_heartbeat_timestamp_seconds", "signals_generated_total"):
        assert any(name in promql_metric_names(e) for _, _, e in queries), name


def test_logs_per_day_endpoints_progress(live: LiveRun) -> None:
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    logs = sorted((live.out / "logs" / "paper").glob("*.log"))
    assert logs and logs[-1].stem <= today, logs  # named by the UTC day (a run may cross midnight)
    lines = [json.loads(line) for f in logs for line in f.read_text().splitlines()]
    assert lines and all({"ts", "level", "event", "service", "logger"} <= set(x) for x in lines)
    assert all(x["service"] == "paper" for x in lines)
    events = [x["event"] for x in lines]
    assert any(e.startswith("serving /health /ready /metrics on http://127.0.0.1:") for e in events)
    assert sum(e.startswith("progress: ") for e in events) >= 1, events
    # not a terminal: the endpoints on stdout, the progress lines on stderr
    assert "health: http://127.0.0.1:" in live.stdout and "/metrics" in live.stdout
    assert "progress: " in live.stderr


def test_no_secret_anywhere(live: LiveRun) -> None:
    assert live.secret not in live.stdout and live.secret not in live.stderr
    files = [p for p in live.out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files) and len(files) > 3
    for path in files:
        assert live.secret.encode() not in path.read_bytes(), f"{path} holds the password"

"""The alert rules of deploy/prometheus as Prometheus' own tool reads them (REQUIREMENTS O5/O6,
issue 13 points 4-6): ``promtool check`` on the configuration and the rules, ``promtool test
rules`` on the unit tests (every rule seen firing and not firing), and the common conventions:
CamelCase names, a ``severity`` label, ``summary``/``description``/``runbook_url`` annotations, a
``for:`` on every rule, and a runbook for every alert in docs/runbooks.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability._obs import PROM_DIR, PROMTOOL, ROOT, RULE_TESTS, RULES, rules

#: what the issue and the seeds ask an alert for -> the alert
REQUIRED = {
    "drawdown over 3 %": "ClaireDrawdownHigh",
    "daily-loss halt (R3)": "ClaireDailyLossHalt",
    "circuit breaker (R5)": "ClaireCircuitBreakerTripped",
    "service down": "ClaireServiceDown",
    "service not ready": "ClaireServiceNotReady",
    "service restarted": "ClaireServiceRestarted",
    "execution errors": "ClaireExecutionErrors",
    "processing errors / dead letters": "ClaireProcessingErrors",
    "stale market data per symbol": "ClaireMarketDataStale",
    "a repaired data gap": "ClaireDataGapRepaired",
    "event lag": "ClaireEventLagHigh",
    "database unreachable": "ClaireDatabaseUnreachable",
    "disk low": "ClaireDiskSpaceLow",
    "dead-man: always firing": "Watchdog",
    "dead-man: no heartbeat at all": "ClaireHeartbeatMissing",
    "dead-man: heartbeat stands still": "ClaireHeartbeatStale",
}
SEVERITIES = {"critical", "warning", "info", "none"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail(f"{PROMTOOL} is missing: install Debian's prometheus package (`make test` does)")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_promtool_check_config_and_rules() -> None:
    res = _promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout and f"{len(rules())} rules found" in res.stdout, res.stdout
    res = _promtool("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_test_rules() -> None:
    res = _promtool("test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """The unit tests bite: with the drawdown threshold moved, they fail."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / RULES.name).write_text(RULES.read_text().replace("portfolio_drawdown_ratio > 0.03",
                                                                  "portfolio_drawdown_ratio > 0.05"))
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    (tests_dir / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    res = _promtool("test", "rules", str(tests_dir / RULE_TESTS.name))
    assert res.returncode != 0 and "ClaireDrawdownHigh" in res.stdout + res.stderr


def test_every_required_alert_exists() -> None:
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    missing = {what: name for what, name in REQUIRED.items() if name not in names}
    assert not missing, missing


def test_conventions() -> None:
    for r in rules():
        name = r["alert"]
        assert re.fullmatch(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*", name), f"{name}: not CamelCase"
        assert "for" in r, f"{name}: no for:"
        assert re.fullmatch(r"\d+[smh]", str(r["for"])), f"{name}: for: {r['for']}"
        assert r.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        ann = r.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert ann.get(key), f"{name}: no {key} annotation"
        assert ann["runbook_url"] == f"docs/operations.md#{name.lower()}", f"{name}: {ann['runbook_url']}"
    watchdog = next(r for r in rules() if r["alert"] == "Watchdog")
    assert watchdog["expr"].strip() == "vector(1)" and watchdog["labels"]["severity"] == "none"
    missing = next(r for r in rules() if r["alert"] == "ClaireHeartbeatMissing")
    assert missing["expr"].startswith("absent(claire_heartbeat_timestamp_seconds")


def test_every_rule_is_unit_tested_both_ways() -> None:
    """Each alert appears in the unit tests once expected firing and (all but Watchdog) once not."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fires, quiet = set(), set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - fires == set(), f"never seen firing: {sorted(names - fires)}"
    assert names - quiet == {"Watchdog"}, f"never seen quiet: {sorted(names - quiet - {'Watchdog'})}"


def test_every_alert_has_a_runbook() -> None:
    text = (ROOT / "docs" / "runbooks.md").read_text()
    headings = {m.group(1) for m in re.finditer(r"^#{2,4} (\w+)\s*$", text, re.M)}
    for r in rules():
        assert r["alert"] in headings, f"docs/runbooks.md has no section '### {r['alert']}'"
    assert "dead-man" in text.lower() and "Watchdog" in text

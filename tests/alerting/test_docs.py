"""docs/alerts.md carries the rule table of the code: every rule, as the code renders it."""

from __future__ import annotations

from pathlib import Path

from claire.alerting.rules import RULES, rules_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


def test_every_rule_is_documented_as_the_code_renders_it() -> None:
    text = DOC.read_text()
    for rule in RULES:
        assert f"| `{rule.code}` | {rule.level.value} | {rule.category} |" in text, rule.code
    assert rules_markdown() in text, "docs/alerts.md is out of step: render it again with rules_markdown()"
    for var in ("CLAIRE_NOTIFY_URLS", "CLAIRE_ALERT_DRAWDOWN_PCT", "CLAIRE_ALERT_COOLDOWN_S",
                "CLAIRE_ALERT_DISK_MIN_FREE_MB", "CLAIRE_ALERT_DAILY_SUMMARY"):
        assert var in text

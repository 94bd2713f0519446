"""The verdict: every criterion can flip it; thresholds from defaults, environment, flags."""

from __future__ import annotations

from typing import Any

import pytest

from claire.reporting.verdict import GO, INCONCLUSIVE, NO_GO, VerdictThresholds, decide, thresholds_from

GOOD: dict[str, Any] = {
    "return_pct": 4.0, "max_drawdown_pct": 0.03, "max_daily_drawdown_pct": 0.01,
    "circuit_breaker_threshold_pct": 0.10, "max_daily_drawdown_limit_pct": 0.05, "risk_breaches": 0,
    "days": 60, "trades": 120, "psr": 0.99, "sharpe_ci_low": 0.4, "mean_abs_slippage_bps": 2.0,
    "mean_quality_score": 0.8, "data_gaps": 0, "restarts": 0, "critical_alerts": 0, "dead_letters": 0,
}

FLIPS = [
    ("return_pct", -0.5, NO_GO, "return after fees (%)"),
    ("max_drawdown_pct", 0.12, NO_GO, "max drawdown"),
    ("max_daily_drawdown_pct", 0.06, NO_GO, "worst daily drawdown"),
    ("risk_breaches", 1, NO_GO, "risk-limit trips (R3 halts, R5 circuit breaker)"),
    ("days", 7, INCONCLUSIVE, "sample: days"),
    ("trades", 5, INCONCLUSIVE, "sample: closed trades"),
    ("psr", 0.7, INCONCLUSIVE, "probabilistic Sharpe ratio"),
    ("psr", None, INCONCLUSIVE, "probabilistic Sharpe ratio"),
    ("sharpe_ci_low", -0.2, INCONCLUSIVE, "Sharpe 95% CI above 0"),
    ("mean_abs_slippage_bps", 25.0, NO_GO, "mean |slippage| (bps)"),
    ("mean_quality_score", 0.2, NO_GO, "mean execution quality score"),
    ("data_gaps", 9, NO_GO, "data gaps"),
    ("restarts", 2, NO_GO, "restarts"),
    ("critical_alerts", 1, NO_GO, "critical alerts"),
    ("dead_letters", 3, NO_GO, "dead letters"),
]


def test_all_good_is_go_with_every_criterion_shown() -> None:
    v = decide(GOOD)
    assert v.decision == GO
    assert len(v.criteria) == 14 and all(c.status == "pass" for c in v.criteria)
    assert all(c.threshold for c in v.criteria)


@pytest.mark.parametrize(("key", "value", "decision", "name"), FLIPS, ids=[f"{k}={v}" for k, v, _, _ in FLIPS])
def test_each_criterion_flips_the_verdict(key: str, value: Any, decision: str, name: str) -> None:
    v = decide({**GOOD, key: value})
    assert v.decision == decision
    failed = [c for c in v.criteria if c.status == "fail"]
    assert [c.name for c in failed] == [name]
    assert name in v.reason


def test_hard_failure_wins_over_a_small_sample() -> None:
    assert decide({**GOOD, "days": 7, "return_pct": -3.0}).decision == NO_GO


def test_unknown_values_are_not_applicable_not_failures() -> None:
    v = decide({**GOOD, "restarts": None, "mean_quality_score": None, "dead_letters": None})
    assert v.decision == GO
    assert {c.name: c.status for c in v.criteria}["restarts"] == "n/a"


def test_drawdown_is_measured_against_the_runs_risk_limits() -> None:
    # 12% is fine under a 15% circuit breaker, not under 10%
    assert decide({**GOOD, "max_drawdown_pct": 0.12, "circuit_breaker_threshold_pct": 0.15}).decision == GO
    assert decide({**GOOD, "max_drawdown_pct": 0.12}).decision == NO_GO
    t = VerdictThresholds(max_drawdown_share=0.5)  # stricter: half the breaker
    assert decide({**GOOD, "max_drawdown_pct": 0.06}, t).decision == NO_GO


def test_thresholds_from_environment_and_flags() -> None:
    env = {"CLAIRE_VERDICT_MIN_PSR": "0.5", "CLAIRE_VERDICT_MIN_DAYS": "7",
           "CLAIRE_VERDICT_REQUIRE_SHARPE_CI_ABOVE_ZERO": "false"}
    t = thresholds_from(env)
    assert (t.min_psr, t.min_days, t.require_sharpe_ci_above_zero) == (0.5, 7, False)
    assert decide({**GOOD, "psr": 0.7, "days": 7, "sharpe_ci_low": -1.0}, t).decision == GO
    t2 = thresholds_from(env, min_psr=0.9, min_days=None)  # a flag wins over the environment; None: not given
    assert (t2.min_psr, t2.min_days) == (0.9, 7)
    with pytest.raises(ValueError, match="CLAIRE_VERDICT_MIN_DAYS: expected a int, got 'x'"):
        thresholds_from({"CLAIRE_VERDICT_MIN_DAYS": "x"})
    with pytest.raises(ValueError, match="must be <= 1"):
        thresholds_from({}, min_psr=1.5)

"""Our return-based figures equal quantstats' on the same daily returns (1e-9 relative)."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import pandas as pd
import pytest

from claire.reporting import metrics as M
from claire.reporting.report.load import load_run_files
from claire.reporting.stats import sharpe_sortino

from .report_support import run_backtest_files

qs = pytest.importorskip("quantstats")  # a test dependency (pyproject [test]); installed by make test

P = 365
REL = 1e-9


def _series(r: list[float]) -> pd.Series:
    return pd.Series(r, index=pd.date_range("2026-01-01", periods=len(r), freq="D"))


def _theirs(r: list[float]) -> dict[str, float]:
    s = _series(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "sharpe": qs.stats.sharpe(s, periods=P),
            "sortino": qs.stats.sortino(s, periods=P),
            "volatility": qs.stats.volatility(s, periods=P),
            "cagr": qs.stats.cagr(s, periods=P),
            "max_drawdown": qs.stats.max_drawdown(s),
            "calmar": qs.stats.calmar(s, periods=P),
            "total_return": qs.stats.comp(s),
            "win_rate_days": qs.stats.win_rate(s),
            "avg_win_day": qs.stats.avg_win(s),
            "avg_loss_day": qs.stats.avg_loss(s),
            "profit_factor_days": qs.stats.profit_factor(s),
            "payoff_ratio": qs.stats.payoff_ratio(s),
            "best_day": qs.stats.best(s),
            "worst_day": qs.stats.worst(s),
            "skew": qs.stats.skew(s),
            "kurtosis": qs.stats.kurtosis(s),
            "value_at_risk_95": qs.stats.value_at_risk(s),
            "psr": qs.stats.probabilistic_ratio(s, base="sharpe", periods=P),
        }


def _assert_equal(r: list[float]) -> int:
    ours = M.daily_metrics(r, P)
    theirs = _theirs(r)
    for key, want in theirs.items():
        got = ours[key]
        if not math.isfinite(float(want)):  # quantstats' NaN / inf where a figure is undefined: ours is None
            assert got is None, (key, got, want)
            continue
        assert got is not None, key
        assert math.isclose(got, float(want), rel_tol=REL, abs_tol=1e-15), (key, got, want)
    assert ours["mean_daily_return"] == pytest.approx(float(_series(r).mean()), rel=REL)
    return len(theirs)


@pytest.mark.parametrize(("seed", "n"), [(1, 5), (2, 30), (3, 200), (4, 730), (5, 7)])
def test_random_series_equal_quantstats(seed: int, n: int) -> None:
    rng = random.Random(seed)
    r = [rng.gauss(0.0005, 0.02) for _ in range(n)]
    assert any(x < 0 for x in r) and any(x > 0 for x in r)
    assert _assert_equal(r) == 18


@pytest.mark.parametrize(("strategy", "extra"), [("momentum", ()), ("sma_cross", ("--risk", "none"))])
def test_demo_like_run_equals_quantstats(tmp_path: Path, strategy: str, extra: tuple[str, ...]) -> None:
    """Real backtests on the bundled bars (BTC + ETH, 30 days; the demo's strategy and risk gate, which
    trips the circuit breaker, and one that trades throughout): daily returns from equity.csv."""
    run_dir = run_backtest_files(tmp_path / "run", strategy=strategy, extra=extra)
    data = load_run_files(run_dir)
    r = data.daily_returns()
    assert len(r) >= 10
    assert any(x != 0 for x in r)
    _assert_equal(r)
    # stats.sharpe_sortino (the summary's Sharpe) delegates to metrics
    assert sharpe_sortino(r) == (M.sharpe(r), M.sortino(r))


def test_trade_based_figures_differ_from_return_based_and_are_named() -> None:
    pnls = [10.0, -5.0, 0.0, 20.0, -15.0]
    t = M.trade_stats(pnls)
    assert t["win_rate_trades"] == pytest.approx(2 / 5)
    assert t["profit_factor_trades"] == pytest.approx(30 / 20)
    assert t["avg_loss_trade"] == pytest.approx(-20 / 3)
    r = [0.01, -0.005, 0.0, 0.02, -0.015]
    d = M.daily_metrics(r)
    assert d["profit_factor_days"] == pytest.approx(0.03 / 0.02)
    assert d["win_rate_days"] == pytest.approx(2 / 4)  # quantstats leaves zero days out


def test_undefined_figures_are_none() -> None:
    assert M.sharpe([0.01]) is None
    assert M.sharpe([0.01, 0.01]) is None  # no variation
    assert M.sortino([0.01, 0.02]) is None  # no losing day
    assert M.daily_closes_of([(0, 1), (10, 2), (M.NS_PER_DAY, 3)]) == [(0, 2.0), (1, 3.0)]
    assert M.returns_from_closes(100, [(0, 110.0), (1, 99.0)]) == pytest.approx([0.1, -0.1])

"""Performance figures from daily returns (A2), defined as quantstats defines them.

Pure functions over a list of daily returns (floats, UTC days, equity including unrealised PnL),
annualised with 365 days: crypto trades every day. Each function names the quantstats function
it equals (``tests/reporting/test_metrics_quantstats.py`` checks them to 1e-9 relative); the
formulas are in docs/metrics.md. Where our definition differs on purpose (profit factor and win
rate from closed trades), both are computed and named apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from statistics import NormalDist
from typing import Any

PERIODS_PER_YEAR = 365
NS_PER_DAY = 86_400 * 1_000_000_000


def daily_closes_of(points: Iterable[tuple[int, Any]]) -> list[tuple[int, float]]:
    """``(UTC day number, close)`` from ``(ts_ns, equity)`` points in time order: a day's close
    is the last equity of that day."""
    out: list[tuple[int, float]] = []
    for ts, eq in points:
        day = int(ts) // NS_PER_DAY
        if out and out[-1][0] == day:
            out[-1] = (day, float(eq))
        else:
            out.append((day, float(eq)))
    return out


def returns_from_closes(start_cash: float | Decimal, closes: Sequence[tuple[int, float]]) -> list[float]:
    """Daily returns: each close over the previous one, the first day's over the start cash."""
    prev = float(start_cash)
    out = []
    for _day, close in closes:
        out.append(close / prev - 1.0 if prev > 0 else 0.0)
        prev = close
    return out


def mean(r: Sequence[float]) -> float | None:
    return math.fsum(r) / len(r) if r else None


def stdev(r: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof=1), as pandas' ``std``."""
    n = len(r)
    if n < 2:
        return None
    m = math.fsum(r) / n
    return math.sqrt(math.fsum((x - m) ** 2 for x in r) / (n - 1))


def sharpe(r: Sequence[float], periods: int = PERIODS_PER_YEAR, annualize: bool = True) -> float | None:
    """``qs.stats.sharpe(r, periods=365)``: mean / sample sd * sqrt(periods); None when undefined."""
    sd = stdev(r)
    if sd is None or sd == 0:
        return None
    return math.fsum(r) / len(r) / sd * (math.sqrt(periods) if annualize else 1.0)


def sortino(r: Sequence[float], periods: int = PERIODS_PER_YEAR) -> float | None:
    """``qs.stats.sortino``: mean / sqrt(sum of squared negative returns / n) * sqrt(periods)."""
    n = len(r)
    if n < 2:
        return None
    down = math.sqrt(math.fsum(x * x for x in r if x < 0) / n)
    if down == 0:
        return None
    return math.fsum(r) / n / down * math.sqrt(periods)


def volatility(r: Sequence[float], periods: int = PERIODS_PER_YEAR) -> float | None:
    """``qs.stats.volatility``: sample sd * sqrt(periods)."""
    sd = stdev(r)
    return None if sd is None else sd * math.sqrt(periods)


def total_return(r: Sequence[float]) -> float:
    """``qs.stats.comp``: the compounded return, prod(1 + r) - 1."""
    return math.prod(1.0 + x for x in r) - 1.0


def cagr(r: Sequence[float], periods: int = PERIODS_PER_YEAR) -> float | None:
    """``qs.stats.cagr(r, periods=365)``: (prod(1 + r)) ** (periods / n) - 1."""
    if not r:
        return None
    wealth = math.prod(1.0 + x for x in r)
    if wealth < 0:
        return None
    return float(wealth ** (periods / len(r)) - 1.0)


def drawdown_series(r: Sequence[float]) -> list[float]:
    """``qs.stats.to_drawdown_series``: wealth over its running peak minus 1 (<= 0), the peak
    starting at 1 (the start cash)."""
    wealth, peak, out = 1.0, 1.0, []
    for x in r:
        wealth *= 1.0 + x
        peak = max(peak, wealth)
        out.append(wealth / peak - 1.0)
    return out


def max_drawdown(r: Sequence[float]) -> float:
    """``qs.stats.max_drawdown``: the deepest drawdown of the daily closes (<= 0)."""
    return min(drawdown_series(r), default=0.0)


def calmar(r: Sequence[float], periods: int = PERIODS_PER_YEAR) -> float | None:
    """``qs.stats.calmar``: CAGR / |max drawdown|."""
    c, dd = cagr(r, periods), max_drawdown(r)
    return None if c is None or dd == 0 else c / abs(dd)


def win_rate_days(r: Sequence[float]) -> float | None:
    """``qs.stats.win_rate``: positive days over days with a non-zero return."""
    nonzero = [x for x in r if x != 0]
    return sum(1 for x in nonzero if x > 0) / len(nonzero) if nonzero else None


def avg_win(r: Sequence[float]) -> float | None:
    """``qs.stats.avg_win``: the mean of the positive days."""
    return mean([x for x in r if x > 0])


def avg_loss(r: Sequence[float]) -> float | None:
    """``qs.stats.avg_loss``: the mean of the negative days (< 0)."""
    return mean([x for x in r if x < 0])


def profit_factor_days(r: Sequence[float]) -> float | None:
    """``qs.stats.profit_factor`` (return-based): sum of days >= 0 over |sum of days < 0|."""
    wins = math.fsum(x for x in r if x >= 0)
    losses = abs(math.fsum(x for x in r if x < 0))
    if losses == 0:
        return None
    return wins / losses


def payoff_ratio(r: Sequence[float]) -> float | None:
    """``qs.stats.payoff_ratio``: average winning day over |average losing day|."""
    w, lo = avg_win(r), avg_loss(r)
    return None if w is None or lo is None or lo == 0 else w / abs(lo)


def best_day(r: Sequence[float]) -> float | None:
    """``qs.stats.best``."""
    return max(r) if r else None


def worst_day(r: Sequence[float]) -> float | None:
    """``qs.stats.worst``."""
    return min(r) if r else None


def skew(r: Sequence[float]) -> float | None:
    """``qs.stats.skew`` (pandas' ``skew``): the adjusted Fisher-Pearson coefficient G1."""
    n = len(r)
    if n < 3:
        return None
    m = math.fsum(r) / n
    m2 = math.fsum((x - m) ** 2 for x in r) / n
    m3 = math.fsum((x - m) ** 3 for x in r) / n
    if m2 == 0:
        return 0.0
    return float(math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2 ** 1.5)


def kurtosis(r: Sequence[float]) -> float | None:
    """``qs.stats.kurtosis`` (pandas' ``kurt``): bias-corrected excess kurtosis G2."""
    n = len(r)
    if n < 4:
        return None
    m = math.fsum(r) / n
    s2 = math.fsum((x - m) ** 2 for x in r)
    s4 = math.fsum((x - m) ** 4 for x in r)
    if s2 == 0:
        return 0.0
    return (n * (n + 1) * (n - 1) * s4 / (s2 * s2) - 3 * (n - 1) ** 2) / ((n - 2) * (n - 3))


def value_at_risk(r: Sequence[float], confidence: float = 0.95) -> float | None:
    """``qs.stats.value_at_risk``: the normal quantile 1 - confidence of the daily returns."""
    m, sd = mean(r), stdev(r)
    if m is None or sd is None or sd == 0:
        return None
    return NormalDist(m, sd).inv_cdf(1 - confidence)


def probabilistic_sharpe(r: Sequence[float], benchmark: float = 0.0) -> float | None:
    """``qs.stats.probabilistic_ratio(r, base="sharpe")`` (Bailey & Lopez de Prado 2012): the
    probability that the true (daily, not annualised) Sharpe exceeds ``benchmark``, given the
    sample's length, skew and kurtosis: Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2))."""
    sr = sharpe(r, annualize=False)
    g3, g4 = skew(r), kurtosis(r)
    if sr is None or g3 is None or g4 is None:
        return None
    var = (1 - g3 * sr + (g4 + 3 - 1) / 4 * sr * sr) / (len(r) - 1)
    if var <= 0:
        return None
    return NormalDist().cdf((sr - benchmark) / math.sqrt(var))


def trade_stats(pnls: Sequence[float]) -> dict[str, float | int | None]:
    """Figures from closed trades' PnL after fees (our definition, not quantstats'): win rate
    (wins / trades, a zero PnL counts as a loss), profit factor (gross won / gross lost),
    average win and loss, expectancy."""
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p <= 0]
    won, lost = math.fsum(wins), -math.fsum(losses)
    return {
        "trades": len(pnls),
        "win_rate_trades": len(wins) / len(pnls) if pnls else None,
        "profit_factor_trades": won / lost if lost > 0 else None,
        "avg_win_trade": won / len(wins) if wins else None,
        "avg_loss_trade": -lost / len(losses) if losses else None,
        "expectancy_trade": math.fsum(pnls) / len(pnls) if pnls else None,
    }


def daily_metrics(r: Sequence[float], periods: int = PERIODS_PER_YEAR) -> dict[str, float | int | None]:
    """Every return-based figure of this module for one series (keys as in docs/metrics.md)."""
    return {
        "days": len(r),
        "total_return": total_return(r) if r else None,
        "cagr": cagr(r, periods),
        "volatility": volatility(r, periods),
        "sharpe": sharpe(r, periods),
        "sortino": sortino(r, periods),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar(r, periods),
        "mean_daily_return": mean(r),
        "win_rate_days": win_rate_days(r),
        "avg_win_day": avg_win(r),
        "avg_loss_day": avg_loss(r),
        "profit_factor_days": profit_factor_days(r),
        "payoff_ratio": payoff_ratio(r),
        "best_day": best_day(r),
        "worst_day": worst_day(r),
        "skew": skew(r),
        "kurtosis": kurtosis(r),
        "value_at_risk_95": value_at_risk(r),
        "psr": probabilistic_sharpe(r),
    }

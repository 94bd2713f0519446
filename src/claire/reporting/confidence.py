"""How far a run's figures can be trusted: the sample, bootstrap intervals, the probabilistic Sharpe.

A week gives seven daily returns; an annualised Sharpe from seven numbers is noise. So every
figure here comes with its sample size and an interval, and a figure from too small a sample
is flagged as such (not hidden). Formulas: docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from claire.reporting import metrics as M

#: fewer daily returns than this: an annualised Sharpe is flagged as too small a sample
MIN_DAYS_FOR_ANNUALISED = 30
#: fewer closed trades than this: the trade statistics are flagged
MIN_TRADES = 30
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20260101


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None
    level: float

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class Confidence:
    days: int
    trades: int
    sharpe: Interval  # annualised (365)
    mean_daily_return: Interval
    psr: float | None  # P(true Sharpe > 0)
    too_small: bool
    notes: list[str]


def _sharpe_rows(x: np.ndarray, periods: int) -> np.ndarray:
    """Annualised Sharpe of each row of resampled returns (NaN where the sd is 0)."""
    sd = x.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, x.mean(axis=1) / sd * math.sqrt(periods), np.nan)


def bootstrap(returns: Sequence[float], stat: Callable[[np.ndarray], np.ndarray], *, samples: int = BOOTSTRAP_SAMPLES,
              seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``stat`` (applied to a 2-D array, one resample per row)
    over daily returns drawn with replacement; seeded, so the same returns give the same interval."""
    n = len(returns)
    if n < 2:
        return None, None
    rng = np.random.default_rng(seed)
    r = np.asarray(returns, dtype=float)
    values = stat(r[rng.integers(0, n, size=(samples, n))])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None, None
    a = (1 - level) / 2
    low, high = np.quantile(values, [a, 1 - a])
    return float(low), float(high)


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x * 100:.3f}%" if pct else f"{x:.2f}"


def assess(returns: Sequence[float], trades: int, *, periods: int = M.PERIODS_PER_YEAR,
           min_days: int = MIN_DAYS_FOR_ANNUALISED, min_trades: int = MIN_TRADES, seed: int = BOOTSTRAP_SEED,
           samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95) -> Confidence:
    """The sample, the intervals of the Sharpe and of the mean daily return, and the PSR."""
    n = len(returns)
    s_lo, s_hi = bootstrap(returns, lambda x: _sharpe_rows(x, periods), samples=samples, seed=seed, level=level)
    m_lo, m_hi = bootstrap(returns, lambda x: x.mean(axis=1), samples=samples, seed=seed, level=level)
    sharpe = Interval(M.sharpe(returns, periods), s_lo, s_hi, level)
    mean = Interval(M.mean(returns), m_lo, m_hi, level)
    psr = M.probabilistic_sharpe(returns)
    too_small = n < min_days
    notes = []
    pct = f"{level * 100:.0f}%"
    if too_small:
        notes.append(f"{n} day{'s' if n != 1 else ''}: too few for an annualised Sharpe (fewer than {min_days}); "
                     f"{pct} CI [{_fmt(s_lo)}, {_fmt(s_hi)}]")
    else:
        notes.append(f"{n} days: annualised Sharpe {_fmt(sharpe.estimate)}, {pct} CI [{_fmt(s_lo)}, {_fmt(s_hi)}]")
    notes.append(f"mean daily return {_fmt(mean.estimate, True)}, {pct} CI [{_fmt(m_lo, True)}, {_fmt(m_hi, True)}]"
                 + ("" if mean.excludes_zero else ": the interval includes 0"))
    if psr is None:
        notes.append("probabilistic Sharpe ratio: n/a (needs at least 4 days with varying returns)")
    if trades < min_trades:
        notes.append(f"{trades} closed trade{'s' if trades != 1 else ''}: too few for trade statistics to mean much")
    return Confidence(days=n, trades=trades, sharpe=sharpe, mean_daily_return=mean, psr=psr,
                      too_small=too_small, notes=notes)

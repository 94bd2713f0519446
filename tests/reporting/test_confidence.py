"""Honest confidence: seeded bootstrap intervals, the probabilistic Sharpe ratio, small samples flagged."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from claire.reporting import metrics as M
from claire.reporting.confidence import assess, bootstrap


def _returns(n: int, seed: int = 5, mu: float = 0.001, sd: float = 0.01) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sd) for _ in range(n)]


def test_bootstrap_is_seeded_same_interval_twice_other_seed_other_interval() -> None:
    r = _returns(60)
    a, b = assess(r, 40), assess(r, 40)
    assert (a.sharpe.low, a.sharpe.high) == (b.sharpe.low, b.sharpe.high)
    assert (a.mean_daily_return.low, a.mean_daily_return.high) == (b.mean_daily_return.low, b.mean_daily_return.high)
    c = assess(r, 40, seed=1)
    assert (c.sharpe.low, c.sharpe.high) != (a.sharpe.low, a.sharpe.high)
    assert a.sharpe.low < a.sharpe.estimate < a.sharpe.high
    assert a.mean_daily_return.low < M.mean(r) < a.mean_daily_return.high


def test_bootstrap_interval_of_the_mean_is_near_the_normal_one() -> None:
    r = _returns(400, seed=9)
    lo, hi = bootstrap(r, lambda x: x.mean(axis=1), samples=4000)
    se = M.stdev(r) / math.sqrt(len(r))
    z = NormalDist().inv_cdf(0.975)
    assert lo == pytest.approx(M.mean(r) - z * se, abs=0.15 * se * z)
    assert hi == pytest.approx(M.mean(r) + z * se, abs=0.15 * se * z)


def test_psr_known_value() -> None:
    """PSR by hand for a small series: SR (daily), G1 and G2 as pandas defines them."""
    r = [0.01, -0.005, 0.02, 0.0, -0.01, 0.015, 0.005]
    n = len(r)
    m = sum(r) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in r) / (n - 1))
    sr = m / sd
    m2 = sum((x - m) ** 2 for x in r) / n
    m3 = sum((x - m) ** 3 for x in r) / n
    g1 = math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2 ** 1.5
    s2 = sum((x - m) ** 2 for x in r)
    s4 = sum((x - m) ** 4 for x in r)
    g2 = (n * (n + 1) * (n - 1) * s4 / s2 ** 2 - 3 * (n - 1) ** 2) / ((n - 2) * (n - 3))
    want = NormalDist().cdf(sr * math.sqrt(n - 1) / math.sqrt(1 - g1 * sr + (g2 + 2) / 4 * sr ** 2))
    assert M.probabilistic_sharpe(r) == pytest.approx(want, rel=1e-12)
    assert 0.5 < want < 1  # a positive Sharpe: more likely than not above 0
    # a symmetric normal-ish case: PSR = Phi(SR * sqrt(n - 1) / sqrt(1 + (kurt + 2)/4 SR^2)) is monotone in n
    assert M.probabilistic_sharpe(_returns(200)) > M.probabilistic_sharpe(_returns(20))


def test_a_week_is_flagged_as_too_small() -> None:
    r = _returns(7, seed=3, mu=0.01)
    c = assess(r, 5)
    assert c.too_small and c.days == 7
    assert c.notes[0].startswith("7 days: too few for an annualised Sharpe")
    assert "95% CI [" in c.notes[0]
    assert any("5 closed trades: too few" in n for n in c.notes)
    big = assess(_returns(90), 100)
    assert not big.too_small and big.notes[0].startswith("90 days: annualised Sharpe")


def test_degenerate_samples() -> None:
    c = assess([0.01], 0)
    assert c.sharpe.low is None and c.psr is None and c.too_small
    flat = assess([0.0] * 10, 0)
    assert flat.sharpe.estimate is None and flat.psr is None

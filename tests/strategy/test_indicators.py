"""Indicators: against TA-Lib on a month of real BTC and ETH 1-minute closes (43,199 each), and
incremental == recomputed from scratch on random data."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from claire.strategy.indicators import EMA, MACD, RSI, SMA, BollingerBands
from tests.strategy._data import closes, decimal_closes

RTOL = 1e-9
SYMBOLS = ["BTC", "ETH"]


def _series(values: list, width: int | None = None) -> np.ndarray:
    """None -> NaN; tuples -> columns."""
    if width is None:
        return np.array([np.nan if v is None else float(v) for v in values])
    return np.array([[np.nan] * width if v is None else [float(x) for x in v] for v in values])


def _assert_matches(ours: np.ndarray, ref: np.ndarray, what: str) -> float:
    """Same warm-up (NaN where TA-Lib has NaN), then equal to RTOL relative; returns max rel error."""
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), f"{what}: warm-up differs"
    defined = ~np.isnan(ref)
    assert defined.sum() > 43_000
    np.testing.assert_allclose(ours[defined], ref[defined], rtol=RTOL, atol=0, err_msg=what)
    nz = defined & (ref != 0)
    return float(np.max(np.abs(ours[nz] / ref[nz] - 1)))


# --- real data vs TA-Lib ------------------------------------------------------------------


@pytest.mark.parametrize("sym", SYMBOLS)
def test_sma_matches_talib_and_is_exact(sym):
    c = closes(sym)
    dec = decimal_closes(sym)
    for period in (10, 30):
        sma = SMA(period)
        out = [sma.update(x) for x in dec]
        _assert_matches(_series(out), talib.SMA(c, period), f"SMA{period} {sym}")
        # the running sum is exact: equal to a fresh Decimal sum of the last `period` closes
        assert sma.sum == sum(dec[-period:], Decimal(0))
        assert sma.count == period
        assert out[-1] == sma.value == sma.sum / period


@pytest.mark.parametrize("sym", SYMBOLS)
def test_ema_matches_talib(sym):
    c = closes(sym)
    for period in (12, 26, 50):
        ema = EMA(period)
        _assert_matches(_series([ema.update(x) for x in c]), talib.EMA(c, period), f"EMA{period} {sym}")


@pytest.mark.parametrize("sym", SYMBOLS)
def test_rsi_matches_talib(sym):
    c = closes(sym)
    rsi = RSI(14)
    out = _series([rsi.update(x) for x in c])
    _assert_matches(out, talib.RSI(c, 14), f"RSI14 {sym}")
    assert np.nanmin(out) >= 0 and np.nanmax(out) <= 100


@pytest.mark.parametrize("sym", SYMBOLS)
def test_rsi_from_decimal_input_is_the_same(sym):
    """Feeding the Decimal closes (as the strategies do) gives the same floats."""
    a, b = RSI(14), RSI(14)
    for x, d in zip(closes(sym)[:5000], decimal_closes(sym)[:5000], strict=True):
        assert a.update(x) == b.update(d)


@pytest.mark.parametrize("sym", SYMBOLS)
def test_macd_matches_talib(sym):
    c = closes(sym)
    macd = MACD(12, 26, 9)
    out = _series([macd.update(x) for x in c], 3)
    ref_m, ref_s, ref_h = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    _assert_matches(out[:, 0], ref_m, f"MACD line {sym}")
    _assert_matches(out[:, 1], ref_s, f"MACD signal {sym}")
    _assert_matches(out[:, 2], ref_h, f"MACD hist {sym}")
    assert int(np.argmax(~np.isnan(out[:, 0]))) == 33  # first complete value on update 34


@pytest.mark.parametrize("sym", SYMBOLS)
def test_bollinger_matches_talib(sym):
    c = closes(sym)
    bb = BollingerBands(20, 2)
    out = _series([bb.update(x) for x in decimal_closes(sym)], 3)
    up, mid, lo = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    _assert_matches(out[:, 0], up, f"BB upper {sym}")
    _assert_matches(out[:, 1], mid, f"BB middle {sym}")
    _assert_matches(out[:, 2], lo, f"BB lower {sym}")


@pytest.mark.parametrize("sym", SYMBOLS)
def test_bollinger_std_is_exact_to_float_precision(sym):
    """The standard deviation itself against an exact (Fraction) computation at every 97th bar."""
    dec = decimal_closes(sym)
    bb = BollingerBands(20, 2)
    worst = 0.0
    for i, x in enumerate(dec):
        bb.update(x)
        if i >= 19 and i % 97 == 0:
            win = [Fraction(v) for v in dec[i - 19: i + 1]]
            mean = sum(win) / 20
            var = sum((v - mean) ** 2 for v in win) / 20
            exact = math.sqrt(var)  # float(var) then sqrt: correctly rounded to ~1 ulp
            assert bb.middle == float(mean)
            if exact:
                worst = max(worst, abs(bb.std / exact - 1))
            else:
                assert bb.std == 0.0
    assert worst < 1e-14


# --- incremental == from scratch (random data) --------------------------------------------

prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4,
                     allow_nan=False, allow_infinity=False)
price_lists = st.lists(prices, min_size=1, max_size=80)


def _close(a: float | None, b: float | None, scale: float, rel: float = 1e-12) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel * scale)


@settings(max_examples=150, deadline=None)
@given(xs=price_lists, period=st.integers(1, 12))
def test_sma_incremental_equals_scratch(xs, period):
    sma = SMA(period)
    for i, x in enumerate(xs):
        got = sma.update(x)
        window = xs[max(0, i + 1 - period): i + 1]
        assert sma.sum == sum(window, Decimal(0))  # exact
        assert sma.count == len(window)
        if i + 1 < period:
            assert got is None and not sma.ready
        else:
            assert sma.ready and got == sum(window, Decimal(0)) / period
            assert Fraction(sma.sum) / period == sum(Fraction(w) for w in window) / period


def _ema_scratch(xs: list[float], n: int) -> float | None:
    """Closed form: (1-k)^m * seed + sum k (1-k)^(m-j) x_j, with the SMA seed of the first n."""
    if len(xs) < n:
        return None
    k = 2.0 / (n + 1)
    seed = math.fsum(xs[:n]) / n
    rest = xs[n:]
    m = len(rest)
    return math.fsum([(1 - k) ** m * seed] + [k * (1 - k) ** (m - 1 - j) * x for j, x in enumerate(rest)])


@settings(max_examples=150, deadline=None)
@given(xs=price_lists, period=st.integers(1, 12))
def test_ema_incremental_equals_scratch(xs, period):
    fx = [float(x) for x in xs]
    ema = EMA(period)
    for i in range(len(fx)):
        got = ema.update(xs[i])
        assert _close(got, _ema_scratch(fx[: i + 1], period), scale=max(fx[: i + 1]), rel=1e-11)
        assert ema.ready == (got is not None)


def _rsi_scratch(xs: list[float], n: int) -> float | None:
    if len(xs) < n + 1:
        return None
    diffs = [b - a for a, b in itertools.pairwise(xs)]
    gain = sum(d for d in diffs[:n] if d > 0) / n
    loss = sum(-d for d in diffs[:n] if d < 0) / n
    for d in diffs[n:]:
        gain = (gain * (n - 1) + max(d, 0.0)) / n
        loss = (loss * (n - 1) + max(-d, 0.0)) / n
    return 50.0 if gain + loss == 0 else 100.0 * gain / (gain + loss)


@settings(max_examples=150, deadline=None)
@given(xs=st.lists(prices, min_size=1, max_size=60), period=st.integers(1, 15))
def test_rsi_incremental_equals_scratch(xs, period):
    fx = [float(x) for x in xs]
    rsi = RSI(period)
    for i in range(len(fx)):
        got = rsi.update(fx[i])
        ref = _rsi_scratch(fx[: i + 1], period)
        # RSI is a ratio of sums of price differences: allow for their cancellation
        assert _close(got, ref, scale=100.0, rel=1e-9)


def _ema_array(xs: list[float], n: int, start: int) -> list[float]:
    """EMA over xs, first value at index `start` = mean of xs[start-n+1 .. start]."""
    k = 2.0 / (n + 1)
    v = sum(xs[start - n + 1: start + 1]) / n
    out = [v]
    for x in xs[start + 1:]:
        v = (x - v) * k + v
        out.append(v)
    return out


def _macd_scratch(xs: list[float], f: int, s: int, g: int) -> tuple[float, float, float] | None:
    if len(xs) < s + g - 1:
        return None
    fast = _ema_array(xs, f, s - 1)
    slow = _ema_array(xs, s, s - 1)
    line = [a - b for a, b in zip(fast, slow, strict=True)]
    sig = _ema_array(line, g, g - 1)
    return line[-1], sig[-1], line[-1] - sig[-1]


@settings(max_examples=100, deadline=None)
@given(xs=st.lists(prices, min_size=1, max_size=70),
       periods=st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 6)))
def test_macd_incremental_equals_scratch(xs, periods):
    f, extra, g = periods
    s = f + extra
    fx = [float(x) for x in xs]
    macd = MACD(f, s, g)
    for i in range(len(fx)):
        got = macd.update(fx[i])
        ref = _macd_scratch(fx[: i + 1], f, s, g)
        if ref is None:
            assert got is None and not macd.ready
            continue
        assert got == (macd.macd, macd.signal, macd.hist) == macd.value
        scale = max(fx[: i + 1])
        for a, b in zip(got, ref, strict=True):
            assert _close(a, b, scale=scale)


@settings(max_examples=100, deadline=None)
@given(xs=price_lists, period=st.integers(1, 25), k=st.sampled_from([0.0, 1.0, 2.0, 2.5]))
def test_bollinger_incremental_equals_scratch(xs, period, k):
    bb = BollingerBands(period, k)
    for i, x in enumerate(xs):
        got = bb.update(x)
        if i + 1 < period:
            assert got is None and not bb.ready
            continue
        win = [Fraction(v) for v in xs[i + 1 - period: i + 1]]
        mean = sum(win) / period
        std = math.sqrt(sum((v - mean) ** 2 for v in win) / period)
        assert got == (bb.upper, bb.middle, bb.lower) == bb.value
        assert math.isclose(bb.middle, float(mean), rel_tol=1e-15)
        assert math.isclose(bb.std, std, rel_tol=1e-14, abs_tol=0)
        assert math.isclose(bb.upper, float(mean) + k * std, rel_tol=1e-15)
        assert math.isclose(bb.lower, float(mean) - k * std, rel_tol=1e-15, abs_tol=1e-9 * float(mean))
        assert bb.sum == sum(xs[i + 1 - period: i + 1], Decimal(0))


# --- edges ------------------------------------------------------------------------------


def test_rsi_flat_is_neutral_and_extremes():
    rsi = RSI(3)
    assert [rsi.update(10) for _ in range(5)] == [None, None, None, 50.0, 50.0]
    up = RSI(3)
    assert [up.update(x) for x in (1, 2, 3, 4, 5)][-1] == 100.0
    down = RSI(3)
    assert [down.update(x) for x in (5, 4, 3, 2, 1)][-1] == 0.0


def test_bollinger_flat_position_and_float_input():
    bb = BollingerBands(3, 2)
    for _ in range(3):
        bb.update(0.1)  # floats are taken by their shortest decimal form
    assert bb.sum == Decimal("0.3") and bb.std == 0.0
    assert bb.value == (0.1, 0.1, 0.1)
    assert bb.position(Decimal("0.1")) == 0.5
    bb.update(Decimal("0.4"))  # window 0.1 0.1 0.4: mean 0.2, var 0.02
    assert bb.middle == 0.2
    assert math.isclose(bb.std, math.sqrt(0.02), rel_tol=1e-15)
    assert math.isclose(bb.position(Decimal("0.2")), 0.5, rel_tol=1e-15)
    assert bb.position(bb.upper) == 1.0


def test_warmup_lengths():
    ind = {"sma": SMA(5), "ema": EMA(5), "rsi": RSI(5), "macd": MACD(3, 5, 4), "bb": BollingerBands(5)}
    first = {}
    for i in range(1, 20):
        for name, x in ind.items():
            if x.update(Decimal(100 + (i % 3))) is not None and name not in first:
                first[name] = i
                assert x.ready and x.value is not None
    assert first == {"sma": 5, "ema": 5, "rsi": 6, "macd": 8, "bb": 5}


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SMA(0), "`period` must be >= 1"),
        (lambda: EMA(2.5), "`period` must be an int"),
        (lambda: RSI(True), "`period` must be an int"),
        (lambda: MACD(26, 12, 9), "MACD needs fast < slow"),
        (lambda: BollingerBands(20, -1), "`num_std` must be a finite number >= 0"),
    ],
)
def test_bad_parameters(factory, message):
    with pytest.raises((ValueError, TypeError), match=message):
        factory()


def test_macd_seeding_convention():
    """TA-Lib alignment: both EMAs start on update `slow`; the fast one from the last `fast` values."""
    macd = MACD(2, 4, 2)
    out = [macd.update(x) for x in (1, 2, 3, 4, 10, 20)]
    assert out[:4] == [None, None, None, None]
    # update 4: fast = (3 + 4) / 2 = 3.5, slow = (1 + 2 + 3 + 4) / 4 = 2.5 -> macd 1.0
    # update 5: fast = 3.5 + (10 - 3.5) * 2/3 = 7.83.., slow = 2.5 + (10 - 2.5) * 0.4 = 5.5
    fast5 = 3.5 + (10 - 3.5) * (2 / 3)
    m5 = fast5 - 5.5
    signal5 = (1.0 + m5) / 2  # the signal line: mean of the first two MACD values
    assert out[4] == pytest.approx((m5, signal5, m5 - signal5), rel=1e-15)
    assert macd.count == 6 and macd.ready


def test_ema_seed_is_the_sma_of_the_first_n():
    ema = EMA(3)
    assert [ema.update(x) for x in (3, 6, 9)] == [None, None, 6.0]
    assert ema.update(10) == 8.0  # 6 + (10 - 6) * 0.5


# --- Bollinger bands: scaled integers give the Decimal computation's very floats ------------


class _DecimalBands:
    """The bands as they were computed before the scaled integers: Decimal sums throughout."""

    def __init__(self, period: int, k: float) -> None:
        self.n, self.k, self.buf, self.sq = period, k, [], []
        self.sum = self.sum_sq = Decimal(0)
        self.std = None

    def update(self, x):
        if type(x) is float:
            x = Decimal(repr(x))
        x2 = x * x
        if len(self.buf) == self.n:
            self.sum += x - self.buf.pop(0)
            self.sum_sq += x2 - self.sq.pop(0)
        else:
            self.sum += x
            self.sum_sq += x2
        self.buf.append(x)
        self.sq.append(x2)
        if len(self.buf) < self.n:
            return None
        num = Decimal(self.n) * self.sum_sq - self.sum * self.sum
        mid = float(self.sum / Decimal(self.n))
        self.std = math.sqrt(float(num)) / self.n if num > 0 else 0.0
        return (mid + self.k * self.std, mid, mid - self.k * self.std)


mixed_values = st.one_of(
    st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("100000"), places=8,
                allow_nan=False, allow_infinity=False),
    st.decimals(min_value=Decimal(1), max_value=Decimal("1e20"), places=0, allow_nan=False, allow_infinity=False),
    st.integers(0, 10**6),
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(mixed_values, min_size=1, max_size=60), period=st.sampled_from([1, 2, 3, 7, 14, 20, 30]),
       k=st.sampled_from([0.0, 2.0, 2.5]))
def test_bollinger_integer_sums_give_the_decimal_floats(xs, period, k):
    """Every update returns exactly (==) the floats of the Decimal computation, across changes
    of scale (more decimals), values beyond the integer mode's bound (Decimal from there on),
    ints and floats; the exact sums are the Decimal ones."""
    ref = _DecimalBands(period, k)
    bb = BollingerBands(period, k)
    for x in xs:
        assert bb.update(x) == ref.update(x)
        assert bb.std == ref.std
        assert bb.sum == ref.sum and bb.sum_sq == ref.sum_sq


@pytest.mark.parametrize("sym", SYMBOLS)
def test_bollinger_integer_sums_on_real_closes(sym):
    """A month of real closes (2 to 4 decimals, the scale grows as they come) in integer mode all
    along, each value equal to the Decimal computation's."""
    ref = _DecimalBands(20, 2.0)
    bb = BollingerBands(20, 2.0)
    for x in decimal_closes(sym):
        assert bb.update(x) == ref.update(x)
    assert bb._ibuf is not None  # never left integer mode
    assert bb.sum == ref.sum and bb.sum_sq == ref.sum_sq


def test_bollinger_leaves_integer_mode_past_the_bound():
    bb, ref = BollingerBands(3, 2.0), _DecimalBands(3, 2.0)
    xs = [Decimal("1.5"), Decimal("2.25"), Decimal("3"), Decimal("1e15"), Decimal("0.1234567890123"), Decimal(7)]
    for i, x in enumerate(xs):
        assert bb.update(x) == ref.update(x)
        assert (bb._ibuf is None) == (i >= 3)

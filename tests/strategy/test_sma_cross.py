"""sma_cross: exact crossing semantics (ties, first evaluation) and the signals on a month of real
BTC and ETH bars against an independent vectorised computation with exact sums."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from claire.events import IdFactory, Side, Signal
from claire.strategy import SignalEngine, SmaCross, coerce_params, load_strategy
from tests.strategy._data import decimal_closes, load_bars, make_bars


def run(prices: list[str], **params) -> list[tuple[int, Signal]]:
    """(bar index, signal) of every signal."""
    eng = SignalEngine(SmaCross, params, IdFactory("test"))
    out = []
    for i, bar in enumerate(make_bars(prices)):
        out.extend((i, s) for s in eng.on_bar(bar))
    return out


def kinds(signals: list[tuple[int, Signal]]) -> list[tuple[int, str]]:
    return [(i, "close" if s.reduce_only else s.side.value) for i, s in signals]


# fast=2, slow=3: sign(d) at bar i = sign(c[i-1] + c[i] - 2 c[i-2]).
# These closes give d signs (from bar 2 on)   0, +, 0, +, 0, -, -, 0, +, -, 0, -
TIE_PRICES = ["100.1", "100.1", "100.1", "100.2", "100.0", "100.5", "99.5", "100.1", "98.8",
              "101.4", "100.1", "100.1", "100.1", "100.0"]


def exact_signs(prices: list[str], fast: int, slow: int) -> list[int | None]:
    out: list[int | None] = []
    for i in range(len(prices)):
        if i + 1 < slow:
            out.append(None)
            continue
        fa = sum(Fraction(p) for p in prices[i + 1 - fast: i + 1]) / fast
        sa = sum(Fraction(p) for p in prices[i + 1 - slow: i + 1]) / slow
        out.append((fa > sa) - (fa < sa))
    return out


def test_exact_ties():
    assert exact_signs(TIE_PRICES, 2, 3) == [None, None, 0, 1, 0, 1, 0, -1, -1, 0, 1, -1, 0, -1]
    # the same comparison in float gets three of the four ties wrong: exactness matters here
    float_signs = []
    for i in range(2, len(TIE_PRICES)):
        f = [float(p) for p in TIE_PRICES[i - 2: i + 1]]
        fa, sa = (f[1] + f[2]) / 2, (f[0] + f[1] + f[2]) / 3
        float_signs.append((fa > sa) - (fa < sa))
    exact = exact_signs(TIE_PRICES, 2, 3)[2:]
    assert sum(1 for e, f in zip(exact, float_signs, strict=True) if e != f) == 4

    got = run(TIE_PRICES, fast=2, slow=3)
    assert kinds(got) == [
        (3, "buy"),     # 0 -> +  (the first evaluated bar 2 was a tie: no signal there)
        #                 bar 4: + -> 0, a tie: nothing
        #                 bar 5: 0 -> +, but only a touch (+, 0, +): no second buy
        #                 bar 6: tie
        (7, "close"),   # 0 -> -
        #                 bar 8: - -> -, nothing; bar 9: tie
        (10, "buy"),    # 0 -> +  (-, 0, +: a crossing through a tie)
        (11, "close"),  # + -> -
        #                 bar 12: tie
        (13, "close"),  # 0 -> -  (-, 0, -: the close is sent again, a no-op when flat)
    ]
    for i, sig in got:
        assert sig.price == Decimal(TIE_PRICES[i])
        assert sig.quantity is None and sig.confidence == 1
        assert sig.side is (Side.SELL if sig.reduce_only else Side.BUY)
        fast = sum(Decimal(p) for p in TIE_PRICES[i - 1: i + 1]) / 2
        slow = sum(Decimal(p) for p in TIE_PRICES[i - 2: i + 1]) / 3
        assert {k: v for k, v in sig.metadata.items() if k != "market"} == {"fast_sma": str(fast), "slow_sma": str(slow)}
        assert sig.metadata["market"]["unavailable"]["spread_bps"] == "bars carry no quotes"


def test_touch_after_the_first_evaluation_buys():
    """+ on the first evaluated bar (no buy: no previous d), then a touch 0, then +: that is
    the first buy (the strategy has not bought yet), as with 'buy only when flat'."""
    prices = ["100", "100", "101", "99", "104"]
    assert exact_signs(prices, 2, 3)[2:] == [1, 0, 1]
    assert kinds(run(prices, fast=2, slow=3)) == [(4, "buy")]


def test_ties_never_signal():
    # constant prices: every d is an exact tie (in float, 0.1 * 3 / 3 != 0.1 * 2 / 2 is possible)
    assert run(["0.1"] * 40, fast=2, slow=3) == []
    assert run(["70070.53"] * 100) == []


def test_first_evaluated_bar_gives_no_signal():
    rising = [str(100 + i) for i in range(10)]
    # d > 0 from the first evaluated bar (bar 2) on: no previous d there, so no buy at all
    assert exact_signs(rising, 2, 3)[2:] == [1] * 8
    assert run(rising, fast=2, slow=3) == []
    # then a fall: the close comes when d turns negative
    falling = [*rising, "100", "90"]
    assert exact_signs(falling, 2, 3)[10:] == [-1, -1]
    assert kinds(run(falling, fast=2, slow=3)) == [(10, "close")]
    # first evaluation below, then above: buy on the second evaluated bar
    prices = ["10", "10", "9", "12"]
    assert exact_signs(prices, 2, 3)[2:] == [-1, 1]
    assert kinds(run(prices, fast=2, slow=3)) == [(3, "buy")]


def test_nothing_before_the_slow_th_bar_with_defaults():
    # fast=10, slow=30: the fast SMA rises over the first 29 bars, but there is no slow SMA yet;
    # bar 29 is the first evaluated one (d > 0: no buy), the close comes when d turns negative
    prices = ["100"] * 20 + ["120"] * 10 + ["60"] * 5
    assert exact_signs(prices, 10, 30)[28:] == [None, 1, 1, 1, -1, -1, -1]
    assert kinds(run(prices)) == [(32, "close")]
    # one bar fewer than `slow`: never evaluated at all
    assert run(["100"] * 20 + ["90"] * 9, fast=10, slow=30) == []


def _reference_signals(dec: tuple[Decimal, ...], fast: int, slow: int) -> pd.DataFrame:
    """Independent, vectorised: exact Decimal cumulative sums -> rolling sums -> sign of d."""
    s = pd.Series(dec, dtype=object)
    cum = pd.concat([pd.Series([Decimal(0)], dtype=object), s.cumsum()], ignore_index=True)
    n = len(s)
    idx = np.arange(n)
    fast_sum = pd.Series(cum.to_numpy()[idx + 1], dtype=object) - pd.Series(
        cum.to_numpy()[np.maximum(idx + 1 - fast, 0)], dtype=object)
    slow_sum = pd.Series(cum.to_numpy()[idx + 1], dtype=object) - pd.Series(
        cum.to_numpy()[np.maximum(idx + 1 - slow, 0)], dtype=object)
    d = fast_sum * slow - slow_sum * fast
    sign = (d > 0).astype(int) - (d < 0).astype(int)
    sign[idx < slow - 1] = np.nan  # not evaluated before the slow-th bar
    prev = sign.shift(1)  # NaN at the first evaluated bar: no signal there
    buy = (sign == 1) & (prev <= 0)
    close = (sign == -1) & (prev >= 0)
    out = pd.DataFrame({"buy": buy, "close": close, "fast_sum": fast_sum, "slow_sum": slow_sum})
    return _drop_repeated_buys(out[buy | close])


def _drop_repeated_buys(events: pd.DataFrame) -> pd.DataFrame:
    """A buy right after a buy (a touch: +, 0, +) is not sent."""
    is_buy = events["buy"].to_numpy()
    keep = np.ones(len(is_buy), dtype=bool)
    keep[1:] = ~(is_buy[1:] & is_buy[:-1])
    # is_buy[:-1] refers to the previous *candidate*; a dropped buy is itself a buy, so a run of
    # buys keeps only its first: the same as comparing with the previous kept signal
    return events[keep]


def _reference_int64(dec: tuple[Decimal, ...], fast: int, slow: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A second exact reference: prices as int64 units of 1e-8, numpy cumsum.

    Returns the bar indices of buys and closes, and the sign of d per bar (0 before the slow-th)."""
    units = np.array([int(x.scaleb(8)) for x in dec], dtype=np.int64)
    assert all(Decimal(int(u)).scaleb(-8) == x for u, x in zip(units, dec, strict=True))
    cum = np.concatenate([[0], np.cumsum(units)])
    i = np.arange(slow - 1, len(units))
    d = (cum[i + 1] - cum[i + 1 - fast]) * slow - (cum[i + 1] - cum[i + 1 - slow]) * fast
    sign = np.sign(d)
    buys = i[1:][(sign[1:] > 0) & (sign[:-1] <= 0)]
    closes_ = i[1:][(sign[1:] < 0) & (sign[:-1] >= 0)]
    # no buy right after a buy: keep a buy only if a close came since the previous buy
    last_close_before = np.searchsorted(closes_, buys)  # closes before each buy
    keep = np.ones(len(buys), dtype=bool)
    keep[1:] = last_close_before[1:] > last_close_before[:-1]
    buys = buys[keep]
    full = np.zeros(len(units), dtype=np.int64)
    full[i] = sign
    return buys, closes_, full


@pytest.mark.parametrize("sym", ["BTC", "ETH"])
@pytest.mark.parametrize(("fast", "slow"), [(10, 30), (5, 7)])
def test_real_data_signals_equal_vectorised_reference(sym, fast, slow):
    bars = load_bars(sym)
    dec = decimal_closes(sym)
    eng = SignalEngine(load_strategy("sma_cross"), coerce_params(SmaCross, {"fast": str(fast), "slow": str(slow)}))
    got: list[tuple[int, Signal]] = []
    for i, bar in enumerate(bars):
        got.extend((i, s) for s in eng.on_bar(bar))

    ref = _reference_signals(dec, fast, slow)
    assert len(got) == len(ref) > 100
    assert [i for i, _ in got] == list(ref.index)
    assert [s.reduce_only for _, s in got] == list(ref["close"])
    for (i, sig), (_, row) in zip(got, ref.iterrows(), strict=True):
        assert sig.side is (Side.SELL if row["close"] else Side.BUY)
        assert sig.metadata["fast_sma"] == str(row["fast_sum"] / fast)
        assert sig.metadata["slow_sma"] == str(row["slow_sum"] / slow)
        assert sig.price == dec[i] and sig.market_ts == bars[i].ts_event
        assert sig.causation_id == bars[i].id and sig.strategy == "sma_cross"

    buys, closes_, sign = _reference_int64(dec, fast, slow)
    assert list(buys) == [i for i, s in got if not s.reduce_only]
    assert list(closes_) == [i for i, s in got if s.reduce_only]
    # never two buys in a row; two closes in a row only with an exact tie in between (-, 0, -)
    for (i, a), (j, b) in itertools.pairwise(got):
        assert a.reduce_only or b.reduce_only, (i, j)
        if a.reduce_only and b.reduce_only:
            assert (sign[i + 1: j] == 0).any(), (i, j)


def test_real_data_counts_for_the_record():
    """Pins the number of signals on BTC with the defaults (a change needs a reason)."""
    ref = _reference_signals(decimal_closes("BTC"), 10, 30)
    strat = SmaCross("BTCUSDT", IdFactory("pin"))
    n = 0
    for bar in load_bars("BTC"):
        strat._event = bar
        strat.on_bar(bar)
        n += len(strat._out)
        strat._out.clear()
    assert n == len(ref)
    assert int(ref["buy"].sum()) + int(ref["close"].sum()) == n


def test_state_and_sums_are_exact():
    bars = make_bars(["0.1", "0.2", "0.3", "0.4", "0.5"])
    strat = SmaCross("X", fast=2, slow=4)
    for b in bars:
        strat._event = b
        strat.on_bar(b)
    assert strat.fast_sum == Decimal("0.9") and strat.slow_sum == Decimal("1.4")
    assert strat.fast_avg == Decimal("0.45") and strat.slow_avg == Decimal("0.35")
    assert strat.prev_sign == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast": 30, "slow": 30}, "`fast` must be < `slow`"),
        ({"fast": 0}, "`fast` must be an int >= 1"),
        ({"slow": "x"}, "parameter slow='x' for strategy 'sma_cross' is not a valid int"),
        ({"fast_period": 3}, "unknown parameter"),
    ],
)
def test_bad_params(params, message):
    with pytest.raises(ValueError, match=message):
        SignalEngine(SmaCross, params)


def test_one_instance_per_symbol():
    eng = SignalEngine(SmaCross, {"fast": 2, "slow": 3})
    a = make_bars(TIE_PRICES, "AAA")
    b = make_bars(["100.1"] * len(TIE_PRICES), "BBB")
    got = []
    for x, y in zip(a, b, strict=True):  # interleaved symbols do not disturb each other
        got.extend(eng.on_bar(x))
        got.extend(eng.on_bar(y))
    assert {s.symbol for s in got} == {"AAA"}
    assert [(s.side, s.reduce_only, s.price) for s in got] == [
        (s.side, s.reduce_only, s.price) for _, s in run(TIE_PRICES, fast=2, slow=3)]

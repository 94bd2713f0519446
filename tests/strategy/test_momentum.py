"""momentum: signals on a month of real BTC and ETH bars against the documented rule evaluated
on TA-Lib's RSI, MACD and BBANDS; metadata, confidence, frequency; a hand-made series."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
import talib

from claire.events import IdFactory, Side, Signal
from claire.strategy import Momentum, SignalEngine, coerce_params, load_strategy
from tests.strategy._data import closes, load_bars, make_bars

KEYS = {"rsi", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "bb_position"}


def run_real(sym: str, **params) -> list[tuple[int, Signal]]:
    eng = SignalEngine(load_strategy("momentum"), params, IdFactory("momentum-test"))
    out = []
    for i, bar in enumerate(load_bars(sym)):
        out.extend((i, s) for s in eng.on_bar(bar))
    return out


def reference(sym: str, allow_short: bool, ob: float = 70.0, os_: float = 30.0) -> list[tuple[int, str, str]]:
    """The documented rule, evaluated on TA-Lib's indicators: (bar, kind, reason)."""
    c = closes(sym)
    rsi = talib.RSI(c, 14)
    _, _, hist = talib.MACD(c, 12, 26, 9)
    up, _, lo = talib.BBANDS(c, 20, 2, 2, 0)
    out = []
    stance = 0
    for i in range(1, len(c)):
        if np.isnan(hist[i - 1]):
            continue
        h, p, r = hist[i], hist[i - 1], rsi[i]
        if stance == 1:
            reason = ("macd_hist_negative" if h < 0 else "rsi_overbought" if r > ob
                      else "above_upper_band" if c[i] > up[i] else None)
            if reason is None:
                continue
            out.append((i, "close_long", reason))
            stance = 0
            if reason != "macd_hist_negative":
                continue
        elif stance == -1:
            reason = ("macd_hist_positive" if h > 0 else "rsi_oversold" if r < os_
                      else "below_lower_band" if c[i] < lo[i] else None)
            if reason is None:
                continue
            out.append((i, "close_short", reason))
            stance = 0
            if reason != "macd_hist_positive":
                continue
        if h > 0 >= p and r < ob and c[i] < up[i]:
            out.append((i, "buy", "macd_hist_turned_positive"))
            stance = 1
        elif allow_short and h < 0 <= p and r > os_ and c[i] > lo[i]:
            out.append((i, "sell", "macd_hist_turned_negative"))
            stance = -1
    return out


def kind(sig: Signal) -> str:
    if sig.reduce_only:
        return "close_long" if sig.side is Side.SELL else "close_short"
    return sig.side.value


def expected_confidence(direction: int, m: dict) -> Decimal:
    s_macd = 1.0 if m["macd_hist"] > 0 else 0.0 if m["macd_hist"] < 0 else 0.5
    s_rsi = min(1.0, max(0.0, (70.0 - m["rsi"]) / 40.0))
    s_bb = min(1.0, max(0.0, 1.0 - m["bb_position"]))
    up = (s_macd + s_rsi + s_bb) / 3
    return Decimal(repr(up if direction > 0 else 1 - up)).quantize(Decimal("0.0001"))


@pytest.mark.parametrize("sym", ["BTC", "ETH"])
@pytest.mark.parametrize("allow_short", [False, True])
def test_real_data_follows_the_rule(sym, allow_short):
    got = run_real(sym, allow_short=allow_short)
    ref = reference(sym, allow_short)
    assert [(i, kind(s), s.metadata["reason"]) for i, s in got] == ref

    c = closes(sym)
    rsi = talib.RSI(c, 14)
    macd, macd_sig, hist = talib.MACD(c, 12, 26, 9)
    up, mid, lo = talib.BBANDS(c, 20, 2, 2, 0)
    n_bars = len(c)
    bars_with_signals = len({i for i, _ in got})
    # state changes only: far from every bar
    assert bars_with_signals <= (0.20 if allow_short else 0.10) * n_bars
    assert len(got) > 500
    assert min(i for i, _ in got) >= 34  # all three warm on bar 33; the first "turn" on bar 34 at the earliest

    for i, sig in got:
        m = dict(sig.metadata)
        assert "volume_24h" in m.pop("market")  # the market at the signal (market_conditions)
        assert set(m) == KEYS | {"reason"}
        assert all(isinstance(m[k], float) for k in KEYS)
        for key, ref_arr in [("rsi", rsi), ("macd", macd), ("macd_signal", macd_sig), ("macd_hist", hist),
                             ("bb_upper", up), ("bb_middle", mid), ("bb_lower", lo)]:
            assert m[key] == pytest.approx(ref_arr[i], rel=1e-9, abs=0), key
        # %B is a difference of nearby prices over the band width: compare it absolutely
        assert m["bb_position"] == pytest.approx((c[i] - lo[i]) / (up[i] - lo[i]), rel=0, abs=1e-9)
        assert isinstance(sig.confidence, Decimal)
        assert Decimal(0) <= sig.confidence <= Decimal(1)
        assert sig.confidence.as_tuple().exponent == -4
        direction = 1 if sig.side is Side.BUY else -1
        assert sig.confidence == expected_confidence(direction, m)
        assert sig.quantity is None and sig.price == Decimal(repr(float(c[i])))

    # long-only: buy, close, buy, close, ...; with shorts every opening is followed by its close
    stance = 0
    for _, sig in got:
        k = kind(sig)
        if k == "buy":
            assert stance == 0
            stance = 1
        elif k == "sell":
            assert allow_short and stance == 0
            stance = -1
        elif k == "close_long":
            assert stance == 1
            stance = 0
        else:
            assert stance == -1
            stance = 0


def test_confidence_is_spread_out():
    """The three indicators do not always agree: confidences are not all equal."""
    got = run_real("BTC")
    entries = sorted({s.confidence for _, s in got if not s.reduce_only})
    exits = sorted({s.confidence for _, s in got if s.reduce_only})
    assert len(entries) > 100 and len(exits) > 100
    assert entries[0] >= Decimal(1) / 3 - Decimal("0.0001")  # the MACD always votes for an entry
    assert entries[-1] > Decimal("0.8")


def _run_prices(prices: list[Decimal], **params) -> list[tuple[int, str, str, Signal]]:
    eng = SignalEngine(Momentum, params)
    out = []
    for i, bar in enumerate(make_bars([str(p) for p in prices])):
        out.extend((i, kind(s), s.metadata["reason"], s) for s in eng.on_bar(bar))
    for _, _, _, sig in out:
        assert sig.confidence == expected_confidence(1 if sig.side is Side.BUY else -1, sig.metadata)
    return out


def test_handmade_slide_and_recovery():
    """A steady slide, a recovery, a new slide: one buy when the histogram turns up, one close
    when it turns down. No short even when allowed: RSI is oversold (< 30) when it turns down."""
    prices = [Decimal(100) - i * Decimal("0.5") for i in range(40)]
    prices += [prices[-1] + i * Decimal("0.3") for i in range(1, 15)]
    prices += [prices[-1] - i * Decimal("0.8") for i in range(1, 15)]
    for params in ({}, {"allow_short": True}):
        got = _run_prices(prices, **params)
        assert [g[:3] for g in got] == [(40, "buy", "macd_hist_turned_positive"),
                                        (59, "close_long", "macd_hist_negative")]
        buy, close = got[0][3], got[1][3]
        assert buy.confidence == Decimal("0.9512")  # hist > 0, RSI 4.4, %B 0.15: all three agree
        assert buy.metadata["rsi"] < 30 and buy.metadata["macd_hist"] > 0
        assert close.confidence == Decimal("0.3358")
        assert close.metadata["rsi"] < 30  # so no short is opened on the same bar


def test_handmade_wave():
    """A sine wave (period 40 bars, +/-2%): long on the way up, out at the upper band; with
    shorts, short on the way down and out at the lower band."""
    import math

    prices = [Decimal(100 + 2 * math.sin(2 * math.pi * i / 40)).quantize(Decimal("0.01")) for i in range(160)]
    long_only = [g[:3] for g in _run_prices(prices)]
    assert long_only == [
        (34, "buy", "macd_hist_turned_positive"), (40, "close_long", "above_upper_band"),
        (76, "buy", "macd_hist_turned_positive"), (80, "close_long", "above_upper_band"),
        (116, "buy", "macd_hist_turned_positive"), (120, "close_long", "above_upper_band"),
        (156, "buy", "macd_hist_turned_positive"),
    ]
    both = [g[:3] for g in _run_prices(prices, allow_short=True)]
    shorts = [(i, "sell", "macd_hist_turned_negative") for i in (56, 96, 136)]
    shorts += [(i, "close_short", "below_lower_band") for i in (60, 100, 140)]
    assert both == sorted(long_only + shorts)


def test_flat_market_gives_nothing():
    eng = SignalEngine(Momentum, {"allow_short": True})
    assert all(not eng.on_bar(b) for b in make_bars(["100"] * 200))


def test_params_coerced_and_validated():
    params = coerce_params(Momentum, {"bb_std": "2.5", "allow_short": "yes", "rsi_period": "10",
                                      "rsi_overbought": "80"})
    assert params == {"bb_std": 2.5, "allow_short": True, "rsi_period": 10, "rsi_overbought": 80.0}
    strat = Momentum("X", **params)
    assert strat.bb.num_std == 2.5 and strat.rsi.period == 10 and strat.allow_short
    with pytest.raises(ValueError, match="`macd_fast` must be < `macd_slow`"):
        Momentum("X", macd_fast=26, macd_slow=12)
    with pytest.raises(ValueError, match="`rsi_oversold` must be < `rsi_overbought`"):
        Momentum("X", rsi_oversold=70.0, rsi_overbought=30.0)
    with pytest.raises(ValueError, match="`bb_period` must be an int >= 1"):
        Momentum("X", bb_period=0)
    with pytest.raises(ValueError, match="parameter macd_fast='fast' for strategy 'momentum' is not a valid int"):
        coerce_params(Momentum, {"macd_fast": "fast"})

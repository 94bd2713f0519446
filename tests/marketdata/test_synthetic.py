"""The synthetic bar generator."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from claire.marketdata import synthetic_bars

START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
CENT = Decimal("0.01")


def test_deterministic_and_seeded():
    a = synthetic_bars(["BTCUSDT", "ETHUSDT"], 500, START, seed=3)
    assert a == synthetic_bars(["BTCUSDT", "ETHUSDT"], 500, START, seed=3)
    assert a != synthetic_bars(["BTCUSDT", "ETHUSDT"], 500, START, seed=4)
    # a symbol's walk does not depend on which other symbols are generated with it
    assert [b for b in a if b.symbol == "ETHUSDT"] == synthetic_bars("ETHUSDT", 500, START, seed=3)


def test_shape_of_the_bars():
    bars = synthetic_bars(["btc/usdt", "SOLUSDT", "XRPUSDT"], 1_000, START, interval_s=300)
    assert len(bars) == 3_000
    assert [b.symbol for b in bars[:3]] == ["BTCUSDT", "SOLUSDT", "XRPUSDT"]
    keys = [(b.ts_event, ["BTCUSDT", "SOLUSDT", "XRPUSDT"].index(b.symbol)) for b in bars]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert bars[0].ts_event == START + 300 * 1_000_000_000 and bars[0].ts_open == START
    assert bars[-1].ts_event == START + 1_000 * 300 * 1_000_000_000
    for b in bars:
        assert b.interval_s == 300 and b.id == f"bar:{b.symbol}:300:{b.ts_event}"
        for p in (b.open, b.high, b.low, b.close):
            assert p >= CENT and p == p.quantize(CENT) and p.as_tuple().exponent == -2
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume > 0
    btc = [b for b in bars if b.symbol == "BTCUSDT"]
    assert all(x.close == y.open for x, y in itertools.pairwise(btc))  # a continuous walk
    assert len({b.close for b in btc}) > 100  # it moves


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one symbol"):
        synthetic_bars([], 10, START)
    with pytest.raises(ValueError, match="interval_s"):
        synthetic_bars("BTCUSDT", 10, START, interval_s=0)
    with pytest.raises(ValueError, match="repeat"):
        synthetic_bars(["BTCUSDT", "btc/usdt"], 10, START)
    assert synthetic_bars("BTCUSDT", 0, START) == []

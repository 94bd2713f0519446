"""Row conversion rules (pure Python, no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from claire.events import Side
from claire.storage import rows as R

from . import factory as F


def _mc(metadata: dict) -> dict:
    sig = F.signal(metadata=metadata)
    return R.market_condition_row(sig, "run", Decimal("65000"))


def test_indicator_aliases_in_order_and_out_of_range_values_kept_in_metadata():
    row = _mc({"rsi": 30.5, "rsi_14": "not a number", "rsi14": 55, "volatility": -1.0, "bb_pos": 0.25,
               "indicators": {"macd_line": 1.5, "macd": None}, "trend": "Bullish", "note": "x"})
    assert row["rsi_14"] == Decimal(55)  # rsi_14 is no number: the next alias (rsi14) wins over rsi
    assert row["macd"] == Decimal("1.5")  # nested, the first alias is null
    assert row["bb_position"] == Decimal("0.25")
    assert row["volatility_1h"] is None  # out of range (< 0): only in metadata
    assert row["trend_direction"] == "up"
    assert row["metadata"] == {"rsi": 30.5, "rsi_14": "not a number", "volatility": -1.0, "macd": None, "note": "x"}


def test_bb_position_from_the_bands_and_rsi_range():
    row = _mc({"rsi_14": 101, "bb_upper": 66000.0, "bb_lower": 64000.0})
    assert row["rsi_14"] is None and row["metadata"]["rsi_14"] == 101
    assert row["bb_position"] == Decimal("0.500000")
    assert row["trend_direction"] is None


def test_enum_value_and_dec_fast_paths():
    assert R.enum_value(Side.BUY) == "buy" and R.enum_value(" BUY ") == "buy" and R.enum_value("buy") == "buy"
    assert R.enum_value(1) == "1" and R.enum_value(1.0) == "1.0"
    assert R.dec(Decimal("1.50"), "x", positive=True) == Decimal("1.50")
    assert R.dec(Decimal(0), "x", not_negative=True) == 0
    with pytest.raises(R.RowError, match="must be > 0"):
        R.dec(Decimal(0), "x", positive=True)
    with pytest.raises(R.RowError, match="must be >= 0"):
        R.dec(Decimal("-0.1"), "x", not_negative=True)
    with pytest.raises(R.RowError, match="finite"):
        R.dec(Decimal("NaN"), "x", positive=True)

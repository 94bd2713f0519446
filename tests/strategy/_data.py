"""Real market data for the strategy tests: a month of Binance spot 1-minute bars (freqtrade export).

The files are looked for in ``$CLAIRE_DATA_1M``, the repository's ``data/``, the ``shared/``
folder beside the repository and ``/work/shared``; a missing file fails the test (never a skip).
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from claire.events import Bar

ROOT = Path(__file__).resolve().parents[2]
_SUBDIR = "binance_spot_1m_2026-03_freqtrade"


def _candidates() -> list[Path]:
    out = []
    if os.environ.get("CLAIRE_DATA_1M"):
        out.append(Path(os.environ["CLAIRE_DATA_1M"]))
    out += [
        ROOT / "data",
        ROOT.parent / "shared" / "data" / _SUBDIR,
        Path("/work/shared/data") / _SUBDIR,
    ]
    return out


@cache
def load_frame(base: str) -> pd.DataFrame:
    """``BTC`` -> DataFrame with date, open, high, low, close, volume (float64)."""
    name = f"{base}_USDT-1m.feather"
    for folder in _candidates():
        path = folder / name
        if path.is_file():
            df = pd.read_feather(path)
            assert list(df.columns[:6]) == ["date", "open", "high", "low", "close", "volume"]
            return df
    pytest.fail(f"real data file {name} not found in any of: {', '.join(map(str, _candidates()))}")


def closes(base: str) -> np.ndarray:
    return load_frame(base)["close"].to_numpy(dtype=np.float64)


@cache
def decimal_closes(base: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(repr(float(x))) for x in closes(base))


@cache
def load_bars(base: str) -> tuple[Bar, ...]:
    """The file as Bar events: ts_event = open time + 60 s (the bar's close time)."""
    df = load_frame(base)
    symbol = f"{base}USDT"
    dates = df["date"].astype("int64").to_numpy()
    bars = []
    for d, o, h, lo, c, v in zip(dates, df["open"], df["high"], df["low"], df["close"], df["volume"],
                                 strict=True):
        ts = int(d) + 60_000_000_000
        bars.append(Bar(
            id=f"bar:{symbol}:60:{ts}", ts_event=ts, ts_recv=ts, symbol=symbol, interval_s=60,
            open=Decimal(repr(float(o))), high=Decimal(repr(float(h))), low=Decimal(repr(float(lo))),
            close=Decimal(repr(float(c))), volume=Decimal(repr(float(v))),
        ))
    return tuple(bars)


def make_bars(prices: list[str] | list[Decimal], symbol: str = "TESTUSDT") -> list[Bar]:
    """Hand-made bars: open = high = low = close = price, one a minute."""
    out = []
    t0 = 1_700_000_000_000_000_000
    for i, p in enumerate(prices):
        px = Decimal(p)
        ts = t0 + (i + 1) * 60_000_000_000
        out.append(Bar(id=f"bar:{symbol}:60:{ts}", ts_event=ts, ts_recv=ts, symbol=symbol, interval_s=60,
                       open=px, high=px, low=px, close=px, volume=Decimal(1)))
    return out

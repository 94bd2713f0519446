"""Freqtrade feather bars: counts, times and values against pandas, validation, speed."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as pf
import pytest

from claire.events import Bar
from claire.marketdata import infer_interval_s, load_bars_feather, read_bars_feather

from .conftest import BAR_FILES

NS_MIN = 60_000_000_000


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def test_row_counts(bar_files):
    assert {s: len(bf.bars) for s, bf in bar_files.items()} == {
        "BTCUSDT": 43_199, "ETHUSDT": 43_199, "BNBUSDT": 43_199, "SOLUSDT": 43_199, "XRPUSDT": 43_200,
    }
    for bf in bar_files.values():
        assert bf.rows == len(bf.bars)
        assert bf.skipped_total == 0
        assert bf.gaps == 0
        assert bf.interval_s == 60


@pytest.mark.parametrize("name", BAR_FILES)
def test_first_and_last_bar_match_pandas(data_dir: Path, bar_files, name: str):
    df = pd.read_feather(data_dir / name)
    symbol = name.split("-")[0].replace("_", "")
    bars = bar_files[symbol].bars
    for row, bar in ((df.iloc[0], bars[0]), (df.iloc[-1], bars[-1])):
        open_ns = row["date"].value  # pandas Timestamp in ns since the epoch (UTC)
        assert bar.ts_open == open_ns
        assert bar.ts_event == open_ns + NS_MIN == bar.ts_recv
        assert bar.id == f"bar:{symbol}:60:{open_ns + NS_MIN}"
        assert bar.symbol == symbol and bar.interval_s == 60
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == tuple(
            _dec(row[c]) for c in ("open", "high", "low", "close", "volume"))


def test_known_btc_values(bar_files):
    first, last = bar_files["BTCUSDT"].bars[0], bar_files["BTCUSDT"].bars[-1]
    # 2026-03-23 12:09 UTC open -> closes 12:10; last opens 2026-04-22 12:07
    assert first.ts_event == pd.Timestamp("2026-03-23 12:10", tz="UTC").value
    assert last.ts_event == pd.Timestamp("2026-04-22 12:08", tz="UTC").value
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("69979.98"), Decimal("70112.55"), Decimal("69973.41"), Decimal("70070.53"), Decimal("32.55652"))
    assert str(first.close) == "70070.53"  # shortest text of the float, no binary noise


def test_every_value_is_the_shortest_decimal_of_the_float(data_dir: Path, bar_files):
    df = pd.read_feather(data_dir / "XRP_USDT-1m.feather")
    bars = bar_files["XRPUSDT"].bars
    for col in ("open", "high", "low", "close", "volume"):
        assert [getattr(b, col) for b in bars] == [_dec(x) for x in df[col]]
    assert [b.ts_open for b in bars] == list(df["date"].astype("int64"))


def test_same_minutes_for_all_symbols(bar_files):
    btc = [b.ts_event for b in bar_files["BTCUSDT"].bars]
    for sym in ("ETHUSDT", "BNBUSDT", "SOLUSDT"):
        assert [b.ts_event for b in bar_files[sym].bars] == btc
    assert [b.ts_event for b in bar_files["XRPUSDT"].bars] == [*btc, btc[-1] + NS_MIN]


def test_symbol_and_interval_arguments(data_dir: Path):
    bars = read_bars_feather(data_dir / "SOL_USDT-1m.feather", symbol="sol/usdt", interval_s=300)
    assert bars[0].symbol == "SOLUSDT" and bars[0].interval_s == 300
    assert bars[0].ts_event == bars[0].ts_open + 300 * 1_000_000_000
    assert bars[0].id == f"bar:SOLUSDT:300:{bars[0].ts_event}"


def test_load_all_five_files_fast(bar_paths):
    start = time.process_time()
    total = sum(len(read_bars_feather(p)) for p in bar_paths)
    cpu = time.process_time() - start
    assert total == 215_996
    assert cpu < 3.0, f"loading five feather files took {cpu:.2f} s of CPU"  # about 0.65 s here


def _write(path: Path, rows: list[tuple]) -> Path:
    cols = list(zip(*rows, strict=True))
    table = pa.table({
        "date": pa.array(cols[0], pa.timestamp("ns", tz="UTC")),
        **{name: pa.array(vals, pa.float64()) for name, vals in
           zip(("open", "high", "low", "close", "volume"), cols[1:], strict=True)},
    })
    pf.write_feather(table, path)
    return path


def test_invalid_rows_are_skipped_counted_and_logged(tmp_path: Path, caplog):
    t0 = 1_700_000_040_000_000_000
    rows = [
        (t0 + 0 * NS_MIN, 10.0, 11.0, 9.0, 10.5, 1.0),
        (t0 + 1 * NS_MIN, 10.5, 11.0, 10.0, 0.0, 1.0),  # non-positive price
        (t0 + 2 * NS_MIN, 10.5, 11.0, 10.0, 10.7, -1.0),  # negative volume
        (t0 + 3 * NS_MIN, 10.5, 10.0, 11.0, 10.7, 1.0),  # high < low
        (t0 + 4 * NS_MIN, float("nan"), 11.0, 10.0, 10.7, 1.0),  # NaN
        (t0 + 5 * NS_MIN, 10.7, 11.2, 10.6, 11.1, 0.0),
        (t0 + 5 * NS_MIN, 10.7, 11.2, 10.6, 11.0, 0.0),  # repeated open time: the first one stays
        (t0 + 6 * NS_MIN, 11.1, 11.3, 11.0, 11.2, 2.5),
    ]
    path = _write(tmp_path / "ABC_USDT-1m.feather", rows)
    with caplog.at_level(logging.WARNING, logger="claire.marketdata"):
        bf = load_bars_feather(path)
    assert bf.symbol == "ABCUSDT" and bf.interval_s == 60 and bf.rows == 8
    assert dict(bf.skipped) == {
        "non-positive price": 1, "negative volume": 1, "high/low inconsistent with open/close": 1,
        "missing or non-finite value": 1, "repeated open time": 1,
    }
    assert [b.ts_open for b in bf.bars] == [t0, t0 + 5 * NS_MIN, t0 + 6 * NS_MIN]
    assert bf.bars[1].close == Decimal("11.1")
    assert bf.gaps == 1  # from minute 0 to minute 5
    assert "ABC_USDT-1m.feather: skipped 5 of 8 rows" in caplog.text


def test_unsorted_rows_are_sorted(tmp_path: Path):
    t0 = 1_700_000_040_000_000_000
    rows = [(t0 + k * NS_MIN, 1.0 + k, 2.0 + k, 0.5 + k, 1.5 + k, 3.0) for k in (2, 0, 1)]
    bars = read_bars_feather(_write(tmp_path / "X_USDT-1m.feather", rows))
    assert [b.ts_open for b in bars] == [t0, t0 + NS_MIN, t0 + 2 * NS_MIN]
    assert [b.open for b in bars] == [Decimal("1.0"), Decimal("2.0"), Decimal("3.0")]


def test_interval_inferred_from_median_spacing():
    s = 1_000_000_000
    assert infer_interval_s([0, 300 * s, 600 * s, 1200 * s, 1500 * s]) == 300
    with pytest.raises(ValueError, match="pass interval_s"):
        infer_interval_s([5 * s])
    with pytest.raises(ValueError, match="whole number of seconds"):
        infer_interval_s([0, 1, 2])


def test_missing_columns_and_missing_file(tmp_path: Path):
    path = tmp_path / "BTC_USDT-trades.feather"
    pf.write_feather(pa.table({"timestamp": [1, 2], "price": [1.0, 2.0]}), path)
    with pytest.raises(ValueError, match=r"BTC_USDT-trades\.feather: not a bar file, missing column\(s\) date"):
        load_bars_feather(path)
    with pytest.raises(FileNotFoundError, match=r"nope_USDT-1m\.feather"):
        load_bars_feather(tmp_path / "nope_USDT-1m.feather")


def test_bars_are_events(bar_files):
    bar = bar_files["ETHUSDT"].bars[100]
    assert isinstance(bar, Bar) and bar.topic == "market_data" and bar.price == bar.close


def test_missing_open_time_is_skipped(tmp_path: Path):
    t0 = 1_700_000_040_000_000_000
    rows = [(t0, 1.0, 2.0, 0.5, 1.5, 3.0), (None, 1.0, 2.0, 0.5, 1.5, 3.0), (t0 + NS_MIN, 1.5, 2.0, 1.0, 1.8, 3.0)]
    bf = load_bars_feather(_write(tmp_path / "X_USDT-1m.feather", rows))
    assert dict(bf.skipped) == {"missing or non-finite value": 1}
    assert [b.close for b in bf.bars] == [Decimal("1.5"), Decimal("1.8")]

"""Format detection, symbols, merging several files, and the errors a user sees."""

from __future__ import annotations

import gzip
import shutil
from itertools import islice, pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as pf
import pytest

from claire.events import Bar, QuoteTick, TradeTick
from claire.marketdata import (
    DataFileError,
    detect_format,
    normalize_symbol,
    open_market_data,
    symbol_from_path,
)

from .conftest import BAR_FILES


@pytest.mark.parametrize(("name", "symbol"), [
    ("BTC_USDT-1m.feather", "BTCUSDT"),
    ("XRP_USDT-1m.feather", "XRPUSDT"),
    ("spot_btcusdt_20240808.gz", "BTCUSDT"),
    ("btcusdt-trades.parquet", "BTCUSDT"),
    ("btcusdt-quotes.parquet", "BTCUSDT"),
    ("/some/dir/ETH_BTC-5m.feather", "ETHBTC"),
    ("BTC_USDT_USDT-1m-futures.feather", "BTCUSDT"),
    ("1INCH_USDT-1h.feather", "1INCHUSDT"),
    ("solusdt.parquet", "SOLUSDT"),
])
def test_symbol_from_path(name: str, symbol: str):
    assert symbol_from_path(name) == symbol
    assert symbol_from_path(Path(name)) == symbol


@pytest.mark.parametrize("name", ["data.parquet", "capture_20240808.gz", "usdt.gz", "trades.parquet", "1m.feather"])
def test_symbol_from_path_refuses_to_guess(name: str):
    with pytest.raises(ValueError, match=rf"cannot tell the symbol from the file name '{name}'.*--symbol"):
        symbol_from_path(name)


def test_normalize_symbol():
    assert [normalize_symbol(s) for s in ("btc/usdt", "BTC_USDT", "BTC-USDT", " btcusdt ", "BTC/USDT:USDT")] == [
        "BTCUSDT"] * 5
    for bad in ("", "BTC$USDT", "///"):
        with pytest.raises(ValueError, match="not a valid symbol"):
            normalize_symbol(bad)


def test_detect_format(data_dir: Path):
    assert {name: detect_format(data_dir / name) for name in sorted(p.name for p in data_dir.iterdir())
            if name != "README.md"} == {
        **dict.fromkeys(BAR_FILES, "bars"),
        "spot_btcusdt_20240808.gz": "capture", "spot_btcusdt_20240809.gz": "capture",
        "btcusdt-trades.parquet": "trades", "btcusdt-quotes.parquet": "quotes",
    }


def test_five_symbols_merge_in_time_then_file_order(bar_paths):
    order = [bar_paths[i] for i in (4, 2, 0, 3, 1)]  # XRP, BNB, BTC, SOL, ETH
    md = open_market_data(order)
    assert md.symbols == ["XRPUSDT", "BNBUSDT", "BTCUSDT", "SOLUSDT", "ETHUSDT"]
    assert md.count == len(md) == 4 * 43_199 + 43_200
    rank = {s: i for i, s in enumerate(md.symbols)}
    events = list(md)
    assert len(events) == md.count
    assert all(isinstance(e, Bar) for e in events)
    keys = [(e.ts_event, rank[e.symbol]) for e in events]
    assert all(a < b for a, b in pairwise(keys))  # time, ties by file order
    assert [e.symbol for e in events[:5]] == md.symbols
    assert events[-1].symbol == "XRPUSDT"  # XRP has one more minute
    assert list(islice(md, 5)) == events[:5]  # iterable again


def test_ticks_of_one_symbol_from_several_sources(data_dir: Path, capture_paths):
    # capture files given out of order still form one stream, ordered by their first timestamp
    paths = [capture_paths[1], data_dir / "btcusdt-quotes.parquet", capture_paths[0],
             data_dir / "btcusdt-trades.parquet"]
    md = open_market_data(paths)
    assert md.count is None  # a capture's length is known only after reading it
    with pytest.raises(TypeError, match="not known"):
        len(md)
    assert md.symbols == ["BTCUSDT"]
    kinds = [(s.kind, [p.name for p in s.paths], s.index) for s in md.sources]
    assert kinds == [
        ("capture", ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"], 0),
        ("quotes", ["btcusdt-quotes.parquet"], 1),
        ("trades", ["btcusdt-trades.parquet"], 3),
    ]
    events = list(md)
    assert len(events) == 19_904 + 73_174 + 2_001 + 451
    ts = [e.ts_event for e in events]
    assert all(a <= b for a, b in pairwise(ts))
    # the 2021 fixture comes first, then the 2024 capture
    assert {type(e) for e in events[:2_452]} == {TradeTick, QuoteTick}
    assert events[2_451].ts_event < 1_700_000_000_000_000_000 < events[2_452].ts_event
    stats = md.sources[0].capture_stats
    assert stats is not None and stats.trades == 19_904 and -1.3e9 < stats.clock_offset_ns < -1.24e9


def test_equal_times_across_sources_follow_file_order(tmp_path: Path):
    def write(name: str, price: float) -> Path:
        path = tmp_path / name
        pf.write_feather(pa.table({
            "date": pa.array([0, 60_000_000_000, 120_000_000_000], pa.timestamp("ns", tz="UTC")),
            "open": [price] * 3, "high": [price] * 3, "low": [price] * 3, "close": [price] * 3,
            "volume": [1.0] * 3,
        }), path)
        return path

    a, b = write("AAA_USDT-1m.feather", 1.0), write("BBB_USDT-1m.feather", 2.0)
    assert [e.symbol for e in open_market_data([b, a])] == ["BBBUSDT", "AAAUSDT"] * 3
    assert [e.symbol for e in open_market_data([a, b])] == ["AAAUSDT", "BBBUSDT"] * 3


def test_symbol_option(data_dir: Path, tmp_path: Path, bar_paths):
    unnamed = tmp_path / "bars.feather"
    shutil.copyfile(data_dir / "BTC_USDT-1m.feather", unnamed)
    with pytest.raises(ValueError, match=r"'bars.feather'.*--symbol"):
        open_market_data([unnamed])
    md = open_market_data([unnamed], symbol="btc/usdt")
    assert md.symbols == ["BTCUSDT"] and next(iter(md)).symbol == "BTCUSDT"
    with pytest.raises(ValueError, match=r"--symbol BTCUSDT given, but the files are of several symbols"):
        open_market_data(bar_paths[:2], symbol="BTCUSDT")
    with pytest.raises(ValueError, match="not a valid symbol"):
        open_market_data([unnamed], symbol="BTC$")


def test_clear_errors(data_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"market data file not found: .*ADA_USDT-1m\.feather"):
        open_market_data([data_dir / "BTC_USDT-1m.feather", tmp_path / "ADA_USDT-1m.feather"])
    txt = tmp_path / "BTC_USDT-1m.txt"
    txt.write_text("date,open\n")
    with pytest.raises(DataFileError, match=r"BTC_USDT-1m.txt: unknown market data format '.txt'; supported"):
        open_market_data([txt])
    csv = tmp_path / "BTC_USDT-1m.csv"
    csv.write_text("date,open\n")
    with pytest.raises(DataFileError, match=r"BTC_USDT-1m.csv: missing column\(s\) high, low, close, volume"):
        open_market_data([csv])
    csv_gz = tmp_path / "btcusdt-1m.csv.gz"
    with gzip.open(csv_gz, "wt") as fh:
        fh.write("timestamp,open,high\n2022-01-01,1,2\n")
    with pytest.raises(DataFileError, match=r"btcusdt-1m.csv.gz: missing column\(s\) low, close, volume"):
        open_market_data([csv_gz])
    not_capture = tmp_path / "btcusdt-1m.gz"
    with gzip.open(not_capture, "wt") as fh:
        fh.write("timestamp,open,high\n2022-01-01,1,2\n")
    with pytest.raises(DataFileError, match=r"btcusdt-1m.gz: unknown market data format, expected a Binance capture"):
        open_market_data([not_capture])
    not_gz = tmp_path / "spot_btcusdt_1.gz"
    not_gz.write_text("1 {}\n")
    with pytest.raises(ValueError, match=r"spot_btcusdt_1.gz: unknown market data format, cannot read it as gzip"):
        detect_format(not_gz)
    trades_feather = tmp_path / "XRP_ETH-trades.feather"
    pf.write_feather(pa.table({"timestamp": [1], "price": [1.0]}), trades_feather)
    with pytest.raises(ValueError, match=r"XRP_ETH-trades.feather: unknown feather layout"):
        open_market_data([trades_feather])
    with pytest.raises(ValueError, match="is a directory"):
        open_market_data([tmp_path])
    with pytest.raises(ValueError, match="given twice"):
        open_market_data([data_dir / "BTC_USDT-1m.feather", data_dir / "BTC_USDT-1m.feather"])
    with pytest.raises(ValueError, match="no market data files"):
        open_market_data([])


def test_single_path_argument(capture_paths):
    md = open_market_data(capture_paths[0])
    first = list(islice(md, 3))
    assert len(first) == 3 and all(e.symbol == "BTCUSDT" for e in first)

"""CSV bars: Binance kline files (spot/futures, header or not, ms/us, .csv/.csv.gz/.zip) and plain
OHLCV CSVs, read from real slices in fixtures/ (see fixtures/README.md)."""

from __future__ import annotations

import gzip
import zipfile
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as pf
import pytest

from claire.events import Bar
from claire.marketdata import DataFileError, detect_format, load_bars_csv, open_market_data

FIXTURES = Path(__file__).parent / "fixtures"
SPOT = FIXTURES / "BTCUSDT-1m-2021-01.csv"  # spot, no header, ms
FUTURES = FIXTURES / "BTCUSDT-1m-2025-01.csv"  # futures, header, ms
FTX = FIXTURES / "btc-perp-20211231-20220201_1m.csv"  # plain OHLCV, ISO times
MS, NS_MIN = 1_000_000, 60_000_000_000


def _fields(bars: list[Bar]) -> list[tuple]:
    return [(b.id, b.ts_event, b.ts_recv, b.symbol, b.interval_s, b.open, b.high, b.low, b.close, b.volume)
            for b in bars]


def _us(src: Path, dst: Path) -> Path:
    """The same rows with open and close time in microseconds (Binance spot files since 2025)."""
    lines = src.read_text().splitlines()
    out = []
    for line in lines:
        f = line.split(",")
        if f[0].isdigit():
            f[0], f[6] = f[0] + "000", str(int(f[6]) * 1000 + 999)
        out.append(",".join(f))
    dst.write_text("\n".join(out) + "\n")
    return dst


def test_binance_spot_without_header():
    bf = load_bars_csv(SPOT)
    assert (bf.symbol, bf.interval_s, bf.rows, len(bf.bars), bf.skipped_total, bf.gaps) == ("BTCUSDT", 60, 40, 40, 0, 0)
    first, last = bf.bars[0], bf.bars[-1]
    # 1609459200000,28948.19,28997.16,28935.30,28991.01,143.661,...: 2021-01-01 00:00 UTC open
    assert first.ts_event == 1_609_459_200_000 * MS + NS_MIN == first.ts_recv
    assert first.id == f"bar:BTCUSDT:60:{first.ts_event}"
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("28948.19"), Decimal("28997.16"), Decimal("28935.30"), Decimal("28991.01"), Decimal("143.661"))
    assert str(first.low) == "28935.3"  # trailing zeros of the text dropped, the value exact
    assert str(bf.bars[4].low) == "29000" and str(bf.bars[4].volume) == "70.246"
    assert last.ts_open == 1_609_461_540_000 * MS and last.close == Decimal("28919.09")
    assert all(type(b.open) is Decimal for b in bf.bars)


def test_binance_futures_with_header():
    bf = load_bars_csv(FUTURES)
    assert (bf.symbol, bf.interval_s, len(bf.bars)) == ("BTCUSDT", 60, 30)
    b = bf.bars[0]
    assert b.ts_open == 1_735_689_600_000 * MS
    assert (b.open, b.high, b.low, b.close, b.volume) == (
        Decimal("93548.8"), Decimal("93599.9"), Decimal("93514.2"), Decimal("93599.9"), Decimal("71.187"))


@pytest.mark.parametrize("src", [SPOT, FUTURES])
def test_gz_zip_daily_names_and_microseconds_read_the_same(tmp_path: Path, src: Path):
    want = _fields(load_bars_csv(src).bars)
    gz = tmp_path / (src.stem + ".csv.gz")
    gz.write_bytes(gzip.compress(src.read_bytes()))
    daily_zip = tmp_path / "BTCUSDT-1m-2021-01-01.zip"  # daily file name
    with zipfile.ZipFile(daily_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(src, "BTCUSDT-1m-2021-01-01.csv")
    us = _us(src, tmp_path / "BTCUSDT-1m-2025-02.csv")
    us_zip = tmp_path / "BTCUSDT-1m-2025-02.zip"
    with zipfile.ZipFile(us_zip, "w") as zf:
        zf.write(us, us.name)
    for path in (gz, daily_zip, us, us_zip):
        assert detect_format(path) == "bars"
        assert _fields(load_bars_csv(path).bars) == want, path.name
        assert _fields(list(open_market_data([path]))) == want, path.name


def test_plain_ohlcv_with_iso_times():
    bf = load_bars_csv(FTX, symbol="BTC-PERP")
    assert (bf.symbol, bf.interval_s, len(bf.bars)) == ("BTCPERP", 60, 30)
    b = bf.bars[0]  # 2021-12-31 23:01:00.000000,46319.0,46385.0,46319.0,46377.0,2300413.7295
    assert b.ts_open == 1_640_991_660_000_000_000
    assert (b.open, b.high, b.close, b.volume) == (Decimal("46319"), Decimal("46385"), Decimal("46377"),
                                                   Decimal("2300413.7295"))
    with pytest.raises(ValueError, match="cannot tell the symbol"):
        load_bars_csv(FTX)


@pytest.mark.parametrize(("column", "fmt"), [
    ("timestamp", "s"), ("time", "ms"), ("date", "us"), ("open_time", "ns"), ("Date", "iso-z"), ("datetime", "iso+01"),
])
def test_plain_ohlcv_time_formats(tmp_path: Path, column: str, fmt: str):
    want = _fields(load_bars_csv(FTX, symbol="BTCUSDT").bars)
    rows = FTX.read_text().splitlines()[1:]
    out = [f"Volume,{column},Open,High,Low,Close,extra"]  # any column order and case, extra columns ignored
    for row in rows:
        ts, o, h, lo, c, v = row.split(",")
        ns = want[len(out) - 1][1] - NS_MIN
        text = {"s": str(ns // 10**9), "ms": str(ns // 10**6), "us": str(ns // 10**3), "ns": str(ns),
                "iso-z": ts.replace(" ", "T") + "Z",
                "iso+01": ts.replace("23:", "00:", 1).replace("2021-12-31", "2022-01-01") + "+01:00"}[fmt]
        out.append(f"{v},{text},{o},{h},{lo},{c},x")
    path = tmp_path / "BTC_USDT-1m.csv"
    path.write_text("\n".join(out) + "\n")
    assert _fields(load_bars_csv(path).bars) == want


def test_interval_inferred_or_a_clear_error(tmp_path: Path):
    five = tmp_path / "ETHUSDT-5m.csv"
    five.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{1_700_000_100 + k * 300},10,11,9,10.5,1\n" for k in (0, 1, 2, 4)))
    bf = load_bars_csv(five)
    assert bf.interval_s == 300 and bf.gaps == 1 and len(bf.bars) == 4
    one = tmp_path / "ETHUSDT-1h.csv"
    one.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,11,9,10.5,1\n")
    with pytest.raises(DataFileError, match=r"ETHUSDT-1h.csv: cannot infer the bar interval .* pass interval_s"):
        load_bars_csv(one)
    assert load_bars_csv(one, interval_s=3600).bars[0].ts_event == 1_704_070_800 * 10**9
    odd = tmp_path / "ETHUSDT-odd.csv"
    odd.write_text("timestamp,open,high,low,close,volume\n1700000000000,1,1,1,1,1\n1700000000500,1,1,1,1,1\n")
    with pytest.raises(DataFileError, match="not a whole number of seconds"):
        load_bars_csv(odd)


def test_bad_rows_are_skipped_and_counted_like_feather(tmp_path: Path):
    path = tmp_path / "ABCUSDT-1m.csv"
    path.write_text("timestamp,open,high,low,close,volume\n"
                    "60,10,11,9,10.5,1\n"
                    "120,10,11,9,0,1\n"  # non-positive price
                    "180,10,11,9,10,\n"  # missing volume
                    "240,10,9,11,10,1\n"  # high < low
                    "300,10,11,9,10.5,-1\n"  # negative volume
                    "300,10,11,9,10.5,2\n"
                    "300,10,11,9,10.5,3\n"  # repeated open time
                    "360,1e1,11,9.50,10.5,4\n")
    bf = load_bars_csv(path)
    assert dict(bf.skipped) == {"non-positive price": 1, "missing or non-finite value": 1,
                                "high/low inconsistent with open/close": 1, "negative volume": 1,
                                "repeated open time": 1}
    assert [(b.ts_open // 10**9, b.volume) for b in bf.bars] == [(60, 1), (300, 2), (360, 4)]
    assert bf.bars[-1].open == Decimal("10") and str(bf.bars[-1].low) == "9.5"


def test_csv_and_feather_merge_in_time_then_file_order(tmp_path: Path):
    feather = tmp_path / "BTC_USDT-1m.feather"
    t0 = 1_609_459_200_000 * MS
    pf.write_feather(pa.table({
        "date": pa.array([t0 + k * NS_MIN for k in range(3)], pa.timestamp("ns", tz="UTC")),
        "open": [1.5] * 3, "high": [2.0] * 3, "low": [1.0] * 3, "close": [1.5] * 3, "volume": [1.0] * 3,
    }), feather)
    eth = tmp_path / "ETHUSDT-1m-2021-01.csv"
    eth.write_bytes(SPOT.read_bytes())
    md = open_market_data([eth, feather])
    assert md.symbols == ["ETHUSDT", "BTCUSDT"] and md.count == 43
    events = list(md)
    assert [e.symbol for e in events[:6]] == ["ETHUSDT", "BTCUSDT"] * 3
    assert [e.ts_event for e in events] == sorted(e.ts_event for e in events)
    assert events[1].open == Decimal("1.5") and events[0].open == Decimal("28948.19")

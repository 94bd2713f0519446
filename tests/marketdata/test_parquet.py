"""Parquet trades and quotes (the nautilus_trader fixture)."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from claire.events import QuoteTick, Side, TradeTick
from claire.marketdata import iter_parquet_quotes, iter_parquet_trades, parquet_kind


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def test_trades_match_pandas(data_dir: Path):
    path = data_dir / "btcusdt-trades.parquet"
    df = pd.read_parquet(path)
    reader = iter_parquet_trades(path, batch_size=500)  # several batches
    trades = list(reader)
    assert len(trades) == len(df) == 2_001 == reader.count
    assert not reader.skipped
    assert all(isinstance(t, TradeTick) and t.symbol == "BTCUSDT" for t in trades)
    for row, t in ((df.iloc[0], trades[0]), (df.iloc[-1], trades[-1])):
        assert t.ts_event == t.ts_recv == row["timestamp"].value
        assert t.trade_id == str(row["trade_id"]) and t.id == f"trade:BTCUSDT:{row['trade_id']}"
        assert (t.price, t.size) == (_dec(row["price"]), _dec(row["quantity"]))
    assert [t.aggressor for t in trades] == [Side.SELL if m == "True" else Side.BUY for m in df["buyer_maker"]]
    assert trades[0].aggressor is Side.SELL and trades[0].price == Decimal("39432.48")
    assert [int(t.trade_id) for t in trades] == list(range(553_287_559, 553_289_560))
    ts = [t.ts_event for t in trades]
    assert ts == sorted(ts)
    assert pd.Timestamp(ts[0], tz="UTC") == pd.Timestamp("2021-01-08 00:00:00.278", tz="UTC")
    assert pd.Timestamp(ts[-1], tz="UTC") == pd.Timestamp("2021-01-08 00:00:46.355", tz="UTC")


def test_quotes_match_pandas(data_dir: Path):
    path = data_dir / "btcusdt-quotes.parquet"
    df = pd.read_parquet(path)
    quotes = list(iter_parquet_quotes(path, batch_size=100))
    assert len(quotes) == len(df) == 451
    assert all(isinstance(q, QuoteTick) and q.symbol == "BTCUSDT" for q in quotes)
    for row, q in ((df.iloc[0], quotes[0]), (df.iloc[-1], quotes[-1])):
        assert q.ts_event == q.ts_recv == row["timestamp"].value
        assert (q.bid, q.bid_size, q.ask, q.ask_size) == tuple(
            _dec(row[c]) for c in ("bid", "bid_size", "ask", "ask_size"))
    assert [q.bid for q in quotes] == [_dec(x) for x in df["bid"]]
    # 23 quotes share a millisecond with the one before: ids stay unique
    assert len({q.id for q in quotes}) == 451
    assert quotes[0].id == f"quote:BTCUSDT:{quotes[0].ts_event}"


def test_kind_by_columns(data_dir: Path, tmp_path: Path):
    assert parquet_kind(data_dir / "btcusdt-trades.parquet") == "trades"
    assert parquet_kind(data_dir / "btcusdt-quotes.parquet") == "quotes"
    with pytest.raises(ValueError, match=r"btcusdt-quotes\.parquet: has the columns of quotes, not trades"):
        iter_parquet_trades(data_dir / "btcusdt-quotes.parquet")
    other = tmp_path / "btcusdt-book.parquet"
    pq.write_table(pa.table({"ts": [1], "level": [2]}), other)
    with pytest.raises(ValueError, match=r"btcusdt-book\.parquet: unknown parquet layout"):
        parquet_kind(other)


def test_symbol_from_the_column_when_the_name_does_not_tell(data_dir: Path, tmp_path: Path):
    quotes_copy = tmp_path / "quotes.parquet"
    shutil.copyfile(data_dir / "btcusdt-quotes.parquet", quotes_copy)
    assert next(iter_parquet_quotes(quotes_copy)).symbol == "BTCUSDT"  # from "BTC/USDT"
    trades_copy = tmp_path / "trades.parquet"
    shutil.copyfile(data_dir / "btcusdt-trades.parquet", trades_copy)
    with pytest.raises(ValueError, match=r"cannot tell the symbol from the file name 'trades.parquet'.*--symbol"):
        iter_parquet_trades(trades_copy)
    assert next(iter_parquet_trades(trades_copy, symbol="BTC-USDT")).symbol == "BTCUSDT"


def test_unsorted_rows_and_bad_rows(tmp_path: Path):
    path = tmp_path / "ethusdt-trades.parquet"
    pq.write_table(pa.table({
        "timestamp": pa.array([1_000, 2_000, 3_000, 1_500], pa.timestamp("ms", tz="UTC")),
        "trade_id": [1, 2, 3, 4],
        "price": [10.0, -1.0, 10.5, 10.2],
        "quantity": [1.0, 1.0, None, 1.0],
        "buyer_maker": [True, False, True, False],
    }), path)
    reader = iter_parquet_trades(path)
    with pytest.raises(ValueError, match=r"ethusdt-trades.parquet: row 4 goes back in time"):
        list(reader)
    assert reader.skipped["missing value"] == 1
    assert sum(n for r, n in reader.skipped.items() if r.startswith("invalid")) == 1


def test_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"btcusdt-trades\.parquet"):
        iter_parquet_trades(tmp_path / "btcusdt-trades.parquet")

"""Columnar loading: the events are exactly those of the row-by-row loader (pinned hash), bars
stay Arrow columns until iterated, and the merge keeps time order with ties in file order."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as pf
import pyarrow.parquet as pq

from claire.events import Bar, QuoteTick
from claire.events.codec import encode
from claire.marketdata import BarTable, iter_binance_capture, open_market_data

from .test_capture import _trade, _write_capture

# SHA-256 over the msgspec (codec) encoding of every event of the five bundled feather files,
# computed with the row-by-row loader (heap merge of prebuilt Bar lists) before the columnar one
FIVE_FILES_SHA256 = "9cf496f61db2cb71c1517e3e7dfc7a8850c75a1c9d84f5bc5b2fd686a7ff7db9"
FIVE_FILES_REVERSED_SHA256 = "b5b34f47f6e3f42dde956bdc8c8ce5f8cb769a95767574ba984f5460ffeb3b48"


def _sha(events) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for ev in events:
        h.update(encode(ev))
        n += 1
    return n, h.hexdigest()


def test_events_of_the_five_files_are_unchanged(bar_paths):
    assert _sha(open_market_data(bar_paths)) == (215_996, FIVE_FILES_SHA256)
    assert _sha(open_market_data(bar_paths[::-1])) == (215_996, FIVE_FILES_REVERSED_SHA256)


def test_bars_stay_columns_until_iterated(bar_paths):
    t0 = time.process_time()
    md = open_market_data(bar_paths)
    cpu = time.process_time() - t0
    tables = [s.table for s in md.sources]
    assert all(isinstance(t, BarTable) for t in tables)
    assert sum(len(t) for t in tables) == md.count == 215_996
    # eight bytes per value and time: about 48 bytes a bar, no Python object per row
    per_bar = sum(t.nbytes for t in tables) / md.count
    assert per_bar <= 56, per_bar
    assert cpu < 1.0, f"opening five feather files took {cpu:.2f} s of CPU"  # about 0.03 s here
    first = next(iter(md))
    assert isinstance(first, Bar) and first.symbol == "BTCUSDT"


def test_mixed_sources_merge_like_one_stable_sort(tmp_path: Path, data_dir: Path):
    """Bars (merged columnar) and ticks (heap) together: time order, ties in the order of the files."""
    trades = data_dir / "btcusdt-trades.parquet"
    quotes = data_dir / "btcusdt-quotes.parquet"
    ts = pq.read_table(trades, columns=["timestamp"])["timestamp"].cast(pa.int64()).to_pylist()
    step = 60_000_000_000

    def bars(name: str, stamps: list[int], price: float) -> Path:
        path = tmp_path / name
        n = len(stamps)
        pf.write_feather(pa.table({
            "date": pa.array([t * 1_000_000 - step for t in stamps], pa.timestamp("ns", tz="UTC")),
            "open": [price] * n, "high": [price] * n, "low": [price] * n, "close": [price] * n, "volume": [1.0] * n,
        }), path)
        return path

    # bar close times equal to trade times (ties), spaced 60 s apart except for the ties
    a = bars("AAA_USDT-1m.feather", [ts[0], ts[0] + 60_000, ts[0] + 120_000], 1.0)
    b = bars("BBB_USDT-1m.feather", [ts[0], ts[0] + 120_000, ts[0] + 180_000], 2.0)
    for order in ([trades, a, quotes, b], [b, quotes, a, trades], [a, b, trades]):
        got = list(open_market_data(order))
        per_file = [list(open_market_data([p])) for p in order]
        want = sorted((e for evs in per_file for e in evs), key=lambda e: e.ts_event)  # stable
        assert [e.id for e in got] == [e.id for e in want]
        assert got == want


def test_iterating_again_gives_the_same_events(bar_paths):
    md = open_market_data(bar_paths[:2])
    first = [e.id for e in md]
    assert [e.id for e in md] == first and len(first) == 2 * 43_199


def _book_futures(local_ts: int, u: int, T: int | None) -> str:
    data = {"e": "bookTicker", "u": u, "s": "ETHUSDT", "b": "100.1", "B": "2", "a": "100.2", "A": "3"}
    if T is not None:
        data.update({"T": T, "E": T + 2})
    return f"{local_ts} " + json.dumps({"stream": "ethusdt@bookTicker", "data": data}, separators=(",", ":"))


def test_futures_book_ticker_uses_the_exchange_time(tmp_path: Path):
    ms = 1_000_000
    t0 = 1_723_161_254_000
    # local clock 1.5 s behind the exchange; quotes with `T` keep their exchange time, the one without
    # it (spot form) gets local time minus the offset estimated from the trades
    lines = [_trade((t0 + k) * ms - 1_500 * ms, k, t0 + k) for k in range(5)]
    lines += [_book_futures((t0 + 10) * ms - 1_500 * ms, 1, t0 + 7), _book_futures((t0 + 20) * ms - 1_500 * ms, 2, None)]
    reader = iter_binance_capture(_write_capture(tmp_path / "fut_ethusdt.gz", lines))
    quotes = [e for e in reader if isinstance(e, QuoteTick)]
    assert reader.stats.clock_offset_ns == -1_500 * ms
    assert quotes[0].ts_event == (t0 + 7) * ms and quotes[0].ts_recv == (t0 + 10) * ms - 1_500 * ms
    assert quotes[1].ts_event == (t0 + 20) * ms

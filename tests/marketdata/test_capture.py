"""Binance websocket capture: counts, values, clock offset, ordering, bounded memory."""

from __future__ import annotations

import gzip
import json
import logging
import random
import statistics
import tracemalloc
from decimal import Decimal
from itertools import islice, pairwise
from pathlib import Path

import pytest

from claire.events import QuoteTick, Side, TradeTick
from claire.marketdata import ReorderBuffer, estimate_clock_offset, iter_binance_capture


def _raw(path: Path, n: int | None = None):
    """(local_ts, message) of a capture, read plainly with json (the reference)."""
    with gzip.open(path, "rt") as fh:
        for line in islice(fh, n):
            ts, js = line.split(" ", 1)
            yield int(ts), json.loads(js)


def test_counts_per_file(capture_paths):
    expected = {
        "spot_btcusdt_20240808.gz": (9_757, 28_040, 3_451, 1),
        "spot_btcusdt_20240809.gz": (10_147, 45_134, 3_044, 0),
    }
    for path in capture_paths:
        reader = iter_binance_capture(path)
        trades = quotes = 0
        for ev in reader:
            if isinstance(ev, TradeTick):
                trades += 1
            else:
                quotes += 1
        st = reader.stats
        assert (trades, quotes, st.depth, st.snapshots) == expected[path.name]
        assert (st.trades, st.quotes) == (trades, quotes)
        assert (st.malformed, st.invalid, st.late, st.other) == (0, 0, 0, 0)


def test_two_files_are_one_ordered_stream(capture_run):
    events, stats = capture_run
    assert (stats.trades, stats.quotes, stats.depth, stats.snapshots) == (19_904, 73_174, 6_495, 1)
    assert len(events) == 93_078
    ts = [e.ts_event for e in events]
    assert all(a <= b for a, b in pairwise(ts))
    assert stats.late == 0
    # the trade tape is complete and in order across the two files
    ids = [int(e.trade_id) for e in events if isinstance(e, TradeTick)]
    assert ids == list(range(3_735_683_259, 3_735_703_163))
    assert len({e.id for e in events}) == len(events)
    assert {e.symbol for e in events} == {"BTCUSDT"}


def test_clock_offset_is_about_minus_1_27_s(capture_paths, capture_run):
    _, stats = capture_run
    # reference: median of local_ts - T over the first 1000 trades, computed with json
    diffs = []
    for local_ts, msg in _raw(capture_paths[0]):
        if msg.get("stream", "").endswith("@trade"):
            diffs.append(local_ts - msg["data"]["T"] * 1_000_000)
            if len(diffs) == 1000:
                break
    assert stats.clock_offset_ns == round(statistics.median(diffs))
    assert stats.offset_samples == 1000
    assert -1_300_000_000 < stats.clock_offset_ns < -1_240_000_000  # local clock ~1.27 s behind
    assert estimate_clock_offset(capture_paths) == (stats.clock_offset_ns, 1000)


def test_first_trade_and_quote_values(capture_paths, capture_run):
    events, stats = capture_run
    offset = stats.clock_offset_ns
    raw_trade = raw_quote = None
    for local_ts, msg in _raw(capture_paths[0], 50):
        stream = msg.get("stream", "")
        if raw_trade is None and stream == "btcusdt@trade":
            raw_trade = (local_ts, msg["data"])
        if raw_quote is None and stream == "btcusdt@bookTicker":
            raw_quote = (local_ts, msg["data"])
    by_id = {e.id: e for e in events[:2000]}

    local_ts, d = raw_trade
    trade = by_id[f"trade:BTCUSDT:{d['t']}"]
    assert trade == TradeTick(
        id=f"trade:BTCUSDT:{d['t']}", ts_event=d["T"] * 1_000_000, ts_recv=local_ts, symbol="BTCUSDT",
        price=Decimal(d["p"]), size=Decimal(d["q"]), aggressor=Side.SELL if d["m"] else Side.BUY,
        trade_id=str(d["t"]))
    assert (trade.price, trade.size, trade.aggressor) == (Decimal("61837.63"), Decimal("0.02"), Side.SELL)

    local_ts, d = raw_quote
    quote = by_id[f"quote:BTCUSDT:{d['u']}"]
    assert quote == QuoteTick(
        id=f"quote:BTCUSDT:{d['u']}", ts_event=local_ts - offset, ts_recv=local_ts, symbol="BTCUSDT",
        bid=Decimal(d["b"]), bid_size=Decimal(d["B"]), ask=Decimal(d["a"]), ask_size=Decimal(d["A"]))
    assert quote.ts_event - quote.ts_recv == -offset  # shifted ~1.27 s later, onto exchange time


def test_last_trade_matches_the_file(capture_paths, capture_run):
    events, _ = capture_run
    last = None
    for local_ts, msg in _raw(capture_paths[1]):
        if msg.get("stream") == "btcusdt@trade":
            last = (local_ts, msg["data"])
    local_ts, d = last
    trade = next(e for e in reversed(events) if isinstance(e, TradeTick))
    assert (trade.trade_id, trade.ts_event, trade.ts_recv, trade.price, trade.size) == (
        str(d["t"]), d["T"] * 1_000_000, local_ts, Decimal(d["p"]), Decimal(d["q"]))


def test_memory_stays_bounded(capture_paths):
    n = 12_000  # events streamed (about 80 s of market time); the window is 2 s
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        reader = iter_binance_capture(capture_paths)
        count = sum(1 for _ in islice(reader, n))
        stream_peak = tracemalloc.get_traced_memory()[1] - base
        reader.close()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        sample = list(islice(iter_binance_capture(capture_paths), 2_000))
        per_event = (tracemalloc.get_traced_memory()[0] - base) / len(sample)
    finally:
        tracemalloc.stop()
    assert count == n
    materialised = per_event * 93_078  # what holding the whole stream would take
    assert per_event > 300  # sanity: an event with its Decimals and strings is several hundred bytes
    assert reader.stats.max_buffered < 2_500  # events held by the 2 s reorder window
    assert stream_peak < materialised / 10, (stream_peak, materialised)
    assert stream_peak < 3_000_000, stream_peak


def _write_capture(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _trade(local_ts: int, t: int, T: int, p: str = "100.5", m: bool = False, sym: str = "ethusdt") -> str:
    data = {"e": "trade", "E": T, "s": sym.upper(), "t": t, "p": p, "q": "1.0", "T": T, "m": m}
    return f"{local_ts} " + json.dumps({"stream": f"{sym}@trade", "data": data}, separators=(",", ":"))


def _book(local_ts: int, u: int, sym: str = "ethusdt") -> str:
    data = {"u": u, "s": sym.upper(), "b": "100.1", "B": "2", "a": "100.2", "A": "3"}
    return f"{local_ts} " + json.dumps({"stream": f"{sym}@bookTicker", "data": data})


MS = 1_000_000


def test_skips_and_counts_bad_lines(tmp_path: Path, caplog):
    t0 = 1_723_161_254_000  # ms
    lines = [
        _trade((t0 - 500) * MS, 1, t0),
        "garbage",
        f"{(t0 + 1) * MS} not json",
        f"{(t0 + 2) * MS} " + '{"stream":"ethusdt@kline_1m","data":{"k":{}}}',
        f"{(t0 + 3) * MS} " + '{"stream":"ethusdt@depth@100ms","data":{"U":1,"u":2,"b":[],"a":[]}}',
        f"{(t0 + 4) * MS} " + '{"lastUpdateId":5,"bids":[],"asks":[]}',
        _trade((t0 - 400) * MS, 2, t0 + 100, p="0"),  # price 0: refused by TradeTick
        _trade((t0 - 300) * MS, 3, t0 + 200, m=True),
        _book((t0 - 200) * MS, 77),
        "",
    ]
    path = _write_capture(tmp_path / "spot_ethusdt_x.gz", lines)
    with caplog.at_level(logging.WARNING, logger="claire.marketdata"):
        reader = iter_binance_capture(path)
        events = list(reader)
    st = reader.stats
    assert (st.trades, st.quotes, st.depth, st.snapshots, st.other, st.malformed, st.invalid) == (2, 1, 1, 1, 1, 2, 1)
    assert st.clock_offset_ns == -500 * MS  # local clock 0.5 s behind (price-0 trade included)
    assert [e.id for e in events] == ["trade:ETHUSDT:1", "trade:ETHUSDT:3", "quote:ETHUSDT:77"]
    assert events[1].aggressor is Side.SELL and events[0].aggressor is Side.BUY
    assert events[2].ts_event == (t0 + 300) * MS  # local - offset
    assert events[2].ts_recv == (t0 - 200) * MS
    assert "2 malformed and 1 invalid lines skipped" in caplog.text


def test_late_event_is_retimed_not_out_of_order(tmp_path: Path):
    t0 = 1_723_161_254_000
    lines = [_trade((t0 + k * 500) * MS, k + 1, t0 + k * 500) for k in range(10)]  # 0 .. 4.5 s
    lines.insert(9, _trade((t0 + 4100) * MS, 99, t0 + 1000))  # 3 s behind the latest
    path = _write_capture(tmp_path / "spot_ethusdt_late.gz", lines)
    reader = iter_binance_capture(path, clock_offset_ns=0)
    events = list(reader)
    ts = [e.ts_event for e in events]
    assert all(a <= b for a, b in pairwise(ts))
    assert reader.stats.late == 1 and len(events) == 11
    late = next(e for e in events if e.trade_id == "99")
    assert late.ts_event == (t0 + 2000) * MS  # raised to the last time already released


def test_symbol_override_and_given_offset(capture_paths):
    reader = iter_binance_capture(capture_paths[1], symbol="btc/usdt", clock_offset_ns=-1_000_000_000)
    events = list(islice(reader, 300))
    assert {e.symbol for e in events} == {"BTCUSDT"}
    quote = next(e for e in events if isinstance(e, QuoteTick))
    assert quote.ts_event - quote.ts_recv == 1_000_000_000
    assert reader.stats.clock_offset_ns == -1_000_000_000 and reader.stats.offset_samples == 0


def test_several_symbols_in_one_capture(tmp_path: Path):
    t0 = 1_723_161_254_000
    lines = [_trade((t0 + k) * MS, k, t0 + k, sym="ethusdt" if k % 2 else "solusdt") for k in range(6)]
    events = list(iter_binance_capture(_write_capture(tmp_path / "mixed.gz", lines)))
    assert [e.symbol for e in events] == ["SOLUSDT", "ETHUSDT"] * 3


def test_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"spot_btcusdt_19990101\.gz"):
        iter_binance_capture(tmp_path / "spot_btcusdt_19990101.gz")
    bad = tmp_path / "spot_btcusdt_bad.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"spot_btcusdt_bad\.gz: cannot read the capture"):
        list(iter_binance_capture(bad))


def test_reorder_buffer_sorts_nearly_sorted_input():
    rng = random.Random(7)
    items = [(k * 10 + rng.randint(0, 50), k) for k in range(5_000)]  # up to 50 behind
    buf: ReorderBuffer[int] = ReorderBuffer(window_ns=60)
    out = []
    for ts, k in items:
        out.extend(buf.push(ts, k))
        assert len(buf) <= 20
    out.extend(buf.flush())
    assert buf.late == 0
    assert out == sorted(items, key=lambda x: (x[0], x[1]))
    # equal times come out in arrival order
    buf2: ReorderBuffer[str] = ReorderBuffer(window_ns=0)
    assert [*buf2.push(5, "a"), *buf2.push(5, "b"), *buf2.flush()] == [(5, "a"), (5, "b")]

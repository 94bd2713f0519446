"""Feed logic with scripted inputs (no sockets), the capture files, the fake's entry point."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from decimal import Decimal

import aiohttp

from claire.adapters.mexc import mexc_pb2 as pb
from claire.adapters.mexc.capture import CaptureWriter, capture_file_name, iter_records
from claire.adapters.mexc.codec import deals_topic, kline_topic
from claire.adapters.mexc.fake import main as fake_main
from claire.adapters.mexc.fake import run_fake
from claire.adapters.mexc.feed import MexcFeed
from claire.adapters.mexc.models import ConnEvent, Frame, MexcApiError
from claire.adapters.mexc.stream import END, MexcStream
from claire.events import Bar, TradeTick

from .conftest import FAST_STREAM, make_fake

T0 = 1_774_267_800_000  # ms, a minute boundary
MIN = 60_000
NS = 1_000_000


def kline(sym, window_ms, o, h, lo, c, v, t_ms):
    m = pb.PushDataWrapper(channel=kline_topic(sym), symbol=sym, create_time=t_ms)
    k = m.public_spot_kline
    k.interval, k.window_start, k.window_end = "Min1", window_ms // 1000, (window_ms + MIN) // 1000
    k.opening_price, k.highest_price, k.lowest_price, k.closing_price, k.volume, k.amount = o, h, lo, c, v, "1"
    return m.SerializeToString()


def deal(sym, price, t_ms):
    m = pb.PushDataWrapper(channel=deals_topic(sym), symbol=sym, send_time=t_ms)
    m.public_aggre_deals.deals.add(price=price, quantity="1", trade_type=1, time=t_ms)
    return m.SerializeToString()


class ListSource:
    def __init__(self, items):
        self.items = list(items)

    async def start(self):
        return None

    async def next_item(self, timeout=None):
        return self.items.pop(0) if self.items else END

    async def close(self):
        return None


class StubRest:
    """REST answers from a dict of open ms -> (o, h, l, c, v); ``fail`` calls raise first."""

    def __init__(self, rows, fail=0):
        self.rows = rows
        self.fail = fail
        self.calls = []

    async def symbol_rules(self, symbols):
        return {}

    async def server_time(self):
        return T0 + 3 * MIN + 5

    async def closed_bars(self, symbol, start, end, *, interval_s=60):
        self.calls.append((symbol, start, end))
        if self.fail:
            self.fail -= 1
            raise MexcApiError("HTTP 503")
        return [Bar(id=f"bar:{symbol}:60:{(o + MIN) * NS}", ts_event=(o + MIN) * NS, ts_recv=1, symbol=symbol,
                    interval_s=60, open=Decimal(r[0]), high=Decimal(r[1]), low=Decimal(r[2]), close=Decimal(r[3]),
                    volume=Decimal(r[4]))
                for o, r in sorted(self.rows.items()) if start <= o < end]

    async def close(self):
        return None


ROWS = {T0 + i * MIN: ("10", "12", "9", "11", "5") for i in range(6)}


def run(feed):
    async def go():
        return [e async for e in feed.events()]

    return asyncio.run(go())


def test_live_candle_differing_from_rest_is_recorded_and_rest_wins():
    items = [Frame(0, kline("BTCUSDT", T0, "10", "12", "9", "10.5", "4", T0 + 50_000), 1),  # last push: incomplete
             Frame(0, kline("BTCUSDT", T0 + MIN, "11", "11", "11", "11", "0.1", T0 + MIN + 100), 2),
             Frame(0, deal("BTCUSDT", "11", T0 + MIN + 200), 3)]
    feed = MexcFeed(["BTCUSDT"], rest=StubRest(ROWS), source=ListSource(items))
    events = run(feed)
    bars = [e for e in events if isinstance(e, Bar)]
    assert [(b.ts_event, b.close, b.volume) for b in bars] == [((T0 + MIN) * NS, Decimal("11"), Decimal("5"))]
    [rec] = feed.quality
    assert rec.kind == "kline_mismatch" and rec.details["live"][3] == "10.5" and rec.details["rest"][3] == "11"
    assert isinstance(events[-1], TradeTick)


def test_rest_failure_delays_bars_but_leaves_no_hole():
    items = [Frame(0, kline("BTCUSDT", T0, "10", "12", "9", "11", "5", T0 + 100), 1),
             ConnEvent(conn=0, kind="disconnected", symbols=("BTCUSDT",), reason="error", ts_recv=2),
             ConnEvent(conn=0, kind="connected", symbols=("BTCUSDT",), ts_recv=3),
             Frame(0, kline("BTCUSDT", T0 + 2 * MIN, "10", "12", "9", "11", "5", T0 + 2 * MIN + 100), 4),
             Frame(0, kline("BTCUSDT", T0 + 3 * MIN, "10", "12", "9", "11", "5", T0 + 3 * MIN + 100), 5)]
    rest = StubRest(ROWS, fail=1)
    feed = MexcFeed(["BTCUSDT"], rest=rest, source=ListSource(items))
    bars = [e for e in run(feed) if isinstance(e, Bar)]
    assert [b.ts_open // NS for b in bars] == [T0, T0 + MIN, T0 + 2 * MIN]
    kinds = [(r.kind, r.cause) for r in feed.quality]
    assert kinds == [("disconnect", "error"), ("repair_pending", "rest"), ("gap_repaired", "error")]
    assert rest.calls == [("BTCUSDT", T0, T0 + 2 * MIN), ("BTCUSDT", T0, T0 + 3 * MIN)]


def test_without_verify_live_candles_are_used_and_rest_only_fills_gaps():
    items = [Frame(0, kline("BTCUSDT", T0, "10", "12", "9", "10.5", "4", T0 + 100), 1),
             Frame(0, kline("BTCUSDT", T0 + MIN, "10", "12", "9", "10.5", "4", T0 + MIN + 100), 2),
             Frame(0, kline("BTCUSDT", T0 + 3 * MIN, "10", "12", "9", "10.5", "4", T0 + 3 * MIN + 100), 3)]
    rest = StubRest(ROWS)
    feed = MexcFeed(["BTCUSDT"], rest=rest, source=ListSource(items), verify=False)
    bars = [e for e in run(feed) if isinstance(e, Bar)]
    assert [(b.ts_open // NS, b.close) for b in bars] == [(T0, Decimal("10.5")), (T0 + MIN, Decimal("11")),
                                                          (T0 + 2 * MIN, Decimal("11"))]
    assert rest.calls == [("BTCUSDT", T0 + MIN, T0 + 3 * MIN)]
    assert bars[0].ts_recv == 2  # closed by the push of the next window


def test_warmup_then_live_across_symbols_in_order():
    items = [Frame(0, kline("ETHUSDT", T0 + 3 * MIN, "10", "12", "9", "11", "5", T0 + 3 * MIN + 10), 1),
             Frame(0, deal("BTCUSDT", "11", T0 + 4 * MIN + 5), 2)]  # BTC's deal closes both symbols' minute
    feed = MexcFeed(["BTCUSDT", "ETHUSDT"], rest=StubRest(ROWS), source=ListSource(items), warmup=2)
    events = run(feed)
    got = [(type(e).__name__, e.symbol, e.ts_event // NS) for e in events]
    assert got == [("Bar", "BTCUSDT", T0 + 2 * MIN), ("Bar", "ETHUSDT", T0 + 2 * MIN),
                   ("Bar", "BTCUSDT", T0 + 3 * MIN), ("Bar", "ETHUSDT", T0 + 3 * MIN),
                   ("Bar", "BTCUSDT", T0 + 4 * MIN), ("Bar", "ETHUSDT", T0 + 4 * MIN),
                   ("TradeTick", "BTCUSDT", T0 + 4 * MIN + 5)]
    assert [(r.symbol, r.kind) for r in feed.quality] == [("BTCUSDT", "gap_repaired")]  # no BTC kline push seen


def test_capture_files_per_utc_day_and_truncated_tail(tmp_path):
    day1 = 1_774_310_399_000_000_000  # 2026-03-23 23:59:59 UTC
    day2 = day1 + 2_000_000_000
    with CaptureWriter(tmp_path) as w:
        w.frame(0, b"\x0a\x01x", day1)
        w.rest(day1 + 1, "/api/v3/time", {}, status=200, body=b'{"serverTime": 1}')
        w.frame(1, b"\x00\xff", day2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [capture_file_name(day1), capture_file_name(day2)] == ["mexc-20260323.jsonl.gz",
                                                                           "mexc-20260324.jsonl.gz"]
    recs = list(iter_records(tmp_path))
    assert [(r["k"], r["t"]) for r in recs] == [("ws", day1), ("rest", day1 + 1), ("ws", day2)]
    assert recs[0]["b"] == "CgF4"  # base64 of the binary frame
    # a crash mid-write leaves a truncated gzip member: what is there is still read
    path = tmp_path / names[1]
    data = path.read_bytes() + gzip.compress(b'{"t": 5, "k": "ws", "c": 0, "b": ""}\n' * 50)[:-20]
    path.write_bytes(data)
    assert len(list(iter_records(tmp_path))) >= 3


def test_run_fake_prints_its_urls_and_serves(bar_paths):
    async def go():
        out, ready = io.StringIO(), asyncio.Event()
        task = asyncio.create_task(run_fake([str(p) for p in bar_paths], out=out, ready=ready, speed=5, history=20))
        await asyncio.wait_for(ready.wait(), 10)
        info = json.loads(out.getvalue())
        async with aiohttp.ClientSession() as s, s.get(info["rest_url"] + "/api/v3/time") as r:
            body = await r.json()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return info, body

    info, body = asyncio.run(go())
    assert info["rest_url"].startswith("http://127.0.0.1:") and info["ws_url"].endswith("/ws")
    assert info["symbols"] == ["BTCUSDT", "ETHUSDT"] and body["serverTime"] > 0
    assert callable(fake_main)


def test_proactive_reconnect_before_24h(fake_bars):
    async def go():
        fake = make_fake(fake_bars)
        await fake.start()
        try:
            stream = MexcStream(["BTCUSDT"], url=fake.ws_url, max_age_s=0.3, stale_s=1.0, **FAST_STREAM)
            await stream.start()
            kinds = []
            end = asyncio.get_running_loop().time() + 1.0
            while asyncio.get_running_loop().time() < end:
                item = await stream.next_item(0.05)
                if isinstance(item, ConnEvent):
                    kinds.append((item.kind, item.reason))
            await stream.close()
            return kinds
        finally:
            await fake.stop()

    kinds = asyncio.run(go())
    assert ("disconnected", "proactive") in kinds and kinds.count(("connected", "")) >= 2


def test_a_capture_directory_with_several_runs(tmp_path):
    from claire.adapters.mexc.capture import iter_run, read_start

    with CaptureWriter(tmp_path) as w:
        for run in range(2):
            w.start(10 + run * 10, symbols=[f"S{run}USDT"], warmup=run)
            w.frame(0, b"\x0a\x00", 11 + run * 10)
    assert [r["t"] for r in iter_run(tmp_path, 1)] == [20, 21]
    assert read_start(tmp_path, 1)["symbols"] == ["S1USDT"] and read_start(tmp_path)["warmup"] == 0

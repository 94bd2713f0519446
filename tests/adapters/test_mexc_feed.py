"""The feed against the fake: the same closed bars as the file, gaps repaired, recording and replay."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest

from claire.adapters.mexc import MexcMarketData, replay_capture
from claire.adapters.mexc.capture import iter_records
from claire.adapters.mexc.models import SubscriptionError, UnknownSymbolError
from claire.events import Bar, QuoteTick, TradeTick

from .conftest import FAST_STREAM, HISTORY, bars_of, live, make_fake, n_bars_each, run_live

SYMS = ["BTCUSDT", "ETHUSDT"]
STEP_NS = 60 * 1_000_000_000


def check_bars(events, file_bars, symbols=SYMS, min_bars=20, ordered=True):
    """Bars equal the file's (ids too), contiguous per symbol, no duplicates; events in time order
    (``ordered``; the bars in order per symbol always)."""
    evs = events if ordered else [e for e in events if isinstance(e, Bar)]
    back = [(a, b) for a, b in pairwise(evs) if b.ts_event < a.ts_event]
    assert not back, f"events out of event-time order: {back[:3]}"
    for sym in symbols:
        bars = bars_of(events, sym)
        assert len(bars) >= min_bars
        assert len({b.id for b in bars}) == len(bars), "duplicate bars"
        assert all(b.ts_event - a.ts_event == STEP_NS for a, b in pairwise(bars)), "a hole in the bars"
        for b in bars:
            f = file_bars[b.id]
            assert (b.symbol, b.interval_s, b.ts_event, b.open, b.high, b.low, b.close, b.volume) == (
                f.symbol, f.interval_s, f.ts_event, f.open, f.high, f.low, f.close, f.volume)
    return {sym: bars_of(events, sym) for sym in symbols}


def test_feed_yields_the_file_bars_ticks_and_quotes(fake_bars, file_bars):
    events, feed, _fake = live(fake_bars, SYMS, warmup=5, until=n_bars_each(30, SYMS))
    bars = check_bars(events, file_bars, min_bars=30)
    # warm-up: the 5 bars closed before the stream's current minute come first
    first = {s: b[0] for s, b in bars.items()}
    assert first["BTCUSDT"].ts_event == first["ETHUSDT"].ts_event
    assert all(isinstance(e, Bar) for e in events[:10])
    trades = [e for e in events if isinstance(e, TradeTick)]
    quotes = [e for e in events if isinstance(e, QuoteTick)]
    assert len(trades) > 100 and len(quotes) > 50
    assert {t.symbol for t in trades} == set(SYMS)
    # the deals and quotes of a bar are consistent with it
    for t in trades[:50]:
        bar = file_bars[f"bar:{t.symbol}:60:{(t.ts_event // STEP_NS + 1) * STEP_NS}"]
        assert bar.low <= t.price <= bar.high
    assert not [q for q in feed.quality if q.kind in ("gap_repaired", "gap_unrepaired", "kline_mismatch")]
    assert feed.rules["BTCUSDT"].tick_size > 0
    assert set(feed.books) == set(SYMS) and len(feed.books["BTCUSDT"].bids) == 5


def test_disconnects_and_skipped_windows_are_repaired_by_rest(fake_bars, file_bars):
    skip = [5, 16]  # away from the disconnects at bars 10 and 20 (a reconnect takes 1..4 bars here)
    events, feed, fake = live(fake_bars, SYMS, warmup=3, until=n_bars_each(34, SYMS),
                              fake_options={"disconnect_every_bars": 10, "skip_kline_bars": skip},
                              stream_options={"backoff_base_s": 0.1, "backoff_max_s": 0.13})
    # every event in event-time order, also on a loaded machine (at the fake's 1,200x real time a
    # tick can come later than the 2 s reorder window: it is dropped with a late_ticks record)
    check_bars(events, file_bars, min_bars=34)
    assert fake.disconnects >= 2
    q = feed.quality
    skipped = [r for r in q if r.kind == "gap_repaired" and r.cause == "skipped_window"]
    for n in skip:
        open_ns = fake.timeline[HISTORY + n] * 1_000_000
        for sym in SYMS:
            assert any(r.symbol == sym and r.from_ts <= open_ns < r.to_ts for r in skipped), (n, sym, q)
    assert all(r.bars_repaired == (r.to_ts - r.from_ts) // STEP_NS for r in q if r.kind == "gap_repaired")
    assert {r.symbol for r in q if r.kind == "disconnect"} == set(SYMS)
    assert any(r.kind == "gap_repaired" and r.cause == "closed" for r in q)  # bars missed while disconnected


def test_silent_socket_reconnects_and_repairs(fake_bars, file_bars):
    events, feed, _fake = live(fake_bars, SYMS, warmup=2, until=n_bars_each(30, SYMS),
                              fake_options={"silent_at_bar": 4}, stream_options={"stale_s": 0.25})
    check_bars(events, file_bars, min_bars=30)
    kinds = {(r.kind, r.cause) for r in feed.quality}
    assert ("stale", "stale") in kinds and ("disconnect", "stale") in kinds
    assert ("gap_repaired", "stale") in kinds


def test_capture_replay_gives_identical_events(fake_bars, tmp_path):
    cap = tmp_path / "capture"
    events, _feed, _fake = live(fake_bars, SYMS, warmup=4, until=n_bars_each(24, SYMS), capture_dir=cap,
                              fake_options={"disconnect_every_bars": 7, "skip_kline_bars": [5],
                                            "rest_429_every": 25, "retry_after": 0.05})
    kinds = {r["k"] for r in iter_records(cap)}
    assert kinds == {"start", "ws", "conn", "rest"}
    files = list(cap.iterdir())
    assert len(files) == 1 and files[0].name.startswith("mexc-") and files[0].name.endswith(".jsonl.gz")
    replayed = list(replay_capture(cap))
    assert replayed == events  # same events, ids, receive times, order
    assert len(bars_of(replayed)) >= 48


def test_replay_quality_records_match(fake_bars, tmp_path):
    from claire.adapters.mexc.feed import replay_feed

    cap = tmp_path / "capture"
    events, feed, _ = live(fake_bars, SYMS, warmup=2, until=n_bars_each(16, SYMS), capture_dir=cap,
                           fake_options={"skip_kline_bars": [4]})

    async def replay():
        f = replay_feed(cap)
        return [e async for e in f.events()], f

    again, rfeed = asyncio.run(replay())
    assert again == events and rfeed.quality == feed.quality and rfeed.quality


def test_unknown_symbol_and_blocked_topic_fail_at_start(fake_bars):
    async def go(symbols, **fake_kw):
        fake = make_fake(fake_bars, **fake_kw)
        await fake.start()
        try:
            await run_live(fake, symbols, until=lambda ev: True, timeout=3)
        finally:
            await fake.stop()

    with pytest.raises(UnknownSymbolError, match="NOPEUSDT"):
        asyncio.run(go(["BTCUSDT", "NOPEUSDT"]))
    with pytest.raises(SubscriptionError, match="Blocked"):
        asyncio.run(go(["BTCUSDT"], blocked_topics=["spot@public.kline.v3.api.pb@BTCUSDT@Min1"]))


def test_synchronous_facade(fake_bars, file_bars):
    async def serve(ready, stop, box):
        fake = make_fake(fake_bars)
        box["fake"] = await fake.start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.02)
        await fake.stop()

    import threading

    ready, stop, box = threading.Event(), threading.Event(), {}
    server = threading.Thread(target=lambda: asyncio.run(serve(ready, stop, box)))
    server.start()
    try:
        ready.wait(5)
        md = MexcMarketData(["BTCUSDT"], warmup=3, rest_url=box["fake"]["rest_url"], ws_url=box["fake"]["ws_url"],
                            stream_options=FAST_STREAM)
        events = []
        for ev in md:
            events.append(ev)
            if len(bars_of(events)) == 12:
                md.stop()  # the rest arrives, then the iteration ends
        md.close()
    finally:
        stop.set()
        server.join(5)
    check_bars(events, file_bars, symbols=["BTCUSDT"], min_bars=12)
    assert md.rules["BTCUSDT"].trading


def test_a_restart_warms_up_from_the_last_published_bar(fake_bars, file_bars):
    """`warmup_since_ms` (a restarted market data service): the warm-up reaches back to that bar
    open whatever the strategy's warm-up, so the bars closed while it was down come again."""
    from claire.adapters.mexc.feed import open_feed

    async def main():
        fake = make_fake(fake_bars)
        await fake.start()
        try:
            feed = open_feed(SYMS, warmup=3, rest_url=fake.rest_url, ws_url=fake.ws_url,
                             stream_options=dict(FAST_STREAM))
            since = fake.start_ms - 30 * 60_000
            feed.warmup_since_ms = since
            events = []
            async for ev in feed.events():
                events.append(ev)
                if not feed._stop and n_bars_each(32, SYMS)(events):
                    feed.request_stop()
            return events, feed, since
        finally:
            await fake.stop()

    events, feed, since = asyncio.run(main())
    bars = check_bars(events, file_bars, min_bars=32)  # the file's, contiguous, once each, in order
    for sym in SYMS:
        warm = [b for b in bars[sym] if b.ts_event <= feed.live_from_ms * 1_000_000]
        # not 3: every bar opened since `since` (the fake runs on while the feed starts: >= 30)
        assert len(warm) >= 30
        assert warm[0].ts_event == (since + 60_000) * 1_000_000  # the bar opened at `since` closes a minute later

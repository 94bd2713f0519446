"""Live market data benchmark (issue 11): MEXC frames through the codec and the core, in process, on one core.

Three figures, every one on the real code path (no I/O, no network, no fast path of its own):

- **decode**: binary pushes built with the generated protobuf classes
  (:func:`claire.adapters.mexc.codec.sample_frames`) decoded by
  :meth:`MexcCodec.decode <claire.adapters.mexc.codec.MexcCodec.decode>` (the call the live feed
  makes: protobuf parse, then events) into events; frames per second, the median of 3 runs, a
  fresh codec per run. A *frame* is one WebSocket binary message: an aggregated deals push of
  BTCUSDT with 1 or 3 deals (each becomes a :class:`~claire.events.TradeTick`; no trade id, so
  the id is built from the deal's content), or an aggregated bookTicker push (one
  :class:`~claire.events.QuoteTick`). The same frame is decoded over and over, so the codec's
  cache of recent prices always hits (live prices repeat, but not always);
  ``deals_3_per_frame_new_prices`` is the worst case: every frame's three prices are new to the
  cache (quantities are parsed every time in all cases).
- **latency**: ``symbols`` synthetic symbols, frames round-robin across them in the order
  bookTicker, deals, kline (one candle per kline frame, the close zigzagging, each symbol in
  another phase, so that ``sma_cross`` fast=2 slow=3 crosses every few candles), paced at ``rate`` frames/s for
  ``seconds``. Each frame is decoded by the codec and handed to the core built by
  :func:`claire.engine.kernel.build_core` (risk default, the core's default execution: a market
  order fills at once on the symbol's last quote). A frame is *received* when its scheduled
  time has come (``time.perf_counter_ns`` after the pacing wait); the ``emit`` callback stamps
  every :class:`~claire.events.Signal` and every filling :class:`~claire.events.OrderResult`.
  Latency = emit stamp - receive stamp, p50/p99/max; also from the frame's *scheduled* time
  (includes any time the loop fell behind the pace). A kline frame is taken as a closed candle
  (``KlineUpdate.to_bar``): the live feed (:mod:`claire.adapters.mexc.feed`) closes a candle
  when the next window's push arrives, which adds no work here.
- **memory**: RSS (``VmRSS``) of this process at the start of the latency run (core built,
  frames prepared) and at its end, and the peak (``VmHWM``).

    claire bench mexc --json
    python -m claire.benchmarks.mexc --symbols 20 --rate 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from decimal import Decimal
from typing import Any

from claire.adapters.mexc import mexc_pb2 as pb
from claire.adapters.mexc.codec import (
    KlineUpdate,
    MexcCodec,
    book_ticker_topic,
    deals_topic,
    kline_topic,
    sample_frames,
)
from claire.config import RunOptions, make_config
from claire.engine.kernel import build_core
from claire.events import Event, OrderResult, Signal

T0_S = 1_767_225_600  # 2026-01-01 00:00:00 UTC: the first candle's window start (seconds)
ZIGZAG = (0, 2, 4, 6, 4, 2)  # the close, in ticks above the base: sma 2/3 cross twice a period
KINDS = ("bookTicker", "deals", "kline")


def percentiles(values: list[int], scale: float = 1e-3) -> dict[str, Any]:
    """n, p50/p99/max by nearest rank, ``values`` (ns) times ``scale`` (default: microseconds)."""
    if not values:
        return {"n": 0}
    v = sorted(values)

    def rank(p: float) -> float:
        return round(v[max(0, math.ceil(p * len(v)) - 1)] * scale, 1)

    return {"n": len(v), "p50": rank(0.50), "p99": rank(0.99), "max": round(v[-1] * scale, 1)}


def _rss_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process (KiB, from /proc/self/status; empty elsewhere)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0])
    except OSError:
        pass
    return out


def _mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib is not None else None


# --- decode -------------------------------------------------------------------------------


def bench_decode(frames: int = 50_000, repeat: int = 3) -> dict[str, Any]:
    """Frames decoded per second (median of ``repeat`` runs) for deals (1 and 3 per frame, and 3 per
    frame at prices new to the codec's cache) and bookTicker (see the module doc)."""
    same = {"deals_1_per_frame": sample_frames(1)["deals"], "deals_3_per_frame": sample_frames(3)["deals"],
            "bookTicker": sample_frames(1)["bookTicker"]}
    cases: dict[str, list[bytes]] = {name: [data] * frames for name, data in same.items()}
    # three new prices per frame (each frame 3 cents above the last): the price cache never hits
    cases["deals_3_per_frame_new_prices"] = [sample_frames(3, price_ticks=3 * i)["deals"] for i in range(frames)]
    out: dict[str, Any] = {"frames": frames, "repeat": repeat}
    for name, datas in cases.items():
        rates: list[float] = []
        for _ in range(repeat):
            codec = MexcCodec()
            decode = codec.decode
            t0 = time.perf_counter()
            for i, data in enumerate(datas):
                decode(data, i)
            rates.append(frames / (time.perf_counter() - t0))
            assert not codec.skipped, codec.skipped  # noqa: S101 - a benchmark of frames that decode
        out[f"{name}_frames_per_s"] = round(statistics.median(rates))
    return out


# --- latency ------------------------------------------------------------------------------


def _symbols(n: int) -> list[str]:
    return [f"S{i:02d}USDT" for i in range(n)]


def _frame(kind: str, sym: str, j: int, base: Decimal, tick: Decimal, phase: int = 0) -> bytes:
    """The ``kind`` frame of candle ``j`` of ``sym`` (quote and deals just before the candle closes)."""
    start = T0_S + 60 * j
    close = base + tick * ZIGZAG[(j + phase) % len(ZIGZAG)]
    if kind == "bookTicker":
        m = pb.PushDataWrapper(channel=book_ticker_topic(sym), symbol=sym, send_time=(start + 59) * 1000)
        m.public_aggre_book_ticker.CopyFrom(pb.AggreBookTicker(
            bid_price=str(close - tick), bid_quantity="1000", ask_price=str(close + tick), ask_quantity="1000"))
    elif kind == "deals":
        m = pb.PushDataWrapper(channel=deals_topic(sym), symbol=sym, send_time=(start + 59) * 1000 + 500)
        body = m.public_aggre_deals
        body.event_type = "spot@public.aggre.deals.v3.api.pb@100ms"
        body.deals.add(price=str(close), quantity="0.5", trade_type=1 + j % 2, time=(start + 59) * 1000 + 400)
    else:
        m = pb.PushDataWrapper(channel=kline_topic(sym), symbol=sym, send_time=(start + 60) * 1000)
        lo, hi = min(base, close), max(base, close) + tick
        m.public_spot_kline.CopyFrom(pb.SpotKline(
            interval="Min1", window_start=start, window_end=start + 60, opening_price=str(base),
            closing_price=str(close), highest_price=str(hi), lowest_price=str(lo), volume="1000",
            amount=str(close * 1000)))
    return m.SerializeToString()


def make_frames(n_symbols: int, n_frames: int) -> list[bytes]:
    """``n_frames`` frames round-robin over the symbols: all quotes of a candle, its deals, its klines."""
    syms = _symbols(n_symbols)
    frames: list[bytes] = []
    i = 0
    while len(frames) < n_frames:
        j, r = divmod(i, n_symbols * len(KINDS))
        kind, s = divmod(r, n_symbols)
        sym = syms[s]
        base = Decimal(100 + 10 * s)
        frames.append(_frame(KINDS[kind], sym, j, base, Decimal("0.01") * (1 + s), phase=s))
        i += 1
    return frames


def bench_latency(symbols: int = 20, rate: float = 1000.0, seconds: float = 10.0) -> dict[str, Any]:
    """Frames -> codec -> core at ``rate`` frames/s over ``symbols`` symbols: latency to signal and to fill."""
    n = max(1, round(rate * seconds))
    frames = make_frames(symbols, n)
    cfg = make_config(RunOptions(source="mexc", symbols=",".join(_symbols(symbols)), strategy="sma_cross",
                                 param=["fast=2", "slow=3"], risk="default"), env={})
    now_ns = time.perf_counter_ns
    recv = [0]  # the receive stamp of the frame being handled
    to_signal: list[int] = []
    to_fill: list[int] = []
    counts = {"signals": 0, "orders_results": 0, "fills": 0, "events": 0}

    def emit(ev: Event) -> None:
        counts["events"] += 1
        if type(ev) is Signal:
            to_signal.append(now_ns() - recv[0])
        elif isinstance(ev, OrderResult):
            counts["orders_results"] += 1
            if ev.is_fill:
                to_fill.append(now_ns() - recv[0])

    core = build_core(cfg, emit)
    codec = MexcCodec()
    decode = codec.decode
    on_market = core.on_market
    kline_t = KlineUpdate
    per_frame: list[int] = []
    behind: list[int] = []  # receive stamp - scheduled time (the pace's own jitter, >= 0)
    sched_to_fill: list[int] = []
    mem_start = _rss_kib()
    period = 1e9 / rate
    start = now_ns() + 1_000_000
    for k, data in enumerate(frames):
        due = start + int(k * period)
        wait = due - now_ns()
        if wait > 300_000:  # sleep most of the wait, spin the last 0.3 ms (sleep overshoots)
            time.sleep((wait - 300_000) / 1e9)
        while now_ns() < due:
            pass
        t0 = recv[0] = now_ns()
        behind.append(t0 - due)
        nfill = len(to_fill)
        for ev in decode(data, time.time_ns()):
            on_market(ev.to_bar() if isinstance(ev, kline_t) else ev)  # type: ignore[arg-type]
        per_frame.append(now_ns() - t0)
        sched_to_fill.extend(x + t0 - due for x in to_fill[nfill:])
    elapsed = (now_ns() - start) / 1e9
    mem_end = _rss_kib()
    counts["signals"] = len(to_signal)
    counts["fills"] = len(to_fill)
    return {
        "symbols": symbols, "rate": rate, "seconds": seconds, "frames": n,
        "achieved_frames_per_s": round(n / elapsed), "strategy": "sma_cross fast=2 slow=3", "risk": "default",
        "counts": counts, "skipped": dict(codec.skipped),
        "latency_us": {"frame_to_signal": percentiles(to_signal), "frame_to_fill": percentiles(to_fill),
                       "frame_handling": percentiles(per_frame),
                       "scheduled_to_fill": percentiles(sched_to_fill), "pace_lag": percentiles(behind)},
        "rss_mib": {"start": _mib(mem_start.get("VmRSS")), "end": _mib(mem_end.get("VmRSS")),
                    "peak": _mib(mem_end.get("VmHWM"))},
    }


def bench_mexc(symbols: int = 20, rate: float = 1000.0, seconds: float = 10.0,
               decode_frames: int = 50_000) -> dict[str, Any]:
    """The three figures of the module doc, with load average and the command that gave them."""
    res: dict[str, Any] = {"bench": "mexc", "decode": bench_decode(decode_frames),
                           "live": bench_latency(symbols, rate, seconds)}
    try:
        import os

        res["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    res["command"] = f"claire bench mexc --symbols {symbols} --rate {rate:g} --seconds {seconds:g} --json"
    return res


def format_report(res: dict[str, Any]) -> str:
    d, live = res["decode"], res["live"]
    lat = live["latency_us"]

    def p(name: str) -> str:
        x = lat[name]
        return f"p50 {x.get('p50')} us, p99 {x.get('p99')} us, max {x.get('max')} us (n={x['n']})"

    lines = [
        f"$ {res['command'].removesuffix(' --json')}",
        f"decode (frames/s, median of {d['repeat']} x {d['frames']:,}): deals 1/frame {d['deals_1_per_frame_frames_per_s']:,},"
        f" deals 3/frame {d['deals_3_per_frame_frames_per_s']:,} (new prices:"
        f" {d['deals_3_per_frame_new_prices_frames_per_s']:,}), bookTicker {d['bookTicker_frames_per_s']:,}",
        f"live: {live['frames']:,} frames, {live['symbols']} symbols, {live['achieved_frames_per_s']:,} frames/s"
        f" (target {live['rate']:g}); {live['counts']['signals']} signals, {live['counts']['fills']} fills",
        f"  frame -> signal: {p('frame_to_signal')}",
        f"  frame -> fill:   {p('frame_to_fill')}",
        f"  frame handling:  {p('frame_handling')}",
        f"  scheduled -> fill (incl. pace lag): {p('scheduled_to_fill')}",
        f"RSS: start {live['rss_mib']['start']} MiB, end {live['rss_mib']['end']} MiB, peak {live['rss_mib']['peak']} MiB",
    ]
    if "load_avg" in res:
        lines.append(f"load average: {' '.join(map(str, res['load_avg']))}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = bench_mexc(a.symbols, a.rate, a.seconds)
    print(json.dumps(res) if a.json else format_report(res))


if __name__ == "__main__":
    main()

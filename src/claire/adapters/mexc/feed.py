"""The MEXC market-data feed: closed 1m bars, trade ticks and quotes in event-time order.

:class:`MexcFeed` turns stream items (:class:`Frame`, :class:`ConnEvent`) and REST answers into
claire market events:

- start: trading rules of every symbol (``/api/v3/exchangeInfo``: unknown or not trading ->
  an error), subscriptions (a refused one -> an error), then ``warmup`` closed bars per symbol
  by REST (``/api/v3/time`` tells the exchange's current minute);
- closing: MEXC's klines carry no "closed" flag. The feed keeps an exchange clock (the latest
  exchange time of any push: a kline push with a later ``windowStart``, or any deal, quote or
  book of a later window); when it enters a new window, every earlier window of every symbol is
  closed. With ``verify`` (default) the closed bars are fetched by REST klines (one request per
  symbol, concurrently) and the REST values are emitted: a live candle that differs gives a
  ``kline_mismatch`` record, windows never seen live (a disconnect, a skipped kline push) a
  ``gap_repaired`` record with its cause. Each window is emitted exactly once, in order, never
  a hole (REST not knowing a window either gives ``gap_unrepaired``; a failed REST call is
  retried at the next boundary, the bars wait). Without ``verify`` the live candles are used and
  REST only fills gaps;
- everything goes through a reorder buffer of ``reorder_ms`` of event time (merging symbols); a
  trade or quote that comes later than that (older than an event already released) is dropped
  with a ``late_ticks`` record, so the core never sees time go backwards.

Data-quality records (:class:`DataQualityRecord`) are kept in ``quality`` and given to
``on_quality``; the latest top-5 book per symbol is in ``books`` (and given to ``on_book``), the
candle in progress in ``candles``. Nothing here depends on wall-clock time, so a recording
replayed through the same class yields the same events (see :mod:`claire.adapters.mexc.capture`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from claire.adapters.mexc.capture import CaptureWriter, ReplaySource, ReplayTransport, read_start
from claire.adapters.mexc.codec import CHANNELS, BookTop, Decoded, KlineUpdate, MexcCodec
from claire.adapters.mexc.models import (
    ConnEvent,
    DataQualityRecord,
    Frame,
    MexcError,
    SymbolRules,
)
from claire.adapters.mexc.rest import MexcRestClient, TransportError
from claire.adapters.mexc.stream import END, MexcStream
from claire.adapters.mexc.sync import iterate_async
from claire.events import Bar, MarketEvent, TradeTick
from claire.marketdata.reorder import ReorderBuffer

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000


class Source(Protocol):
    async def start(self) -> None: ...

    async def next_item(self, timeout: float | None = None) -> Any: ...

    async def close(self) -> None: ...


class _ReplayStream:
    """A :class:`ReplaySource` with the live stream's interface."""

    def __init__(self, directory: str | Path, run: int = 0) -> None:
        self._it = ReplaySource(directory, run).items()

    async def start(self) -> None:
        return None

    async def next_item(self, timeout: float | None = None) -> Any:
        try:
            return await anext(self._it)
        except StopAsyncIteration:
            return END

    async def close(self) -> None:
        await self._it.aclose()


@dataclass(slots=True)
class _Symbol:
    symbol: str
    index: int
    next_open: int | None = None  # ms: the open of the next bar to emit
    live: dict[int, tuple[KlineUpdate, bool]] = field(default_factory=dict)  # window -> (last push, certain)
    cause: str = "skipped_window"  # why windows missing live pushes went missing
    down_since: int | None = None  # ns: ticks missing since (a disconnect)


def _same_candle(bar: Bar, k: KlineUpdate) -> bool:
    return (bar.open == k.open and bar.high == k.high and bar.low == k.low and bar.close == k.close
            and bar.volume == k.volume)


class MexcFeed:
    """Live (or replayed) MEXC market events of ``symbols``; see the module docstring.

    Use ``async for ev in feed.events()``; ``request_stop()`` ends it cleanly (what the reorder
    buffer holds is flushed), ``close()`` at once. ``source`` is a :class:`MexcStream` (made from
    ``stream_options`` when not given), ``rest`` a :class:`MexcRestClient` (from ``rest_options``).
    ``close_delay_ms`` waits that much exchange time past a window's end before closing it.
    """

    def __init__(self, symbols: Sequence[str], *, rest: MexcRestClient | None = None, source: Source | None = None,
                 warmup: int = 0, channels: Sequence[str] = CHANNELS, interval_s: int = 60,
                 capture: CaptureWriter | str | Path | None = None, reorder_ms: int = 2000, verify: bool = True,
                 close_delay_ms: int = 0, on_quality: Callable[[DataQualityRecord], None] | None = None,
                 on_book: Callable[[BookTop], None] | None = None, stream_options: dict[str, Any] | None = None,
                 rest_options: dict[str, Any] | None = None, poll_s: float = 0.2,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.symbols = tuple(dict.fromkeys(s.upper() for s in symbols))
        if not self.symbols:
            raise ValueError("no symbols")
        if warmup < 0:
            raise ValueError("warmup must be >= 0")
        if close_delay_ms < 0 or close_delay_ms >= reorder_ms:
            raise ValueError("close_delay_ms must be >= 0 and below reorder_ms")
        self.warmup = warmup
        #: a restart: the warm-up reaches back at least to this bar open (ms), so the bars closed
        #: while the consumer was down come again (at most the REST history; paged)
        self.warmup_since_ms: int | None = None
        self.channels = tuple(channels)
        self.interval_s = interval_s
        self.step_ms = interval_s * 1000
        self._own_capture = isinstance(capture, str | Path)
        self.capture: CaptureWriter | None = CaptureWriter(capture) if isinstance(capture, str | Path) else capture
        self._own_rest = rest is None
        self.rest = rest or MexcRestClient(capture=self.capture, **(rest_options or {}))
        self.source: Source = source or MexcStream(self.symbols, channels=self.channels, capture=self.capture,
                                                   **(stream_options or {}))
        self.verify = verify
        self.close_delay_ms = close_delay_ms
        self.on_quality = on_quality
        self.on_book = on_book
        self.poll_s = poll_s
        self.clock = clock
        self.codec = MexcCodec()
        self.rules: dict[str, SymbolRules] = {}
        self.quality: list[DataQualityRecord] = []
        self.books: dict[str, BookTop] = {}
        self.candles: dict[str, KlineUpdate] = {}
        self._reorder: ReorderBuffer[MarketEvent] = ReorderBuffer(reorder_ms * NS_PER_MS)
        self._state = {s: _Symbol(s, i) for i, s in enumerate(self.symbols)}
        self._window: int | None = None  # ms: the exchange clock's current window
        self.exchange_ms = 0  # the exchange clock: the latest exchange time seen (ms)
        #: ms: the open of the first live window (the warm-up bars opened before it); None before
        #: the warm-up, or without one
        self.live_from_ms: int | None = None
        self._stop = False
        self._closed = False
        self.stats: dict[str, int] = {"frames": 0, "bars": 0, "trades": 0, "quotes": 0, "books": 0,
                                      "klines": 0, "old_kline_pushes": 0, "late": 0, "before_live": 0,
                                      "rest_closes": 0}

    # --- control -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """End :meth:`events` after the item at hand (held events are flushed, then it returns)."""
        self._stop = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.source.close()
        finally:
            if self._own_rest:
                await self.rest.close()
            if self.capture is not None:
                if self._own_capture:
                    self.capture.close()
                else:
                    self.capture.flush()

    def _record(self, rec: DataQualityRecord) -> None:
        self.quality.append(rec)
        (log.info if rec.kind == "kline_mismatch" else log.warning)(
            "MEXC data quality: %s %s (%s) %d..%d, %d bar(s) repaired", rec.symbol, rec.kind, rec.cause,
            rec.from_ts, rec.to_ts, rec.bars_repaired)
        if self.on_quality is not None:
            self.on_quality(rec)

    # --- the event stream --------------------------------------------------------------

    async def events(self) -> AsyncIterator[MarketEvent]:
        """Warm-up bars, then live bars/trades/quotes in event-time order."""
        try:
            if self.capture is not None:
                self.capture.start(self.clock(), symbols=list(self.symbols), warmup=self.warmup,
                                   interval_s=self.interval_s, channels=list(self.channels))
            self.rules = await self.rest.symbol_rules(self.symbols)
            await self.source.start()
            for ev in await self._warmup():
                yield ev
            source = self.source
            while not self._stop:
                item = await source.next_item(self.poll_s)
                if item is None:
                    continue
                if item is END:
                    break
                for ev in await self.handle(item):
                    yield ev
            for ev in self.flush():
                yield ev
        finally:
            await self.close()

    async def _warmup(self) -> list[MarketEvent]:
        if not self.warmup and self.warmup_since_ms is None:
            return []
        now_ms = await self.rest.server_time()
        step = self.step_ms
        current = now_ms - now_ms % step
        n = self.warmup
        if self.warmup_since_ms is not None:
            n = max(n, -(-(current - self.warmup_since_ms) // step))
        results = await asyncio.gather(*(self.rest.closed_bars(sym, current - n * step, current,
                                                               interval_s=self.interval_s)
                                         for sym in self.symbols))
        out: list[Bar] = []
        for sym, bars in zip(self.symbols, results, strict=True):
            self._state[sym].next_open = current
            out.extend(bars[-n:] if n else [])
        out.sort(key=lambda b: b.ts_event)  # stable: symbols in the given order on ties
        self.stats["bars"] += len(out)
        self._window = current
        self.live_from_ms = current
        return list(out)

    async def handle(self, item: Frame | ConnEvent) -> list[MarketEvent]:
        """Process one stream item; the events now ready, in order."""
        if isinstance(item, ConnEvent):
            if self.capture is not None:
                self.capture.conn_event(item)
            self._on_conn(item)
            return []
        if self.capture is not None:
            self.capture.frame(item.conn, item.data, item.ts_recv)
        self.stats["frames"] += 1
        out: list[MarketEvent] = []
        for d in self.codec.decode(item.data, item.ts_recv):
            st = self._state.get(d.symbol)
            if st is None:
                continue
            # the exchange clock: a later window closes every earlier one (of every symbol)
            t_ms = d.ts_event // NS_PER_MS
            if t_ms > self.exchange_ms:  # a call only when the clock moves: not per item
                out.extend(await self._advance(d, t_ms, item.ts_recv))
            if isinstance(d, KlineUpdate):
                self.stats["klines"] += 1
                if d.interval_s != self.interval_s:
                    continue
                if st.next_open is not None and d.window_start < st.next_open:
                    self.stats["old_kline_pushes"] += 1  # that bar was emitted already
                    continue
                st.live[d.window_start] = (d, True)
                self.candles[d.symbol] = d
            elif isinstance(d, BookTop):
                self.stats["books"] += 1
                self.books[d.symbol] = d
                if self.on_book is not None:
                    self.on_book(d)
            else:
                out.extend(self._push(d))
        return out

    async def _advance(self, d: Decoded, t_ms: int, ts_recv: int) -> list[MarketEvent]:
        """The exchange clock moved to ``t_ms``: close the windows it ends; the bars closed."""
        self.exchange_ms = t_ms
        t = t_ms - self.close_delay_ms
        if isinstance(d, KlineUpdate) and d.window_start > t:
            t = d.window_start
        w = t - t % self.step_ms
        out: list[MarketEvent] = []
        if self._window is None or w > self._window:
            if self._window is not None or any(s.next_open is not None for s in self._state.values()):
                out = await self._close_all(w, ts_recv)
            self._window = w
            for s in self._state.values():
                if s.next_open is None:
                    s.next_open = w
        return out

    def _push(self, ev: MarketEvent) -> list[MarketEvent]:
        if isinstance(ev, Bar):
            self.stats["bars"] += 1
        elif isinstance(ev, TradeTick):
            self.stats["trades"] += 1
        else:
            self.stats["quotes"] += 1
        if self.live_from_ms and not isinstance(ev, Bar) and ev.ts_event < self.live_from_ms * NS_PER_MS:
            # a tick of a window the warm-up bars closed already (read from the socket after the
            # exchange's clock had moved on): the core saw that bar, not its ticks after it
            self.stats["before_live"] += 1
            return []
        last = self._reorder.last_ts
        if last is not None and ev.ts_event < last and not isinstance(ev, Bar):
            # a tick or quote older than what the core has already seen (it came more than the
            # reorder window late): never fed out of order, recorded instead (bars are never late:
            # they are closed and pushed ahead of the event that moves the clock on)
            self.stats["late"] += 1
            self._record(DataQualityRecord(symbol=ev.symbol, kind="late_ticks", cause="late", from_ts=ev.ts_event,
                                           to_ts=last, ts_recv=ev.ts_recv,
                                           details={"event": ev.id, "behind_ms": (last - ev.ts_event) // NS_PER_MS}))
            return []
        late = self._reorder.late
        released = self._reorder.push(ev.ts_event, ev)
        if self._reorder.late != late:
            self.stats["late"] += 1
        return [e for _, e in released]

    def flush(self) -> Iterator[MarketEvent]:
        """Everything still in the reorder buffer, in order (at the end of the stream)."""
        for _, ev in self._reorder.flush():
            yield ev

    def _on_conn(self, ev: ConnEvent) -> None:
        for sym in ev.symbols:
            st = self._state.get(sym)
            if st is None:
                continue
            if ev.kind == "disconnected":
                if st.down_since is None:
                    st.down_since = ev.ts_recv
                st.cause = ev.reason or "reconnect"
                st.live = {w: (k, False) for w, (k, _) in st.live.items()}
                if sym in ev.stale:
                    last = max((k.ts_recv for k, _ in st.live.values()), default=ev.ts_recv)
                    self._record(DataQualityRecord(symbol=sym, kind="stale", cause="stale", from_ts=last,
                                                   to_ts=ev.ts_recv, ts_recv=ev.ts_recv))
            elif ev.kind == "connected" and st.down_since is not None:
                self._record(DataQualityRecord(symbol=sym, kind="disconnect", cause=st.cause,
                                               from_ts=st.down_since, to_ts=ev.ts_recv, ts_recv=ev.ts_recv))
                st.down_since = None

    async def _close_all(self, window: int, ts_recv: int) -> list[MarketEvent]:
        """Close every symbol's windows before ``window`` (ms); bars in (time, symbol) order."""
        todo = [st for st in self._state.values() if st.next_open is not None and st.next_open < window]
        if not todo:
            return []
        results = await asyncio.gather(*(self._close_range(st, st.next_open, window, ts_recv)  # type: ignore[arg-type]
                                         for st in todo))
        bars = sorted((b for r in results for b in r), key=lambda b: (b.ts_event, self._state[b.symbol].index))
        out: list[MarketEvent] = []
        for b in bars:
            out.extend(self._push(b))
        # a symbol repaired and back on its feet: later gaps without a disconnect are skipped pushes
        for st in todo:
            if st.down_since is None and st.next_open == window:
                st.cause = "skipped_window"
        return out

    async def _close_range(self, st: _Symbol, start: int, end: int, ts_recv: int) -> list[Bar]:
        """The bars opened in ``[start, end)`` (ms): REST values, live ones as the fallback."""
        step = self.step_ms
        sym = st.symbol
        windows = range(start, end, step)
        live = st.live
        need_rest = self.verify or any(o not in live for o in windows)
        rest_bars: dict[int, Bar] | None = None
        if need_rest:
            self.stats["rest_closes"] += 1
            try:
                bars = await self.rest.closed_bars(sym, start, end, interval_s=self.interval_s)
                rest_bars = {b.ts_open // NS_PER_MS: b for b in bars}
            except (MexcError, TransportError) as exc:
                log.warning("MEXC: REST klines of %s failed (%s)", sym, exc)
                if not all(o in live for o in windows):
                    # cannot fill the gap now: keep everything, try again at the next boundary
                    self._record(DataQualityRecord(symbol=sym, kind="repair_pending", cause="rest",
                                                   from_ts=start * NS_PER_MS, to_ts=end * NS_PER_MS,
                                                   ts_recv=ts_recv, details={"error": str(exc)}))
                    return []
        out: list[Bar] = []
        repaired: list[int] = []
        missing: list[int] = []
        unverified: list[int] = []
        for o in windows:
            seen = live.pop(o, None)
            rb = rest_bars.get(o) if rest_bars is not None else None
            if rb is not None:
                bar = rb
                if seen is None:
                    repaired.append(o)
                elif seen[1] and not _same_candle(rb, seen[0]):
                    k = seen[0]
                    self._record(DataQualityRecord(
                        symbol=sym, kind="kline_mismatch", cause="rest", from_ts=o * NS_PER_MS,
                        to_ts=(o + step) * NS_PER_MS, ts_recv=ts_recv,
                        details={"live": [str(k.open), str(k.high), str(k.low), str(k.close), str(k.volume)],
                                 "rest": [str(rb.open), str(rb.high), str(rb.low), str(rb.close), str(rb.volume)]}))
            elif seen is not None:
                bar = seen[0].to_bar(ts_recv)
                if need_rest:
                    unverified.append(o)
            else:
                missing.append(o)
                continue
            out.append(bar)
        st.next_open = end
        for o in [o for o in live if o < end]:  # nothing older may stay behind
            del live[o]
        self._record_gaps(st, ts_recv, repaired, missing, unverified)
        return out

    def _record_gaps(self, st: _Symbol, ts_recv: int, repaired: list[int], missing: list[int],
                     unverified: list[int]) -> None:
        """One data quality record per kind of window that was not simply seen live."""
        sym, step = st.symbol, self.step_ms
        for kind, opens in (("gap_repaired", repaired), ("gap_unrepaired", missing), ("unverified", unverified)):
            if opens:
                self._record(DataQualityRecord(
                    symbol=sym, kind=kind, cause=st.cause if kind != "unverified" else "rest",
                    from_ts=opens[0] * NS_PER_MS, to_ts=(opens[-1] + step) * NS_PER_MS,
                    bars_repaired=len(opens) if kind == "gap_repaired" else 0, ts_recv=ts_recv,
                    details={"windows": len(opens)}))


# --- factories ---------------------------------------------------------------------------


def open_feed(symbols: Sequence[str], *, warmup: int = 0, capture_dir: str | Path | None = None,
              rest_url: str | None = None, ws_url: str | None = None, stale_s: float | None = None,
              stream_options: dict[str, Any] | None = None, rest_options: dict[str, Any] | None = None,
              feed_class: type[MexcFeed] | None = None, **feed_options: Any) -> MexcFeed:
    """A live :class:`MexcFeed` (URLs default to ``MEXC_REST_URL``/``MEXC_WS_URL``); optionally recorded.
    ``feed_class``: a subclass of it to make instead (e.g. the papertest's resuming feed)."""
    capture = CaptureWriter(capture_dir) if capture_dir is not None else None
    rest = MexcRestClient(rest_url, capture=capture, **(rest_options or {}))
    so = dict(stream_options or {})
    if ws_url is not None:
        so["url"] = ws_url
    if stale_s is not None:
        so["stale_s"] = stale_s
    stream = MexcStream(symbols, channels=feed_options.get("channels", CHANNELS), capture=capture, **so)
    feed = (feed_class or MexcFeed)(symbols, rest=rest, source=stream, warmup=warmup, capture=capture,
                                    **feed_options)
    feed._own_rest = True
    feed._own_capture = capture is not None
    return feed


async def _no_sleep(_s: float) -> None:
    return None


def replay_feed(directory: str | Path, run: int = 0, **overrides: Any) -> MexcFeed:
    """A :class:`MexcFeed` over (the ``run``-th start of) a capture directory: the same code, recorded inputs."""
    start = read_start(directory, run)
    opts: dict[str, Any] = {"warmup": start.get("warmup", 0), "interval_s": start.get("interval_s", 60),
                            "channels": tuple(start.get("channels", CHANNELS))}
    opts.update(overrides)
    symbols = opts.pop("symbols", start["symbols"])
    rest = MexcRestClient(transport=ReplayTransport(directory, run), rate_limit=False, sleep=_no_sleep)
    return MexcFeed(symbols, rest=rest, source=_ReplayStream(directory, run), capture=None, **opts)


def replay_capture(directory: str | Path, run: int = 0, **overrides: Any) -> Iterator[Any]:
    """The market events of a recorded live run, reproduced by the same feed code (synchronous).

    ``run`` picks the feed start when the directory holds several; ``overrides`` change feed
    settings (default: those recorded in the start record).
    """
    return iterate_async(lambda: replay_feed(directory, run, **overrides).events())

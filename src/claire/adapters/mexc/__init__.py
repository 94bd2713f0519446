"""Live MEXC spot market data (public REST v3 and protobuf WebSocket streams). Market data only.

Async API:

- :class:`MexcFeed` / :func:`open_feed`: closed 1m bars (warm-up by REST, live klines closed by
  the next window, gaps repaired by REST), trade ticks and quotes in event-time order, plus
  data-quality records, the latest top-5 book per symbol and the trading rules;
- :class:`MexcRestClient`: exchangeInfo (:class:`SymbolRules`), klines, depth, 24h ticker,
  bookTicker, time; :class:`MexcStream`: the WebSocket connections;
- :mod:`~claire.adapters.mexc.codec`: wire frames -> events; :mod:`~claire.adapters.mexc.capture`:
  recording and replay; :mod:`~claire.adapters.mexc.fake`: a local fake exchange for tests and demos.

Synchronous facade: :class:`MexcMarketData` (iterate it like :class:`claire.marketdata.MarketData`)
and :func:`replay_capture`.

Environment: ``MEXC_REST_URL`` (default ``https://api.mexc.com``), ``MEXC_WS_URL`` (default
``wss://wbs-api.mexc.com/ws``), ``MEXC_STALE_SEC`` (default 30), ``CLAIRE_MEXC_MAX_PENDING``
(frames waiting for the consumer before the reader pauses; default 100,000).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from claire.adapters.mexc.capture import CaptureWriter, iter_records
from claire.adapters.mexc.codec import BookTop, KlineUpdate, MexcCodec, bench_decode, decode_frame
from claire.adapters.mexc.feed import MexcFeed, open_feed, replay_capture, replay_feed
from claire.adapters.mexc.models import (
    ConnEvent,
    DataQualityRecord,
    Frame,
    MexcApiError,
    MexcError,
    RateLimitError,
    ReplayMismatchError,
    SubscriptionError,
    SymbolNotTradingError,
    SymbolRules,
    Ticker24h,
    UnknownSymbolError,
)
from claire.adapters.mexc.rest import MexcRestClient
from claire.adapters.mexc.stream import MexcStream
from claire.adapters.mexc.sync import ThreadedIterator
from claire.events import MarketEvent


class MexcMarketData:
    """A synchronous iterable of live MEXC market events (the feed runs in a background thread).

    ``MexcMarketData(["BTCUSDT"], warmup=60, capture_dir="runs/x/mexc")``; iterate it for Bars,
    TradeTicks and QuoteTicks in event-time order. ``stop()`` ends the iteration cleanly (held
    events are delivered first), ``close()`` at once. ``quality``, ``rules``, ``books`` and
    ``candles`` are the feed's (read from the consumer's thread: snapshots, not locked).
    ``replay_dir`` replays a capture instead of connecting. Other keywords go to :func:`open_feed`.
    """

    def __init__(self, symbols: Sequence[str] | None = None, *, warmup: int = 0,
                 capture_dir: str | Path | None = None, replay_dir: str | Path | None = None,
                 maxsize: int = 10_000, **options: Any) -> None:
        if symbols is None and replay_dir is None:
            raise ValueError("give symbols (live) or replay_dir")
        self.symbols = list(symbols or [])
        self.warmup = warmup
        self.warmup_since_ms: int | None = None  # a restart: warm up from this bar open at least (the feed's)
        self.capture_dir = capture_dir
        self.replay_dir = replay_dir
        self.options = options
        self.maxsize = maxsize
        self.feed: MexcFeed | None = None
        self._it: ThreadedIterator[MarketEvent] | None = None

    def _events(self):
        if self.replay_dir is not None:
            opts = dict(self.options)
            if self.symbols:
                opts["symbols"] = self.symbols
            self.feed = replay_feed(self.replay_dir, **opts)  # run=0 unless given in options
        else:
            self.feed = open_feed(self.symbols, warmup=self.warmup, capture_dir=self.capture_dir, **self.options)
            self.feed.warmup_since_ms = self.warmup_since_ms
        return self.feed.events()

    def __iter__(self) -> Iterator[MarketEvent]:
        if self._it is not None:
            raise RuntimeError("MexcMarketData is iterated once; make a new one")
        self._it = ThreadedIterator(self._events, maxsize=self.maxsize)
        return self._it

    def stop(self) -> None:
        """Ask the feed to end; the iteration delivers what is held, then stops."""
        feed, it = self.feed, self._it
        if feed is not None and it is not None and it._loop is not None and not it._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                it._loop.call_soon_threadsafe(feed.request_stop)

    def close(self) -> None:
        if self._it is not None:
            self._it.close()

    def __enter__(self) -> MexcMarketData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def quality(self) -> list[DataQualityRecord]:
        return list(self.feed.quality) if self.feed else []

    @property
    def rules(self) -> dict[str, SymbolRules]:
        return dict(self.feed.rules) if self.feed else {}

    @property
    def books(self) -> dict[str, BookTop]:
        return dict(self.feed.books) if self.feed else {}

    @property
    def candles(self) -> dict[str, KlineUpdate]:
        return dict(self.feed.candles) if self.feed else {}


__all__ = [
    "BookTop",
    "CaptureWriter",
    "ConnEvent",
    "DataQualityRecord",
    "Frame",
    "KlineUpdate",
    "MexcApiError",
    "MexcCodec",
    "MexcError",
    "MexcFeed",
    "MexcMarketData",
    "MexcRestClient",
    "MexcStream",
    "RateLimitError",
    "ReplayMismatchError",
    "SubscriptionError",
    "SymbolNotTradingError",
    "SymbolRules",
    "Ticker24h",
    "UnknownSymbolError",
    "bench_decode",
    "decode_frame",
    "iter_records",
    "open_feed",
    "replay_capture",
    "replay_feed",
]

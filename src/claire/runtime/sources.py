"""Where a run's market events come from: files, or MEXC (live, or a recorded capture replayed).

- ``files`` (``--data``/``--synthetic``): :func:`claire.marketdata.open_market_data`;
- ``mexc`` live (``--source mexc --symbols A,B``): :class:`MexcSource` over the adapter's
  :class:`~claire.adapters.mexc.MexcMarketData` (URLs from ``MEXC_REST_URL``/``MEXC_WS_URL``),
  recorded to ``<out>/capture/``;
- a MEXC capture (``--data DIR`` of ``mexc-YYYYMMDD.jsonl.gz`` files, or one such file): the
  same :class:`MexcSource` replaying it through the same adapter code (``replay_capture``),
  so a backtest of the capture gives the live run's events, ids included.

A :class:`MexcSource` is bound to the core before it is iterated (:meth:`MexcSource.bind`):

- warm-up: the adapter loads ``warmup`` closed bars per symbol by REST first; they are history,
  so the strategy sees them but their signals are dropped (``SignalEngine.history_until``);
- data quality: each :class:`~claire.adapters.mexc.DataQualityRecord` (a gap repaired by REST,
  a disconnect, a stale socket ...) becomes an :class:`~claire.events.Alert` emitted through the
  core's ``emit`` (so it is recorded and persisted like every event) and a row of
  ``data_quality.csv``. Records reach the consumer in the feed's own order (interleaved with
  the market events in the feed thread), so a replay puts them at the same places.
- book depth (``books=True``, the default): the feed's top-5 books (``MexcFeed.on_book``, taken
  as they arrive, ahead of its reorder buffer) are held in the feed thread and each goes out as a
  :class:`~claire.events.BookDepth` (:func:`~claire.adapters.mexc.codec.book_depth`) just before
  the first market event whose ``ts_event`` is not before its own (the rest at the end): the
  core hands them to the paper exchange only, which fills beyond the best level on them. Made
  in the feed's thread from the feed's own order, a capture replay puts them at the same
  places (same fills). ``books=False`` drops them (the
  fills then take the quote's touch only); every runtime keeps them by default.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from claire.adapters.mexc import DataQualityRecord, MexcError, MexcMarketData
from claire.adapters.mexc.capture import PREFIX, SUFFIX, read_start
from claire.adapters.mexc.codec import BookTop, book_depth
from claire.adapters.mexc.models import TransportError
from claire.config import RunConfig
from claire.events import Alert, AlertLevel, BookDepth, Event, IdFactory, MarketEvent

log = logging.getLogger("claire.sources")

NS_PER_MS = 1_000_000
#: the data-quality kinds an operator should look at (the others are information)
_WARNING_KINDS = frozenset({"gap_unrepaired", "repair_pending", "stale", "disconnect", "late_ticks"})


class SourceError(ValueError):
    """The market data source cannot go on (MEXC refused a symbol or a subscription, a capture
    does not replay, ...): one line for the user (a ValueError: the command line exits 2)."""


def _source_error(exc: BaseException) -> SourceError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return SourceError(text if text.startswith("MEXC") else f"MEXC: {text}")


class _LiveFrom(msgspec.Struct, frozen=True):
    """In the stream: the warm-up bars are over; bars opened before ``open_ms`` were history."""

    open_ms: int


# --- capture detection (a --data path) -----------------------------------------------------------


def is_capture(path: str | Path) -> bool:
    """A MEXC capture: a directory holding ``mexc-YYYYMMDD.jsonl.gz`` files, or one such file."""
    p = Path(path)
    if p.is_file():
        return p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)
    return p.is_dir() and any(c.name.startswith(PREFIX) and c.name.endswith(SUFFIX) for c in p.iterdir())


def resolve_data(cfg: RunConfig) -> RunConfig:
    """``cfg`` with a capture given as ``--data`` turned into MEXC data (``source="mexc"``, the
    symbols it recorded): then its ids are those of the live run that recorded it. A capture
    must be the only ``--data``; ValueError (one line) otherwise or for a capture without a start."""
    paths = cfg.data.paths
    caps = [p for p in paths if is_capture(p)]
    if not caps:
        for p in paths:
            if Path(p).is_dir():
                raise ValueError(f"--data {p}: a directory, but no MEXC capture ({PREFIX}YYYYMMDD{SUFFIX} files) in it")
        return cfg
    if len(paths) > 1:
        raise ValueError("a MEXC capture (--data DIR) is replayed on its own: give it as the only --data")
    start = read_start(caps[0])
    symbols = [str(s) for s in start.get("symbols", [])]
    data = msgspec.structs.replace(cfg.data, source="mexc", symbols=symbols)
    return msgspec.structs.replace(cfg, data=data)


def warmup_of(cfg: RunConfig) -> int:
    """The warm-up bars the strategy states (``Strategy.warmup_bars`` of its parameters)."""
    from claire.strategy.registry import (
        load_strategy,  # start-up time: the strategies and their indicators only when one is resolved
    )

    return max(0, int(load_strategy(cfg.strategy.name).warmup_bars(dict(cfg.strategy.params))))


# --- the MEXC source -----------------------------------------------------------------------------


class _Market(MexcMarketData):
    """:class:`MexcMarketData` whose stream also carries the feed's data-quality records, the
    end of its warm-up and (``books``) its book depth, in the feed's order (made in the feed's
    thread): each book just before the first market event not older than it."""

    books = True

    def _events(self) -> AsyncIterator[Any]:
        inner = super()._events()  # type: ignore[no-untyped-call]
        feed = self.feed
        if feed is None:  # pragma: no cover - super()._events() makes it
            raise RuntimeError("no MEXC feed")
        held: list[DataQualityRecord] = []
        feed.on_quality = held.append
        books: list[BookTop] = []
        if self.books:
            feed.on_book = books.append

        async def gen() -> AsyncIterator[Any]:
            first = True
            try:
                async for ev in inner:
                    if first:
                        first = False
                        if feed.live_from_ms is not None:
                            yield _LiveFrom(feed.live_from_ms)
                    while held:
                        yield held.pop(0)
                    if books:
                        for b in _due(books, ev.ts_event):
                            yield book_depth(b)
                    yield ev
                while held:
                    yield held.pop(0)
                for b in books:
                    yield book_depth(b)
                books.clear()
            finally:
                await inner.aclose()

        return gen()


def _due(books: list[BookTop], ts: int) -> list[BookTop]:
    """The held books not after ``ts`` (in arrival order), taken out of ``books``."""
    due = [b for b in books if b.ts_event <= ts]
    if due:
        books[:] = [b for b in books if b.ts_event > ts]
    return due


def quality_alert(rec: DataQualityRecord, ids: IdFactory) -> Alert:
    """The alert of a data-quality record (its id from the record: a replay gives the same)."""
    key = f"alert:mexc:{rec.symbol}:{rec.kind}:{rec.cause}:{rec.from_ts}:{rec.to_ts}:{rec.ts_recv}"
    level = AlertLevel.WARNING if rec.kind in _WARNING_KINDS else AlertLevel.INFO
    what = rec.kind.replace("_", " ")
    text = f"{rec.symbol}: {what} ({rec.cause})"
    if rec.bars_repaired:
        text += f", {rec.bars_repaired} bar(s) repaired by REST"
    ts = rec.ts_recv or rec.to_ts
    return Alert(id=ids.of(key), ts_event=ts, ts_recv=ts, level=level, source="marketdata.mexc",
                 code=f"data_quality.{rec.kind}", message=text,
                 details={"symbol": rec.symbol, "kind": rec.kind, "cause": rec.cause, "from_ts": rec.from_ts,
                          "to_ts": rec.to_ts, "bars_repaired": rec.bars_repaired, **rec.details})


class MexcSource:
    """MEXC market events for a run: live (``symbols``; recorded to ``capture_dir``) or a
    capture replayed (``replay``). Iterate it once, after :meth:`bind`; see the module doc.
    ``books``: the feed's book depth in the stream too (:class:`~claire.events.BookDepth`, for
    the paper exchange); False drops it."""

    def __init__(self, symbols: list[str] | None = None, *, warmup: int = 0, capture_dir: str | Path | None = None,
                 replay: str | Path | None = None, maxsize: int = 10_000, books: bool = True,
                 **options: Any) -> None:
        self.replay = replay
        self.market = _Market(symbols, warmup=warmup, capture_dir=capture_dir, replay_dir=replay, maxsize=maxsize,
                              **options)
        self.market.books = books
        self.quality: list[DataQualityRecord] = []
        self.live_from_ms: int | None = None
        self._emit: Callable[[Event], Any] | None = None
        self._signals: Any = None
        self._ids = IdFactory()
        self._it: Iterator[Any] | None = None
        self._head: list[Any] = []
        self.events = 0  # market events yielded (books included)
        self.books = 0  # ... of them book depth

    def bind(self, core: Any) -> None:
        """Alerts go to ``core.emit``; the warm-up's end to ``core.signals.history_until``."""
        self._emit = core.emit
        self._signals = core.signals
        ids = getattr(core.signals, "ids", None)
        if isinstance(ids, IdFactory):
            self._ids = ids

    def start(self) -> None:
        """Connect and wait for the first item: the exchange's refusals (an unknown or halted
        symbol, a blocked subscription) are raised here, before a run starts."""
        if self._it is None:
            self._it = iter(self.market)
            try:
                item = next(self._it, _END)
            except (MexcError, TransportError) as exc:
                self.close()
                raise _source_error(exc) from exc
            if item is not _END:
                self._head.append(item)

    def __iter__(self) -> Iterator[MarketEvent | BookDepth]:
        self.start()
        it = self._it
        if it is None:  # pragma: no cover - start() made it
            raise RuntimeError("the MEXC source did not start")
        head, self._head = self._head, []
        for item in _guarded(_chain(head, it)):
            if isinstance(item, DataQualityRecord):
                self.quality.append(item)
                if self._emit is not None:
                    self._emit(quality_alert(item, self._ids))
                continue
            if isinstance(item, _LiveFrom):
                self.live_from_ms = item.open_ms
                if self._signals is not None:
                    self._signals.history_until = item.open_ms * NS_PER_MS  # the close of the last warm-up bar
                continue
            self.events += 1
            if type(item) is BookDepth:
                self.books += 1
            yield item

    def resume_after(self, ts_ns: int) -> None:
        """A restart of a live source whose events up to ``ts_ns`` (event time) are published: its
        warm-up reaches back to the bar that closed then, so nothing closed meanwhile is missing
        (the consumer drops what it has already published)."""
        self.market.warmup_since_ms = ts_ns // 1_000_000 - 60_000

    def stop(self) -> None:
        """End the stream cleanly: what the feed holds is delivered, then the iteration ends."""
        self.market.stop()

    def close(self) -> None:
        self.market.close()

    @property
    def rules(self) -> dict[str, Any]:
        return self.market.rules

    @property
    def feed(self) -> Any:
        return self.market.feed


_END = object()


def _chain(head: list[Any], it: Iterator[Any]) -> Iterator[Any]:
    yield from head
    yield from it


def _guarded(it: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from it
    except (MexcError, TransportError) as exc:
        raise _source_error(exc) from exc


def instrument_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """MEXC's :class:`~claire.adapters.mexc.SymbolRules` as the core's ``InstrumentRules``."""
    from claire.events import (
        InstrumentRules,  # start-up time: msgspec structs only for the commands that use them
    )

    return {sym: InstrumentRules(tick=r.tick_size, step=r.step_size, min_qty=r.min_qty, min_notional=r.min_notional,
                                 trading=r.trading, status=r.status_text) for sym, r in rules.items()}


def with_rules(cfg: RunConfig, source: MexcSource) -> RunConfig:
    """``cfg`` with the exchange's trading rules the (started) source fetched, unless it has some:
    the risk manager sizes and the paper exchange fills by them (a capture holds the same)."""
    if cfg.rules or not source.rules:
        return cfg
    return msgspec.structs.replace(cfg, rules=instrument_rules(source.rules))


def market_source(cfg: RunConfig, *, capture_dir: str | Path | None = None, **options: Any) -> Any:
    """The market events of ``cfg``: a :class:`MexcSource` for MEXC data (live: recorded to
    ``capture_dir``; a capture in ``data.paths``: replayed), else the files or synthetic bars."""
    if cfg.data.source == "mexc":
        if cfg.data.paths:
            return MexcSource(replay=cfg.data.paths[0], **options)
        return MexcSource(list(cfg.data.symbols), warmup=warmup_of(cfg), capture_dir=capture_dir, **options)
    if cfg.data.synthetic:
        from claire.marketdata import (
            synthetic_bars,  # start-up time: pyarrow only for commands that read data
        )

        return synthetic_bars(["BTCUSDT", "ETHUSDT"], int(cfg.data.synthetic), 1_767_225_600_000_000_000)
    from claire.marketdata import open_market_data  # start-up time: pyarrow only for commands that read data

    return open_market_data(cfg.data.paths, cfg.data.symbol)


def write_quality_csv(path: str | Path, records: list[DataQualityRecord]) -> Path:
    """``data_quality.csv``: one row per record (times ISO 8601 UTC; details as JSON)."""
    from claire.reporting.runfiles import (
        write_data_quality,  # start-up time: reporting only for the commands that report
    )

    return write_data_quality(Path(path), records)

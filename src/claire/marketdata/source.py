"""Open market data files of any supported format and merge them into one event-time stream.

Formats (detected per file):

- ``.feather``: freqtrade OHLCV bars -> :class:`Bar`;
- ``.csv``, ``.csv.gz``, ``.zip``: Binance kline CSVs or plain OHLCV CSVs -> :class:`Bar`
  (bars are read and validated at once into Arrow columns; the events are built while iterating);
- ``.gz``: raw Binance websocket capture -> :class:`TradeTick` / :class:`QuoteTick`
  (streamed; the files of one symbol form one stream);
- ``.parquet``: trades or quotes, told apart by their columns (streamed).

Several symbols or files merge in ``ts_event`` order; events with the same time come in the
order of the files as given (the source of the first file first). Bar files merge among
themselves through one stable sort of their close times; tick streams join through a heap.
A file that cannot be read raises :class:`DataFileError` (one line naming the file).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc

from claire.events import MarketEvent
from claire.marketdata.bars import (
    BAR_COLUMNS,
    FEATHER_EXPECTED,
    BarFile,
    BarTable,
    iter_bars,
    iter_bars_keyed,
    load_bars_feather,
)
from claire.marketdata.binance_capture import (
    DEFAULT_WINDOW_NS,
    BinanceCaptureReader,
    CaptureStats,
    _open,
    _split,
    _stream_of,
)
from claire.marketdata.csv_bars import csv_layout, is_csv_path, load_bars_csv
from claire.marketdata.errors import DataFileError, check_file, reason
from claire.marketdata.parquet_ticks import ParquetTickReader, parquet_kind
from claire.marketdata.symbols import normalize_symbol, symbol_from_path

log = logging.getLogger(__name__)

BARS, CAPTURE, TRADES, QUOTES = "bars", "capture", "trades", "quotes"
SUPPORTED = (".feather (freqtrade bars), .csv/.csv.gz/.zip (Binance klines or OHLCV with a header), "
             ".gz (Binance websocket capture), .parquet (trades or quotes)")
_PEEK_LINES = 1000


def _peek_capture(path: Path) -> tuple[int, str | None]:
    """First local timestamp of a capture and the symbol of its first stream message;
    ``ValueError`` when the file is not a capture."""
    first_ts: int | None = None
    try:
        with _open(path) as fh:
            for n, line in enumerate(fh):
                if n >= _PEEK_LINES:
                    break
                if not line.strip():
                    continue
                split = _split(line)
                if split is None or not split[1].lstrip().startswith(b"{"):
                    break
                if first_ts is None:
                    first_ts = split[0]
                stream = _stream_of(split[1])
                if stream is not None:
                    return first_ts, stream.split(b"@", 1)[0].decode().upper()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path.name}: unknown market data format, cannot read it as gzip text "
                            f"({reason(exc)}); expected a Binance capture (`<local_ts_ns> <json>` per line)"
                            ) from exc
    if first_ts is None:
        raise DataFileError(f"{path.name}: unknown market data format, expected a Binance capture "
                         "(`<local_ts_ns> <json>` per line); supported: " + SUPPORTED)
    return first_ts, None


def detect_format(path: str | Path) -> str:
    """``"bars"``, ``"capture"``, ``"trades"`` or ``"quotes"``; clear errors otherwise."""
    path = Path(path)
    check_file(path)
    suffix = path.suffix.lower()
    if suffix in (".feather", ".arrow", ".ipc"):
        try:
            names = pa.ipc.open_file(path).schema.names
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataFileError(f"{path.name}: not a readable feather (Arrow IPC) file ({reason(exc)}); "
                                f"expected {FEATHER_EXPECTED}") from exc
        if set(BAR_COLUMNS) <= set(names):
            return BARS
        raise DataFileError(f"{path.name}: unknown feather layout, columns {', '.join(names)}; expected "
                            f"freqtrade bars ({', '.join(BAR_COLUMNS)})")
    if is_csv_path(path):
        csv_layout(path)
        return BARS
    if suffix == ".parquet":
        return parquet_kind(path)
    if suffix == ".gz":
        _peek_capture(path)
        return CAPTURE
    raise DataFileError(f"{path.name}: unknown market data format {suffix or '(no suffix)'!r}; "
                        f"supported: {SUPPORTED}")


@dataclass(slots=True)
class Source:
    """One ordered stream: a bar file, the capture files of a symbol, or a parquet file."""

    kind: str
    symbol: str | None  # None: the capture's own stream names label the events
    paths: list[Path]
    index: int  # position of its first file in the given paths: breaks ties in the merge
    count: int | None = None
    table: BarTable | None = None  # the bars, as columns
    skipped: dict[str, int] = field(default_factory=dict)
    reader: BinanceCaptureReader | ParquetTickReader | None = None  # the last one opened
    window_ns: int = DEFAULT_WINDOW_NS

    def open(self) -> Iterator[MarketEvent]:
        if self.kind == BARS:
            if self.table is None:  # open_market_data loads it when it plans the source
                raise RuntimeError(f"bar source {self.paths[0]} opened before its table was loaded")
            return iter_bars([self.table])
        if self.kind == CAPTURE:
            self.reader = BinanceCaptureReader(self.paths, self.symbol, window_ns=self.window_ns)
        else:
            self.reader = ParquetTickReader(self.paths[0], self.symbol, kind=self.kind)
        return self.reader

    @property
    def capture_stats(self) -> CaptureStats | None:
        return self.reader.stats if isinstance(self.reader, BinanceCaptureReader) else None

    def describe(self) -> str:
        names = ", ".join(p.name for p in self.paths)
        n = f"{self.count:,}" if self.count is not None else "?"
        return f"{self.kind} {self.symbol or '?'} ({names}): {n} events"


class MarketData:
    """Iterable over the merged events of several sources, in ``ts_event`` order.

    ``count`` is the total number of events when known (``None`` when a capture is involved,
    whose length is only known after reading it). Iterating again reads the files again.
    """

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sorted(sources, key=lambda s: s.index)
        seen: dict[str, None] = {}
        for s in self.sources:
            if s.symbol:
                seen.setdefault(s.symbol)
        self.symbols: list[str] = list(seen)
        counts = [s.count for s in self.sources]
        self.count: int | None = None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]
        self.warnings: list[str] = [
            f"{', '.join(p.name for p in s.paths)}: skipped {n} {reason}"
            for s in self.sources for reason, n in s.skipped.items()
        ]

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError("the number of events is not known before reading (a capture is involved)")
        return self.count

    def __iter__(self) -> Iterator[MarketEvent]:
        bars = [(i, s.table) for i, s in enumerate(self.sources) if s.table is not None]
        if len(bars) == len(self.sources):  # bars only: one columnar merge, no heap
            yield from iter_bars([t for _, t in bars])
            return
        if len(self.sources) == 1:
            yield from self.sources[0].open()
            return
        keyed: list[Iterator[tuple[int, int, MarketEvent]]] = [
            _keyed(i, s.open()) for i, s in enumerate(self.sources) if s.table is None]
        if bars:  # the bar files as one stream, each bar keyed by the position of its own file
            keyed.append(iter_bars_keyed([t for _, t in bars], [i for i, _ in bars]))
        # (ts_event, source position) is unique among the heads, so events are never compared
        for _, _, ev in heapq.merge(*keyed):
            yield ev

    def __repr__(self) -> str:
        return f"MarketData({'; '.join(s.describe() for s in self.sources)})"


def _keyed(index: int, stream: Iterator[MarketEvent]) -> Iterator[tuple[int, int, MarketEvent]]:
    for ev in stream:
        yield ev.ts_event, index, ev


def _refuse_mixed_symbols(plist: list[Path], fixed: str) -> None:
    """One ``--symbol`` labels every file: an error when their names tell several symbols."""
    named: dict[str, Path] = {}
    for p in plist:
        with contextlib.suppress(ValueError):  # a name that tells no symbol
            named.setdefault(symbol_from_path(p), p)
    if len(named) > 1:
        raise ValueError(
            f"--symbol {fixed} given, but the files are of several symbols ("
            + ", ".join(f"{s} from {p.name}" for s, p in named.items())
            + "); leave --symbol out or open one symbol at a time"
        )


def open_market_data(paths: Iterable[str | Path] | str | Path, symbol: str | None = None, *,
                     interval_s: int | None = None, window_ns: int = DEFAULT_WINDOW_NS) -> MarketData:
    """Open market data files (formats detected per file) as one event-time ordered stream.

    ``symbol`` labels all files (for names that do not tell their symbol); it is an error when
    the file names tell several different symbols. Capture files of one symbol are read as one
    stream in the order of their first timestamps. Bars are loaded at once (their errors show
    here); tick files are read while iterating.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    plist = [Path(p) for p in paths]
    if not plist:
        raise ValueError("no market data files given")
    for p in plist:
        check_file(p)
    _refuse_repeats(plist)
    fixed = normalize_symbol(symbol) if symbol else None
    kinds = [detect_format(p) for p in plist]
    if fixed is not None:
        _refuse_mixed_symbols(plist, fixed)

    sources: list[Source] = []
    captures: dict[str | None, list[tuple[int, int, Path]]] = {}
    for i, (p, kind) in enumerate(zip(plist, kinds, strict=True)):
        if kind == BARS:
            bf = load_bars(p, fixed, interval_s)
            sources.append(Source(BARS, bf.symbol, [p], i, count=len(bf.table), table=bf.table,
                                  skipped=dict(bf.skipped)))
        elif kind == CAPTURE:
            first_ts, stream_symbol = _peek_capture(p)
            captures.setdefault(fixed or _capture_symbol(p, stream_symbol), []).append((first_ts, i, p))
        else:
            sym = fixed
            if sym is None and kind == TRADES:
                sym = symbol_from_path(p)
            reader = ParquetTickReader(p, sym, kind=kind)  # checks the file and its symbol now
            sources.append(Source(kind, reader.symbol or _quote_symbol(p), [p], i, count=reader.count,
                                  reader=reader))
    for sym, files in captures.items():
        files.sort()
        sources.append(Source(CAPTURE, sym, [p for _, _, p in files], min(i for _, i, _ in files),
                              window_ns=window_ns))
    md = MarketData(sources)
    for w in md.warnings:
        log.warning(w)
    return md


def _capture_symbol(p: Path, stream_symbol: str | None) -> str | None:
    """The symbol of a capture file: from its name, else from its streams (None: the stream names
    label the events)."""
    try:
        return symbol_from_path(p)
    except ValueError:
        return stream_symbol


def load_bars(path: str | Path, symbol: str | None = None, interval_s: int | None = None) -> BarFile:
    """The bars of a feather or CSV file (by its name), validated into columns."""
    if is_csv_path(path):
        return load_bars_csv(path, symbol, interval_s)
    return load_bars_feather(path, symbol, interval_s)


def _refuse_repeats(paths: list[Path]) -> None:
    """The same file given twice (also through another path, a link or a hard link) is an error:
    its events would be replayed twice."""
    seen: dict[tuple[int, int] | Path, Path] = {}
    for p in paths:
        st = os.stat(p)
        key: tuple[int, int] | Path = (st.st_dev, st.st_ino) if st.st_ino else p.resolve()
        first = seen.get(key)
        if first is not None:
            same = "" if first == p else f" (the same file as {first})"
            raise DataFileError(f"market data file given twice: {p}{same}; give each file once")
        seen[key] = p


def _quote_symbol(path: Path) -> str | None:
    """The symbol of a quotes parquet: from its name, else its first `symbol` value."""
    try:
        return symbol_from_path(path)
    except ValueError:
        pass
    import pyarrow.parquet as pq  # start-up time: pyarrow.parquet (~0.3 s) only for a parquet file

    pf = pq.ParquetFile(path)
    try:
        if "symbol" not in pf.schema_arrow.names:
            raise ValueError(f"cannot tell the symbol of {path.name}; pass it explicitly (--symbol BTCUSDT)")
        for batch in pf.iter_batches(batch_size=1, columns=["symbol"]):
            if batch.num_rows:
                return normalize_symbol(batch.column(0)[0].as_py())
    finally:
        pf.close()
    return None

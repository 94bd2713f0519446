"""Open market data files of any supported format and merge them into one event-time stream.

Formats (detected per file):

- ``.feather``: freqtrade OHLCV bars -> :class:`Bar` (loaded into a list: bounded size);
- ``.gz``: raw Binance websocket capture -> :class:`TradeTick` / :class:`QuoteTick`
  (streamed; the files of one symbol form one stream);
- ``.parquet``: trades or quotes, told apart by their columns (streamed).

Several symbols or files merge in ``ts_event`` order; events with the same time come in the
order of the files as given (the source of the first file first).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc

from claire.events import Bar, MarketEvent
from claire.marketdata.bars import BAR_COLUMNS, load_bars_feather
from claire.marketdata.binance_capture import (
    DEFAULT_WINDOW_NS,
    BinanceCaptureReader,
    CaptureStats,
    _open,
    _split,
    _stream_of,
)
from claire.marketdata.parquet_ticks import ParquetTickReader, parquet_kind
from claire.marketdata.symbols import normalize_symbol, symbol_from_path

log = logging.getLogger(__name__)

BARS, CAPTURE, TRADES, QUOTES = "bars", "capture", "trades", "quotes"
SUPPORTED = ".feather (freqtrade bars), .gz (Binance websocket capture), .parquet (trades or quotes)"
_PEEK_LINES = 1000


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"market data file not found: {path}")
    if path.is_dir():
        raise ValueError(f"market data path is a directory, expected a file: {path}")


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
        raise ValueError(f"{path.name}: unknown market data format, cannot read it as gzip text: {exc}"
                         ) from exc
    if first_ts is None:
        raise ValueError(f"{path.name}: unknown market data format, expected a Binance capture "
                         "(`<local_ts_ns> <json>` per line); supported: " + SUPPORTED)
    return first_ts, None


def detect_format(path: str | Path) -> str:
    """``"bars"``, ``"capture"``, ``"trades"`` or ``"quotes"``; clear errors otherwise."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in (".feather", ".arrow", ".ipc"):
        try:
            names = pa.ipc.open_file(path).schema.names
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{path.name}: not a readable feather (Arrow IPC) file: {exc}") from exc
        if set(BAR_COLUMNS) <= set(names):
            return BARS
        raise ValueError(f"{path.name}: unknown feather layout, columns {', '.join(names)}; expected "
                         f"freqtrade bars ({', '.join(BAR_COLUMNS)})")
    if suffix == ".parquet":
        return parquet_kind(path)
    if suffix == ".gz":
        _peek_capture(path)
        return CAPTURE
    raise ValueError(f"{path.name}: unknown market data format {suffix or '(no suffix)'!r}; "
                     f"supported: {SUPPORTED}")


@dataclass(slots=True)
class Source:
    """One ordered stream: a bar file, the capture files of a symbol, or a parquet file."""

    kind: str
    symbol: str | None  # None: the capture's own stream names label the events
    paths: list[Path]
    index: int  # position of its first file in the given paths: breaks ties in the merge
    count: int | None = None
    bars: list[Bar] | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    reader: BinanceCaptureReader | ParquetTickReader | None = None  # the last one opened
    window_ns: int = DEFAULT_WINDOW_NS

    def open(self) -> Iterator[MarketEvent]:
        if self.kind == BARS:
            assert self.bars is not None
            return iter(self.bars)
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
        streams = [s.open() for s in self.sources]
        if len(streams) == 1:
            yield from streams[0]
            return
        keyed = [_keyed(i, stream) for i, stream in enumerate(streams)]
        # (ts_event, source index) is unique among the heads, so events are never compared
        for _, _, ev in heapq.merge(*keyed):
            yield ev

    def __repr__(self) -> str:
        return f"MarketData({'; '.join(s.describe() for s in self.sources)})"


def _keyed(index: int, stream: Iterator[MarketEvent]) -> Iterator[tuple[int, int, MarketEvent]]:
    for ev in stream:
        yield ev.ts_event, index, ev


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
    resolved = [p.resolve() for p in plist]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise ValueError(f"market data file given twice: {plist[i]}")
    fixed = normalize_symbol(symbol) if symbol else None
    kinds = [detect_format(p) for p in plist]

    if fixed is not None:
        named: dict[str, Path] = {}
        for p in plist:
            try:
                named.setdefault(symbol_from_path(p), p)
            except ValueError:
                continue
        if len(named) > 1:
            raise ValueError(
                f"--symbol {fixed} given, but the files are of several symbols ("
                + ", ".join(f"{s} from {p.name}" for s, p in named.items())
                + "); leave --symbol out or open one symbol at a time"
            )

    sources: list[Source] = []
    captures: dict[str | None, list[tuple[int, int, Path]]] = {}
    for i, (p, kind) in enumerate(zip(plist, kinds, strict=True)):
        if kind == BARS:
            bf = load_bars_feather(p, fixed, interval_s)
            sources.append(Source(BARS, bf.symbol, [p], i, count=len(bf.bars), bars=bf.bars,
                                  skipped=dict(bf.skipped)))
        elif kind == CAPTURE:
            first_ts, stream_symbol = _peek_capture(p)
            if fixed is not None:
                sym: str | None = fixed
            else:
                try:
                    sym = symbol_from_path(p)
                except ValueError:
                    sym = stream_symbol  # None: the stream names label the events
            captures.setdefault(sym, []).append((first_ts, i, p))
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


def _quote_symbol(path: Path) -> str | None:
    """The symbol of a quotes parquet: from its name, else its first `symbol` value."""
    try:
        return symbol_from_path(path)
    except ValueError:
        pass
    import pyarrow.parquet as pq

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

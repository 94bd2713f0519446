"""Raw Binance spot websocket captures (hftbacktest collector format).

One gzip text line per message: ``<local_receive_ts_ns> <json>``, the JSON being a combined
stream message ``{"stream": "btcusdt@trade", "data": {...}}`` or a REST depth snapshot
``{"lastUpdateId": ..., "bids": ..., "asks": ...}``.

- ``<sym>@trade`` becomes a :class:`TradeTick` at the exchange trade time ``T``.
- ``<sym>@bookTicker`` becomes a :class:`QuoteTick`. The futures bookTicker carries the exchange
  transaction time ``T`` (ms), which is then its ``ts_event``. Spot bookTicker carries no
  exchange time, so its ``ts_event`` is the local receive time corrected by the collector's
  clock offset, estimated as the median of ``local_ts - T`` over the first trades (the bundled
  capture's local clock runs about 1.27 s behind the exchange, offset about -1.27 s).
- Depth diffs, snapshots and other streams are counted and skipped.

Events come out in non-decreasing ``ts_event`` through a small reorder buffer (a window of
event time, 2 s by default), so memory stays bounded whatever the file size. ``ts_recv`` is
the raw local receive time as recorded.
"""

from __future__ import annotations

import gzip
import io
import logging
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgspec

from claire.events import QuoteTick, Side, TradeTick
from claire.marketdata.errors import DataFileError, check_file, reason
from claire.marketdata.reorder import ReorderBuffer
from claire.marketdata.symbols import normalize_symbol

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
DEFAULT_WINDOW_NS = 2_000_000_000
OFFSET_TRADES = 1000
_OFFSET_SCAN_MAX_LINES = 500_000  # give up looking for trades to estimate the offset after this
_STREAM_PREFIX = b'{"stream":"'


class _Trade(msgspec.Struct):
    t: int
    p: str
    q: str
    T: int
    m: bool


class _TradeMsg(msgspec.Struct):
    data: _Trade


class _Book(msgspec.Struct):
    u: int
    b: str
    B: str
    a: str
    A: str
    T: int | None = None  # futures only: the exchange transaction time (ms)


class _BookMsg(msgspec.Struct):
    data: _Book


_decode_trade = msgspec.json.Decoder(_TradeMsg).decode
_decode_book = msgspec.json.Decoder(_BookMsg).decode
_decode_any = msgspec.json.Decoder().decode


@dataclass(slots=True)
class CaptureStats:
    """What a capture reader saw (complete once the iterator is exhausted)."""

    lines: int = 0
    trades: int = 0
    quotes: int = 0
    depth: int = 0  # depth diff messages, skipped
    snapshots: int = 0  # REST depth snapshots, skipped
    other: int = 0  # other streams, skipped
    malformed: int = 0  # lines that are not `<int> <json>` or whose message lacks fields
    invalid: int = 0  # messages whose values an event refuses (e.g. price 0)
    late: int = 0  # events that arrived more than the window behind; time raised to keep order
    clock_offset_ns: int | None = None  # local - exchange, as estimated or given
    offset_samples: int = 0  # trades the estimate is the median of
    max_buffered: int = 0  # most events the reorder buffer held at once
    examples: list[str] = field(default_factory=list)  # a few malformed/invalid lines, for errors

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)


def _as_paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths, str | Path):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("no capture files given")
    for p in out:
        check_file(p)
    return out


def _open(path: Path) -> io.BufferedReader:
    raw = gzip.GzipFile(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    return io.BufferedReader(raw, 1 << 16)  # C-level line iteration, faster than GzipFile's


def _raw_lines(paths: list[Path]) -> Iterator[tuple[Path, int, bytes]]:
    for path in paths:
        try:
            with _open(path) as fh:
                for lineno, line in enumerate(fh, 1):
                    yield path, lineno, line
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise DataFileError(f"{path.name}: cannot read the capture ({reason(exc)}); expected gzip text, "
                                "`<local_ts_ns> <json>` per line") from exc


def _split(line: bytes) -> tuple[int, bytes] | None:
    sp = line.find(b" ")
    if sp <= 0:
        return None
    try:
        return int(line[:sp]), line[sp + 1 :]
    except ValueError:
        return None


def _stream_of(payload: bytes) -> bytes | None:
    """The stream name of a compact combined-stream message, without decoding the JSON."""
    if payload.startswith(_STREAM_PREFIX):
        end = payload.find(b'"', len(_STREAM_PREFIX))
        if end > 0:
            return payload[len(_STREAM_PREFIX) : end]
    return None


def estimate_clock_offset(paths: str | Path | Iterable[str | Path], max_trades: int = OFFSET_TRADES
                          ) -> tuple[int | None, int]:
    """Median of ``local_ts - T`` (ns) over the first ``max_trades`` trades: the collector's
    clock offset from the exchange (negative when the local clock is behind). Returns
    ``(offset_ns, trades_used)``; ``(None, 0)`` when there is no trade to go by."""
    samples: list[int] = []
    lines = _raw_lines(_as_paths(paths))
    try:
        for n, (_, _, line) in enumerate(lines):
            if len(samples) >= max_trades or n >= _OFFSET_SCAN_MAX_LINES:
                break
            split = _split(line)
            if split is None:
                continue
            local_ts, payload = split
            stream = _stream_of(payload)
            if stream is None or not stream.endswith(b"@trade"):
                continue
            try:
                trade = _decode_trade(payload).data
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            samples.append(local_ts - trade.T * NS_PER_MS)
    finally:
        lines.close()
    if not samples:
        return None, 0
    return round(statistics.median(samples)), len(samples)


class BinanceCaptureReader(Iterator[TradeTick | QuoteTick]):
    """Iterator over the trades and quotes of one or more capture files read as one stream.

    ``symbol`` labels every event (exchange form, e.g. ``BTCUSDT``); by default it comes from
    each message's stream name. ``clock_offset_ns`` (local minus exchange) is estimated from
    the first trades unless given. ``stats`` fills in as the stream is read.
    """

    def __init__(self, paths: str | Path | Iterable[str | Path], symbol: str | None = None, *,
                 clock_offset_ns: int | None = None, window_ns: int = DEFAULT_WINDOW_NS,
                 offset_trades: int = OFFSET_TRADES) -> None:
        self.paths = _as_paths(paths)
        self.symbol = normalize_symbol(symbol) if symbol else None
        self.window_ns = window_ns
        self.stats = CaptureStats()
        self._offset_given = clock_offset_ns
        self._offset_trades = offset_trades
        self._it: Iterator[TradeTick | QuoteTick] | None = None

    def __iter__(self) -> BinanceCaptureReader:
        return self

    def __next__(self) -> TradeTick | QuoteTick:
        if self._it is None:
            self._it = self._generate()
        return next(self._it)

    def close(self) -> None:
        if self._it is not None:
            self._it.close()  # type: ignore[attr-defined]

    def _offset(self) -> int:
        stats = self.stats
        if self._offset_given is not None:
            stats.clock_offset_ns = self._offset_given
            return self._offset_given
        offset, n = estimate_clock_offset(self.paths, self._offset_trades)
        stats.offset_samples = n
        if offset is None:
            log.warning("%s: no trades to estimate the clock offset from; quote times are the "
                        "local receive times", self.paths[0].name)
            offset = 0
        stats.clock_offset_ns = offset
        return offset

    def _generate(self) -> Iterator[TradeTick | QuoteTick]:  # noqa: C901 - the per-line hot path of the capture reader: a split costs a call per line
        stats = self.stats
        offset = self._offset()
        buf: ReorderBuffer[TradeTick | QuoteTick] = ReorderBuffer(self.window_ns)
        push = buf.push
        replace = msgspec.structs.replace
        symbols: dict[bytes, str] = {}
        dec = Decimal
        sell, buy = Side.SELL, Side.BUY
        decode_trade, decode_book = _decode_trade, _decode_book
        prefix, plen = _STREAM_PREFIX, len(_STREAM_PREFIX)
        n_trades = n_quotes = n_depth = n_lines = 0

        for path, lineno, line in _raw_lines(self.paths):
            n_lines += 1
            # `<local_ts_ns> {"stream":"<sym>@<channel>","data":{...}}`, parsed without
            # decoding the JSON of the (large, skipped) depth messages
            sp = line.find(b" ")
            try:
                local_ts = int(line[:sp]) if sp > 0 else None
            except ValueError:
                local_ts = None
            if local_ts is None:
                if line.strip():
                    stats.malformed += 1
                    stats.note(f"{path.name}:{lineno}: not `<ts_ns> <json>`")
                continue
            payload = line[sp + 1 :]
            end = payload.find(b'"', plen) if payload.startswith(prefix) else -1
            if end > 0:
                stream = payload[plen:end]
            else:  # a snapshot, or a message not in the collector's compact form
                try:
                    msg = _decode_any(payload)
                except msgspec.DecodeError:
                    stats.malformed += 1
                    stats.note(f"{path.name}:{lineno}: not JSON")
                    continue
                if isinstance(msg, dict) and "lastUpdateId" in msg:
                    stats.snapshots += 1
                    continue
                if not (isinstance(msg, dict) and isinstance(msg.get("stream"), str)):
                    stats.other += 1
                    continue
                stream = msg["stream"].encode()
                payload = msgspec.json.encode(msg)
            at = stream.find(b"@")
            channel = stream[at + 1 :]
            try:
                if channel == b"trade":
                    d = decode_trade(payload).data
                    sym = symbols.get(stream) or self._symbol(symbols, stream)
                    ts = d.T * NS_PER_MS
                    ev: TradeTick | QuoteTick = TradeTick(
                        id=f"trade:{sym}:{d.t}", ts_event=ts, ts_recv=local_ts, symbol=sym,
                        price=dec(d.p), size=dec(d.q), aggressor=sell if d.m else buy,
                        trade_id=str(d.t))
                    n_trades += 1
                elif channel == b"bookTicker":
                    d = decode_book(payload).data
                    sym = symbols.get(stream) or self._symbol(symbols, stream)
                    ts = local_ts - offset if d.T is None else d.T * NS_PER_MS
                    ev = QuoteTick(id=f"quote:{sym}:{d.u}", ts_event=ts, ts_recv=local_ts, symbol=sym,
                                   bid=dec(d.b), bid_size=dec(d.B), ask=dec(d.a), ask_size=dec(d.A))
                    n_quotes += 1
                elif channel.startswith(b"depth"):
                    n_depth += 1
                    continue
                else:
                    stats.other += 1
                    continue
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                stats.malformed += 1
                stats.note(f"{path.name}:{lineno}: {exc}")
                continue
            except (ValueError, ArithmeticError) as exc:
                stats.invalid += 1
                stats.note(f"{path.name}:{lineno}: {exc}")
                continue
            for ts_out, out in push(ts, ev):
                yield out if ts_out == out.ts_event else replace(out, ts_event=ts_out)
            if n_lines & 0xFFF == 0:  # keep the stats roughly current for a reader in progress
                stats.lines, stats.trades, stats.quotes, stats.depth = n_lines, n_trades, n_quotes, n_depth
                stats.late, stats.max_buffered = buf.late, buf.max_held
        stats.lines, stats.trades, stats.quotes, stats.depth = n_lines, n_trades, n_quotes, n_depth
        for ts_out, out in buf.flush():
            yield out if ts_out == out.ts_event else replace(out, ts_event=ts_out)
        stats.late, stats.max_buffered = buf.late, buf.max_held
        if stats.malformed or stats.invalid or stats.late:
            log.warning("%s: %d malformed and %d invalid lines skipped, %d late events re-timed; e.g. %s",
                        ", ".join(p.name for p in self.paths), stats.malformed, stats.invalid,
                        stats.late, "; ".join(stats.examples) or "-")

    def _symbol(self, cache: dict[bytes, str], stream: bytes) -> str:
        sym = self.symbol or stream.split(b"@", 1)[0].decode().upper()
        cache[stream] = sym
        return sym


def iter_binance_capture(paths: str | Path | Iterable[str | Path], symbol: str | None = None, *,
                         clock_offset_ns: int | None = None,
                         window_ns: int = DEFAULT_WINDOW_NS) -> BinanceCaptureReader:
    """Trades and quotes of Binance capture files, in ``ts_event`` order (see module doc).

    The result is an iterator; its ``stats`` (:class:`CaptureStats`) tell what was skipped
    and the clock offset used.
    """
    return BinanceCaptureReader(paths, symbol, clock_offset_ns=clock_offset_ns, window_ns=window_ns)

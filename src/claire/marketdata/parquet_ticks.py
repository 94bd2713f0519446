"""Trades and quotes from parquet files (the nautilus_trader Binance fixture layout).

- trades: ``timestamp, trade_id, price, quantity, buyer_maker`` -> :class:`TradeTick`
  (``buyer_maker`` true means the aggressor sold; it may be a bool or the text True/False);
- quotes: ``timestamp, [symbol,] bid, bid_size, ask, ask_size`` -> :class:`QuoteTick`.

Read batch by batch (``iter_batches``), so memory stays bounded. The rows must be in time
order; a row going back in time is an error naming the file. ``ts_recv`` equals ``ts_event``.
A file that cannot be read (or has no rows, or columns of the wrong type) raises
:class:`DataFileError` when it is opened.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from claire.events import QuoteTick, Side, TradeTick
from claire.marketdata.errors import DataFileError, check_file, reason
from claire.marketdata.symbols import normalize_symbol, symbol_from_path

log = logging.getLogger(__name__)


def _pq() -> Any:
    """``pyarrow.parquet``, imported when a parquet file is read (not by every `claire` command)."""
    import pyarrow.parquet as pq  # start-up time: pyarrow.parquet (~0.3 s) only when a parquet file is read

    return pq

TRADE_COLUMNS = ("timestamp", "trade_id", "price", "quantity", "buyer_maker")
QUOTE_COLUMNS = ("timestamp", "bid", "bid_size", "ask", "ask_size")
_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


def parquet_kind(path: str | Path) -> str:
    """``"trades"`` or ``"quotes"`` by the file's columns; ``ValueError`` otherwise."""
    path = Path(path)
    check_file(path)
    try:
        names = set(_pq().read_schema(path).names)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataFileError(f"{path.name}: not a readable parquet file ({reason(exc)}); expected trades "
                            f"({', '.join(TRADE_COLUMNS)}) or quotes ({', '.join(QUOTE_COLUMNS)})") from exc
    if set(TRADE_COLUMNS) <= names:
        return "trades"
    if set(QUOTE_COLUMNS) <= names:
        return "quotes"
    raise DataFileError(
        f"{path.name}: unknown parquet layout, columns {', '.join(sorted(names))}; expected trades "
        f"({', '.join(TRADE_COLUMNS)}) or quotes ({', '.join(QUOTE_COLUMNS)})"
    )


def _check_types(path: Path, schema: pa.Schema, columns: tuple[str, ...]) -> None:
    """Columns of a type the reader cannot use: :class:`DataFileError` naming the first."""
    for name in columns:
        t = schema.field(name).type
        if name == "timestamp":
            ok = pa.types.is_timestamp(t) or pa.types.is_integer(t)
            want = "a timestamp or epoch milliseconds"
        elif name == "trade_id":
            ok = pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
            want = "integers or text"
        elif name == "buyer_maker":
            ok = pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
            want = "booleans or the text True/False"
        elif name == "symbol":
            ok = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)
            want = "text"
        else:
            ok = pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)
            want = "numbers"
        if not ok:
            raise DataFileError(f"{path.name}: column {name!r} has type {t}, expected {want}")


def _ns(column: pa.Array, path: Path) -> list[int | None]:
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64()).to_pylist()
    if pa.types.is_integer(column.type):  # epoch ms
        return [None if v is None else v * 1_000_000 for v in column.to_pylist()]
    raise DataFileError(f"{path.name}: column 'timestamp' has type {column.type}, expected a timestamp")


def _decimals(column: pa.Array) -> list[Decimal | None]:
    """float64 -> Decimal through the shortest text; strings/decimals directly."""
    if pa.types.is_decimal(column.type):
        return column.to_pylist()
    return [None if s is None else Decimal(s) for s in pc.cast(column, pa.string()).to_pylist()]


def _bools(column: pa.Array) -> list[bool | None]:
    if pa.types.is_boolean(column.type):
        return column.to_pylist()
    out: list[bool | None] = []
    for v in pc.cast(column, pa.string()).to_pylist():
        low = v.strip().lower() if v is not None else None
        out.append(True if low in _TRUE else False if low in _FALSE else None)
    return out


class ParquetTickReader(Iterator[TradeTick | QuoteTick]):
    """Iterator over the trades or quotes of one parquet file; ``skipped`` counts bad rows."""

    def __init__(self, path: str | Path, symbol: str | None = None, *, kind: str | None = None,
                 batch_size: int = 65_536) -> None:
        self.path = Path(path)
        if kind not in (None, "trades", "quotes"):
            raise ValueError(f"kind must be 'trades' or 'quotes', got {kind!r}")
        self.kind = parquet_kind(self.path)
        if kind is not None and kind != self.kind:
            raise DataFileError(f"{self.path.name}: has the columns of {self.kind}, not {kind}")
        self.symbol = normalize_symbol(symbol) if symbol else None
        if self.symbol is None and self.kind == "trades":
            self.symbol = symbol_from_path(self.path)
        self.batch_size = batch_size
        try:
            meta = _pq().read_metadata(self.path)
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataFileError(f"{self.path.name}: not a readable parquet file ({reason(exc)})") from exc
        columns = TRADE_COLUMNS if self.kind == "trades" else QUOTE_COLUMNS
        _check_types(self.path, schema, columns + (("symbol",) if "symbol" in schema.names else ()))
        self.count = meta.num_rows
        if not self.count:
            raise DataFileError(f"{self.path.name}: no rows; expected {self.kind} ({', '.join(columns)})")
        self.skipped: Counter[str] = Counter()
        self._it: Iterator[TradeTick | QuoteTick] | None = None

    def __iter__(self) -> ParquetTickReader:
        return self

    def __next__(self) -> TradeTick | QuoteTick:
        if self._it is None:
            self._it = self._trades() if self.kind == "trades" else self._quotes()
        return next(self._it)

    def _batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        try:
            pf = _pq().ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(f"{self.path.name}: not a readable parquet file ({reason(exc)})") from exc
        try:
            batches = pf.iter_batches(batch_size=self.batch_size, columns=columns)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                except (pa.ArrowException, OSError) as exc:  # e.g. a page cut short
                    raise DataFileError(f"{self.path.name}: cannot read the parquet data ({reason(exc)})"
                                        ) from exc
                yield batch
        finally:
            pf.close()

    def _check_order(self, prev: int, ts: int, row: int) -> None:
        if ts < prev:
            raise DataFileError(f"{self.path.name}: row {row} goes back in time ({ts} after {prev}); "
                             "the rows must be sorted by timestamp")

    def _trades(self) -> Iterator[TradeTick]:
        sym = self.symbol
        if sym is None:  # __init__ takes it from the file name for trades
            raise DataFileError(f"{self.path.name}: no symbol for the trades")
        prev = -(2**63)
        row = 0
        sell, buy = Side.SELL, Side.BUY
        for batch in self._batches(list(TRADE_COLUMNS)):
            cols = dict(zip(batch.schema.names, batch.columns, strict=True))
            ts_l = _ns(cols["timestamp"], self.path)
            ids = pc.cast(cols["trade_id"], pa.string()).to_pylist()
            for ts, tid, price, qty, maker in zip(ts_l, ids, _decimals(cols["price"]),
                                                  _decimals(cols["quantity"]), _bools(cols["buyer_maker"]),
                                                  strict=True):
                row += 1
                if ts is None or tid is None or maker is None or price is None or qty is None:
                    self.skipped["missing value"] += 1
                    continue
                self._check_order(prev, ts, row)
                prev = ts
                try:
                    yield TradeTick(id=f"trade:{sym}:{tid}", ts_event=ts, ts_recv=ts, symbol=sym,
                                    price=price, size=qty, aggressor=sell if maker else buy, trade_id=tid)
                except (ValueError, ArithmeticError) as exc:
                    self.skipped[f"invalid ({exc})"] += 1
        self._report()

    def _quotes(self) -> Iterator[QuoteTick]:
        names = set(_pq().read_schema(self.path).names)
        columns = list(QUOTE_COLUMNS) + (["symbol"] if "symbol" in names else [])
        fixed = self.symbol
        if fixed is None:
            try:
                fixed = symbol_from_path(self.path)
            except ValueError:
                if "symbol" not in names:
                    raise
        prev = -(2**63)
        row = 0
        last_ts, same = None, 0
        for batch in self._batches(columns):
            cols = dict(zip(batch.schema.names, batch.columns, strict=True))
            n = batch.num_rows
            syms = [fixed] * n if fixed is not None else cols["symbol"].to_pylist()
            for ts, sym, bid, bsz, ask, asz in zip(
                _ns(cols["timestamp"], self.path), syms, _decimals(cols["bid"]), _decimals(cols["bid_size"]),
                _decimals(cols["ask"]), _decimals(cols["ask_size"]), strict=True,
            ):
                row += 1
                if None in (ts, sym, bid, bsz, ask, asz):
                    self.skipped["missing value"] += 1
                    continue
                self._check_order(prev, ts, row)
                prev = ts
                if fixed is None:
                    sym = normalize_symbol(sym)
                # no update id in this layout: the time, plus a counter for quotes sharing it
                if ts == last_ts:
                    same += 1
                    qid = f"quote:{sym}:{ts}.{same}"
                else:
                    last_ts, same = ts, 0
                    qid = f"quote:{sym}:{ts}"
                try:
                    yield QuoteTick(id=qid, ts_event=ts, ts_recv=ts, symbol=sym, bid=bid, bid_size=bsz,
                                    ask=ask, ask_size=asz)
                except (ValueError, ArithmeticError) as exc:
                    self.skipped[f"invalid ({exc})"] += 1
        self._report()

    def _report(self) -> None:
        if self.skipped:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
            log.warning("%s: skipped %d of %d rows (%s)", self.path.name, sum(self.skipped.values()),
                        self.count, reasons)


def iter_parquet_trades(path: str | Path, symbol: str | None = None, batch_size: int = 65_536
                        ) -> ParquetTickReader:
    """The trades of a parquet file, streamed batch by batch."""
    return ParquetTickReader(path, symbol, kind="trades", batch_size=batch_size)


def iter_parquet_quotes(path: str | Path, symbol: str | None = None, batch_size: int = 65_536
                        ) -> ParquetTickReader:
    """The quotes of a parquet file, streamed batch by batch."""
    return ParquetTickReader(path, symbol, kind="quotes", batch_size=batch_size)

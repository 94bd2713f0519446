"""OHLCV bars, held column by column until the core consumes them.

A bar file (freqtrade feather here, CSV in :mod:`claire.marketdata.csv_bars`) is read with
pyarrow and validated with vectorised kernels into a :class:`BarTable`: the close times and the
five value columns as Arrow arrays, no Python object per row. :class:`Bar` events (prices and
volume as ``Decimal``) are built chunk by chunk while iterating, and several tables merge in
event time through one stable sort of their close times (ties in the order of the tables).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as pf

from claire.events import Bar
from claire.events.time import NS_PER_SEC
from claire.marketdata.arrow_util import const, filled
from claire.marketdata.errors import DataFileError, check_file, reason
from claire.marketdata.symbols import normalize_symbol, symbol_from_path

log = logging.getLogger(__name__)

BAR_COLUMNS = ("date", "open", "high", "low", "close", "volume")
VALUE_COLUMNS = BAR_COLUMNS[1:]
_PRICES = ("open", "high", "low", "close")
FEATHER_EXPECTED = "freqtrade bars (date, open, high, low, close, volume)"
#: Bars built per step while iterating: bounded memory, few kernel calls.
CHUNK = 32_768


class BarTable:
    """The validated bars of one symbol as Arrow columns; iterating builds the :class:`Bar` events.

    ``ts``: the bars' close times (``ts_event``, int64 ns, strictly increasing); ``values``: the
    open, high, low, close and volume columns, as decimal text (``string``) or numbers (turned
    into text by Arrow's shortest round-trip formatting, then into ``Decimal``).
    """

    __slots__ = ("interval_s", "symbol", "ts", "values")

    def __init__(self, symbol: str, interval_s: int, ts: pa.Array, values: Sequence[pa.Array]) -> None:
        self.symbol = symbol
        self.interval_s = interval_s
        self.ts = ts
        self.values = tuple(values)

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self) -> Iterator[Bar]:
        return iter_bars([self])

    @property
    def nbytes(self) -> int:
        return self.ts.nbytes + sum(v.nbytes for v in self.values)

    def __repr__(self) -> str:
        return f"BarTable({self.symbol}, {self.interval_s}s, {len(self):,} bars)"


def _text(column: pa.Array) -> pa.Array:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _chunks(tables: Sequence[BarTable], chunk: int
            ) -> Iterator[tuple[pa.Array, pa.Array | None, list[pa.Array]]]:
    """(close times, table numbers or None for a single table, value columns), chunk by chunk,
    in event-time order; equal times in the order of ``tables`` (one stable sort)."""
    if len(tables) == 1:
        t = tables[0]
        for start in range(0, len(t), chunk):
            yield t.ts.slice(start, chunk), None, [v.slice(start, chunk) for v in t.values]
        return
    ts_all = pa.concat_arrays([t.ts for t in tables])
    src_all = pa.concat_arrays([filled(k, len(t), pa.int32())
                                for k, t in enumerate(tables)])
    cols = []
    for k in range(len(VALUE_COLUMNS)):
        parts = [t.values[k] for t in tables]
        if len({p.type for p in parts}) > 1:  # e.g. a feather file (numbers) with a CSV (text)
            parts = [_text(p) for p in parts]
        cols.append(pa.concat_arrays(parts))
    # each table is strictly increasing in time, so a stable sort of the concatenation keeps
    # equal times in table order: the same order as merging the tables pairwise
    order = pc.sort_indices(ts_all)
    for start in range(0, len(ts_all), chunk):
        idx = order.slice(start, chunk)
        yield pc.take(ts_all, idx), pc.take(src_all, idx), [pc.take(c, idx) for c in cols]


def _decimals(vals: list[pa.Array]) -> list[Sequence[Decimal]]:
    """The five value columns of a chunk as ``Decimal`` sequences, each distinct price made once.

    Numbers go through Arrow's shortest round-trip text (``70070.53``, never binary noise). The
    four price columns are dictionary-encoded together: one ``Decimal`` per distinct value (by
    its bits for numbers: prices are > 0 here, so no -0.0; by its text for text), picked for
    every row by one ``itemgetter`` call.
    """
    prices, volume = vals[:4], vals[4]
    n = len(prices[0])
    if len({p.type for p in prices}) > 1:
        prices = [_text(p) for p in prices]
    enc = pc.dictionary_encode(pa.concat_arrays(prices))
    decs = list(map(Decimal, _text(enc.dictionary).to_pylist()))
    idx = enc.indices.to_pylist()
    if len(idx) > 1:
        every = itemgetter(*idx)(decs)
    else:
        every = [decs[i] for i in idx]
    cols: list[Sequence[Decimal]] = [every[k * n:(k + 1) * n] for k in range(4)]
    cols.append(list(map(Decimal, _text(volume).to_pylist())))
    return cols


def iter_bars(tables: Sequence[BarTable], chunk: int = CHUNK) -> Iterator[Bar]:
    """The bars of several tables as one event-time ordered stream (ties in table order)."""
    meta = [(t.symbol, t.interval_s, f"bar:{t.symbol}:{t.interval_s}:") for t in tables]
    for ts, src, vals in _chunks(tables, chunk):
        ts_l = ts.to_pylist()
        o_l, h_l, lo_l, c_l, v_l = _decimals(vals)
        if src is None:
            sym, iv, prefix = meta[0]
            for t, o, h, lo, c, v in zip(ts_l, o_l, h_l, lo_l, c_l, v_l, strict=True):
                yield Bar(id=prefix + str(t), ts_event=t, ts_recv=t, symbol=sym, interval_s=iv,
                          open=o, high=h, low=lo, close=c, volume=v)
        else:
            for t, s, o, h, lo, c, v in zip(ts_l, src.to_pylist(), o_l, h_l, lo_l, c_l, v_l, strict=True):
                sym, iv, prefix = meta[s]
                yield Bar(id=prefix + str(t), ts_event=t, ts_recv=t, symbol=sym, interval_s=iv,
                          open=o, high=h, low=lo, close=c, volume=v)


def iter_bars_keyed(tables: Sequence[BarTable], keys: Sequence[int], chunk: int = CHUNK
                    ) -> Iterator[tuple[int, int, Bar]]:
    """``(ts_event, keys[table number], bar)`` in event-time order, for a merge with other streams."""
    if len(tables) == 1:
        key = keys[0]
        for bar in iter_bars(tables, chunk):
            yield bar.ts_event, key, bar
        return
    meta = [(t.symbol, t.interval_s, f"bar:{t.symbol}:{t.interval_s}:", keys[k]) for k, t in enumerate(tables)]
    for ts, src, vals in _chunks(tables, chunk):
        if src is None:  # _chunks numbers the tables whenever there are several
            raise RuntimeError("bar merge: chunk without table numbers")
        o_l, h_l, lo_l, c_l, v_l = _decimals(vals)
        for t, s, o, h, lo, c, v in zip(ts.to_pylist(), src.to_pylist(), o_l, h_l, lo_l, c_l, v_l, strict=True):
            sym, iv, prefix, key = meta[s]
            yield t, key, Bar(id=prefix + str(t), ts_event=t, ts_recv=t, symbol=sym, interval_s=iv,
                              open=o, high=h, low=lo, close=c, volume=v)


@dataclass(slots=True)
class BarFile:
    """The bars of one file and what was noticed while reading it."""

    path: Path
    symbol: str
    interval_s: int
    table: BarTable
    rows: int  # rows in the file
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows skipped
    gaps: int = 0  # places where consecutive bars are further apart than one interval
    _bars: list[Bar] | None = field(default=None, repr=False)

    @property
    def bars(self) -> list[Bar]:
        """The bars as events (built on first use; iterate :attr:`table` to stream them)."""
        if self._bars is None:
            self._bars = list(self.table)
        return self._bars

    def __len__(self) -> int:
        return len(self.table)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def warning(self) -> str | None:
        if not self.skipped:
            return None
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"{self.path.name}: skipped {self.skipped_total} of {self.rows} rows ({reasons})"


def _check_file(path: Path) -> None:
    check_file(path)


def _epoch_ns(column: pa.ChunkedArray | pa.Array, path: Path, name: str = "date") -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
    if pa.types.is_integer(column.type):  # epoch milliseconds, as ccxt/freqtrade write them elsewhere
        return pc.multiply(column.cast(pa.int64()), const(1_000_000))
    raise DataFileError(f"{path.name}: column {name!r} has type {column.type}, expected a timestamp")


def _median_spacing(ts: pa.Array) -> int | None:
    """The median (upper, as in :func:`infer_interval_s`) of the positive spacings of sorted times."""
    if len(ts) < 2:
        return None
    diffs = pc.subtract(ts.slice(1), ts.slice(0, len(ts) - 1))
    diffs = pc.filter(diffs, pc.greater(diffs, const(0)))
    if not len(diffs):
        return None
    return pc.take(diffs, pc.sort_indices(diffs))[len(diffs) // 2].as_py()


def _interval_from(median: int | None, path: Path | str) -> int:
    name = Path(path).name or "bars"
    if median is None:
        raise DataFileError(f"{name}: cannot infer the bar interval from fewer than two distinct "
                            "timestamps; pass interval_s")
    if median % NS_PER_SEC:
        raise DataFileError(f"{name}: median bar spacing {median} ns is not a whole number of seconds; "
                            "pass interval_s")
    return median // NS_PER_SEC


def infer_interval_s(ts_ns: list[int], path: Path | str = "") -> int:
    """The bar interval in seconds: the median spacing of the (sorted) open times."""
    diffs = sorted(b - a for a, b in itertools.pairwise(ts_ns) if b > a)
    return _interval_from(diffs[len(diffs) // 2] if diffs else None, path)


def _value_check(path: Path, name: str, column: pa.Array) -> pa.Array:
    """A value column as float64, for the checks only (the events get the exact text)."""
    t = column.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise DataFileError(f"{path.name}: column {name!r} has type {t}, expected numbers")
    return column.cast(pa.float64())


def _good_rows(floats: Sequence[pa.Array], skipped: Counter[str]) -> pa.Array | None:
    """The mask of the rows whose values are good (None: all of them); the bad ones are counted in
    ``skipped``, each under its first reason. Vectorised on the float64 values (only array-to-array
    kernels or Arrow scalars: comparing with a Python scalar makes pyarrow import pandas, which
    costs a third of a second)."""
    f = dict(zip(VALUE_COLUMNS, floats, strict=True))
    non_finite = None
    for col in floats:
        bad = pc.or_kleene(pc.is_null(col), pc.invert(pc.is_finite(col)))
        non_finite = bad if non_finite is None else pc.or_(non_finite, bad)
    low_price = pc.min_element_wise(*(f[c] for c in _PRICES))
    checks = [("missing or non-finite value", non_finite)]
    if (pc.min(low_price).as_py() or 0) <= 0:
        checks.append(("non-positive price", pc.less_equal(low_price, const(0.0, pa.float64()))))
    if (pc.min(f["volume"]).as_py() or 0) < 0:
        checks.append(("negative volume", pc.less(f["volume"], const(0.0, pa.float64()))))
    checks.append(("high/low inconsistent with open/close", pc.or_kleene(
        pc.less(f["high"], pc.max_element_wise(f["open"], f["close"], f["low"])),
        pc.greater(f["low"], pc.min_element_wise(f["open"], f["close"])),
    )))
    keep = None  # rows still good; None: all of them
    for why, mask in checks:
        hit = pc.coalesce(mask, non_finite)  # null only where a value is missing: counted first
        if keep is not None:
            hit = pc.and_(hit, keep)
        k = pc.sum(hit).as_py() or 0
        if k:
            skipped[why] += k
            keep = pc.invert(hit) if keep is None else pc.and_(keep, pc.invert(hit))
    return keep


def build_bar_file(path: Path, symbol: str, interval_s: int | None, ts_open: pa.Array,
                   values: Sequence[pa.Array], floats: Sequence[pa.Array] | None = None,
                   skipped: Counter[str] | None = None, rows: int | None = None) -> BarFile:
    """Validate the columns of a bar file and make its :class:`BarFile` (vectorised throughout).

    ``ts_open``: bar open times (int64 ns, nulls allowed); ``values``: open, high, low, close,
    volume as numbers or decimal text; ``floats``: the same as float64 for the checks (default:
    ``values`` cast). Rows with a missing/NaN value, a non-positive price, a negative volume,
    inconsistent high/low, or a repeated open time are skipped and counted; an unsorted file is
    sorted (stably: of rows with the same open time the first in the file stays).
    """
    rows = len(ts_open) if rows is None else rows
    skipped = Counter() if skipped is None else skipped
    values = list(values)
    floats = [v.cast(pa.float64()) for v in values] if floats is None else list(floats)

    def subset(mask_or_idx: pa.Array, take: bool = False) -> None:
        nonlocal ts_open, values, floats
        op = pc.take if take else pc.filter
        ts_open = op(ts_open, mask_or_idx)
        values = [op(v, mask_or_idx) for v in values]
        floats = [op(f, mask_or_idx) for f in floats]

    if ts_open.null_count:
        skipped["missing or non-finite value"] += ts_open.null_count
        subset(pc.is_valid(ts_open))
    n = len(ts_open)
    if n > 1 and pc.any(pc.less(ts_open.slice(1), ts_open.slice(0, n - 1))).as_py():
        subset(pc.sort_indices(ts_open), take=True)
    # the spacing of all rows tells the interval, bad values or not
    if interval_s is None:
        interval_s = _interval_from(_median_spacing(ts_open), path)
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    step = interval_s * NS_PER_SEC

    keep = _good_rows(floats, skipped)
    if keep is not None:
        subset(keep)

    n = len(ts_open)
    gaps = 0
    if n > 1:
        diffs = pc.subtract(ts_open.slice(1), ts_open.slice(0, n - 1))
        gaps = pc.sum(pc.greater(diffs, const(step))).as_py() or 0
        same = pc.equal(diffs, const(0))
        repeated = pc.sum(same).as_py() or 0
        if repeated:  # repeated open times: keep the first row
            skipped["repeated open time"] += repeated
            subset(pa.concat_arrays([filled(True, 1, pa.bool_()), pc.invert(same)]))
    ts = pc.add(ts_open, const(step))
    table = BarTable(symbol, interval_s, ts, [_compact(v) for v in values])
    result = BarFile(path=path, symbol=symbol, interval_s=interval_s, table=table, rows=rows,
                     skipped=skipped, gaps=gaps)
    msg = result.warning()
    if msg:
        log.warning(msg)
    return result


def _compact(column: pa.Array) -> pa.Array:
    """One contiguous array (not a view into the file's buffers with the skipped rows)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column


def load_bars_feather(path: str | Path, symbol: str | None = None, interval_s: int | None = None) -> BarFile:
    """Read a freqtrade feather file into a :class:`BarFile`, keeping the count of skipped rows.

    ``ts_event`` is the bar's close time (open time + interval), ``ts_recv`` the same. Prices and
    volume become ``Decimal`` through the shortest decimal text of each float64 (so 70070.53
    stays 70070.53), as the bars are iterated. Rows with a missing/NaN value, a non-positive
    price, a negative volume, inconsistent high/low, or a repeated open time are skipped and
    counted. A file that cannot be read raises :class:`DataFileError`.
    """
    path = Path(path)
    check_file(path)
    symbol = normalize_symbol(symbol) if symbol else symbol_from_path(path)
    try:
        table = pf.read_table(path, memory_map=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataFileError(f"{path.name}: not a readable feather (Arrow IPC) file ({reason(exc)}); "
                            f"expected {FEATHER_EXPECTED}") from exc
    missing = [c for c in BAR_COLUMNS if c not in table.column_names]
    if missing:
        raise DataFileError(f"{path.name}: not a bar file, missing column(s) {', '.join(missing)} "
                            f"(has {', '.join(table.column_names)}); expected {FEATHER_EXPECTED}")
    if table.num_rows == 0:
        raise DataFileError(f"{path.name}: no rows; expected {FEATHER_EXPECTED}")
    ts = _epoch_ns(table["date"], path)
    values = [table[c].combine_chunks() for c in VALUE_COLUMNS]
    floats = [_value_check(path, c, v) for c, v in zip(VALUE_COLUMNS, values, strict=True)]
    return build_bar_file(path, symbol, interval_s, ts, values, floats)


def read_bars_feather(path: str | Path, symbol: str | None = None, interval_s: int | None = None) -> list[Bar]:
    """The bars of a freqtrade feather file (see :func:`load_bars_feather`); skipped rows are logged."""
    return load_bars_feather(path, symbol, interval_s).bars

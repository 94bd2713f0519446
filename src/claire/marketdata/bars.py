"""OHLCV bars from freqtrade feather files (Arrow IPC: date, open, high, low, close, volume)."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as pf

from claire.events import Bar
from claire.marketdata.symbols import normalize_symbol, symbol_from_path

log = logging.getLogger(__name__)

NS_PER_SEC = 1_000_000_000
BAR_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_PRICES = ("open", "high", "low", "close")


@dataclass(slots=True)
class BarFile:
    """The bars of one file and what was noticed while reading it."""

    path: Path
    symbol: str
    interval_s: int
    bars: list[Bar]
    rows: int  # rows in the file
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows skipped
    gaps: int = 0  # places where consecutive bars are further apart than one interval

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def warning(self) -> str | None:
        if not self.skipped:
            return None
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"{self.path.name}: skipped {self.skipped_total} of {self.rows} rows ({reasons})"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"market data file not found: {path}")
    if path.is_dir():
        raise ValueError(f"market data path is a directory, expected a file: {path}")


def _epoch_ns(column: pa.ChunkedArray, path: Path) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
    if pa.types.is_integer(column.type):  # epoch milliseconds, as ccxt/freqtrade write them elsewhere
        return pc.multiply(column.cast(pa.int64()), 1_000_000)
    raise ValueError(f"{path.name}: column 'date' has type {column.type}, expected a timestamp")


def infer_interval_s(ts_ns: list[int], path: Path | str = "") -> int:
    """The bar interval in seconds: the median spacing of the (sorted) open times."""
    diffs = sorted(b - a for a, b in itertools.pairwise(ts_ns) if b > a)
    if not diffs:
        raise ValueError(f"{Path(path).name or 'bars'}: cannot infer the bar interval from fewer than "
                         "two distinct timestamps; pass interval_s")
    median = diffs[len(diffs) // 2]
    if median % NS_PER_SEC:
        raise ValueError(f"{Path(path).name or 'bars'}: median bar spacing {median} ns is not a whole "
                         "number of seconds; pass interval_s")
    return median // NS_PER_SEC


def load_bars_feather(path: str | Path, symbol: str | None = None, interval_s: int | None = None) -> BarFile:
    """Read a freqtrade feather file into bars, keeping the count of skipped rows.

    ``ts_event`` is the bar's close time (open time + interval), ``ts_recv`` the same. Prices and
    volume become ``Decimal`` through the shortest decimal text of each float64 (so 70070.53
    stays 70070.53). Rows with a missing/NaN value, a non-positive price, a negative volume,
    inconsistent high/low, or a repeated open time are skipped and counted.
    """
    path = Path(path)
    _check_file(path)
    symbol = normalize_symbol(symbol) if symbol else symbol_from_path(path)
    try:
        table = pf.read_table(path, memory_map=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path.name}: not a readable feather (Arrow IPC) file: {exc}") from exc
    missing = [c for c in BAR_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path.name}: not a bar file, missing column(s) {', '.join(missing)} "
                         f"(has {', '.join(table.column_names)})")
    rows = table.num_rows
    skipped: Counter[str] = Counter()

    ts = _epoch_ns(table["date"], path)
    table = table.select(list(BAR_COLUMNS[1:])).append_column("ts", ts)
    if ts.null_count:
        skipped["missing or non-finite value"] += ts.null_count
        table = table.filter(pc.is_valid(table["ts"]))
    ts_list = table["ts"].to_pylist()
    if any(b < a for a, b in itertools.pairwise(ts_list)):
        table = table.sort_by("ts")
        ts_list = table["ts"].to_pylist()
    # the spacing of all rows tells the interval, bad values or not
    if interval_s is None:
        interval_s = infer_interval_s(ts_list, path)
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    step = interval_s * NS_PER_SEC

    # Vectorised validation on the float64 values; each bad row counts under its first reason.
    # (Only array-to-array kernels on the common path: comparing with a Python scalar makes
    # pyarrow import pandas, which costs a third of a second.)
    f = {c: table[c].cast(pa.float64()) for c in BAR_COLUMNS[1:]}
    non_finite = None
    for col in f.values():
        bad = pc.or_kleene(pc.is_null(col), pc.invert(pc.is_finite(col)))
        non_finite = bad if non_finite is None else pc.or_(non_finite, bad)
    low_price = pc.min_element_wise(*(f[c] for c in _PRICES))
    checks = [("missing or non-finite value", non_finite)]
    if (pc.min(low_price).as_py() or 0) <= 0:
        checks.append(("non-positive price", pc.less_equal(low_price, pa.scalar(0.0))))
    if (pc.min(f["volume"]).as_py() or 0) < 0:
        checks.append(("negative volume", pc.less(f["volume"], pa.scalar(0.0))))
    checks.append(("high/low inconsistent with open/close", pc.or_kleene(
        pc.less(f["high"], pc.max_element_wise(f["open"], f["close"], f["low"])),
        pc.greater(f["low"], pc.min_element_wise(f["open"], f["close"])),
    )))
    keep = None  # rows still good; None: all of them
    for reason, mask in checks:
        hit = pc.coalesce(mask, non_finite)  # null only where a value is missing: counted first
        if keep is not None:
            hit = pc.and_(hit, keep)
        n = pc.sum(hit).as_py() or 0
        if n:
            skipped[reason] += n
            keep = pc.invert(hit) if keep is None else pc.and_(keep, pc.invert(hit))
    if keep is not None:
        table = table.filter(keep)
        ts_list = table["ts"].to_pylist()

    # repeated open times: keep the first row (after a stable sort, the first in the file)
    repeated = sum(1 for a, b in itertools.pairwise(ts_list) if a == b)
    gaps = sum(1 for a, b in itertools.pairwise(ts_list) if b - a > step)
    cols = [map(Decimal, pc.cast(table[c], pa.string()).to_pylist()) for c in BAR_COLUMNS[1:]]
    rows_in = zip(ts_list, *cols, strict=True)
    if repeated:
        skipped["repeated open time"] += repeated
        rows_in = _first_of_each(rows_in)
    prefix = f"bar:{symbol}:{interval_s}:"
    bars: list[Bar] = []
    append = bars.append
    for t_open, o, h, lo, c, v in rows_in:
        t = t_open + step
        try:
            append(Bar(id=prefix + str(t), ts_event=t, ts_recv=t, symbol=symbol, interval_s=interval_s,
                       open=o, high=h, low=lo, close=c, volume=v))
        except (ValueError, ArithmeticError) as exc:  # whatever the vectorised checks did not catch
            skipped[f"invalid ({exc})"] += 1
    result = BarFile(path=path, symbol=symbol, interval_s=interval_s, bars=bars, rows=rows,
                     skipped=skipped, gaps=gaps)
    msg = result.warning()
    if msg:
        log.warning(msg)
    return result


def _first_of_each(rows):
    prev = None
    for row in rows:
        if row[0] != prev:
            prev = row[0]
            yield row


def read_bars_feather(path: str | Path, symbol: str | None = None, interval_s: int | None = None) -> list[Bar]:
    """The bars of a freqtrade feather file (see :func:`load_bars_feather`); skipped rows are logged."""
    return load_bars_feather(path, symbol, interval_s).bars

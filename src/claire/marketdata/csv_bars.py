"""OHLCV bars from CSV files: Binance kline dumps and plain OHLCV CSVs with a header.

- **Binance klines** as https://data.binance.vision publishes them (spot and futures, monthly
  and daily): ``open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_buy_quote_volume, ignore``; futures files have that header row, spot
  files have none. Open times are epoch milliseconds, or microseconds (spot files since 2025),
  told apart by magnitude.
- **Plain OHLCV**: a header with a time column (``open_time``, ``timestamp``, ``datetime``,
  ``date`` or ``time``: ISO 8601, naive = UTC, or epoch seconds/ms/us/ns by magnitude) and
  ``open, high, low, close, volume`` (any letter case, other columns ignored).

The time is the bar's **open** time; the interval is inferred from the spacing of the times
(or given). ``.csv``, ``.csv.gz`` and ``.zip`` (holding one CSV) are read. Prices and volume go
from the text to ``Decimal`` without a float (trailing zeros of a fraction dropped:
``70070.53000000`` -> ``70070.53``). A file that cannot be read raises :class:`DataFileError`.
"""

from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from claire.marketdata.arrow_util import const
from claire.marketdata.bars import VALUE_COLUMNS, BarFile, build_bar_file
from claire.marketdata.errors import DataFileError, check_file, reason
from claire.marketdata.symbols import normalize_symbol, symbol_from_path

if TYPE_CHECKING:
    import pyarrow.csv as pcsv

BINANCE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                   "taker_buy_volume", "taker_buy_quote_volume", "ignore")
TIME_COLUMNS = ("open_time", "timestamp", "datetime", "date", "time")
CSV_SUFFIXES = (".csv", ".csv.gz", ".zip")
CSV_EXPECTED = ("a Binance kline CSV (12 columns, header row optional) or an OHLCV CSV with a header "
                "(timestamp/time/date/open_time, open, high, low, close, volume)")
_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INTEGER = r"^[+-]?[0-9]+$"
_PEEK_BYTES = 4096


def is_csv_path(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(CSV_SUFFIXES)


def _zip_member(zf: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
    if len(members) != 1:
        names = ", ".join(m.filename for m in members[:5]) or "nothing"
        raise DataFileError(f"{path.name}: a zip must hold exactly one CSV file, this one holds {len(members)} "
                            f"({names})")
    return members[0]


def _read(path: Path, limit: int | None = None) -> bytes:
    """The CSV text of a .csv, .csv.gz or .zip (the first ``limit`` bytes, or all)."""
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf, zf.open(_zip_member(zf, path)) as fh:
                return fh.read() if limit is None else fh.read(limit)
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        with open(path, "rb") as fh:
            return fh.read() if limit is None else fh.read(limit)
    except DataFileError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as exc:
        kind = "zip" if name.endswith(".zip") else "gzip" if name.endswith(".gz") else "file"
        raise DataFileError(f"{path.name}: cannot read the {kind} ({reason(exc)}); expected {CSV_EXPECTED}"
                            ) from exc


def _first_line(data: bytes, path: Path) -> str:
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    try:
        text = line.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path.name}: not a text CSV ({reason(exc)}); expected {CSV_EXPECTED}") from exc
    return text


def _layout(first: str, path: Path) -> tuple[str, list[str] | None]:
    """``("binance", None)`` for a header-less kline file, ``("header", names)`` otherwise."""
    if not first:
        raise DataFileError(f"{path.name}: no rows (the file is empty); expected {CSV_EXPECTED}")
    fields = [f.strip() for f in first.split(",")]
    if re.match(_INTEGER, fields[0]):
        if len(fields) != len(BINANCE_COLUMNS):
            raise DataFileError(f"{path.name}: no header row, and {len(fields)} columns instead of the "
                                f"{len(BINANCE_COLUMNS)} of a Binance kline CSV; expected {CSV_EXPECTED}")
        return "binance", None
    return "header", fields


def _columns(names: list[str], path: Path) -> tuple[str, list[str]]:
    """The time column and the open..volume columns, as named in the header."""
    by_low: dict[str, str] = {}
    for n in names:
        by_low.setdefault(n.strip().strip('"').lower(), n)
    time_col = next((by_low[c] for c in TIME_COLUMNS if c in by_low), None)
    missing = [c for c in VALUE_COLUMNS if c not in by_low]
    if time_col is None:
        missing.insert(0, "a time column (timestamp/time/date/open_time)")
    if missing or time_col is None:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise DataFileError(f"{path.name}: missing column(s) {', '.join(missing)} (header: {shown}); "
                            f"expected {CSV_EXPECTED}")
    return time_col, [by_low[c] for c in VALUE_COLUMNS]


def csv_layout(path: str | Path) -> str:
    """``"binance"`` (header-less kline file) or ``"header"``; :class:`DataFileError` when the file
    is not a bar CSV (read from its first line only)."""
    path = Path(path)
    check_file(path)
    kind, names = _layout(_first_line(_read(path, _PEEK_BYTES), path), path)
    if names is not None:
        _columns(names, path)
    return kind


def _row_no(index: int, header: bool) -> int:
    return index + (2 if header else 1)


def _first_bad(column: pa.Array, ok: pa.Array) -> int:
    """Index of the first row where ``ok`` is false."""
    return pc.index(pc.fill_null(ok, const(True, pa.bool_())), const(False, pa.bool_())).as_py()


def _epoch_to_ns(ints: pa.Array, name: str, path: Path) -> pa.Array:
    """Epoch integers to ns, each by its magnitude: s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns."""
    if (pc.min(ints).as_py() or 0) < 0:
        raise DataFileError(f"{path.name}: column {name!r} has a negative epoch time; expected times after 1970")

    def lt(x: int) -> pa.Array:
        return pc.less(ints, const(x))

    i64 = pa.int64()
    mult = pc.if_else(lt(10**11), const(10**9, i64), pc.if_else(
        lt(10**14), const(10**6, i64), pc.if_else(lt(10**17), const(10**3, i64), const(1, i64))))
    try:
        return pc.multiply_checked(ints, mult)
    except pa.ArrowInvalid as exc:
        raise DataFileError(f"{path.name}: column {name!r}: epoch time out of range ({reason(exc)})") from exc


def _times(col: pa.Array, name: str, path: Path, header: bool) -> pa.Array:
    """A time column (text) to int64 ns: epoch integers or ISO 8601 (naive = UTC)."""
    expected = "expected ISO 8601 times or epoch seconds/ms/us"
    is_int = pc.match_substring_regex(col, _INTEGER)
    if pc.all(pc.fill_null(is_int, const(True, pa.bool_()))).as_py():
        try:
            ints = pc.cast(col, pa.int64())
        except pa.ArrowInvalid as exc:
            raise DataFileError(f"{path.name}: column {name!r}: {reason(exc)}; {expected}") from exc
        return _epoch_to_ns(ints, name, path)
    if pc.any(is_int).as_py():  # some rows epoch numbers, others not
        i = _first_bad(col, pc.invert(is_int))
        raise DataFileError(f"{path.name}: column {name!r} mixes epoch numbers and other text (row "
                            f"{_row_no(i, header)}: {col[i].as_py()!r}); {expected}")
    for target in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):
        try:
            return pc.cast(col, target).cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    # find the first value that reads as neither (one of them can only be a format mix-up)
    for i, value in enumerate(col.to_pylist()):
        if value is None:
            continue
        ok = False
        for target in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):
            try:
                pc.cast(col.slice(i, 1), target)
                ok = True
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        if not ok:
            raise DataFileError(f"{path.name}: column {name!r}: cannot read {value[:40]!r} (row "
                                f"{_row_no(i, header)}) as a time; {expected}")
    raise DataFileError(f"{path.name}: column {name!r} mixes times with and without a zone offset; {expected}")


def _numbers(col: pa.Array, name: str, path: Path, header: bool) -> pa.Array:
    """Decimal text, checked and without trailing fractional zeros (nulls stay: skipped later)."""
    ok = pc.match_substring_regex(col, _NUMBER)
    if not pc.all(pc.fill_null(ok, const(True, pa.bool_()))).as_py():
        i = _first_bad(col, ok)
        raise DataFileError(f"{path.name}: column {name!r}: {str(col[i].as_py())[:40]!r} (row "
                            f"{_row_no(i, header)}) is not a number; expected decimal numbers")
    # "70070.53000000" -> "70070.53", "1.00000000" -> "1" (the same value, the shortest text)
    col = pc.replace_substring_regex(col, r"^([+-]?[0-9]*\.[0-9]*?)0+$", r"\1")
    return pc.replace_substring_regex(col, r"\.$", "")


def load_bars_csv(path: str | Path, symbol: str | None = None, interval_s: int | None = None) -> BarFile:
    """Read a Binance kline CSV or a plain OHLCV CSV (``.csv``, ``.csv.gz``, ``.zip``) into a
    :class:`BarFile` (see the module doc); rows with bad values are skipped and counted as for
    feather files (:func:`claire.marketdata.bars.build_bar_file`)."""
    import pyarrow.csv as pcsv  # here: only CSV files need it

    path = Path(path)
    check_file(path)
    symbol = normalize_symbol(symbol) if symbol else symbol_from_path(path)
    data = _read(path)
    _, names = _layout(_first_line(data, path), path)
    header = names is not None
    if names is None:
        time_col, value_cols = "open_time", list(VALUE_COLUMNS)
        read_opts = pcsv.ReadOptions(column_names=list(BINANCE_COLUMNS), use_threads=False)
    else:
        time_col, value_cols = _columns(names, path)
        read_opts = pcsv.ReadOptions(use_threads=False)
    wanted = [time_col, *value_cols]
    invalid: list[tuple[int | None, int, int, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    try:
        table = pcsv.read_csv(
            pa.BufferReader(data), read_options=read_opts,
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(wanted, pa.string()),
                                                include_columns=wanted, strings_can_be_null=True),
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataFileError(f"{path.name}: not a readable CSV ({reason(exc)}); expected {CSV_EXPECTED}") from exc
    finally:
        del data
    if invalid:
        number, want, got, text = invalid[0]
        where = f"line {number}" if number is not None else "a row"
        more = f" (and {len(invalid) - 1} more)" if len(invalid) > 1 else ""
        raise DataFileError(f"{path.name}: {where} has {got} columns instead of {want}{more}: {text[:60]!r}; "
                            "truncated or not a bar CSV")
    if table.num_rows == 0:
        raise DataFileError(f"{path.name}: no rows (a header only); expected {CSV_EXPECTED}")
    cols = {c: pc.utf8_trim_whitespace(table[c].combine_chunks()) for c in wanted}
    ts = _times(cols[time_col], time_col, path, header)
    values = [_numbers(cols[c], c, path, header) for c in value_cols]
    floats = [pc.cast(v, pa.float64()) for v in values]
    return build_bar_file(path, symbol, interval_s, ts, values, floats, Counter(), rows=table.num_rows)

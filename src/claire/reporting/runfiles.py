"""Run files: trades.csv, fills.csv, equity.csv, risk_events.csv, signals.csv, summary.json (see README);
data_quality.csv for runs on MEXC data.

The CSVs are written column by column: each column becomes a list of strings (times, exact
decimals, text), then the rows are joined in one go. The bytes are those of ``csv.writer`` with
its default dialect (``,``, CRLF line ends, quotes only where a field needs them), which a test
checks against that writer on a real run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain, compress, islice, repeat
from operator import add, contains, eq, is_not, sub
from pathlib import Path
from typing import Any

import msgspec

from claire.events.time import NS_PER_SEC
from claire.reporting.recorder import snapshot_rows

TRADES_COLUMNS = ["symbol", "side", "quantity", "entry_time", "entry_price", "exit_time", "exit_price", "fees", "pnl"]
FILLS_COLUMNS = ["time", "fill_id", "order_id", "signal_id", "symbol", "side", "status", "order_type", "quantity",
                 "price", "fee", "liquidity", "reference_price", "slippage_bps", "latency_ms",
                 "cum_quantity", "leaves_quantity", "reason"]
EQUITY_COLUMNS = ["time", "equity", "cash", "realized_pnl", "unrealized_pnl", "fees", "total_exposure_pct",
                  "drawdown_pct", "high_water_mark", "daily_pnl", "num_positions", "reason"]
RISK_COLUMNS = ["time", "risk_event_id", "signal_id", "symbol", "check", "action", "passed", "value", "limit",
                "reason", "trading_state", "requested_quantity", "approved_quantity", "order_id", "checks"]
SIGNALS_COLUMNS = ["time", "signal_id", "symbol", "side", "price", "confidence", "quantity", "reduce_only",
                   "strategy", "strategy_version", "market_time", "metadata"]
QUALITY_COLUMNS = ["time", "symbol", "kind", "cause", "from_time", "to_time", "bars_repaired", "details"]

_EOL = "\r\n"  # csv.writer's default line terminator
_UNSET = object()
_HM = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]  # minute of the day -> "HH:MM:"
_SS = [f"{s:02d}" for s in range(60)]
_PASS, _FAIL = "=pass", "=FAIL"


def _s(x: Any) -> str:
    """One value as text: None empty, Decimal exact without exponent, anything else ``str``."""
    if x is None:
        return ""
    if isinstance(x, Decimal):
        s = str(x)  # the same digits as format(x, "f") unless str chose an exponent
        return format(x, "f") if "E" in s else s
    return str(x)


class _Fields(list[str]):
    """A column's texts as they go into the file (quoted where a field needs it): ``_lines``
    does not look at them again."""


def _values(col: Iterable[Any]) -> list[str]:
    """``_s`` over a column: ``str`` of the values in C (``map``), then the few texts that ``_s``
    writes otherwise are redone with it (a Decimal that ``str`` gives with an exponent, and None:
    ``str`` gives ``"None"``, which no Decimal, number or bool gives). A column that holds the
    same object row after row (a snapshot carries the cash, fees and high-water mark of the last
    fill until the next one) is converted once per run of one object. Quoted where needed (no
    Decimal, number or bool needs it)."""
    col = col if isinstance(col, list | tuple) else list(col)
    n = len(col)
    probe = min(n, _PROBE)
    if probe < 2 or 4 * sum(map(is_not, islice(col, 1, probe), col)) > probe:  # (mostly) new objects
        return _clean(col, list(map(str, col)))
    starts = [0, *compress(range(1, n), map(is_not, islice(col, 1, None), col))]  # where a run begins
    firsts = list(map(col.__getitem__, starts))
    texts = _clean(firsts, list(map(str, firsts)))
    lengths = map(sub, [*islice(starts, 1, None), n], starts)
    return _Fields(chain.from_iterable(map(repeat, texts, lengths)))


_PROBE = 256  # rows a column is sampled on for runs of one object


def _clean(col: Sequence[Any], out: list[str]) -> list[str]:
    """``out`` (``str`` of each value of ``col``) made ``_s`` of each value, quoted where needed.
    Only the texts with an exponent (a Decimal's: redone without it; the same text, the same
    Decimal, so each is formatted once) and ``"None"`` (None: empty) can differ from ``_s``;
    neither holds a character that needs quotes, so the quoting looks at ``out`` as it was."""
    blob = "".join(out)
    if "E" in blob:
        plain: dict[str, str] = {}
        for i in compress(range(len(out)), map(contains, out, repeat("E"))):
            x = col[i]
            if type(x) is Decimal:
                text = plain.get(out[i])
                if text is None:
                    text = plain[out[i]] = format(x, "f")
                out[i] = text
            else:
                out[i] = _s(x)
    if "None" in blob:
        for i in compress(range(len(out)), map(eq, out, repeat("None"))):
            out[i] = _s(col[i])
    return _quoted(out, blob)


def _text(col: Iterable[Any]) -> list[str]:
    """Text fields (ids, symbols, reasons, enum values): None empty."""
    return [x if type(x) is str else _s(x) for x in col]


_MAX_NS = 253_402_300_800 * NS_PER_SEC  # 10000-01-01: beyond, strftime's year has five digits


def _times(col: Iterable[int | None]) -> list[str]:
    """ISO 8601 UTC like ``iso_from_ns`` (milliseconds etc. only when present); None empty.

    Times since 1970 (the times of a run) in one go: numpy splits them into day and second of
    the day; each distinct day (``"2026-03-23T"``) and second (``"12:10:00Z"``) is written
    once, and each row is its two texts put together; sub-second times (none in a run of bars)
    are written one by one. Any other column (None, negative, beyond the year 9999) goes
    through ``_times_each``."""
    col = col if isinstance(col, list | tuple) else list(col)
    n = len(col)
    if n < 2 or None in col:
        return _times_each(col)
    import numpy as np  # (imported by pyarrow already in the commands that write run files)

    try:
        ns = np.fromiter(col, dtype=np.int64, count=n)
    except (OverflowError, TypeError, ValueError):
        return _times_each(col)
    if ns.min() < 0 or ns.max() >= _MAX_NS:
        return _times_each(col)
    secs, rem = np.divmod(ns, NS_PER_SEC)
    day, sod = np.divmod(secs, 86_400)
    first_day, last_day = int(day.min()), int(day.max())
    if last_day - first_day > n:  # days far apart (not the times of a run)
        return _times_each(col)
    day_text = [datetime.fromtimestamp(d * 86_400, tz=UTC).strftime("%Y-%m-%dT")
                for d in range(first_day, last_day + 1)]
    seconds, which = np.unique(sod, return_inverse=True)
    hm, ss = _HM, _SS
    sod_text = [f"{hm[s // 60]}{ss[s % 60]}Z" for s in seconds.tolist()]
    rest = list(map(sod_text.__getitem__, which.tolist()))
    for i in np.flatnonzero(rem).tolist():
        s, r = int(sod[i]), int(rem[i])
        rest[i] = f"{hm[s // 60]}{ss[s % 60]}.{f'{r:09d}'.rstrip('0')}Z"
    return _Fields(map(add, map(day_text.__getitem__, (day - first_day).tolist()), rest))


def _times_each(col: Iterable[int | None]) -> list[str]:
    """``_times`` one value at a time (any int, and None)."""
    out: list[str] = []
    append = out.append
    days: dict[int, str] = {}
    hm, ss = _HM, _SS
    prev: Any = _UNSET
    text = ""
    for ns in col:
        if ns != prev:
            prev = ns
            if ns is None:
                text = ""
            else:
                secs, rem = divmod(ns, NS_PER_SEC)
                day, sod = divmod(secs, 86_400)
                d = days.get(day)
                if d is None:
                    d = days[day] = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%dT")
                m, s = divmod(sod, 60)
                if rem:
                    text = f"{d}{hm[m]}{ss[s]}.{f'{rem:09d}'.rstrip('0')}Z"
                else:
                    text = d + hm[m] + ss[s] + "Z"
        append(text)
    return _Fields(out)


def _quoted(col: list[str], blob: str | None = None) -> list[str]:
    """Quote the fields that need it, as csv.QUOTE_MINIMAL does (delimiter, quote, CR or LF).
    ``blob``: the fields joined, when the caller has it."""
    if type(col) is _Fields:
        return col
    if blob is None:
        blob = "".join(col)
    if "," not in blob and '"' not in blob and "\n" not in blob and "\r" not in blob:
        return _Fields(col)
    return _Fields([f'"{v.replace(chr(34), chr(34) * 2)}"' if ("," in v or '"' in v or "\n" in v or "\r" in v)
                    else v for v in col])


def _lines(cols: list[list[str]]) -> str:
    """The rows of the columns, each with its line end."""
    cols = [_quoted(c) for c in cols]
    rows = _EOL.join(map(",".join, zip(*cols, strict=True)))
    return rows + _EOL if rows else ""


def _write_csv(path: Path, header: Sequence[str], cols: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        fh.write(",".join(header) + _EOL)
        fh.write(_lines(cols))


def _write_parts(path: Path, header: Sequence[str], items: Sequence[Any],
                 columns: Callable[[Sequence[Any]], list[list[str]]], chunk: int = 8192) -> None:
    """Like :func:`_write_csv` with ``columns(items)``, made and written in parts of ``chunk``
    items (the text of one part at a time in memory)."""
    with path.open("w", newline="") as fh:
        fh.write(",".join(header) + _EOL)
        for start in range(0, len(items), chunk):
            fh.write(_lines(columns(items[start:start + chunk])))


def _trades(trips: Sequence[Any]) -> list[list[str]]:
    return [_text([t.symbol for t in trips]), _text([t.side for t in trips]), _values([t.quantity for t in trips]),
            _times([t.entry_time for t in trips]), _values([t.entry_price for t in trips]),
            _times([t.exit_time for t in trips]), _values([t.exit_price for t in trips]),
            _values([t.fees for t in trips]), _values([t.pnl for t in trips])]


def _fills(rs: Sequence[Any]) -> list[list[str]]:
    return [_times([r.ts_event for r in rs]), _text([r.id for r in rs]), _text([r.order_id for r in rs]),
            _text([r.signal_id for r in rs]), _text([r.symbol for r in rs]), [r.side for r in rs],
            [r.status for r in rs], [r.order_type for r in rs], _values([r.quantity for r in rs]),
            _values([r.price for r in rs]), _values([r.fee for r in rs]), [r.liquidity for r in rs],
            _values([r.reference_price for r in rs]), _values([r.slippage_bps for r in rs]),
            [str(r.latency_ns / 1e6) for r in rs], _values([r.cum_quantity for r in rs]),
            _values([r.leaves_quantity for r in rs]), _text([r.reason for r in rs])]


def _equity(rows: Sequence[tuple[Any, ...]]) -> list[list[str]]:
    """From ``Recorder.snapshot_rows`` (the fields of ``SNAPSHOT_ROW``, in the order of the columns)."""
    ts, eq, cash, real, unreal, fees, exp, dd, hwm, daily, npos, reason = zip(*rows, strict=True)
    return [_times(ts), _values(eq), _values(cash), _values(real), _values(unreal), _values(fees), _values(exp),
            _values(dd), _values(hwm), _values(daily), _values(npos), _text(reason)]


def _risk(es: Sequence[Any]) -> list[list[str]]:
    return [_times([e.ts_event for e in es]), _text([e.id for e in es]), _text([e.signal_id for e in es]),
            _text([e.symbol for e in es]), [e.check for e in es], [e.action for e in es],
            _values([e.passed for e in es]), _values([e.value for e in es]), _values([e.limit for e in es]),
            _text([e.reason for e in es]), [e.trading_state for e in es], _values([e.requested_quantity for e in es]),
            _values([e.approved_quantity for e in es]), _text([e.order_id for e in es]),
            [";".join([c.check + (_PASS if c.passed else _FAIL) for c in e.checks]) for e in es]]


_json = msgspec.json.Encoder(decimal_format="string", order="sorted")


def _json_text(d: dict[str, Any]) -> str:
    return _json.encode(d).decode() if d else ""


def _signals(ss: Sequence[Any]) -> list[list[str]]:
    return [_times([s.ts_event for s in ss]), _text([s.id for s in ss]), _text([s.symbol for s in ss]),
            [str(s.side) for s in ss], _values([s.price for s in ss]), _values([s.confidence for s in ss]),
            _values([s.quantity for s in ss]), _values([s.reduce_only for s in ss]), _text([s.strategy for s in ss]),
            _text([s.strategy_version for s in ss]), _times([s.market_ts or None for s in ss]),
            [_json_text(s.metadata) for s in ss]]


def _quality(rs: Sequence[Any]) -> list[list[str]]:
    return [_times([r.ts_recv or None for r in rs]), _text([r.symbol for r in rs]), _text([r.kind for r in rs]),
            _text([r.cause for r in rs]), _times([r.from_ts for r in rs]), _times([r.to_ts for r in rs]),
            _values([r.bars_repaired for r in rs]), [_json_text(r.details) for r in rs]]


def write_data_quality(out: Path | str, records: Sequence[Any]) -> Path:
    """``data_quality.csv`` in ``out``: one row per data-quality record of a MEXC run."""
    path = Path(out) / "data_quality.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_parts(path, QUALITY_COLUMNS, list(records), _quality)
    return path


def write_run_files(out: Path | str, recorder: Any, summary: dict[str, Any]) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_parts(out / "trades.csv", TRADES_COLUMNS, recorder.round_trips, _trades)
    _write_parts(out / "fills.csv", FILLS_COLUMNS, recorder.results, _fills)
    _write_parts(out / "equity.csv", EQUITY_COLUMNS, snapshot_rows(recorder), _equity)
    _write_parts(out / "risk_events.csv", RISK_COLUMNS, recorder.risk_events, _risk)
    _write_parts(out / "signals.csv", SIGNALS_COLUMNS, getattr(recorder, "signals", []), _signals)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return out

"""EventWriter: every event into the database exactly once, in batches, surviving restarts.

- Batches: events are buffered and written ``batch_size`` at a time, one transaction per batch.
  PostgreSQL: a small batch (fewer than ``COPY_MIN_ROWS`` rows for every table; what a live
  service flushes after each read) is sent as one pipeline of set-based statements
  (``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING``, prepared by the driver)
  followed by ``COMMIT``: one round trip per batch. A large batch goes in by ``COPY`` (binary
  format, dumped by psycopg's C dumpers; the writer's own text format when a value is not of
  its column's Python type).
  SQLite: executemany.
- Idempotent: every insert is ``ON CONFLICT DO NOTHING`` on the event id (``COPY`` first runs
  optimistically; a key already stored makes it fail, and the batch is redone skipping the
  stored keys); derived rows (order status, positions) are recomputed from stored rows, so
  delivering anything twice changes nothing, and retrying a batch whose commit was lost is safe.
- Bad records: an event that fails validation or a constraint goes to ``dead_letters`` with
  the reason and its raw payload; the rest of the batch is written (on a database error the
  batch is retried event by event, each in a SAVEPOINT, to isolate the bad one).
- Out-of-order delivery: a child whose parent row is not there yet (an order before its signal,
  a fill before its order) is held in ``pending_events`` (in the same transaction, so a restart
  keeps it) and inserted when the parent arrives; after ``orphan_timeout`` seconds, or at
  :meth:`EventWriter.close`, it is dead-lettered with the reason.
- Checkpoints: :meth:`EventWriter.save_checkpoint` commits the position and opaque state in the
  same transaction as the events written before it.
- Database restarts: on a lost connection the writer reconnects with capped exponential backoff
  and retries the uncommitted batch. On PostgreSQL the writer keeps one connection of the pool
  for itself (no checkout and ping per batch); it is replaced after an error or a long idle.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from operator import itemgetter
from typing import Any

import msgspec
from sqlalchemy import Table, and_, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError

from claire.events import (
    Alert,
    Bar,
    DecodeError,
    Event,
    Order,
    OrderResult,
    PortfolioSnapshot,
    QuoteTick,
    RiskEvent,
    Signal,
    TradeTick,
    decode,
    encode,
)
from claire.storage import rows as R
from claire.storage.database import Database, StorageError, one_line
from claire.storage.models import metadata
from claire.storage.types import (
    Dec,
    JSONType,
    UTCDateTime,
    json_dumps,
    ns_from_dt,
    sqlite_dec,
    sqlite_dt,
)

log = logging.getLogger("claire.storage.writer")

MARKET_DATA = (Bar, TradeTick, QuoteTick)
T = metadata.tables


# --- backend-specific bulk statements ---------------------------------------------------


def _pg_array_type(col) -> str:
    t = col.type
    if isinstance(t, Dec):
        return "numeric[]"
    if isinstance(t, UTCDateTime):
        return "timestamptz[]"
    if t is JSONType or col.name in ("metadata", "details", "config", "params", "positions"):
        return "text[]::jsonb[]"
    name = type(t).__name__.lower()
    if "bool" in name:
        return "bool[]"
    if "biginteger" in name:
        return "int8[]"
    if "integer" in name:
        return "int8[]"
    if "binary" in name or "blob" in name or "variant" in name:
        return "bytea[]"
    return "text[]"


def _pg_bin_oid(col) -> int:
    """The oid whose binary dumper writes the column's values in binary COPY (the server reads
    every field with the column's own receive function; the oid only picks the dumper)."""
    from psycopg.postgres import types

    t = col.type
    if isinstance(t, Dec):
        name = "numeric"
    elif isinstance(t, UTCDateTime):
        name = "timestamptz"
    elif _kind(col) == "json":
        name = "bytea"  # b"\x01" + the JSON text: jsonb's binary form
    else:
        n = type(t).__name__.lower()
        if "bool" in n:
            name = "bool"
        elif "biginteger" in n:
            name = "int8"
        elif "integer" in n:
            name = "int4"
        elif "binary" in n or "blob" in n or "variant" in n:
            name = "bytea"
        else:
            name = "text"
    return types[name].oid


def _kind(col) -> str:
    t = col.type
    if isinstance(t, Dec):
        return "dec"
    if isinstance(t, UTCDateTime):
        return "dt"
    if col.name in ("metadata", "details", "config", "params", "positions"):
        return "json"
    name = type(t).__name__.lower()
    if "bool" in name:
        return "bool"
    return "plain"


@dataclass
class _Spec:
    table: Table
    cols: tuple[str, ...]
    conflict: str = "DO NOTHING"  # ON CONFLICT clause tail
    key: str | None = None  # single-column key: PostgreSQL writes these tables with COPY
    kinds: tuple[str, ...] = field(init=False)
    pg_sql: str = field(init=False)
    lite_sql: str = field(init=False)
    values: Callable[[dict[str, Any]], tuple] = field(init=False)  # a row's values, in cols order
    copy_line: Callable[[dict[str, Any]], str] = field(init=False)  # a row as a line of COPY text

    def __post_init__(self) -> None:
        c = self.table.c
        self.kinds = tuple(_kind(c[n]) for n in self.cols)
        self.values = itemgetter(*self.cols) if len(self.cols) > 1 else lambda r: (r[self.cols[0]],)
        fns = tuple(
            {"dec": str, "dt": _pg_ts_text, "json": _copy_json, "bool": _copy_bool}.get(k, _copy_plain)
            for k in self.kinds
        )
        values = self.values

        def copy_line(row: dict[str, Any]) -> str:
            vals = values(row)
            return "\t".join(["\\N" if v is None else f(v) for v, f in zip(vals, fns, strict=True)]) + "\n"

        self.copy_line = copy_line
        # binary COPY: the type each value is dumped as (psycopg's C dumpers); JSON goes as
        # jsonb's binary form (version byte + text), dumped as bytes
        self.bin_oids = tuple(_pg_bin_oid(c[n]) for n in self.cols)
        self.json_idx = tuple(i for i, k in enumerate(self.kinds) if k == "json")
        names = ", ".join(self.cols)
        self.bin_sql = f"COPY {self.table.name} ({names}) FROM STDIN (FORMAT BINARY)"
        arrays = ", ".join(f"%b::{_pg_array_type(c[n])}" for n in self.cols)
        self.copy_sql = f"COPY {self.table.name} ({names}) FROM STDIN"
        self.pg_sql = f"INSERT INTO {self.table.name} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT {self.conflict}"
        marks = ", ".join("?" for _ in self.cols)
        self.lite_sql = (
            f"INSERT INTO {self.table.name} ({names}) VALUES ({marks}) ON CONFLICT {self.conflict}"
        )


def _spec(
    name: str, conflict: str = "DO NOTHING", skip: Sequence[str] = ("created_at",), copy: bool = False
) -> _Spec:
    table = T[name]
    cols = tuple(c.name for c in table.columns if c.name not in skip)
    pk = [c.name for c in table.primary_key.columns]
    return _Spec(table, cols, conflict, key=pk[0] if copy and len(pk) == 1 else None)


USE_COPY = True
# PostgreSQL: COPY in binary format (psycopg's C dumpers); else the writer's own text format
COPY_BINARY = True


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_str(s: str) -> str:
    """Text in COPY's text format (backslash, tab, newline and carriage return escaped)."""
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        return s.translate(_COPY_ESCAPES)
    return s


def _copy_plain(v: Any) -> str:
    t = type(v)
    if t is str:
        return _copy_str(v)
    if t is bytes or t is bytearray or t is memoryview:
        return "\\\\x" + bytes(v).hex()  # bytea's hex form, its backslash escaped
    return _copy_str(str(v))


def _copy_json(v: Any) -> str:
    return _copy_str(json_dumps(v))


def _copy_bool(v: Any) -> str:
    return "t" if v else "f"


_ts_text_last: tuple[Any, str] = (None, "")


def _pg_ts_text(value: datetime) -> str:
    """A timestamp's text for COPY (ISO 8601 with its offset; cheaper than the driver's dumper),
    remembering the last one (an event's times repeat)."""
    global _ts_text_last
    last = _ts_text_last
    if value is last[0]:
        return last[1]
    text = value.isoformat()
    _ts_text_last = (value, text)
    return text


# PostgreSQL: a table with at least this many rows in one batch is written with COPY (cheaper per
# row, but a round trip of its own); below it, every statement of the batch and the COMMIT go in
# one pipeline (one round trip).
COPY_MIN_ROWS = 100
# PostgreSQL: the writer's own connection goes back to the pool (and is pinged on the next
# checkout) after this many idle seconds.
IDLE_RECHECK_S = 30.0
# PostgreSQL, pipeline: the inserts of a batch go in one statement (JSON rows per table)
PIPELINE_BULK = True


def _upsert_all(keys: str, table: str, cols: Sequence[str], where: str = "") -> str:
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys.split(", "))
    return f"({keys}) DO UPDATE SET {sets}" + (f" WHERE {where}" if where else "")


_POS_COLS = tuple(c.name for c in T["positions"].columns)
_CP_COLS = ("run_id", "position", "state", "updated_at")

# Order status from its stored fills, set-based (PostgreSQL; SQLite does the same in Python).
# An order whose row already holds these values is left alone (no new row version).
_ORDER_SET = {
    "status": """CASE
    WHEN a.q >= o.quantity OR a.any_final THEN 'filled'
    WHEN COALESCE(u.terminal, CASE WHEN o.status IN ('rejected', 'cancelled') THEN o.status END) IS NOT NULL
      THEN COALESCE(u.terminal, o.status)
    WHEN a.q > 0 THEN 'partially_filled'
    ELSE o.status END""",
    "filled_quantity": "COALESCE(a.q, 0)",
    "avg_fill_price": "CASE WHEN a.q > 0 THEN a.n / a.q END",
    "fees": "COALESCE(a.f, 0)",
    "reason": "COALESCE(u.reason, o.reason)",
    "updated_at": "u.updated",
}
_PG_UPDATE_ORDERS = f"""
UPDATE orders o SET
  {", ".join(f"{k} = {v}" for k, v in _ORDER_SET.items())}
FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[]) AS u(id, terminal, reason, updated)
LEFT JOIN LATERAL (
  SELECT sum(quantity) AS q, sum(notional) AS n, sum(fee) AS f, bool_or(status = 'filled') AS any_final
  FROM trades WHERE order_id = u.id
) a ON true
WHERE o.id = u.id
  AND ({", ".join(f"o.{k}" for k in _ORDER_SET)}) IS DISTINCT FROM ({", ".join(_ORDER_SET.values())})
"""

_PG_FLATTEN_POSITIONS = """
UPDATE positions SET side = 'flat', quantity = 0, cost_basis = 0, unrealized_pnl = 0, exposure = 0,
  exposure_pct = 0, updated_at = %(ts)s, snapshot_id = %(snap)s
WHERE run_id = %(run)s AND side <> 'flat' AND updated_at <= %(ts)s AND symbol <> ALL(%(symbols)s::text[])
"""
_PG_PENDING_COUNT = "SELECT count(*), min(first_seen) FROM pending_events WHERE run_id = %s"

SPECS: dict[str, _Spec] = {
    "signals": _spec("signals", copy=True),
    "market_conditions": _spec("market_conditions", copy=True),
    "strategy_versions": _spec("strategy_versions", skip=("created_at", "description")),
    "orders": _spec("orders", copy=True),
    "trades": _spec("trades", copy=True),
    "execution_analysis": _spec("execution_analysis", copy=True),
    "portfolio_snapshots": _spec("portfolio_snapshots", copy=True),
    "positions": _Spec(
        T["positions"],
        _POS_COLS,
        _upsert_all("run_id, symbol", "positions", _POS_COLS, "positions.updated_at <= excluded.updated_at"),
    ),
    "risk_events": _spec("risk_events", copy=True),
    "alerts": _spec("alerts", copy=True),
    "dead_letters": _spec("dead_letters", conflict="(digest) DO NOTHING", skip=("id",)),
    "pending_events": _spec("pending_events", skip=()),
    "checkpoints": _Spec(T["checkpoints"], _CP_COLS, _upsert_all("run_id", "checkpoints", _CP_COLS)),
}


def _pg_error(conn: Connection, statement: str | None, exc: Exception) -> DBAPIError:
    """A psycopg error as SQLAlchemy's (IntegrityError, OperationalError...); a broken connection
    is invalidated, so the retry gets a new one."""
    import psycopg

    try:
        raw = conn.connection.dbapi_connection
        broken = bool(raw is None or raw.closed or getattr(raw, "broken", False))
    except Exception:  # already invalidated
        broken = True
    if broken and not conn.invalidated:
        conn.invalidate()
    return DBAPIError.instance(statement, None, exc, psycopg.Error, connection_invalidated=broken)


def _pg_exec(
    conn: Connection, tx: _Tx, sql: str, params: Any, key: str | None = None, *, last: bool = False
) -> Any:
    """Run (or, in a pipeline, queue) one statement on PostgreSQL; its row count goes to
    ``tx`` under ``key`` once known. ``last``: in a pipeline, the statement may wait until the
    inserts of the batch are sent (an update of rows they insert or use)."""
    import psycopg

    if last and tx.mode == "pipeline":
        tx.last.append((sql, params, key))
        return None
    if tx.bulk:
        _pg_send_bulk(conn, tx)
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, params)
    except psycopg.Error as exc:
        raise _pg_error(conn, sql, exc) from exc
    if key is not None:
        tx.count(cur, key)
    return cur


_BULK_SQL: dict[tuple[str, ...], str] = {}


def _bulk_sql(tables: tuple[str, ...]) -> str:
    """One statement inserting into several tables, each from a JSON array of row objects
    (``jsonb_populate_recordset``); returns the rows inserted per table. Foreign keys are checked
    at the end of the statement, so a child may come with its parent."""
    sql = _BULK_SQL.get(tables)
    if sql is None:
        parts = []
        for i, name in enumerate(tables):
            spec = SPECS[name]
            cols = ", ".join(spec.cols)
            parts.append(
                f"t{i} AS (INSERT INTO {name} ({cols}) SELECT {cols} FROM "
                f"jsonb_populate_recordset(NULL::{name}, %s::jsonb) ON CONFLICT {spec.conflict} RETURNING 1)"
            )
        counts = ", ".join(f"(SELECT count(*) FROM t{i})" for i in range(len(tables)))
        sql = _BULK_SQL[tables] = f"WITH {', '.join(parts)} SELECT {counts}"
    return sql


_BYTEA = {name: tuple(c for c in spec.cols if _pg_array_type(spec.table.c[c]) == "bytea[]") for name, spec in SPECS.items()}
_bulk_encoder = msgspec.json.Encoder(decimal_format="number")


def _pg_send_bulk(conn: Connection, tx: _Tx) -> None:
    """Send the inserts collected in ``tx.bulk`` as one statement (pipeline mode)."""
    import psycopg

    by_table: dict[str, tuple[str | None, list[dict[str, Any]]]] = {}
    for key, spec, rows in tx.bulk:
        name = spec.table.name
        if name in by_table:
            by_table[name][1].extend(rows)
        else:
            by_table[name] = (key, list(rows))
    tx.bulk = []
    tables = tuple(by_table)
    params = []
    for name in tables:
        rows = by_table[name][1]
        bytea = _BYTEA[name]
        if bytea:  # bytea's text form: \x and hex digits
            rows = [{**r, **{c: None if r[c] is None else "\\x" + bytes(r[c]).hex() for c in bytea}} for r in rows]
        params.append(_bulk_encoder.encode(rows).decode())
    sql = _bulk_sql(tables)
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, params)
    except psycopg.Error as exc:
        raise _pg_error(conn, sql, exc) from exc
    tx.add_multi(cur, [by_table[name][0] for name in tables])


def _pg_autocommit_off(raw: Any) -> None:
    """Back to the driver's transactions after a pipeline (rolled back if it failed)."""
    import psycopg
    from psycopg.pq import TransactionStatus

    try:
        if raw.closed or getattr(raw, "broken", False):
            return
        if raw.info.transaction_status != TransactionStatus.IDLE:
            raw.rollback()
        raw.autocommit = False
    except psycopg.Error:
        log.debug("resetting the connection after a pipeline failed", exc_info=True)


def _pg_fetch(conn: Connection, sql: str, params: Any) -> list[tuple]:
    """Run a query on PostgreSQL and return its rows (in a pipeline: syncs it)."""
    import psycopg

    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchall()
    except psycopg.Error as exc:
        raise _pg_error(conn, sql, exc) from exc


def _insert(
    conn: Connection,
    tx: _Tx,
    key: str | None,
    spec: _Spec,
    rows: list[dict[str, Any]],
    *,
    track: bool = False,
    fresh: bool = False,
) -> set[str] | None:
    """Insert rows (dicts) with the spec's ON CONFLICT clause; the number of rows changed goes
    to ``tx`` under ``key``.

    PostgreSQL, a table with a single key and at least ``COPY_MIN_ROWS`` rows in a batch that may
    use COPY: returns the keys written when ``track`` (else None: nothing known about which rows
    were new); ``fresh`` says the rows cannot be stored yet (children of parents this transaction
    inserted)."""
    if not rows:
        return set() if track else None
    if conn.dialect.name == "postgresql":
        if spec.key and USE_COPY and tx.copy and len(rows) >= COPY_MIN_ROWS:
            new = _pg_copy_insert(conn, tx, spec, rows, fresh)
            tx.add(key, len(new))
            return new if track else None
        if tx.mode == "pipeline" and PIPELINE_BULK:
            tx.bulk.append((key, spec, rows))  # sent with the next statement or the COMMIT
            return None
        columns = []
        for name, kind in zip(spec.cols, spec.kinds, strict=True):
            vals = [r[name] for r in rows]
            if kind == "json":
                vals = [None if v is None else json_dumps(v) for v in vals]
            columns.append(vals)
        _pg_exec(conn, tx, spec.pg_sql, tuple(columns), key)
        return None
    conv: list[Callable[[Any], Any] | None] = []
    for kind in spec.kinds:
        conv.append(
            {
                "dec": sqlite_dec,
                "dt": sqlite_dt,
                "json": lambda v: None if v is None else json_dumps(v),
                "bool": lambda v: None if v is None else int(v),
            }.get(kind)
        )
    params = [
        tuple(r[n] if f is None else f(r[n]) for n, f in zip(spec.cols, conv, strict=True)) for r in rows
    ]
    raw = conn.connection.dbapi_connection
    before = raw.total_changes
    conn.exec_driver_sql(spec.lite_sql, params)
    tx.add(key, raw.total_changes - before)
    return None


def _pg_copy_insert(
    conn: Connection,
    tx: _Tx,
    spec: _Spec,
    rows: list[dict[str, Any]],
    fresh: bool,
) -> set[str]:
    """COPY the rows straight into the table (COPY is much cheaper than parameters; binary
    format, formatted before the COPY starts, else text streamed as it is formatted); returns
    the keys written.

    Optimistic by default: a key already stored makes the COPY fail with a unique violation and
    the writer redoes the batch in careful mode (``tx.careful``), where the keys already stored
    are looked up first and skipped. A row that a concurrent writer stores in between still
    fails the COPY: the batch is then retried row by row, with ON CONFLICT."""
    import psycopg

    table = spec.table.name
    key = spec.key
    raw = conn.connection.dbapi_connection
    try:
        with raw.cursor() as cur:
            stored: set[str] = set()
            if tx.careful and not fresh:
                ids = [r[key] for r in rows]
                cur.execute(f"SELECT {key} FROM {table} WHERE {key} = ANY(%b::text[])", (ids,))
                stored = {r[0] for r in cur.fetchall()}
                if stored:
                    tx.found_stored = True
            seen: set[str] = set()
            take = []
            for i, r in enumerate(rows):
                k = r[key]
                if k in stored or k in seen:
                    continue
                seen.add(k)
                take.append(i)
            if not take:
                return seen
            if COPY_BINARY:
                data = _pg_binary_copy_data(cur, spec, rows, take)
                if data is not None:
                    with cur.copy(spec.bin_sql) as cp:
                        cp.write(data)
                    return seen
            line = spec.copy_line
            with cur.copy(spec.copy_sql) as cp:
                # sent in pieces as they are formatted: the server parses while the rest is made
                out: list[str] = []
                for i in take:
                    out.append(line(rows[i]))
                    if len(out) >= 64:
                        cp.write("".join(out))
                        out = []
                if out:
                    cp.write("".join(out))
            return seen
    except psycopg.Error as exc:
        raise _pg_error(conn, spec.copy_sql, exc) from exc


def _pg_binary_copy_data(cur: Any, spec: _Spec, rows: list[dict[str, Any]], take: list[int]) -> bytearray | None:
    """The rows in COPY's binary format, formatted by psycopg's C dumpers (numeric, timestamptz,
    text...: cheaper for the server than text); None if a value is not of its column's Python
    type (the caller then writes text, where every value goes through ``str``)."""
    import psycopg
    from psycopg import adapters
    from psycopg._copy_base import _binary_signature, _binary_trailer, format_row_binary
    from psycopg.adapt import PyFormat, Transformer
    from psycopg.pq import Format

    # bytea by oid is the DB-API Binary dumper (Python); the C one dumps bytes
    cur.adapters.register_dumper(None, adapters.get_dumper(bytes, PyFormat.BINARY))
    tf = Transformer(cur)
    tf.set_dumper_types(spec.bin_oids, Format.BINARY)
    values = spec.values
    json_idx = spec.json_idx
    enc = _bulk_encoder.encode
    buf = bytearray(_binary_signature)
    try:
        for i in take:
            vals = values(rows[i])
            if json_idx:
                vals = list(vals)
                for j in json_idx:
                    v = vals[j]
                    if v is not None:
                        vals[j] = b"\x01" + enc(v)
            format_row_binary(vals, tf, buf)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError, psycopg.DataError):
        # e.g. a str column holding an int, a numeric beyond the binary format's range
        log.debug("binary COPY of %s not possible; writing text", spec.table.name, exc_info=True)
        return None
    buf += _binary_trailer
    return buf


def _chunks(ids: Sequence[Any], n: int = 900) -> Iterable[Sequence[Any]]:
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


# --- caches -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderInfo:
    ts: int
    signal_id: str
    reference_price: Decimal | None
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class SignalInfo:
    ts: int
    price: Decimal


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


@dataclass
class _Item:
    """One buffered entry: an event (with its raw payload when it came as bytes)."""

    event: Any
    raw: bytes | None = None
    source: str = "writer"
    final: bool = False  # from the orphan sweep: dead-letter instead of holding again
    pending: bool = False  # came from pending_events (delete it there once handled)

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        try:
            return encode(self.event)
        except Exception:
            return repr(self.event).encode()


@dataclass
class _Dead:
    source: str
    reason: str
    payload: bytes
    event_type: str | None = None
    event_id: str | None = None


def _event_type(ev: Any) -> str:
    return type(ev).__name__


def _convert(ev: Any, run_id: str) -> Any:
    """An event's row(s), pure Python (no database): Signal -> (signal row, market conditions
    row); Order -> row; OrderResult -> (status, trade row or None); PortfolioSnapshot, RiskEvent,
    Alert -> row. A record that cannot be stored gives its exception (the dead-letter reason)."""
    try:
        if isinstance(ev, Signal):
            row = R.signal_row(ev, run_id)
            return row, R.market_condition_row(ev, run_id, row["price"], row["ts"])
        if isinstance(ev, Order):
            return R.order_row(ev, run_id)
        if isinstance(ev, OrderResult):
            status = R.result_status(ev)
            return status, (R.trade_row(ev, run_id, status) if status in R.FILL else None)
        if isinstance(ev, PortfolioSnapshot):
            return R.snapshot_row(ev, run_id)
        if isinstance(ev, RiskEvent):
            return R.risk_row(ev, run_id)
        if isinstance(ev, Alert):
            return R.alert_row(ev, run_id)
    except (R.RowError, TypeError, ValueError) as exc:
        return exc
    return None


def _unique_violation(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "23505"


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class _Tx:
    """What one transaction learned; merged into the writer's caches only after commit.

    ``mode`` (PostgreSQL): ``pipeline`` (statements queued, one round trip with the COMMIT),
    ``copy`` (large tables by optimistic COPY), ``careful`` (COPY after skipping stored keys),
    ``rows`` (row by row, in SAVEPOINTs); SQLite: ``sqlite``."""

    def __init__(self, mode: str = "rows") -> None:
        self.mode = mode
        self.copy = mode in ("copy", "careful")
        self.careful = mode == "careful"
        self.signals: dict[str, SignalInfo] = {}
        self.orders: dict[str, OrderInfo] = {}
        self.strategies: set[tuple[str, str]] = set()
        self.counts: dict[str, int] = {}
        self.dead: list[_Dead] = []
        self.held = 0
        self.resolved = 0
        self.found_stored = False  # careful COPY met keys already stored
        self.pending_touched = False  # pending_events written or deleted
        self.pending_cur: Any = None  # PostgreSQL: the count of pending_events after the batch
        self._deferred: list[tuple[Any, str]] | None = [] if mode == "pipeline" else None
        self.bulk: list[tuple[str | None, _Spec, list[dict[str, Any]]]] = []  # pipeline: inserts to send
        self._multi: list[tuple[Any, list[str | None]]] = []  # bulk statements and their count keys
        self.last: list[tuple[str, Any, str | None]] = []  # pipeline: statements after the inserts

    def add(self, key: str | None, n: int) -> None:
        if not n or key is None:
            return
        if key == "held":
            self.held += n
        else:
            self.counts[key] = self.counts.get(key, 0) + n

    def add_multi(self, cur: Any, keys: list[str | None]) -> None:
        self._multi.append((cur, keys))
        if self._deferred is None:
            self.collect()

    def count(self, cur: Any, key: str) -> None:
        """The row count of a statement (in a pipeline: known after the sync)."""
        if self._deferred is None:
            self.add(key, max(cur.rowcount, 0))
        else:
            self._deferred.append((cur, key))

    def collect(self) -> None:
        for cur, key in self._deferred or ():
            self.add(key, max(cur.rowcount, 0))
        if self._deferred:
            self._deferred = []
        for cur, keys in self._multi:
            for key, n in zip(keys, cur.fetchone(), strict=True):
                self.add(key, int(n))
        self._multi = []


_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _pg_numeric_div(n: Decimal, q: Decimal) -> Decimal:
    """PostgreSQL's ``numeric / numeric`` to the digit: the result scale of its
    ``select_div_scale`` (at least 16 significant digits, not less than either input's scale),
    rounded half away from zero (``q`` > 0)."""
    en = n.as_tuple().exponent
    eq = q.as_tuple().exponent
    if n:  # weight (base 10 000) of the first non-zero digit, and that digit
        w1 = n.adjusted() // 4
        f1 = int(_EXACT.scaleb(abs(n), -4 * w1))
    else:
        w1 = f1 = 0
    w2 = q.adjusted() // 4
    f2 = int(_EXACT.scaleb(q, -4 * w2))
    qweight = w1 - w2 - (1 if f1 <= f2 else 0)
    rscale = min(max(16 - qweight * 4, -en, -eq, 0), 1000)
    num = int(_EXACT.scaleb(abs(n), -en))  # the coefficients
    den = int(_EXACT.scaleb(q, -eq))
    e = en - eq + rscale
    if e >= 0:
        num *= 10**e
    else:
        den *= 10**-e
    r, rem = divmod(num, den)
    if 2 * rem >= den:
        r += 1
    out = _EXACT.scaleb(Decimal(r), -rscale)
    return -out if n < 0 and r else out


def _pg_order_final(
    row: dict[str, Any], results: list[tuple[Any, str, dict[str, Any] | None]]
) -> dict[str, Any]:
    """A new order row (a copy) with the values ``_PG_UPDATE_ORDERS`` would set from the
    results of the same batch (its only stored ones: it is new), exactly as PostgreSQL computes
    them, so that the update finds nothing to change."""
    row = dict(row)
    fills = [t for _, _, t in results if t is not None]
    terminal = reason = None
    ts = results[0][0].ts_event
    for ev, status, trow in results:
        ts = max(ts, ev.ts_event)
        if trow is None:
            terminal, reason = status, ev.reason
    status = "pending"
    if fills:
        q = _EXACT.create_decimal(0)
        n = _EXACT.create_decimal(0)
        f = _EXACT.create_decimal(0)
        for t in fills:
            q = _EXACT.add(q, t["quantity"])
            n = _EXACT.add(n, t["notional"])
            f = _EXACT.add(f, t["fee"])
        if q >= row["quantity"] or any(t["status"] == "filled" for t in fills):
            status = "filled"
        elif terminal:
            status = terminal
        elif q > 0:
            status = "partially_filled"
        row["filled_quantity"] = q
        row["avg_fill_price"] = _pg_numeric_div(n, q) if q > 0 else None
        row["fees"] = f
    elif terminal:
        status = terminal
    row["status"] = status
    if reason is not None:
        row["reason"] = reason
    row["updated_at"] = R.dt_from_ns(ts)
    return row


# --- the writer -------------------------------------------------------------------------


class EventWriter:
    """Writes events of one run. Not a background thread: ``write`` buffers and flushes when the
    batch is full or ``flush_interval`` seconds have passed; call :meth:`flush`/:meth:`close`.
    Thread-safe (one lock), so a second thread may call :meth:`flush`.
    """

    def __init__(
        self,
        database: Database | str,
        run_id: str,
        *,
        batch_size: int = 500,
        flush_interval: float | None = 1.0,
        mode: str = "paper",
        config: dict[str, Any] | None = None,
        description: str | None = None,
        orphan_timeout: float = 60.0,
        max_slippage_bps: Decimal | int | str = 200,
        retry_initial_delay: float = 0.05,
        retry_max_delay: float = 5.0,
        retry_timeout: float | None = 300.0,
        upgrade: bool = True,
        cache_size: int = 200_000,
    ) -> None:
        if not run_id:
            raise ValueError("run_id is required")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._own_db = not isinstance(database, Database)
        self.db = Database(database) if self._own_db else database
        self.run_id = run_id
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.orphan_timeout = orphan_timeout
        self.max_slippage_bps = Decimal(str(max_slippage_bps))
        self.retry_initial_delay = retry_initial_delay
        self.retry_max_delay = retry_max_delay
        self.retry_timeout = retry_timeout
        self._lock = threading.RLock()
        self._buffer: list[_Item] = []
        self._dead: list[_Dead] = []
        self._first_buffered: float | None = None
        self._signals: _LRU = _LRU(cache_size)
        self._orders: _LRU = _LRU(cache_size)
        self._strategies: set[tuple[str, str]] = set()
        self._pending_count = 0
        self._pending_oldest: float | None = None
        self._closed = False
        self._conn: Connection | None = None  # PostgreSQL: the writer's own connection
        self._conn_used = 0.0
        self._careful = False  # PostgreSQL: COPY looks up stored keys first (after a duplicate)
        self.stats: dict[str, int] = {
            "events": 0,
            "flushes": 0,
            "retries": 0,
            "row_by_row": 0,
            "dead_letters": 0,
            "held": 0,
            "resolved": 0,
            "market_data_skipped": 0,
        }
        try:
            self._with_retry(self._startup, upgrade, mode, config, description)
        except BaseException:
            if self._own_db:
                self.db.dispose()
            raise

    # --- setup --------------------------------------------------------------------------
    def _startup(
        self, upgrade: bool, mode: str, config: dict[str, Any] | None, description: str | None
    ) -> None:
        from claire.storage import migrate

        if self.db.current_revision() != migrate.head():
            if not upgrade:
                raise StorageError(
                    f"database {self.db.safe_url} is at schema {self.db.current_revision() or 'none'}, "
                    f"not {migrate.head()}: run `claire db upgrade`"
                )
            self.db.upgrade()
        runs = T["runs"]
        with self.db.begin() as conn:
            exists = conn.execute(select(runs.c.id).where(runs.c.id == self.run_id)).first()
        if exists is None:
            try:
                with self.db.begin(write=True) as conn:
                    conn.execute(
                        runs.insert().values(
                            id=self.run_id,
                            mode=mode,
                            config=R.as_json(config or {}),
                            description=description,
                            started_at=datetime.now(UTC),
                        )
                    )
            except IntegrityError:
                # another writer of the same run created it meanwhile; a bad mode is still an error
                with self.db.begin() as conn:
                    if conn.execute(select(runs.c.id).where(runs.c.id == self.run_id)).first() is None:
                        raise
        with self.db.begin() as conn:
            pe = T["pending_events"]
            n, oldest = conn.execute(
                select(func.count(), func.min(pe.c.first_seen)).where(pe.c.run_id == self.run_id)
            ).one()
        self._pending_count = int(n or 0)
        self._pending_oldest = oldest.timestamp() if oldest is not None else None

    # --- public API ---------------------------------------------------------------------
    def write(self, event: Any) -> None:
        """Buffer one event (market data is not stored and is ignored)."""
        with self._lock:
            self._check_open()
            self._add(_Item(event))

    def write_many(self, events: Iterable[Any]) -> None:
        with self._lock:
            self._check_open()
            for ev in events:
                self._add(_Item(ev))

    def write_raw(self, payload: bytes, source: str = "raw") -> None:
        """Decode a wire payload and buffer it; what cannot be decoded is dead-lettered."""
        with self._lock:
            self._check_open()
            try:
                ev = decode(payload)
            except DecodeError as exc:
                reason = str(exc)
                log.warning("dead letter from %s: %s", source, reason)
                self._dead.append(_Dead(source, reason, bytes(payload)))
                self._maybe_flush()
                return
            self._add(_Item(ev, raw=bytes(payload), source=source))

    def flush(self) -> None:
        """Write everything buffered (one transaction, retried on a lost connection)."""
        with self._lock:
            self._flush(None)

    def save_checkpoint(self, position: int, state: bytes) -> None:
        """Flush, and record ``(position, state)`` for this run in the same transaction."""
        if position < 0:
            raise ValueError("position must be >= 0")
        with self._lock:
            self._check_open()
            self._flush((int(position), bytes(state)))

    def load_checkpoint(self) -> tuple[int, bytes] | None:
        from claire.storage.queries import load_checkpoint

        return load_checkpoint(self.db, self.run_id)

    def close(self, *, end_run: bool = False, dead_letter_pending: bool = True) -> None:
        """Flush; dead-letter children still without parent (unless told not to); release the
        database if the writer opened it. If the database stays unreachable (StorageError after
        ``retry_timeout``) the writer stays open with its buffer, so ``close`` can be retried."""
        with self._lock:
            if self._closed:
                return
            self._flush(None)
            if dead_letter_pending:
                self._flush(None, sweep_all=True)
            if end_run:
                self._with_retry(self._end_run, T["runs"])
            self._closed = True
            self._release_conn()
            if self._own_db:
                self.db.dispose()

    def _end_run(self, runs: Table) -> None:
        with self.db.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == self.run_id).values(ended_at=datetime.now(UTC)))

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        self.close(dead_letter_pending=exc_type is None)

    @property
    def buffered(self) -> int:
        return len(self._buffer) + len(self._dead)

    # --- buffering ----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("EventWriter is closed")

    def _add(self, item: _Item) -> None:
        ev = item.event
        if isinstance(ev, MARKET_DATA):
            self.stats["market_data_skipped"] += 1
            return
        if not isinstance(ev, Event):
            raise TypeError(f"not an event: {type(ev).__name__}")
        self._buffer.append(item)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if self._first_buffered is None:
            self._first_buffered = now
        if len(self._buffer) + len(self._dead) >= self.batch_size or (
            self.flush_interval is not None and now - self._first_buffered >= self.flush_interval
        ):
            self._flush(None)

    # --- flushing -----------------------------------------------------------------------
    def _sweep_due(self) -> bool:
        return (
            self._pending_count > 0
            and self._pending_oldest is not None
            and time.time() - self._pending_oldest >= self.orphan_timeout
        )

    def _flush(self, checkpoint: tuple[int, bytes] | None, sweep_all: bool = False) -> None:
        sweep = sweep_all or self._sweep_due()
        if not self._buffer and not self._dead and checkpoint is None and not (sweep and self._pending_count):
            return
        self._commit(self._buffer, self._dead, checkpoint, sweep, sweep_all)
        self._buffer = []
        self._dead = []
        self._first_buffered = None

    def _commit(
        self,
        items: list[_Item],
        dead: list[_Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool,
        sweep_all: bool = False,
    ) -> None:
        """Write one batch (retried on a lost connection) and merge what it learned."""
        if not sweep and self._sweep_due():
            sweep = True
        tx = self._with_retry(self._write_batch, items, dead, checkpoint, sweep, sweep_all)
        # committed: merge what the transaction learned
        for k, v in tx.signals.items():
            self._signals.put(k, v)
        for k, v in tx.orders.items():
            self._orders.put(k, v)
        self._strategies |= tx.strategies
        for k, v in tx.counts.items():
            self.stats[k] = self.stats.get(k, 0) + v
        self.stats["events"] += len(items)
        self.stats["flushes"] += 1
        self.stats["dead_letters"] += len(tx.dead)
        self.stats["held"] += tx.held
        self.stats["resolved"] += tx.resolved
        if tx.pending_cur is not None:  # counted in the batch's own transaction
            n, oldest = tx.pending_cur.fetchone()
            self._pending_count = int(n or 0)
            self._pending_oldest = oldest.timestamp() if oldest is not None else None
        elif tx.held or tx.resolved or sweep:
            self._refresh_pending()

    def _refresh_pending(self) -> None:
        pe = T["pending_events"]
        try:
            with self.db.connect() as conn:
                n, oldest = conn.execute(
                    select(func.count(), func.min(pe.c.first_seen)).where(pe.c.run_id == self.run_id)
                ).one()
        except DBAPIError:
            return  # only an optimisation; the next flush tries again
        self._pending_count = int(n or 0)
        self._pending_oldest = oldest.timestamp() if oldest is not None else None

    def _with_retry(self, fn: Callable[..., Any], *args: Any) -> Any:
        delay = self.retry_initial_delay
        start = time.monotonic()
        while True:
            try:
                return fn(*args)
            except DBAPIError as exc:
                if not _retriable(exc):
                    raise
                self._release_conn()
                waited = time.monotonic() - start
                if self.retry_timeout is not None and waited >= self.retry_timeout:
                    raise StorageError(
                        f"database {self.db.safe_url} unavailable for {waited:.0f}s: {one_line(exc)}"
                    ) from exc
                self.stats["retries"] += 1
                log.warning("database unavailable (%s); retrying in %.2fs", one_line(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)

    # --- connection ---------------------------------------------------------------------
    def _release_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead connection: the pool discards it
                log.debug("closing the writer's connection failed", exc_info=True)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One write transaction, committed on success. PostgreSQL: on the writer's own
        connection (taken from the pool once; given back after an error or a long idle, so the
        pool pings it again); driver errors come out as SQLAlchemy's."""
        if not self.db.is_postgres:
            with self.db.begin(write=True) as conn:
                yield conn
            return
        import psycopg

        now = time.monotonic()
        conn = self._conn
        if conn is not None and (conn.closed or conn.invalidated or now - self._conn_used > IDLE_RECHECK_S):
            self._release_conn()
            conn = None
        if conn is None:
            conn = self._conn = self.db.engine.connect()
        self._conn_used = now
        try:
            with conn.begin():
                yield conn
        except psycopg.Error as exc:
            err = _pg_error(conn, None, exc)
            if err.connection_invalidated:
                self._release_conn()
            raise err from exc
        except DBAPIError as exc:
            if _retriable(exc):
                self._release_conn()
            raise

    def _mode(self, items: list[_Item]) -> str:
        """PostgreSQL: one pipeline for a small batch, COPY for a large one."""
        if not self.db.is_postgres:
            return "sqlite"
        if len(items) >= COPY_MIN_ROWS:
            per_type: dict[type, int] = {}
            for it in items:
                t = type(it.event)
                per_type[t] = per_type.get(t, 0) + 1
            if max(per_type.values()) >= COPY_MIN_ROWS:
                return "careful" if self._careful else "copy"
        return "pipeline"

    def _write_batch(
        self,
        items: list[_Item],
        dead: list[_Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool,
        sweep_all: bool,
    ) -> _Tx:
        mode = self._mode(items)
        try:
            return self._write_once(mode, items, dead, checkpoint, sweep, sweep_all)
        except (IntegrityError, DataError) as exc:
            if _retriable(exc):
                raise
            first = exc
        if mode == "copy" and _unique_violation(first):
            # a key already stored (a redelivery): skip stored keys from now on
            log.info("batch of %d has events stored before; writing it again without them", len(items))
            self._careful = True
            try:
                return self._write_once("careful", items, dead, checkpoint, sweep, sweep_all)
            except (IntegrityError, DataError) as exc:
                if _retriable(exc):
                    raise
                first = exc
        log.warning("batch of %d failed (%s); retrying event by event", len(items), one_line(first))
        self.stats["row_by_row"] += 1
        with self._transaction() as conn:
            tx = _Tx("rows" if self.db.is_postgres else "sqlite")
            work = self._with_pending(conn, items, sweep, sweep_all)
            for item in work:
                sub = _Tx(tx.mode)
                sub.signals, sub.orders, sub.strategies = (
                    dict(tx.signals),
                    dict(tx.orders),
                    set(tx.strategies),
                )
                try:
                    with conn.begin_nested():
                        self._apply(conn, sub, [item])
                except (IntegrityError, DataError) as exc:
                    if _retriable(exc):
                        raise
                    self._dead_item(tx, item, f"rejected by the database: {one_line(exc)}")
                    if item.pending:
                        self._delete_pending(conn, tx, [item.event.id])
                    continue
                tx.signals, tx.orders, tx.strategies = sub.signals, sub.orders, sub.strategies
                for k, v in sub.counts.items():
                    tx.add(k, v)
                tx.dead.extend(sub.dead)
                tx.held += sub.held
                tx.resolved += sub.resolved
                tx.pending_touched |= sub.pending_touched
            self._finish(conn, tx, dead, checkpoint, sweep)
        return tx

    def _write_once(
        self,
        mode: str,
        items: list[_Item],
        dead: list[_Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool,
        sweep_all: bool,
    ) -> _Tx:
        tx = _Tx(mode)
        with self._transaction() as conn:
            if mode == "pipeline":
                # BEGIN, every statement and the COMMIT queued: one round trip (a lookup of
                # parents missing from the caches syncs it earlier). BEGIN is sent explicitly:
                # the driver's implicit one would sync the pipeline on its own.
                raw = conn.connection.dbapi_connection
                raw.autocommit = True
                try:
                    with raw.pipeline():
                        raw.cursor().execute("BEGIN")
                        work = self._with_pending(conn, items, sweep, sweep_all)
                        self._apply(conn, tx, work)
                        self._finish(conn, tx, dead, checkpoint, sweep)
                        if tx.bulk:
                            _pg_send_bulk(conn, tx)
                        for sql, params, key in tx.last:
                            _pg_exec(conn, tx, sql, params, key)
                        raw.cursor().execute("COMMIT")
                finally:
                    _pg_autocommit_off(raw)
            else:
                work = self._with_pending(conn, items, sweep, sweep_all)
                self._apply(conn, tx, work)
                self._finish(conn, tx, dead, checkpoint, sweep)
        tx.collect()
        if mode == "careful" and not tx.found_stored:
            self._careful = False
        return tx

    def _finish(
        self,
        conn: Connection,
        tx: _Tx,
        dead: list[_Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool = False,
    ) -> None:
        now = datetime.now(UTC)
        all_dead = list(dead) + tx.dead
        if all_dead:
            rows = []
            for d in all_dead:
                digest = hashlib.sha256(d.source.encode() + b"\0" + d.payload).hexdigest()
                rows.append(
                    {
                        "digest": digest,
                        "run_id": self.run_id,
                        "source": d.source,
                        "event_type": d.event_type,
                        "event_id": d.event_id,
                        "reason": d.reason,
                        "payload": d.payload,
                        "first_seen": now,
                    }
                )
            _insert(conn, tx, None, SPECS["dead_letters"], rows)
        tx.dead = all_dead
        if checkpoint is not None:
            pos, state = checkpoint
            _insert(
                conn,
                tx,
                None,
                SPECS["checkpoints"],
                [{"run_id": self.run_id, "position": pos, "state": state, "updated_at": now}],
            )
        if conn.dialect.name == "postgresql" and (tx.pending_touched or sweep):
            tx.pending_cur = _pg_exec(conn, tx, _PG_PENDING_COUNT, (self.run_id,))

    # --- pending children ---------------------------------------------------------------
    def _with_pending(
        self, conn: Connection, items: list[_Item], sweep: bool, sweep_all: bool
    ) -> list[_Item]:
        """The batch plus held children whose parent is in it (recursively), and, on a sweep,
        held children past the timeout (to be inserted if their parent is there by now, else
        dead-lettered)."""
        if not self._pending_count:
            return list(items)
        pg = conn.dialect.name == "postgresql"
        pe = T["pending_events"]
        work = list(items)
        seen: set[str] = set()
        parents = {it.event.id for it in items if isinstance(it.event, Signal | Order)}
        while parents:
            found: list[Any] = []
            for chunk in _chunks(sorted(parents)):
                if pg:
                    found += _pg_fetch(
                        conn,
                        "SELECT event_id, payload FROM pending_events WHERE run_id = %s AND parent_id = ANY(%s)",
                        (self.run_id, list(chunk)),
                    )
                else:
                    found += conn.execute(
                        select(pe.c.event_id, pe.c.payload).where(
                            pe.c.run_id == self.run_id, pe.c.parent_id.in_(chunk)
                        )
                    ).all()
            parents = set()
            for eid, payload in found:
                if eid in seen:
                    continue
                seen.add(eid)
                item = self._pending_item(payload)
                work.append(item)
                if isinstance(item.event, Order):
                    parents.add(item.event.id)
        if sweep:
            cutoff = None if sweep_all else datetime.fromtimestamp(time.time() - self.orphan_timeout, UTC)
            if pg:
                sql = "SELECT event_id, payload FROM pending_events WHERE run_id = %s"
                params: tuple = (self.run_id,)
                if cutoff is not None:
                    sql += " AND first_seen <= %s"
                    params += (cutoff,)
                swept = _pg_fetch(conn, sql + " ORDER BY first_seen", params)
            else:
                q = select(pe.c.event_id, pe.c.payload).where(pe.c.run_id == self.run_id)
                if cutoff is not None:
                    q = q.where(pe.c.first_seen <= cutoff)
                swept = conn.execute(q.order_by(pe.c.first_seen)).all()
            for eid, payload in swept:
                if eid not in seen:
                    seen.add(eid)
                    item = self._pending_item(payload)
                    item.final = True
                    work.append(item)
        return work

    @staticmethod
    def _pending_item(payload: bytes) -> _Item:
        return _Item(decode(bytes(payload)), raw=bytes(payload), source="pending", pending=True)

    def _delete_pending(self, conn: Connection, tx: _Tx, ids: list[str]) -> None:
        tx.pending_touched = True
        if conn.dialect.name == "postgresql":
            _pg_exec(conn, tx, "DELETE FROM pending_events WHERE event_id = ANY(%s)", (list(ids),))
            return
        pe = T["pending_events"]
        for chunk in _chunks(ids):
            conn.execute(delete(pe).where(pe.c.event_id.in_(chunk)))

    def _hold(self, conn: Connection, tx: _Tx, items: list[tuple[_Item, str, str]]) -> None:
        """Hold children whose parent is missing; final ones (swept) are dead-lettered."""
        rows = []
        gone = []
        for item, parent_table, parent_id in items:
            ev = item.event
            if item.final:
                reason = (
                    f"parent {parent_table[:-1]} {parent_id} never arrived "
                    f"(held {self.orphan_timeout:g}s or until close)"
                )
                self._dead_item(tx, item, reason)
                gone.append(ev.id)
                continue
            if item.pending:
                continue  # still held, row stays
            rows.append(
                {
                    "event_id": ev.id,
                    "run_id": self.run_id,
                    "parent_table": parent_table,
                    "parent_id": parent_id,
                    "event_type": _event_type(ev),
                    "payload": item.payload(),
                    "first_seen": datetime.now(UTC),
                }
            )
        if gone:
            self._delete_pending(conn, tx, gone)
        if rows:
            tx.pending_touched = True
            _insert(conn, tx, "held", SPECS["pending_events"], rows)

    def _rows(self, tx: _Tx, items: list[_Item], run_id: str) -> list[dict[str, Any]]:
        """The rows of ``items``; an item that does not convert is dead-lettered instead."""
        rows = []
        for item in items:
            row = _convert(item.event, run_id)
            if isinstance(row, Exception):
                self._dead_item(tx, item, str(row))
            else:
                rows.append(row)
        return rows

    def _dead_item(self, tx: _Tx, item: _Item, reason: str) -> None:
        ev = item.event
        log.warning("dead letter %s %s: %s", _event_type(ev), getattr(ev, "id", "?"), reason)
        tx.dead.append(_Dead(item.source, reason, item.payload(), _event_type(ev), getattr(ev, "id", None)))

    # --- parents ------------------------------------------------------------------------
    def _known_signals(self, conn: Connection, tx: _Tx, ids: set[str]) -> None:
        missing = sorted(i for i in ids if i not in tx.signals and i not in self._signals)
        if not missing:
            return
        if conn.dialect.name == "postgresql":
            for sid, ts, price in _pg_fetch(
                conn, "SELECT id, ts, price FROM signals WHERE id = ANY(%s)", (missing,)
            ):
                tx.signals[sid] = SignalInfo(ns_from_dt(ts), price)
            return
        s = T["signals"]
        for chunk in _chunks(missing):
            for sid, ts, price in conn.execute(select(s.c.id, s.c.ts, s.c.price).where(s.c.id.in_(chunk))):
                tx.signals[sid] = SignalInfo(ns_from_dt(ts), price)

    def _signal(self, tx: _Tx, sid: str) -> SignalInfo | None:
        return tx.signals.get(sid) or self._signals.get(sid)

    def _known_orders(self, conn: Connection, tx: _Tx, ids: set[str]) -> None:
        missing = sorted(i for i in ids if i not in tx.orders and i not in self._orders)
        if not missing:
            return
        if conn.dialect.name == "postgresql":
            for oid, ts, sid, ref, qty in _pg_fetch(
                conn,
                "SELECT id, ts, signal_id, reference_price, quantity FROM orders WHERE id = ANY(%s)",
                (missing,),
            ):
                tx.orders[oid] = OrderInfo(ns_from_dt(ts), sid, ref, qty)
            return
        o = T["orders"]
        for chunk in _chunks(missing):
            q = select(o.c.id, o.c.ts, o.c.signal_id, o.c.reference_price, o.c.quantity).where(
                o.c.id.in_(chunk)
            )
            for oid, ts, sid, ref, qty in conn.execute(q):
                tx.orders[oid] = OrderInfo(ns_from_dt(ts), sid, ref, qty)

    def _order(self, tx: _Tx, oid: str) -> OrderInfo | None:
        return tx.orders.get(oid) or self._orders.get(oid)

    # --- applying a batch ---------------------------------------------------------------
    def _apply(self, conn: Connection, tx: _Tx, work: list[_Item]) -> None:
        pg = conn.dialect.name == "postgresql"
        signals: list[_Item] = []
        orders: list[_Item] = []
        results: list[_Item] = []
        snaps: list[_Item] = []
        risks: list[_Item] = []
        alerts: list[_Item] = []
        seen: set[tuple[type, str]] = set()
        for item in work:
            ev = item.event
            key = (type(ev), ev.id)
            if key in seen:
                tx.add("duplicates", 1)
                if item.pending:
                    self._delete_pending(conn, tx, [ev.id])
                continue
            seen.add(key)
            t = type(ev)
            if t is Signal:
                signals.append(item)
            elif t is Order:
                orders.append(item)
            elif t is OrderResult:
                results.append(item)
            elif t is PortfolioSnapshot:
                snaps.append(item)
            elif t is RiskEvent:
                risks.append(item)
            elif t is Alert:
                alerts.append(item)
            elif isinstance(ev, Signal):
                signals.append(item)
            elif isinstance(ev, Order):
                orders.append(item)
            elif isinstance(ev, OrderResult):
                results.append(item)
            elif isinstance(ev, PortfolioSnapshot):
                snaps.append(item)
            elif isinstance(ev, RiskEvent):
                risks.append(item)
            elif isinstance(ev, Alert):
                alerts.append(item)
            else:
                self._dead_item(tx, item, f"event type {_event_type(ev)} is not stored")
        done_pending: list[str] = []
        run_id = self.run_id

        # signals (+ market conditions, strategy versions)
        if signals:
            srows, mrows, vrows = [], [], []
            for item in signals:
                ev = item.event
                prep = _convert(ev, run_id)
                if isinstance(prep, Exception):
                    self._dead_item(tx, item, str(prep))
                    continue
                row, mrow = prep
                srows.append(row)
                mrows.append(mrow)
                key = (row["strategy"], row["strategy_version"])
                if key not in self._strategies and key not in tx.strategies:
                    tx.strategies.add(key)
                    vrows.append(
                        {
                            "strategy": key[0],
                            "version": key[1],
                            "first_run_id": run_id,
                            "first_seen": row["ts"],
                            "params": {},
                        }
                    )
                tx.signals[ev.id] = SignalInfo(ev.ts_event, row["price"])
            new_ids = _insert(conn, tx, "signals", SPECS["signals"], srows, track=True)
            if new_ids is not None and len(new_ids) < len(mrows):
                # a signal stored before already has its market_conditions row
                mrows = [m for m in mrows if m["signal_id"] in new_ids]
            _insert(conn, tx, "market_conditions", SPECS["market_conditions"], mrows, fresh=new_ids is not None)
            _insert(conn, tx, "strategy_versions", SPECS["strategy_versions"], vrows)

        # order results, checked first: a new order is inserted with the status its results of
        # this batch give it (PostgreSQL), so that it needs no update afterwards
        checked: list[tuple[_Item, str, dict[str, Any] | None]] = []
        bad_results: list[tuple[_Item, str]] = []
        by_order: dict[str, list[tuple[Any, str, dict[str, Any] | None]]] = {}
        for item in results:
            ev = item.event
            prep = _convert(ev, run_id)
            if isinstance(prep, Exception):
                bad_results.append((item, str(prep)))
                continue
            status, trow = prep
            checked.append((item, status, trow))
            if pg:
                by_order.setdefault(ev.order_id, []).append((ev, status, trow))

        # orders (parent: signal)
        new_orders: set[str] | None = None
        if orders:
            self._known_signals(conn, tx, {it.event.signal_id for it in orders})
            orows, held = [], []
            for item in orders:
                ev = item.event
                row = _convert(ev, run_id)
                if isinstance(row, Exception):
                    self._dead_item(tx, item, str(row))
                    if item.pending:
                        done_pending.append(ev.id)
                    continue
                if self._signal(tx, ev.signal_id) is None:
                    held.append((item, "signals", ev.signal_id))
                    continue
                if ev.id in by_order:
                    row = _pg_order_final(row, by_order[ev.id])
                orows.append(row)
                tx.orders[ev.id] = OrderInfo(
                    ev.ts_event, ev.signal_id, row["reference_price"], row["quantity"]
                )
                if item.pending:
                    done_pending.append(ev.id)
            new_orders = _insert(conn, tx, "orders", SPECS["orders"], orows, track=True)
            self._hold(conn, tx, held)

        # order results (parent: order): fills -> trades + execution analysis; others -> status
        for item, reason in bad_results:
            self._dead_item(tx, item, reason)
            if item.pending:
                done_pending.append(item.event.id)
        affected: dict[str, dict[str, Any]] = {}
        if checked:
            self._known_orders(conn, tx, {it.event.order_id for it, _, _ in checked})
            trows, erows, held = [], [], []
            fill_items = []
            for item, status, trow in checked:
                ev = item.event
                order = self._order(tx, ev.order_id)
                if order is None:
                    held.append((item, "orders", ev.order_id))
                    continue
                if item.pending:
                    done_pending.append(ev.id)
                a = affected.get(ev.order_id)
                if a is None:
                    a = affected[ev.order_id] = {"terminal": None, "reason": None, "ts": ev.ts_event}
                elif ev.ts_event > a["ts"]:
                    a["ts"] = ev.ts_event
                if trow is None:
                    a["terminal"] = status
                    a["reason"] = ev.reason
                    tx.add("order_results_" + status, 1)
                    continue
                trows.append(trow)
                fill_items.append((trow, ev, order))
            if fill_items:
                self._known_signals(conn, tx, {o.signal_id for _, _, o in fill_items})
                max_bps = self.max_slippage_bps
                for trow, ev, order in fill_items:
                    sig = self._signal(tx, order.signal_id)
                    erows.append(
                        R.execution_row(
                            trow,
                            ev,
                            signal_ts=sig.ts if sig else None,
                            signal_price=sig.price if sig else None,
                            order_ts=order.ts,
                            order_reference=order.reference_price,
                            max_slippage_bps=max_bps,
                        )
                    )
            new_ids = _insert(conn, tx, "trades", SPECS["trades"], trows, track=True)
            if new_ids is not None:  # likewise a stored trade's execution analysis
                erows = [e for e in erows if e["trade_id"] in new_ids]
            _insert(conn, tx, "execution_analysis", SPECS["execution_analysis"], erows, fresh=new_ids is not None)
            self._hold(conn, tx, held)
            if new_orders:  # inserted by this transaction with their final status already
                affected = {k: v for k, v in affected.items() if k not in new_orders}
            if affected:
                self._update_orders(conn, tx, affected)

        # portfolio snapshots (+ positions from the newest one)
        if snaps:
            prow_all, latest = [], None
            newest_with: dict[str, Any] = {}  # symbol -> newest snapshot of the batch holding it
            for item in snaps:
                ev = item.event
                row = _convert(ev, run_id)
                if isinstance(row, Exception):
                    self._dead_item(tx, item, str(row))
                    continue
                prow_all.append(row)
                for p in ev.positions:
                    cur = newest_with.get(p.symbol)
                    if cur is None or ev.ts_event >= cur.ts_event:
                        newest_with[p.symbol] = ev
                if latest is None or ev.ts_event >= latest.event.ts_event:
                    latest = item
            _insert(conn, tx, "portfolio_snapshots", SPECS["portfolio_snapshots"], prow_all)
            if latest is not None:
                # positions follow the newest snapshot; a position opened and closed inside the
                # batch is stored from the newest snapshot that held it, then set flat
                try:
                    pos = R.position_rows(latest.event, run_id)
                    held_syms = {r["symbol"] for r in pos}
                    extra = []
                    for ev in {id(e): e for sym, e in newest_with.items() if sym not in held_syms}.values():
                        extra += [r for r in R.position_rows(ev, run_id)
                                  if r["symbol"] not in held_syms and newest_with[r["symbol"]] is ev]
                except (R.RowError, TypeError, ValueError) as exc:
                    self._dead_item(tx, latest, f"positions: {exc}")
                else:
                    if extra:
                        _insert(conn, tx, "positions", SPECS["positions"], extra)
                    self._apply_positions(conn, tx, latest.event, pos)

        for table, group in (("risk_events", risks), ("alerts", alerts)):
            if group:
                _insert(conn, tx, table, SPECS[table], self._rows(tx, group, run_id))

        # held children now handled (inserted or dead-lettered)
        done_pending += [
            it.event.id for it in work if it.pending and not isinstance(it.event, Order | OrderResult)
        ]
        if done_pending:
            self._delete_pending(conn, tx, done_pending)
            tx.resolved += len(done_pending)

    def _update_orders(self, conn: Connection, tx: _Tx, affected: dict[str, dict[str, Any]]) -> None:
        """Recompute status, filled quantity, average price and fees of the orders touched,
        from the stored fills (idempotent: the same whatever was delivered twice)."""
        t, o = T["trades"], T["orders"]
        ids = sorted(affected)
        if conn.dialect.name == "postgresql":
            _pg_exec(
                conn,
                tx,
                _PG_UPDATE_ORDERS,
                (
                    ids,
                    [affected[i]["terminal"] for i in ids],
                    [affected[i]["reason"] for i in ids],
                    [R.dt_from_ns(affected[i]["ts"]) for i in ids],
                ),
                last=True,
            )
            return
        fills: dict[str, list[tuple[Decimal, Decimal, Decimal, str]]] = {}
        current: dict[str, tuple[Decimal, str, str | None]] = {}
        for chunk in _chunks(ids):
            for oid, q, p, fee, st in conn.execute(
                select(t.c.order_id, t.c.quantity, t.c.price, t.c.fee, t.c.status).where(
                    t.c.order_id.in_(chunk)
                )
            ):
                fills.setdefault(oid, []).append((q, p, fee, st))
            for oid, qty, st, reason in conn.execute(
                select(o.c.id, o.c.quantity, o.c.status, o.c.reason).where(o.c.id.in_(chunk))
            ):
                current[oid] = (qty, st, reason)
        params = []
        for oid in ids:
            if oid not in current:
                continue
            qty, status, reason = current[oid]
            a = affected[oid]
            fl = fills.get(oid, [])
            filled = sum((f[0] for f in fl), R.ZERO)
            notional = sum((f[0] * f[1] for f in fl), R.ZERO)
            fees = sum((f[2] for f in fl), R.ZERO)
            terminal = a["terminal"] or (status if status in R.TERMINAL else None)
            if filled >= qty or any(f[3] == "filled" for f in fl):
                new = "filled"
            elif terminal:
                new = terminal
            elif filled > 0:
                new = "partially_filled"
            else:
                new = status
            params.append(
                {
                    "oid": oid,
                    "status": new,
                    "filled": filled,
                    "avg": (notional / filled) if filled > 0 else None,
                    "fees": fees,
                    "reason": a["reason"] if a["reason"] else reason,
                    "updated": R.dt_from_ns(a["ts"]),
                }
            )
        if params:
            from sqlalchemy import bindparam

            stmt = (
                update(o)
                .where(o.c.id == bindparam("oid"))
                .values(
                    status=bindparam("status"),
                    filled_quantity=bindparam("filled"),
                    avg_fill_price=bindparam("avg"),
                    fees=bindparam("fees"),
                    reason=bindparam("reason"),
                    updated_at=bindparam("updated"),
                )
            )
            conn.execute(stmt, params)

    def _apply_positions(
        self, conn: Connection, tx: _Tx, ev: PortfolioSnapshot, rows: list[dict[str, Any]]
    ) -> None:
        _insert(conn, tx, "positions", SPECS["positions"], rows)
        ts = R.dt_from_ns(ev.ts_event)
        symbols = [r["symbol"] for r in rows]
        if conn.dialect.name == "postgresql":
            _pg_exec(
                conn,
                tx,
                _PG_FLATTEN_POSITIONS,
                {"ts": ts, "snap": ev.id, "run": self.run_id, "symbols": symbols},
                "positions_closed",
                last=True,
            )
            return
        p = T["positions"]
        cond = [p.c.run_id == self.run_id, p.c.side != "flat", p.c.updated_at <= ts]
        if symbols:
            cond.append(p.c.symbol.not_in(symbols))
        res = conn.execute(
            update(p)
            .where(and_(*cond))
            .values(
                side="flat",
                quantity=R.ZERO,
                cost_basis=R.ZERO,
                unrealized_pnl=R.ZERO,
                exposure=R.ZERO,
                exposure_pct=R.ZERO,
                updated_at=ts,
                snapshot_id=ev.id,
            )
        )
        tx.add("positions_closed", max(res.rowcount or 0, 0))

"""Rows into tables, in bulk: the writer's SQL for each backend and write path.

Given the rows of a batch (plain dicts from :mod:`claire.storage.rows`), this module knows how
to get them into a table as cheaply as the backend allows, and nothing about events:

- PostgreSQL, small batch (``pipeline``): the inserts of a batch are queued in ``Tx.bulk`` and
  sent as one statement (a data-modifying CTE per table, each fed by one JSON array through
  ``jsonb_populate_recordset``) with the COMMIT, in one round trip; or, without that, one
  ``INSERT ... SELECT FROM unnest(arrays)`` per table.
- PostgreSQL, large table in a batch (``copy``/``careful``): ``COPY`` in binary format
  (psycopg's C dumpers, JSON pre-encoded by msgspec), the writer's own text format when a value
  does not fit the binary one. Optimistic: a key already stored fails the COPY, and the writer
  redoes the batch in ``careful`` mode, which looks the stored keys up first.
- SQLite: ``executemany``.

Every insert is ``ON CONFLICT`` (:data:`SPECS`), so writing a row twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import msgspec
from sqlalchemy import Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from claire.storage.models import metadata
from claire.storage.records import Tx, log
from claire.storage.types import Dec, JSONType, UTCDateTime, json_dumps, sqlite_dec, sqlite_dt

T = metadata.tables


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
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
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
class Spec:
    """How one table is written: its columns, its ON CONFLICT clause and, built once, every
    statement and value formatter the write paths need (nothing is formatted per batch)."""

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
        self.pg_sql = f"INSERT INTO {self.table.name} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT {self.conflict}"  # noqa: S608 - table and column names come from our own schema, values are bound parameters
        marks = ", ".join("?" for _ in self.cols)
        self.lite_sql = (
            f"INSERT INTO {self.table.name} ({names}) VALUES ({marks}) ON CONFLICT {self.conflict}"  # noqa: S608 - table and column names come from our own schema, values are bound parameters
        )


def _spec(
    name: str, conflict: str = "DO NOTHING", skip: Sequence[str] = ("created_at",), copy: bool = False
) -> Spec:
    table = T[name]
    cols = tuple(c.name for c in table.columns if c.name not in skip)
    pk = [c.name for c in table.primary_key.columns]
    return Spec(table, cols, conflict, key=pk[0] if copy and len(pk) == 1 else None)

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
def _upsert_all(keys: str, table: str, cols: Sequence[str], where: str = "") -> str:
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys.split(", "))
    return f"({keys}) DO UPDATE SET {sets}" + (f" WHERE {where}" if where else "")


_POS_COLS = tuple(c.name for c in T["positions"].columns)
_CP_COLS = ("run_id", "position", "state", "updated_at")

SPECS: dict[str, Spec] = {
    "signals": _spec("signals", copy=True),
    "market_conditions": _spec("market_conditions", copy=True),
    "strategy_versions": _spec("strategy_versions", skip=("created_at", "description")),
    "orders": _spec("orders", copy=True),
    "trades": _spec("trades", copy=True),
    "execution_analysis": _spec("execution_analysis", copy=True),
    "portfolio_snapshots": _spec("portfolio_snapshots", copy=True),
    "positions": Spec(
        T["positions"],
        _POS_COLS,
        _upsert_all("run_id, symbol", "positions", _POS_COLS, "positions.updated_at <= excluded.updated_at"),
    ),
    "risk_events": _spec("risk_events", copy=True),
    "alerts": _spec("alerts", copy=True),
    "dead_letters": _spec("dead_letters", conflict="(digest) DO NOTHING", skip=("id",)),
    "pending_events": _spec("pending_events", skip=()),
    "checkpoints": Spec(T["checkpoints"], _CP_COLS, _upsert_all("run_id", "checkpoints", _CP_COLS)),
}


def pg_error(conn: Connection, statement: str | None, exc: Exception) -> DBAPIError:
    """A psycopg error as SQLAlchemy's (IntegrityError, OperationalError...); a broken connection
    is invalidated, so the retry gets a new one."""
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
    import psycopg

    try:
        raw = conn.connection.dbapi_connection
        broken = bool(raw is None or raw.closed or getattr(raw, "broken", False))
    except Exception:  # already invalidated
        broken = True
    if broken and not conn.invalidated:
        conn.invalidate()
    return DBAPIError.instance(statement, None, exc, psycopg.Error, connection_invalidated=broken)


def pg_exec(
    conn: Connection, tx: Tx, sql: str, params: Any, key: str | None = None, *, last: bool = False
) -> Any:
    """Run (or, in a pipeline, queue) one statement on PostgreSQL; its row count goes to
    ``tx`` under ``key`` once known. ``last``: in a pipeline, the statement may wait until the
    inserts of the batch are sent (an update of rows they insert or use)."""
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
    import psycopg

    if last and tx.mode == "pipeline":
        tx.last.append((sql, params, key))
        return None
    if tx.bulk:
        pg_send_bulk(conn, tx)
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, params)
    except psycopg.Error as exc:
        raise pg_error(conn, sql, exc) from exc
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
                f"t{i} AS (INSERT INTO {name} ({cols}) SELECT {cols} FROM "  # noqa: S608 - table and column names come from our own schema, values are bound parameters
                f"jsonb_populate_recordset(NULL::{name}, %s::jsonb) ON CONFLICT {spec.conflict} RETURNING 1)"
            )
        counts = ", ".join(f"(SELECT count(*) FROM t{i})" for i in range(len(tables)))  # noqa: S608 - names of our own CTEs
        sql = _BULK_SQL[tables] = f"WITH {', '.join(parts)} SELECT {counts}"
    return sql


_BYTEA = {name: tuple(c for c in spec.cols if _pg_array_type(spec.table.c[c]) == "bytea[]") for name, spec in SPECS.items()}
_bulk_encoder = msgspec.json.Encoder(decimal_format="number")


def pg_send_bulk(conn: Connection, tx: Tx) -> None:
    """Send the inserts collected in ``tx.bulk`` as one statement (pipeline mode)."""
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
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
        raise pg_error(conn, sql, exc) from exc
    tx.add_multi(cur, [by_table[name][0] for name in tables])


def pg_autocommit_off(raw: Any) -> None:
    """Back to the driver's transactions after a pipeline (rolled back if it failed)."""
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
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


def pg_fetch(conn: Connection, sql: str, params: Any) -> list[tuple]:
    """Run a query on PostgreSQL and return its rows (in a pipeline: syncs it)."""
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
    import psycopg

    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchall()
    except psycopg.Error as exc:
        raise pg_error(conn, sql, exc) from exc


def insert(
    conn: Connection,
    tx: Tx,
    key: str | None,
    spec: Spec,
    rows: list[dict[str, Any]],
    *,
    track: bool = False,
    fresh: bool = False,
) -> set[str] | None:
    """Insert rows (dicts) with the spec's ON CONFLICT clause; the number of rows changed goes
    to ``tx`` under ``key``.

    PostgreSQL, a table with a single key and at least ``tx.copy_min_rows`` rows in a batch that may
    use COPY: returns the keys written when ``track`` (else None: nothing known about which rows
    were new); ``fresh`` says the rows cannot be stored yet (children of parents this transaction
    inserted)."""
    if not rows:
        return set() if track else None
    if conn.dialect.name == "postgresql":
        if spec.key and tx.copy_min_rows is not None and len(rows) >= tx.copy_min_rows:
            new = _pg_copy_insert(conn, tx, spec, rows, fresh)
            tx.add(key, len(new))
            return new if track else None
        if tx.pipeline_bulk:
            tx.bulk.append((key, spec, rows))  # sent with the next statement or the COMMIT
            return None
        columns = []
        for name, kind in zip(spec.cols, spec.kinds, strict=True):
            vals = [r[name] for r in rows]
            if kind == "json":
                vals = [None if v is None else json_dumps(v) for v in vals]
            columns.append(vals)
        pg_exec(conn, tx, spec.pg_sql, tuple(columns), key)
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
    tx: Tx,
    spec: Spec,
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
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
    import psycopg

    table = spec.table.name
    key = spec.key
    raw = conn.connection.dbapi_connection
    try:
        with raw.cursor() as cur:
            stored: set[str] = set()
            if tx.careful and not fresh:
                ids = [r[key] for r in rows]
                cur.execute(f"SELECT {key} FROM {table} WHERE {key} = ANY(%b::text[])", (ids,))  # noqa: S608 - table and column names come from our own schema, values are bound parameters
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
            if tx.copy_binary:
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
        raise pg_error(conn, spec.copy_sql, exc) from exc


def _pg_binary_copy_data(cur: Any, spec: Spec, rows: list[dict[str, Any]], take: list[int]) -> bytearray | None:
    """The rows in COPY's binary format, formatted by psycopg's C dumpers (numeric, timestamptz,
    text...: cheaper for the server than text); None if a value is not of its column's Python
    type (the caller then writes text, where every value goes through ``str``)."""
    # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without
    import psycopg
    from psycopg import adapters

    # optional fast path: psycopg's binary COPY internals, only on PostgreSQL
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


def chunks(ids: Sequence[Any], n: int = 900) -> Iterable[Sequence[Any]]:
    """``ids`` in pieces of ``n``: SQLite limits the parameters of one statement."""
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


"""What ``claire report --db`` reads of one run: plain rows and dicts (the report is made in
``claire.reporting.report``, the two are joined in ``claire.runtime.report``).

Large tables (portfolio snapshots) are read with the numbers cast in SQL (``float8``, epoch
microseconds), so a million snapshots cost no Decimal or datetime objects."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, text

from claire.storage.database import Database
from claire.storage.types import ns_from_dt

CHUNK = 500


def _us_pg(col: str) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {col}) * 1000000 AS BIGINT)"


def _rows(db: Database, sql: str, **params: Any) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def has_tables(db: Database) -> bool:
    """Whether the database holds claire's tables (a run can be reported from it)."""
    return bool(inspect(db.engine).has_table("runs"))


def latest_run_id(db: Database) -> str | None:
    """The run started last (None: no run in the database)."""
    rows = _rows(db, "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1")
    return rows[0][0] if rows else None


def run_info(db: Database, run_id: str) -> dict[str, Any] | None:
    rows = _rows(db, "SELECT id, mode, started_at, ended_at, config FROM runs WHERE id = :r", r=run_id)
    if not rows:
        return None
    rid, mode, started, ended, config = rows[0]
    if isinstance(config, str):
        config = json.loads(config)
    return {"id": rid, "mode": mode, "started_at": started, "ended_at": ended, "config": config or {}}


def _sqlite_us(texts: list[str]) -> list[int]:
    """SQLite's stored datetimes ('YYYY-MM-DD HH:MM:SS[.ffffff]', UTC) -> epoch microseconds."""
    import numpy as np  # start-up time: numpy only when a report reads SQLite

    return np.asarray(texts, dtype="datetime64[us]").astype(np.int64).tolist()  # type: ignore[no-any-return]


#: one row of ``COPY (SELECT ts_us, equity, exposure) TO STDOUT (FORMAT BINARY)``: a field count,
#: then each field's length and its big-endian value (bigint, float8, float8; none is NULL)
_BINARY_ROW = [("n", ">i2"), ("l1", ">i4"), ("ts", ">i8"), ("l2", ">i4"), ("eq", ">f8"), ("l3", ">i4"), ("ex", ">f8")]
_PG_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _pg_equity(db: Database, run_id: str) -> tuple[Any, Any, Any]:
    """PostgreSQL: the snapshots' (ts µs, equity, exposure) by binary COPY into numpy arrays
    (~38 bytes a row; no Python object per row)."""
    import numpy as np  # start-up time: numpy only when a report reads the database
    from psycopg import sql

    query = sql.SQL(  # constant SQL; the run id goes in as a quoted literal
        "COPY (SELECT " + _us_pg("ts") + ", CAST(equity AS DOUBLE PRECISION), "  # noqa: S608
        "CAST(total_exposure_pct AS DOUBLE PRECISION) FROM portfolio_snapshots WHERE run_id = {} "
        "ORDER BY ts, id) TO STDOUT (FORMAT BINARY)").format(sql.Literal(run_id))
    with db.connect() as conn:
        raw = conn.connection.driver_connection
        if raw is None:
            raise ValueError("no PostgreSQL connection")
        with raw.cursor() as cur, cur.copy(query) as cp:
            buf = bytearray()
            for part in cp:  # one buffer per row, appended (never all rows as objects at once)
                buf += part
    blob = buf
    if not blob.startswith(_PG_SIGNATURE):
        raise ValueError("unexpected COPY BINARY data from PostgreSQL")
    ext = int.from_bytes(blob[15:19], "big")
    body = memoryview(blob)[19 + ext:len(blob) - 2]  # the header, and the trailer (-1 as int16)
    rows = np.frombuffer(body, dtype=np.dtype(_BINARY_ROW))
    return rows["ts"].astype(np.int64), rows["eq"].astype(float), rows["ex"].astype(float)


def equity_points(db: Database, run_id: str) -> dict[str, Any]:
    """Columns ``ts_us``, ``equity``, ``exposure`` (share) of the run's snapshots in time order
    (numpy arrays from PostgreSQL, lists from SQLite), and ``start_cash`` (of the first
    snapshot; None without snapshots)."""
    if db.is_postgres:
        ts, eq, exp = _pg_equity(db, run_id)
    else:
        rows = _rows(db, "SELECT ts, CAST(equity AS REAL), CAST(total_exposure_pct AS REAL) FROM portfolio_snapshots "
                         "WHERE run_id = :r ORDER BY ts, id", r=run_id)
        ts, eq, exp = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [])
        if ts:
            ts = _sqlite_us(ts)
    first = _rows(db, "SELECT start_cash FROM portfolio_snapshots WHERE run_id = :r ORDER BY ts, id LIMIT 1", r=run_id)
    return {"ts_us": ts, "equity": eq, "exposure": exp, "start_cash": first[0][0] if first else None}


def _ns(v: Any) -> int | None:
    """A stored time -> int ns: a datetime (PostgreSQL) or SQLite's naive UTC text."""
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return ns_from_dt(v) if isinstance(v, datetime) else None


def fills(db: Database, run_id: str) -> list[dict[str, Any]]:
    """Every fill (row of ``trades``) in time order."""
    rows = _rows(db, "SELECT ts, symbol, side, quantity, price, fee, signal_id, reference_price, slippage_bps, "
                     "latency_ms FROM trades WHERE run_id = :r ORDER BY ts, id", r=run_id)
    keys = ("time", "symbol", "side", "quantity", "price", "fee", "signal_id", "reference_price", "slippage_bps",
            "latency_ms")
    return [{**dict(zip(keys, r, strict=True)), "time": _ns(r[0])} for r in rows]


def execution_analysis(db: Database, run_id: str) -> list[dict[str, Any]]:
    rows = _rows(db, "SELECT execution_ts, symbol, side, expected_price, execution_price, slippage_bps, "
                     "total_latency_ms, execution_quality_score, slippage_reason FROM execution_analysis "
                     "WHERE run_id = :r ORDER BY execution_ts, trade_id", r=run_id)
    keys = ("time", "symbol", "side", "expected_price", "fill_price", "slippage_bps", "latency_ms", "quality_score",
            "reason")
    return [{**dict(zip(keys, r, strict=True)), "time": _ns(r[0])} for r in rows]


def risk_decisions(db: Database, run_id: str) -> list[dict[str, Any]]:
    """Decisions on signals counted by check, action and reason."""
    rows = _rows(db, "SELECT check_type, action, reason, COUNT(*) FROM risk_events "
                     "WHERE run_id = :r AND signal_id IS NOT NULL GROUP BY check_type, action, reason", r=run_id)
    return [{"check": c, "action": a, "reason": reason, "count": int(n)} for c, a, reason, n in rows]


def state_changes(db: Database, run_id: str) -> list[dict[str, Any]]:
    rows = _rows(db, "SELECT ts, action, reason FROM risk_events WHERE run_id = :r AND signal_id IS NULL "
                     "ORDER BY ts, id", r=run_id)
    return [{"time": _ns(ts), "action": a, "reason": reason} for ts, a, reason in rows]


def risk_config(db: Database, run_id: str) -> dict[str, Any]:
    """The risk limits the run decided under (recorded with its risk events; {} without any)."""
    rows = _rows(db, "SELECT details FROM risk_events WHERE run_id = :r LIMIT 1", r=run_id)
    if not rows:
        return {}
    details = rows[0][0]
    if isinstance(details, str):
        details = json.loads(details)
    cfg = (details or {}).get("config") or {}
    return cfg if isinstance(cfg, dict) else {}


def signal_prices(db: Database, run_id: str) -> list[tuple[int, str, float]]:
    """``(ts_us, symbol, price)`` of every signal: the prices the run saw (the benchmark's)."""
    if db.is_postgres:
        rows = _rows(db, f"SELECT {_us_pg('ts')}, symbol, CAST(price AS DOUBLE PRECISION) FROM signals "  # noqa: S608
                         "WHERE run_id = :r ORDER BY ts", r=run_id)
        return [(int(a), b, float(c)) for a, b, c in rows]
    rows = _rows(db, "SELECT ts, symbol, CAST(price AS REAL) FROM signals WHERE run_id = :r ORDER BY ts", r=run_id)
    us = _sqlite_us([r[0] for r in rows]) if rows else []
    return [(u, r[1], float(r[2])) for u, r in zip(us, rows, strict=True)]


def market_conditions(db: Database, run_id: str, signal_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The market at the given signals."""
    ids = sorted(set(signal_ids))
    keys = ("signal_id", "symbol", "time", "price", "volume_24h", "volatility_1h", "trend_direction", "trend_strength",
            "spread_bps", "order_book_depth", "rsi_14", "macd", "macd_signal", "macd_hist", "bb_position")
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), CHUNK):
        part = ids[i:i + CHUNK]
        names = ", ".join(f":s{j}" for j in range(len(part)))
        # only bind-parameter names are formatted in; the values are bound
        rows = _rows(db, "SELECT signal_id, symbol, ts, price, volume_24h, volatility_1h, trend_direction, "  # noqa: S608
                         "trend_strength, spread_bps, order_book_depth, rsi_14, macd, macd_signal, macd_hist, "
                         f"bb_position FROM market_conditions WHERE run_id = :r AND signal_id IN ({names})",
                     r=run_id, **{f"s{j}": s for j, s in enumerate(part)})
        out += [{**dict(zip(keys, r, strict=True)), "time": _ns(r[2])} for r in rows]
    return sorted(out, key=lambda d: d["time"] or 0)


def open_positions(db: Database, run_id: str) -> list[dict[str, Any]]:
    rows = _rows(db, "SELECT symbol, side, quantity, avg_price, mark_price, unrealized_pnl, opened_at FROM positions "
                     "WHERE run_id = :r AND side <> 'flat' ORDER BY symbol", r=run_id)
    return [{"symbol": s, "side": side, "quantity": q, "avg_price": p, "mark_price": m, "unrealized_pnl": u,
             "since": _ns(o)} for s, side, q, p, m, u, o in rows]


def system_figures(db: Database, run_id: str) -> dict[str, Any]:
    """Counts of the run's signals, orders, alerts by level and code, dead letters, and the
    services' events processed, restarts and time up."""

    def one(sql: str) -> Any:
        return _rows(db, sql, r=run_id)[0][0]

    alerts = _rows(db, "SELECT level, code, SUM(occurrences) FROM alerts WHERE run_id = :r GROUP BY level, code",
                   r=run_id)
    svc = _rows(db, "SELECT SUM(events_processed), SUM(restarts), MIN(started_at), MAX(heartbeat_at), COUNT(*) "
                    "FROM service_status WHERE run_id = :r", r=run_id)[0]
    return {
        "signals": int(one("SELECT COUNT(*) FROM signals WHERE run_id = :r")),
        "orders": int(one("SELECT COUNT(*) FROM orders WHERE run_id = :r")),
        "dead_letters": int(one("SELECT COUNT(*) FROM dead_letters WHERE run_id = :r")),
        "alerts": [{"level": lv, "code": c, "occurrences": int(n or 0)} for lv, c, n in alerts],
        "services": int(svc[4] or 0),
        "events_processed": None if svc[0] is None else int(svc[0]),
        "restarts": None if svc[1] is None else int(svc[1]),
        "started_at": _ns(svc[2]), "heartbeat_at": _ns(svc[3]),
    }


def recent_alerts(db: Database, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = _rows(db, "SELECT ts, level, code, message, occurrences FROM alerts WHERE run_id = :r "
                     "ORDER BY ts DESC LIMIT :n", r=run_id, n=limit)
    return [{"time": _ns(ts), "level": lv, "code": c, "message": m, "occurrences": o} for ts, lv, c, m, o in rows]

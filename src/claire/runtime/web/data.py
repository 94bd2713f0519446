"""What the live view shows, read from the database alone (SQLAlchemy Core on the tables of
:mod:`claire.storage.models`), so it works on a running or a finished run, SQLite or PostgreSQL.

Every function is one or two indexed queries on ``run_id``; nothing here writes. Money leaves as
strings (exact decimals); chart values as floats (a chart needs no exact cents).
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from claire.storage import Database, StorageError
from claire.storage.models import metadata

T = metadata.tables

#: the equity chart never carries more points than this (a 7-day run stays light)
MAX_POINTS = 2000
#: rows of the trade feed, risk decisions and alerts sent at most
FEED_LIMIT = 500
RISK_LIMIT = 50
ALERT_LIMIT = 30


class RunNotFound(StorageError):
    """The database has no such run (or no run at all)."""


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.astimezone(UTC).isoformat()


def _secs(v: datetime | None) -> float | None:
    return None if v is None else v.timestamp()


def _num(v: Any) -> Any:
    """Decimals as strings (exact), the rest as it is (JSON)."""
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime):
        return _iso(v)
    return v


def _plain(row: Any) -> dict[str, Any]:
    return {k: _num(v) for k, v in dict(row).items()}


def check_database(db: Database) -> None:
    """The database answers and has the schema (a run table): else one-line StorageError."""
    db.check()
    try:
        names = set(inspect(db.engine).get_table_names())
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the tables of {db.safe_url}: {exc}") from exc
    if "runs" not in names:
        raise StorageError(f"{db.safe_url} has no Claire schema (no runs table): is it the run's database?")


def has_table(db: Database, name: str) -> bool:
    try:
        return name in set(inspect(db.engine).get_table_names())
    except SQLAlchemyError:
        return False


def resolve_run(db: Database, run_id: str | None) -> dict[str, Any]:
    """The run ``run_id``, or the latest (by start) when None; RunNotFound otherwise."""
    runs = T["runs"]
    q = select(runs.c.id, runs.c.mode, runs.c.started_at, runs.c.ended_at, runs.c.description)
    q = q.where(runs.c.id == run_id) if run_id else q.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(1)
    with db.connect() as conn:
        row = conn.execute(q).mappings().first()
    if row is None:
        if run_id:
            with db.connect() as conn:
                ids = conn.execute(select(runs.c.id).order_by(runs.c.started_at.desc()).limit(5)).scalars().all()
            known = f"the latest: {', '.join(ids)}" if ids else "it holds no run"
            raise RunNotFound(f"run {run_id!r} is not in {db.safe_url} ({known})")
        raise RunNotFound(f"{db.safe_url} holds no run yet")
    return dict(row)


def run_info(db: Database, run_id: str) -> dict[str, Any]:
    return {k: _num(v) for k, v in resolve_run(db, run_id).items()}


# --- equity -----------------------------------------------------------------------------------

#: what the chart draws, rounded to what it can show (cents; a drawdown to 1e-6): a light page
_EQ_COLS = ("ts", "equity", "drawdown_pct")
_EQ_DIGITS = {"equity": 2, "drawdown_pct": 6}


def _points(rows: Any) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {k: [] for k in _EQ_COLS}
    for r in rows:
        cols["ts"].append(_secs(r.ts))
        for k, digits in _EQ_DIGITS.items():
            v = getattr(r, k)
            cols[k].append(None if v is None else round(float(v), digits))
    return cols


def equity(db: Database, run_id: str, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """The equity curve, thinned in the database to at most ``max_points`` points (every k-th
    snapshot by time, the last one always kept); drawdown as a positive fraction."""
    ps = T["portfolio_snapshots"]
    where = ps.c.run_id == run_id
    with db.connect() as conn:
        n = conn.execute(select(func.count()).select_from(ps).where(where)).scalar_one()
        stride = max(1, math.ceil(n / max(max_points - 1, 1)))
        cols = [ps.c[k] for k in _EQ_COLS]
        if stride == 1:
            rows = conn.execute(select(*cols).where(where).order_by(ps.c.ts, ps.c.id)).all()
        else:
            rn = func.row_number().over(order_by=(ps.c.ts, ps.c.id)).label("rn")
            inner = select(*cols, rn).where(where).subquery()
            keep = select(*[inner.c[k] for k in _EQ_COLS]).where(
                (inner.c.rn % stride == 1) | (inner.c.rn == n)).order_by(inner.c.rn)
            rows = conn.execute(keep).all()
        mdd = conn.execute(select(func.max(ps.c.drawdown_pct)).where(where)).scalar()
    out: dict[str, Any] = {"snapshots": n, "stride": stride, "last_ts": _iso(rows[-1].ts) if rows else None,
                           **_points(rows)}
    out["max_drawdown_pct"] = None if mdd is None else float(mdd)
    return out


class EquitySeries:
    """The thinned equity curve of a run, kept by the server: built once in the database (every
    k-th snapshot, as :func:`equity`), then extended by the snapshots after its last point, so a
    page load costs the new rows, not the whole run. When it grows past ``max_points`` the stride
    doubles (every other point goes); the latest snapshot is always the last point."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self.lock = threading.Lock()
        self.series: dict[str, Any] | None = None
        self.rn: list[int] = []  # the row number (1-based, by time) of each kept point
        self.last: datetime | None = None

    def get(self, db: Database, run_id: str) -> dict[str, Any]:
        with self.lock:
            if self.series is None:
                self.series = equity(db, run_id, self.max_points)
                n, stride = self.series["snapshots"], self.series["stride"]
                self.rn = [i for i in range(1, n + 1) if i % stride == 1 % stride or i == n]
                self.last = datetime.fromisoformat(self.series["last_ts"]) if self.series["last_ts"] else None
            else:
                rows = equity_since(db, run_id, self.last, limit=1_000_000)
                if rows:
                    self._extend(self.series, rows)
            return {k: list(v) if isinstance(v, list) else v for k, v in self.series.items()}

    def _extend(self, s: dict[str, Any], rows: list[Any]) -> None:
        stride, n = s["stride"], s["snapshots"]
        if self.rn and self.rn[-1] % stride != 1 % stride:  # the previous "latest" point was an extra
            self.rn.pop()
            for k in _EQ_COLS:
                s[k].pop()
        new = _points(rows)
        for i in range(len(rows)):
            rn = n + 1 + i
            if rn % stride == 1 % stride or i == len(rows) - 1:
                self.rn.append(rn)
                for k in _EQ_COLS:
                    s[k].append(new[k][i])
        s["snapshots"] = n + len(rows)
        self.last = rows[-1].ts
        s["last_ts"] = _iso(self.last)
        dds = [d for d in new["drawdown_pct"] if d is not None]
        if dds:
            s["max_drawdown_pct"] = max(dds + ([s["max_drawdown_pct"]] if s["max_drawdown_pct"] is not None else []))
        while len(self.rn) > self.max_points:
            stride = s["stride"] = stride * 2
            keep = [j for j, rn in enumerate(self.rn) if rn % stride == 1 or j == len(self.rn) - 1]
            self.rn = [self.rn[j] for j in keep]
            for k in _EQ_COLS:
                s[k] = [s[k][j] for j in keep]


def equity_since(db: Database, run_id: str, after_ts: datetime | None, limit: int = 5000) -> list[Any]:
    """Snapshot points after ``after_ts`` (raw rows; the stream thins them)."""
    ps = T["portfolio_snapshots"]
    q = select(*[ps.c[k] for k in _EQ_COLS], ps.c.id).where(ps.c.run_id == run_id)
    if after_ts is not None:
        q = q.where(ps.c.ts > after_ts)
    with db.connect() as conn:
        return list(conn.execute(q.order_by(ps.c.ts, ps.c.id).limit(limit)).all())


def thin(rows: list[Any], max_points: int) -> dict[str, list[Any]]:
    """Every k-th of ``rows`` so at most ``max_points`` remain (the last one kept)."""
    if len(rows) > max_points:
        k = math.ceil(len(rows) / max_points)
        rows = rows[::k] if (len(rows) - 1) % k == 0 else [*rows[::k], rows[-1]]
    return _points(rows)


# --- trades -----------------------------------------------------------------------------------

_TRADE_COLS = ("id", "ts", "symbol", "side", "status", "quantity", "price", "notional", "fee",
               "liquidity", "slippage_bps")


def trade_count(db: Database, run_id: str) -> int:
    t = T["trades"]
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar_one())


def trades(db: Database, run_id: str, limit: int = FEED_LIMIT) -> list[dict[str, Any]]:
    """The latest ``limit`` fills, newest first."""
    t = T["trades"]
    q = (select(*[t.c[k] for k in _TRADE_COLS]).where(t.c.run_id == run_id)
         .order_by(t.c.ts.desc(), t.c.id.desc()).limit(limit))
    with db.connect() as conn:
        return [_plain(r) for r in conn.execute(q).mappings().all()]


class TradeCursor:
    """Which fills a client has: the latest time seen and the ids at that time (fills that share
    a timestamp are not lost nor sent twice)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.ts: datetime | None = None
        self.ids: set[str] = set()
        for r in rows:
            self.see(datetime.fromisoformat(r["ts"]), r["id"])

    def see(self, ts: datetime, trade_id: str) -> None:
        if self.ts is None or ts > self.ts:
            self.ts, self.ids = ts, {trade_id}
        elif ts == self.ts:
            self.ids.add(trade_id)

    def new_trades(self, db: Database, run_id: str, limit: int = FEED_LIMIT) -> list[dict[str, Any]]:
        """Fills after the cursor, oldest first; the cursor moves past them."""
        t = T["trades"]
        q = select(*[t.c[k] for k in _TRADE_COLS]).where(t.c.run_id == run_id)
        if self.ts is not None:
            q = q.where(t.c.ts >= self.ts)
        with db.connect() as conn:
            rows = conn.execute(q.order_by(t.c.ts, t.c.id).limit(limit + len(self.ids))).mappings().all()
        out = []
        for r in rows:
            if r["ts"] == self.ts and r["id"] in self.ids:
                continue
            self.see(r["ts"], r["id"])
            out.append(_plain(r))
        return out


# --- positions, risk, alerts, status -------------------------------------------------------------


def positions(db: Database, run_id: str) -> list[dict[str, Any]]:
    """Open positions with their unrealised PnL (the ``open_positions`` view's columns)."""
    p = T["positions"]
    cols = ("symbol", "side", "quantity", "avg_price", "mark_price", "unrealized_pnl", "realized_pnl",
            "exposure", "exposure_pct", "opened_at", "updated_at")
    q = select(*[p.c[k] for k in cols]).where(p.c.run_id == run_id, p.c.side != "flat").order_by(p.c.symbol)
    with db.connect() as conn:
        return [_plain(r) for r in conn.execute(q).mappings().all()]


def risk_events(db: Database, run_id: str, limit: int = RISK_LIMIT) -> dict[str, Any]:
    """Recent risk decisions, rejections first, and the count of each action."""
    r = T["risk_events"]
    rejected = case((r.c.passed.is_(False), 0), else_=1)
    cols = ("id", "ts", "symbol", "check_type", "action", "passed", "check_value", "check_limit", "reason",
            "trading_state")
    q = (select(*[r.c[k] for k in cols]).where(r.c.run_id == run_id)
         .order_by(rejected, r.c.ts.desc(), r.c.id.desc()).limit(limit))
    counts = select(r.c.action, func.count()).where(r.c.run_id == run_id).group_by(r.c.action)
    with db.connect() as conn:
        rows = [_plain(x) for x in conn.execute(q).mappings().all()]
        by_action = {a: int(n) for a, n in conn.execute(counts).all()}
    return {"recent": rows, "by_action": by_action}


def alerts(db: Database, run_id: str, limit: int = ALERT_LIMIT) -> list[dict[str, Any]]:
    a = T["alerts"]
    cols = ("id", "ts", "level", "source", "code", "message", "category", "occurrences", "acknowledged")
    q = select(*[a.c[k] for k in cols]).where(a.c.run_id == run_id).order_by(a.c.ts.desc(), a.c.id.desc()).limit(limit)
    with db.connect() as conn:
        return [_plain(x) for x in conn.execute(q).mappings().all()]


def services(db: Database, run_id: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each component's last heartbeat, with its age in seconds (schema 4.0; [] before it)."""
    s = T["service_status"]
    now = now or datetime.now(UTC)
    q = select(s).where(s.c.run_id == run_id).order_by(s.c.service, s.c.replica)
    try:
        with db.connect() as conn:
            rows = conn.execute(q).mappings().all()
    except SQLAlchemyError:  # a database before schema 4.0: no heartbeats to show
        return []
    out = []
    for r in rows:
        d = _plain(r)
        d["heartbeat_age_s"] = round((now - r["heartbeat_at"]).total_seconds(), 3)
        out.append(d)
    return out


def freshness(db: Database, run_id: str, status_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Data freshness per symbol: the event time of each symbol's last market event where a
    heartbeat reports it (``details.symbols``), else of its last signal or position mark; with
    the age against the newest of them (event time: a replay is judged on its own clock)."""
    last: dict[str, str] = {}
    source = "heartbeat"
    for row in status_rows:
        for sym, ts in ((row.get("details") or {}).get("symbols") or {}).items():
            if ts and (sym not in last or ts > last[sym]):
                last[sym] = ts
    if not last:
        source = "last signal or position mark"
        sg, p = T["signals"], T["positions"]
        with db.connect() as conn:
            for sym, ts in conn.execute(select(sg.c.symbol, func.max(sg.c.ts)).where(sg.c.run_id == run_id)
                                        .group_by(sg.c.symbol)).all():
                last[sym] = _iso(ts) or ""
            for sym, ts in conn.execute(select(p.c.symbol, p.c.updated_at).where(p.c.run_id == run_id)).all():
                iso = _iso(ts) or ""
                if iso > last.get(sym, ""):
                    last[sym] = iso
    newest = max((datetime.fromisoformat(v) for v in last.values() if v), default=None)
    live = any((row.get("details") or {}).get("source") == "live" for row in status_rows)
    now = datetime.now(UTC)
    per = {}
    for sym, ts in sorted(last.items()):
        when = datetime.fromisoformat(ts) if ts else None
        per[sym] = {"last_ts": ts, "behind_s": round((newest - when).total_seconds(), 3) if newest and when else None,
                    "age_s": round((now - when).total_seconds(), 3) if live and when else None}
    return {"source": source, "live": live, "symbols": per}


def counts(db: Database, run_id: str) -> dict[str, int]:
    """Events of the run by table (one indexed count each)."""
    out = {}
    with db.connect() as conn:
        for name in ("signals", "orders", "trades", "risk_events", "alerts", "portfolio_snapshots"):
            t = T[name]
            out[name] = int(conn.execute(select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar_one())
    return out


def latest_snapshot(db: Database, run_id: str) -> dict[str, Any] | None:
    ps = T["portfolio_snapshots"]
    cols = ("ts", "start_cash", "cash", "equity", "realized_pnl", "unrealized_pnl", "fees", "total_exposure_pct",
            "high_water_mark", "drawdown_pct", "daily_pnl", "num_positions")
    q = select(*[ps.c[k] for k in cols]).where(ps.c.run_id == run_id).order_by(ps.c.ts.desc(), ps.c.id.desc()).limit(1)
    with db.connect() as conn:
        row = conn.execute(q).mappings().first()
    return None if row is None else _plain(row)


def rejections(db: Database, run_id: str) -> int:
    r = T["risk_events"]
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(r).where(
            and_(r.c.run_id == run_id, r.c.passed.is_(False)))).scalar_one())


def summary(db: Database, run_id: str) -> dict[str, Any]:
    """The headline: run, latest equity, counts."""
    return {"run": run_info(db, run_id), "latest": latest_snapshot(db, run_id), "counts": counts(db, run_id),
            "risk_rejections": rejections(db, run_id), "server_time": _iso(datetime.now(UTC))}

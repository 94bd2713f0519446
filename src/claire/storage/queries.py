"""Read helpers: checkpoints for restart, runs, latest state, counts, and retention (S6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update

from claire.storage.database import Database
from claire.storage.models import metadata

T = metadata.tables


# --- restart ------------------------------------------------------------------------------


def load_checkpoint(db: Database, run_id: str) -> tuple[int, bytes] | None:
    """The last checkpoint of a run: ``(position, state)``, or None if it has none."""
    cp = T["checkpoints"]
    with db.connect() as conn:
        row = conn.execute(select(cp.c.position, cp.c.state).where(cp.c.run_id == run_id)).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


def get_run(db: Database, run_id: str) -> dict[str, Any] | None:
    runs = T["runs"]
    with db.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
    return dict(row) if row else None


def list_runs(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    runs = T["runs"]
    with db.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.started_at.desc()).limit(limit)).mappings().all()
    return [dict(r) for r in rows]


def end_run(db: Database, run_id: str, when: datetime | None = None) -> None:
    runs = T["runs"]
    with db.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(ended_at=when or datetime.now(UTC)))


def latest_snapshot(db: Database, run_id: str) -> dict[str, Any] | None:
    ps = T["portfolio_snapshots"]
    with db.connect() as conn:
        row = (
            conn.execute(
                select(ps).where(ps.c.run_id == run_id).order_by(ps.c.ts.desc(), ps.c.id.desc()).limit(1)
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def open_positions(db: Database, run_id: str | None = None) -> list[dict[str, Any]]:
    p = T["positions"]
    q = select(p).where(p.c.side != "flat").order_by(p.c.run_id, p.c.symbol)
    if run_id is not None:
        q = q.where(p.c.run_id == run_id)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def open_orders(db: Database, run_id: str) -> list[dict[str, Any]]:
    o = T["orders"]
    q = (
        select(o)
        .where(o.c.run_id == run_id, o.c.status.in_(("pending", "partially_filled")))
        .order_by(o.c.ts)
    )
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def latest_signals(db: Database, symbol: str, limit: int = 100) -> list[dict[str, Any]]:
    """Seed 002 query 1: the latest signals of a symbol (index ix_signals_symbol_ts)."""
    s = T["signals"]
    with db.connect() as conn:
        q = select(s).where(s.c.symbol == symbol).order_by(s.c.ts.desc()).limit(limit)
        return [dict(r) for r in conn.execute(q).mappings().all()]


def event_ids(db: Database, table: str, run_id: str) -> list[str]:
    """Every id a run stored in an event table (e.g. to skip what is already there on replay)."""
    t = T[table]
    with db.connect() as conn:
        return [r[0] for r in conn.execute(select(t.c.id).where(t.c.run_id == run_id).order_by(t.c.id))]


COUNTED = (
    "signals",
    "orders",
    "trades",
    "positions",
    "portfolio_snapshots",
    "risk_events",
    "execution_analysis",
    "market_conditions",
    "alerts",
    "dead_letters",
    "pending_events",
)


def row_counts(db: Database, run_id: str | None = None) -> dict[str, int]:
    """Rows per table, of one run or of all."""
    out = {}
    with db.connect() as conn:
        for name in COUNTED:
            t = T[name]
            q = select(func.count()).select_from(t)
            if run_id is not None:
                q = q.where(t.c.run_id == run_id)
            out[name] = int(conn.execute(q).scalar() or 0)
    return out


def dead_letters(db: Database, run_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    d = T["dead_letters"]
    q = select(d).order_by(d.c.id.desc()).limit(limit)
    if run_id is not None:
        q = q.where(d.c.run_id == run_id)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


# --- retention (S6) -----------------------------------------------------------------------

RETENTION_DAYS = {"signals": 30, "orders": 90, "risk_events": 90}


def prune(
    db: Database,
    *,
    now: datetime | None = None,
    signals_days: int = RETENTION_DAYS["signals"],
    orders_days: int = RETENTION_DAYS["orders"],
    risk_events_days: int = RETENTION_DAYS["risk_events"],
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete what is past retention, in one transaction; returns rows deleted per table.

    Risk events older than 90 days go. Orders older than 90 days go unless a trade refers to
    one (trades are permanent, and so is their order). Signals older than 30 days go unless a
    remaining order refers to one; their market_conditions rows go with them. Trades,
    execution analysis, snapshots, positions, alerts and dead letters are kept.
    """
    now = now or datetime.now(UTC)
    s, o, t, r, m = T["signals"], T["orders"], T["trades"], T["risk_events"], T["market_conditions"]
    sig_cut = now - timedelta(days=signals_days)
    ord_cut = now - timedelta(days=orders_days)
    risk_cut = now - timedelta(days=risk_events_days)
    out: dict[str, int] = {}
    order_gone = and_(o.c.ts < ord_cut, ~exists().where(t.c.order_id == o.c.id))
    with db.begin(write=True) as conn:
        if dry_run:
            out["risk_events"] = conn.execute(select(func.count()).where(r.c.ts < risk_cut)).scalar_one()
            out["orders"] = conn.execute(select(func.count()).select_from(o).where(order_gone)).scalar_one()
            # signals kept by orders that stay
            kept_by = exists().where(and_(o.c.signal_id == s.c.id, ~order_gone))
            gone = and_(s.c.ts < sig_cut, ~kept_by)
            out["signals"] = conn.execute(select(func.count()).select_from(s).where(gone)).scalar_one()
            out["market_conditions"] = conn.execute(
                select(func.count()).select_from(m).where(m.c.signal_id.in_(select(s.c.id).where(gone)))
            ).scalar_one()
            return out
        out["risk_events"] = conn.execute(delete(r).where(r.c.ts < risk_cut)).rowcount
        out["orders"] = conn.execute(delete(o).where(order_gone)).rowcount
        gone = and_(s.c.ts < sig_cut, ~exists().where(o.c.signal_id == s.c.id))
        out["market_conditions"] = conn.execute(
            delete(m).where(m.c.signal_id.in_(select(s.c.id).where(gone)))
        ).rowcount
        out["signals"] = conn.execute(delete(s).where(gone)).rowcount
    return out

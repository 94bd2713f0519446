"""Retention (S6) and the daily maintenance of a long run: prune, backup, backup retention.

What goes, and what stays (the foreign keys decide the order):

- risk events older than 90 days go;
- orders older than 90 days go, unless a trade refers to one: trades are kept for good, and so is
  the order they fill (``trades.order_id`` is a foreign key, and a trade without its order would
  lose its side, type and limit price);
- signals older than 30 days go, unless an order that stays refers to one; their
  ``market_conditions`` rows go with them (deleted first, so SQLite without ``PRAGMA
  foreign_keys`` gives the same result as PostgreSQL's ``ON DELETE CASCADE``);
- trades, execution analysis, snapshots, positions, alerts, dead letters and checkpoints stay.

Age is the event time (``ts``) against ``now``: a replay of history passes its own clock (the
exchange time of its last event), so a week-long replay of last year's data keeps its rows.
Everything happens in one transaction; a second run with the same ``now`` deletes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from claire.storage import backup as bk
from claire.storage.database import Database, StorageError, one_line
from claire.storage.models import metadata

log = logging.getLogger("claire.storage.retention")

T = metadata.tables
SIGNALS_DAYS = 30
ORDERS_DAYS = 90
RISK_EVENTS_DAYS = 90
BACKUP_KEEP_DAYS = 14
# the tables prune may delete from, in the order it deletes them (children first)
PRUNED_TABLES = ("risk_events", "orders", "market_conditions", "signals")


def _run_filter(table: Any, run: str | None) -> ColumnElement[bool] | bool:
    return table.c.run_id == run if run is not None else True


def prune(
    db: Database,
    *,
    now: datetime | None = None,
    run: str | None = None,
    signals_days: int = SIGNALS_DAYS,
    orders_days: int = ORDERS_DAYS,
    risk_events_days: int = RISK_EVENTS_DAYS,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete what is past retention (of one run, or of all), in one transaction; returns the
    rows deleted (or, with ``dry_run``, that would be) per table, every pruned table named."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    s, o, t, r, m = T["signals"], T["orders"], T["trades"], T["risk_events"], T["market_conditions"]
    sig_cut = now - timedelta(days=signals_days)
    ord_cut = now - timedelta(days=orders_days)
    risk_cut = now - timedelta(days=risk_events_days)
    risk_gone = and_(r.c.ts < risk_cut, _run_filter(r, run))
    order_gone = and_(o.c.ts < ord_cut, _run_filter(o, run), ~exists().where(t.c.order_id == o.c.id))
    out: dict[str, int] = {}
    with db.begin(write=True) as conn:
        if dry_run:
            # signals kept by the orders that stay
            kept = exists().where(and_(o.c.signal_id == s.c.id, ~order_gone))
            sig_gone = and_(s.c.ts < sig_cut, _run_filter(s, run), ~kept)
            out["risk_events"] = conn.execute(select(func.count()).select_from(r).where(risk_gone)).scalar_one()
            out["orders"] = conn.execute(select(func.count()).select_from(o).where(order_gone)).scalar_one()
            out["market_conditions"] = conn.execute(
                select(func.count()).select_from(m).where(m.c.signal_id.in_(select(s.c.id).where(sig_gone)))
            ).scalar_one()
            out["signals"] = conn.execute(select(func.count()).select_from(s).where(sig_gone)).scalar_one()
            return out
        out["risk_events"] = conn.execute(delete(r).where(risk_gone)).rowcount
        out["orders"] = conn.execute(delete(o).where(order_gone)).rowcount
        sig_gone = and_(s.c.ts < sig_cut, _run_filter(s, run), ~exists().where(o.c.signal_id == s.c.id))
        out["market_conditions"] = conn.execute(
            delete(m).where(m.c.signal_id.in_(select(s.c.id).where(sig_gone)))
        ).rowcount
        out["signals"] = conn.execute(delete(s).where(sig_gone)).rowcount
    return out


def daily_maintenance(
    db_url: str | Database,
    backup_dir: str | Path,
    now: datetime,
    *,
    run: str | None = None,
    keep_days: float = BACKUP_KEEP_DAYS,
    wall_now: datetime | None = None,
) -> dict[str, Any]:
    """Prune (by the run's clock ``now``), back up and delete backups older than ``keep_days``
    (by the wall clock: backup files live in real time). A step that fails is reported in
    ``errors`` and does not stop the others, nor the run. Returns what was done, for the run's
    ``status`` and the daily summary::

        {"day": "2026-12-06", "at": iso, "pruned": {table: n}, "backup": path | None,
         "backup_bytes": n, "backups_removed": [names], "errors": [text]}
    """
    wall_now = wall_now or datetime.now(UTC)
    out: dict[str, Any] = {
        "day": now.astimezone(UTC).date().isoformat(),
        "at": wall_now.isoformat(),
        "pruned": {},
        "backup": None,
        "backup_bytes": 0,
        "backups_removed": [],
        "errors": [],
    }
    own = not isinstance(db_url, Database)
    try:
        db = Database(db_url) if isinstance(db_url, str) else db_url
    except StorageError as exc:
        out["errors"].append(f"database: {one_line(exc)}")
        return out
    try:
        _step(out, "prune", lambda: out["pruned"].update(prune(db, now=now, run=run)))

        def do_backup() -> None:
            path = bk.backup(db, backup_dir, keep_days=None, now=wall_now)
            out["backup"] = str(path)
            out["backup_bytes"] = path.stat().st_size

        _step(out, "backup", do_backup)
        _step(out, "backup retention", lambda: out["backups_removed"].extend(
            p.name for p in bk.prune_backups(Path(backup_dir), keep_days, wall_now)))
    finally:
        if own:
            db.dispose()
    log.info("daily maintenance %s: %s", out["day"], out)
    return out


def _step(out: dict[str, Any], name: str, fn: Any) -> None:
    try:
        fn()
    except (StorageError, SQLAlchemyError, OSError, ValueError) as exc:
        log.warning("daily maintenance, %s failed: %s", name, one_line(exc))
        out["errors"].append(f"{name}: {one_line(exc)}")


class DailyMaintenance:
    """Runs :func:`daily_maintenance` once per UTC day of the run's clock: call :meth:`maybe_run`
    with the run's current time as often as you like; :attr:`last` holds the last result."""

    def __init__(self, db_url: str | Database, backup_dir: str | Path, *, run: str | None = None,
                 keep_days: float = BACKUP_KEEP_DAYS) -> None:
        self.db_url = db_url
        self.backup_dir = backup_dir
        self.run = run
        self.keep_days = keep_days
        self.done_day: date | None = None
        self.last: dict[str, Any] | None = None

    def maybe_run(self, now: datetime) -> dict[str, Any] | None:
        """The result when the maintenance ran now (first call of a new UTC day), else None."""
        day = now.astimezone(UTC).date()
        if self.done_day == day:
            return None
        self.done_day = day
        self.last = daily_maintenance(self.db_url, self.backup_dir, now, run=self.run, keep_days=self.keep_days)
        return self.last

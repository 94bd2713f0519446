"""Heartbeats of a run's components in ``service_status`` (schema 4.0): one row per service
replica, overwritten every beat, so the live view, ``papertest status`` and the alerts can tell
each component's health from the database alone.

:func:`record_status` is the one upsert (SQLite and PostgreSQL); :class:`StatusHeartbeat` calls
it every ``interval`` seconds from a daemon thread, off the hot path, and never fails the run:
a database that is briefly away is logged (once per outage) and the next beat tries again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from claire.storage.database import Database
from claire.storage.models import SERVICE_STATES, metadata

log = logging.getLogger("claire.storage.service_status")

T = metadata.tables

__all__ = ["StatusHeartbeat", "read_status", "record_status"]


def _when(value: datetime | int | float | None) -> datetime | None:
    """A datetime, int nanoseconds since the epoch, or None."""
    if value is None or isinstance(value, datetime):
        return value
    if not value:
        return None
    return datetime.fromtimestamp(value / 1e9, UTC)


def record_status(
    db: Database,
    run_id: str,
    service: str,
    replica: int = 0,
    *,
    status: str,
    ready: bool,
    pid: int | None = None,
    events_processed: int = 0,
    last_event_ts: datetime | int | None = None,
    lag_ms: Decimal | float | int | None = None,
    restarts: int = 0,
    details: Mapping[str, Any] | None = None,
    started_at: datetime | None = None,
) -> None:
    """Insert or overwrite the heartbeat row of (run, service, replica). ``last_event_ts`` may be
    int nanoseconds (the events' time); ``started_at`` is kept from the first beat unless given."""
    if status not in SERVICE_STATES:
        raise ValueError(f"status must be one of {', '.join(SERVICE_STATES)}, not {status!r}")
    table = T["service_status"]
    now = datetime.now(UTC)
    lag = None if lag_ms is None else Decimal(str(round(max(float(lag_ms), 0.0), 3)))
    values: dict[str, Any] = {
        "pid": pid if pid is not None else os.getpid(),
        "status": status,
        "ready": bool(ready),
        "heartbeat_at": now,
        "events_processed": int(events_processed),
        "last_event_ts": _when(last_event_ts),
        "lag_ms": lag,
        "restarts": int(restarts),
        "details": dict(details or {}),
    }
    update = {**values, "started_at": started_at} if started_at is not None else values
    insert = pg_insert if db.is_postgres else sqlite_insert
    stmt = insert(table).values(run_id=run_id, service=service, replica=replica,
                                started_at=started_at or now, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["run_id", "service", "replica"], set_=update)
    with db.begin() as conn:
        conn.execute(stmt)


def read_status(db: Database, run_id: str) -> list[dict[str, Any]]:
    """The heartbeat rows of a run, by service and replica."""
    table = T["service_status"]
    q = select(table).where(table.c.run_id == run_id).order_by(table.c.service, table.c.replica)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


class StatusHeartbeat:
    """Writes ``sample()`` (the keyword arguments of :func:`record_status` except the keys) every
    ``interval`` seconds from a daemon thread; :meth:`stop` writes a last beat (``stopped`` after a
    clean end). ``db`` is a Database or a URL (then the heartbeat has its own small engine)."""

    def __init__(self, db: Database | str, run_id: str, service: str, replica: int,
                 sample: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
        self._own_db = not isinstance(db, Database)
        self.db: Database = db if isinstance(db, Database) else Database(
            db, pool_size=1, max_overflow=1, connect_timeout=3, application_name=f"claire-status-{service}")
        self.run_id = run_id
        self.service = service
        self.replica = replica
        self.sample = sample
        self.interval = interval
        self.started_at = datetime.now(UTC)
        self.beats = 0
        self.restarts = 0
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"status-{service}", daemon=True)

    def start(self) -> StatusHeartbeat:
        """Count a restart when the last row of this component does not say it stopped cleanly
        (the process before this one died), then beat from the thread."""
        try:
            table = T["service_status"]
            with self.db.connect() as conn:
                prev = conn.execute(select(table.c.status, table.c.restarts).where(
                    table.c.run_id == self.run_id, table.c.service == self.service,
                    table.c.replica == self.replica)).first()
            if prev is not None:
                self.restarts = int(prev.restarts or 0) + (0 if prev.status == "stopped" else 1)
        except Exception as exc:  # no database yet: the beats will say so
            log.debug("status of %s: previous row not read: %s", self.service, type(exc).__name__)
        self._thread.start()
        return self

    def beat(self, **override: Any) -> bool:
        """One heartbeat now; False (logged once per outage) when it could not be written."""
        try:
            values = {"restarts": self.restarts, **self.sample(), **override}
            record_status(self.db, self.run_id, self.service, self.replica,
                          started_at=self.started_at, **values)
        except Exception as exc:
            if not self._failing:
                log.warning("status of %s could not be written (will retry): %s: %s",
                            self.service, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            self._failing = True
            return False
        if self._failing:
            log.info("status of %s written again", self.service)
        self._failing = False
        self.beats += 1
        return True

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.beat()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self, status: str = "stopped") -> None:
        """Stop the thread and write a last beat with ``status`` (ready False)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.beat(status=status, ready=False)
        if self._own_db:
            self.db.dispose()

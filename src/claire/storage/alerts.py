"""The alerts of the rules in the ``alerts`` table: stored once, repeats counted, acknowledged.

An alert of :mod:`claire.alerting.rules` is stored with its category (``details["category"]``)
and ``occurrences = 1``; a repeat within the cool-down only raises ``occurrences`` and
``last_seen`` of the stored alert (:func:`bump_occurrence`). Idempotent: a replay of the same run
stores nothing twice (the ids are deterministic, the counts are set, not added).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from claire.events import Alert
from claire.storage import rows as R
from claire.storage.database import Database
from claire.storage.models import metadata
from claire.storage.types import dt_from_ns

T = metadata.tables
_ALERTS = T["alerts"]


def alert_values(alert: Alert, run_id: str) -> dict[str, Any]:
    """The row of ``alert``: the writer's row plus category, occurrences and last seen."""
    row = R.alert_row(alert, run_id)
    details = alert.details or {}
    row.update(category=details.get("category"), occurrences=int(details.get("occurrences") or 1),
               last_seen=dt_from_ns(alert.ts_event))
    return row


def record_alert(db: Database, alert: Alert, run_id: str) -> bool:
    """Store ``alert`` unless a row with its id exists; True if it was stored."""
    row = alert_values(alert, run_id)
    with db.begin(write=True) as conn:
        if conn.execute(select(_ALERTS.c.id).where(_ALERTS.c.id == alert.id)).first() is not None:
            return False
        try:
            with conn.begin_nested():
                conn.execute(_ALERTS.insert().values(**row))
        except IntegrityError:  # stored meanwhile by another writer of the same run
            return False
    return True


def bump_occurrence(db: Database, alert_id: str, ts_ns: int, occurrences: int | None = None) -> bool:
    """Count a repeat of the stored alert ``alert_id`` seen at ``ts_ns``: ``occurrences`` set to the
    given count (idempotent), else raised by one. False if there is no such alert."""
    # set to the larger of the stored and the given count: SQLite's scalar max(), PostgreSQL's greatest()
    count = _ALERTS.c.occurrences + 1 if occurrences is None else \
        (func.greatest if db.is_postgres else func.max)(_ALERTS.c.occurrences, occurrences)
    with db.begin(write=True) as conn:
        res = conn.execute(update(_ALERTS).where(_ALERTS.c.id == alert_id)
                           .values(occurrences=count, last_seen=dt_from_ns(ts_ns)))
    return bool(res.rowcount)


def list_alerts(db: Database, run_id: str | None = None, unacked_only: bool = False, *,
                rules_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """Alerts, newest first: of one run or all, only the unacknowledged ones, only those of the
    rules (with a category) rather than every component's."""
    q = select(_ALERTS)
    if run_id is not None:
        q = q.where(_ALERTS.c.run_id == run_id)
    if unacked_only:
        q = q.where(_ALERTS.c.acknowledged.is_(False))
    if rules_only:
        q = q.where(_ALERTS.c.category.is_not(None))
    q = q.order_by(_ALERTS.c.ts.desc(), _ALERTS.c.id.desc()).limit(limit)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def get_alert(db: Database, alert_id: str) -> dict[str, Any] | None:
    with db.connect() as conn:
        row = conn.execute(select(_ALERTS).where(_ALERTS.c.id == alert_id)).mappings().first()
    return dict(row) if row else None


def acknowledge(db: Database, alert_id: str) -> bool:
    """Mark the alert acknowledged (once: a second acknowledgement keeps the first time). False if
    there is no alert with that id."""
    with db.begin(write=True) as conn:
        found = conn.execute(select(_ALERTS.c.acknowledged).where(_ALERTS.c.id == alert_id)).first()
        if found is None:
            return False
        if not found[0]:
            conn.execute(update(_ALERTS).where(_ALERTS.c.id == alert_id)
                         .values(acknowledged=True, acknowledged_at=datetime.now(UTC)))  # the operator's act: now
    return True

"""Store a run's performance figures (A2) in performance_metrics (replacing earlier ones)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from claire.storage import rows as R
from claire.storage.database import Database
from claire.storage.models import metadata


def write_performance(db: Database, run_id: str, rows: list[dict[str, Any]]) -> int:
    table = metadata.tables["performance_metrics"]
    with db.begin(write=True) as conn:
        conn.execute(delete(table).where(table.c.run_id == run_id))
        if rows:
            conn.execute(table.insert(), [
                {**{k: v for k, v in r.items() if k != "metadata"}, "run_id": run_id,
                 "metadata": R.as_json(r.get("metadata", {}))} for r in rows])
    return len(rows)

"""Issue 12: each service replica of the distributed runtime writes its heartbeat into
``service_status`` (what the live view's status panel shows), and "stopped" at a clean end."""

from __future__ import annotations

import threading
import time
from typing import Any

from claire.config import RunOptions, make_config
from claire.runtime.distributed.app import run_service, spec_from_config
from claire.storage import Database
from claire.storage.service_status import read_status


def test_each_service_replica_beats_and_stops(redis_url: str, redis_prefix: str, pg_database: str) -> None:
    cfg = make_config(RunOptions(synthetic=50, strategy="momentum"))
    spec = spec_from_config(cfg, bus_url=redis_url, prefix=redis_prefix, database_url=pg_database)
    stop = threading.Event()
    results: dict[str, Any] = {}

    def serve(name: str) -> None:
        results[name] = run_service(name, spec, 0, port=0, stop=stop)

    threads = [threading.Thread(target=serve, args=(name,), daemon=True) for name in ("writer", "risk")]
    threads[0].start()  # the writer makes the run's row; the others beat once it is there
    threads[1].start()
    db = Database(pg_database)
    try:
        deadline = time.monotonic() + 30
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                rows = read_status(db, cfg.run_key())
            except Exception:  # the writer is still creating the schema
                rows = []
            if {r["service"] for r in rows} == {"risk", "writer"}:
                break
            time.sleep(0.1)
        assert {(r["service"], r["replica"], r["status"], r["ready"]) for r in rows} == {
            ("risk", 0, "running", True), ("writer", 0, "running", True)}
        first = {r["service"]: r["heartbeat_at"] for r in rows}
        time.sleep(1.5)
        again = {r["service"]: r["heartbeat_at"] for r in read_status(db, cfg.run_key())}
        assert all(again[s] > first[s] for s in first)  # beating, about every second
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert results == {"writer": 0, "risk": 0}
        final = read_status(db, cfg.run_key())
        assert {(r["service"], r["status"], r["ready"], r["restarts"]) for r in final} == {
            ("risk", "stopped", False, 0), ("writer", "stopped", False, 0)}
    finally:
        stop.set()
        db.dispose()

"""`claire up --wait`: follow a distributed run to its end and write the same run files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from claire.bus import make_bus
from claire.events import IdFactory
from claire.portfolio import Portfolio
from claire.reporting import Recorder, summarize
from claire.reporting.runfiles import write_run_files
from claire.runtime.distributed.app import config_from_spec
from claire.runtime.distributed.runner import ReportService
from claire.runtime.distributed.stages import PortfolioStage


def broken_run(state_dir: Path | None) -> str | None:
    """Why the run under ``state_dir``'s supervisor can no longer finish (the supervisor died or
    failed, or gave a component up), or None while it can."""
    if state_dir is None:
        return None
    from claire.runtime.distributed.supervisor import read_state, supervisor_status

    sup = supervisor_status(state_dir)
    if sup.get("pid") and not sup["alive"] and sup.get("state") not in ("stopped",):
        return f"the supervisor (pid {sup['pid']}) is gone"
    if sup.get("state") == "failed":
        return f"the supervisor failed: {sup.get('error') or 'see its log'}"
    for name, comp in (read_state(state_dir).get("components") or {}).items():
        if comp.get("gave_up"):
            return f"{name} keeps crashing and was given up ({comp.get('reason') or 'see its log'})"
    return None


def wait_and_report(spec: dict[str, Any], timeout: float = 3600, console: Any = None,
                    state_dir: Path | None = None) -> dict[str, Any]:
    """Follow the run to its end; raises RuntimeError at once (not at the timeout) when the run
    can no longer finish (see :func:`broken_run`)."""
    cfg = config_from_spec(spec)
    runtime = cfg.runtime
    bus = make_bus(runtime.bus_url, prefix=runtime.prefix)
    recorder = Recorder()
    stage = PortfolioStage(Portfolio(cfg.portfolio.start_cash, IdFactory(cfg.run_key())))
    rep = ReportService(bus, recorder, stage, runtime.partitions)
    rep.ensure_groups()
    t0 = time.monotonic()
    deadline = t0 + timeout
    next_check = t0 + 1.0
    try:
        while time.monotonic() < deadline:
            n = rep.step(block_ms=200)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                why = broken_run(state_dir)
                if why is not None:
                    raise RuntimeError(f"the run cannot finish: {why} (see `claire status` and the logs)")
            if rep.done and n == 0:
                cp = bus.load_checkpoint("writer")
                if cp is not None and b"final_persisted" in cp[1]:
                    break
        else:
            raise TimeoutError(f"the run did not finish within {timeout:.0f}s (see `claire status` and the logs)")
    finally:
        bus.close()
    summary = summarize(recorder, stage.portfolio, {
        "runtime": "distributed", **cfg.summary_fields(), "symbols": sorted({f.symbol for f in recorder.signals}),
        "seconds": round(time.monotonic() - t0, 3), "signal_replicas": runtime.partitions,
        "events": stage.cur,
    })
    if runtime.database_url:
        # start-up time: storage (sqlalchemy, psycopg) only with a database
        from claire.reporting.period_metrics import performance_rows
        from claire.storage import Database  # start-up time: SQLAlchemy only for commands with a database
        from claire.storage.performance_metrics import (
            write_performance,  # start-up time: SQLAlchemy only for commands with a database
        )

        db = Database(runtime.database_url)
        try:
            write_performance(db, cfg.run_key(), performance_rows(recorder, stage.portfolio, summary))
        finally:
            db.dispose()
    if runtime.out:
        write_run_files(Path(runtime.out), recorder, summary)
    return summary

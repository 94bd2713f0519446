"""The papertest's paper component: the one-process paper runtime on the live MEXC feed, timed
by the run's clock, resumed from its database checkpoint when it starts again.

Run by the supervisor as ``claire papertest worker --run-dir DIR`` (never by hand). Signals:
SIGTERM/SIGINT pause (the state is checkpointed; a restart or ``resume`` goes on from there),
SIGUSR1 finishes the run now (``papertest stop``): the feed delivers what it holds, the core
closes the run (final snapshot) and the run files are written. Exit code 0 once the run is
complete (``<run_dir>/completed.json`` holds its summary), 3 when paused.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from claire.runtime.papertest.plan import Plan, load_plan, update_plan, write_state
from claire.runtime.papertest.source import Bounded, PaperTestSource, resume_point

log = logging.getLogger("claire.papertest.worker")

COMPLETED_FILE = "completed.json"
PAUSED = 3


def run_config(plan: Plan) -> Any:
    """The run's configuration tree (the run id is the papertest's)."""
    from claire.config import make_config
    from claire.config.options import RunOptions

    opts = RunOptions(source="mexc", symbols=",".join(plan.symbols), strategy=plan.strategy, param=list(plan.params),
                      out=plan.out_dir, db=plan.database_url(), run_id=plan.run_id)
    return make_config(opts, database_from_env=True)


def mexc_env(plan: Plan) -> dict[str, str]:
    """MEXC_REST_URL / MEXC_WS_URL of the plan (a local fake), else nothing (the environment's)."""
    env = {}
    if plan.mexc_rest_url:
        env["MEXC_REST_URL"] = plan.mexc_rest_url
    if plan.mexc_ws_url:
        env["MEXC_WS_URL"] = plan.mexc_ws_url
    return env


def load_state(db_url: str, run_id: str) -> bytes | None:
    """The run's checkpoint in the database (None: a fresh start)."""
    from claire.storage import Database, load_checkpoint

    db = Database(db_url)
    try:
        db.upgrade()
        cp = load_checkpoint(db, run_id)
    finally:
        db.dispose()
    return cp[1] if cp is not None else None


#: the event tables whose rows after a checkpoint are taken back on a resume, children first
#: (alerts stay: they were pushed already, and the alert rules know them by id)
DISCARDED = ("execution_analysis", "trades", "orders", "market_conditions", "signals", "portfolio_snapshots",
             "risk_events")


def discard_after(db_url: str, run_id: str, now_ns: int) -> dict[str, int]:
    """Delete the run's events after the checkpoint's time ``now_ns``: the writer persisted them
    before the crash, but the core restarts from the checkpoint and derives them again (from
    the same bars; ticks and quotes are new on a live feed, so fills may differ). So the database
    holds exactly what the resumed core makes: nothing twice, nothing the core does not know."""
    from datetime import UTC, datetime

    from sqlalchemy import delete, select

    from claire.storage import Database
    from claire.storage.models import metadata

    t = metadata.tables
    cut = datetime.fromtimestamp(now_ns / 1e9, UTC)
    out: dict[str, int] = {}
    db = Database(db_url)
    try:
        with db.engine.begin() as c:
            trades, ea = t["trades"], t["execution_analysis"]
            late = select(trades.c.id).where(trades.c.run_id == run_id, trades.c.ts > cut)
            out["execution_analysis"] = c.execute(delete(ea).where(ea.c.trade_id.in_(late))).rowcount
            sigs, mc = t["signals"], t["market_conditions"]
            late_sigs = select(sigs.c.id).where(sigs.c.run_id == run_id, sigs.c.ts > cut)
            out["market_conditions"] = c.execute(delete(mc).where(mc.c.signal_id.in_(late_sigs))).rowcount
            for name in DISCARDED:
                if name in ("execution_analysis", "market_conditions"):
                    continue
                tb = t[name]
                out[name] = c.execute(delete(tb).where(tb.c.run_id == run_id, tb.c.ts > cut)).rowcount
    finally:
        db.dispose()
    return {k: v for k, v in out.items() if v}


def checkpoint_interval(plan: Plan) -> float:
    """Seconds between checkpoints: 2 in a fast replay (a restart replays little), 30 on the
    live exchange: a checkpoint holds every event the recorder kept (about 11 MB after a day of
    three symbols, growing with the run), and a restart repairs what follows it from REST anyway."""
    return 2.0 if plan.clock == "exchange" else 30.0


def deadline(plan: Plan) -> Any:
    """``reached(ts_event_ns)``: the run's end on its clock (exchange event time or wall clock)."""
    if plan.clock == "exchange" and plan.end_event_ms is not None:
        end_ns = plan.end_event_ms * 1_000_000
        return lambda ts: ts >= end_ns
    ends = datetime.fromisoformat(plan.ends_at).timestamp() if plan.ends_at else float("inf")
    return lambda _ts: time.time() >= ends


def _fix_event_clock(plan: Plan, source: Any) -> Plan:
    """A replay timed by event time: its start is the first live window of the first start."""
    if plan.clock != "exchange" or plan.end_event_ms is not None:
        return plan
    start = source.feed.live_from_ms if source.feed is not None else None
    if start is None:
        start = source.feed.exchange_ms if source.feed is not None else None
    if not start:
        return plan
    return update_plan(plan.run_dir, start_event_ms=int(start), end_event_ms=int(start) + plan.duration_s * 1000)


class _Signals:
    """SIGTERM/SIGINT pause, SIGUSR1 finishes; installed first thing, so a signal that comes
    before the source exists is kept and applied to it once it does."""

    def __init__(self) -> None:
        self.stop = threading.Event()  # pause: checkpoint and stop
        self.finish = False
        self.source: Any = None
        handlers = {signal.SIGTERM: self._pause, signal.SIGINT: self._pause, signal.SIGUSR1: self._finish}
        self.old = {sig: signal.signal(sig, h) for sig, h in handlers.items()}

    def _pause(self, *_: Any) -> None:
        self.stop.set()
        if self.source is not None:
            self.source.stop()

    def _finish(self, *_: Any) -> None:
        log.info("finishing the run now (stop requested)")
        self.finish = True
        if self.source is not None:
            self.source.stop()

    def attach(self, source: Any) -> None:
        self.source = source
        if self.stop.is_set() or self.finish:
            source.stop()

    def restore(self) -> None:
        for sig, h in self.old.items():
            signal.signal(sig, h)


def run_worker(run_dir: str | Path) -> int:
    """Run (or resume) the papertest's paper runtime until the run's end; see the module doc."""
    sigs = _Signals()
    try:
        return _run(run_dir, sigs)
    finally:
        sigs.restore()


def _run(run_dir: str | Path, sigs: _Signals) -> int:
    from claire.runtime.paper import COMPLETED, run_paper
    from claire.runtime.sources import warmup_of, with_rules

    plan = load_plan(run_dir)
    os.environ.update(mexc_env(plan))
    cfg = run_config(plan)
    db_url = cfg.runtime.database_url
    state = load_state(db_url, plan.run_id)
    done = Path(run_dir) / COMPLETED_FILE
    if state == COMPLETED:
        log.info("run %s is complete already", plan.run_id)
        if not done.exists():
            write_state(done, {"run_id": plan.run_id, "completed": True})
        return 0
    resume = resume_point(state)
    if resume is not None and resume.now_ns:
        gone = discard_after(db_url, plan.run_id, resume.now_ns)
        if gone:
            log.info("resume: rows after the checkpoint taken back (derived again): %s", gone)
    # a replaying exchange (a local fake) pushes final candles: its closed bars are not fetched
    # again by REST (that would tie the replay's pace to MEXC's rate limit); gaps still are
    source = PaperTestSource(list(plan.symbols), resume=resume, warmup=warmup_of(cfg),
                             capture_dir=plan.out_dir / "capture", verify=plan.clock != "exchange")
    events = Bounded(source, resume, deadline(plan))
    try:
        source.start()
        sigs.attach(source)
        cfg = with_rules(cfg, source)
        plan = _fix_event_clock(plan, source)
        events.reached = deadline(plan)
        log.info("papertest %s: %s on %s, %s", plan.run_id, "resumed" if resume else "started",
                 ",".join(plan.symbols), f"from {resume}" if resume else "with warm-up")
        summary = run_paper(cfg, events, db_url=db_url, port=plan.port or None, stop=sigs.stop, resume=True,
                            skip_processed=False, checkpoint_every_s=checkpoint_interval(plan))
    finally:
        source.close()
    summary["data_quality_records"] = len(source.quality)
    summary["run_id"] = plan.run_id
    if not summary.get("completed"):
        log.info("paused: the state is checkpointed; a restart resumes it")
        return PAUSED
    write_state(done, json.loads(json.dumps(summary, default=str)))
    log.info("run %s complete: equity %s", plan.run_id, summary.get("final_equity"))
    return 0

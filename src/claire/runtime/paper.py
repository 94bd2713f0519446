"""Paper runtime in one process: the core paced by event time, outputs on the in-memory bus,
persisted by the writer into SQLite (default) or PostgreSQL, health/metrics on one port."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from claire.bus import InMemoryBus
from claire.engine.core import TradingCore
from claire.engine.kernel import RunConfig, build_core
from claire.events import (
    Alert,
    Event,
    Order,
    OrderResult,
    PortfolioSnapshot,
    RiskEvent,
    Signal,
    check_version,
    encode,
    versioned,
)
from claire.events.time import NS_PER_SEC
from claire.events.topics import topic_out
from claire.reporting import Recorder, summarize
from claire.reporting.period_metrics import performance_rows
from claire.reporting.runfiles import write_run_files
from claire.runtime.backtest import bind_source
from claire.runtime.distributed.runner import WriterService
from claire.runtime.http import HealthServer
from claire.runtime.metrics import ServiceMetrics

log = logging.getLogger("claire.paper")


def pace(events: Iterable[Any], speed: float | None, stop: threading.Event) -> Iterable[Any]:
    """Yield events at ``speed`` times event-time pace (None: as fast as possible)."""
    if not speed:
        for ev in events:
            if stop.is_set():
                return
            yield ev
        return
    t_wall0 = time.monotonic()
    t_ev0 = None
    for ev in events:
        if t_ev0 is None:
            t_ev0 = ev.ts_event
        delay = t_wall0 + (ev.ts_event - t_ev0) / NS_PER_SEC / speed - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        if stop.is_set():
            return
        yield ev


# --- the checkpoint in the database -----------------------------------------------------------
# JSON written with msgspec: {"version": 1, "core": TradingCore.get_state(), "recorder": {the events
# the recorder kept, by type}}; a finished run stores COMPLETED instead. Plain data only: the
# recorder is rebuilt by feeding it its events again (round trips and all follow from them).

COMPLETED = b'{"completed": true}'
_cp_encoder = msgspec.json.Encoder()


class _Header(msgspec.Struct):
    version: Any = None
    completed: bool = False


class _RecorderState(msgspec.Struct):
    signals: list[Signal] = []
    orders: list[Order] = []
    results: list[OrderResult] = []
    snapshots: list[PortfolioSnapshot] = []
    risk_events: list[RiskEvent] = []
    alerts: list[Alert] = []


class _Checkpoint(msgspec.Struct):
    version: int
    core: dict[str, Any]
    recorder: _RecorderState


def checkpoint_bytes(core: TradingCore, recorder: Recorder) -> bytes:
    """The paper run's checkpoint: the core's state and the events the recorder kept."""
    rec = {"signals": recorder.signals, "orders": recorder.orders, "results": recorder.results,
           "snapshots": recorder.snapshots, "risk_events": recorder.risk_events, "alerts": recorder.alerts}
    return _cp_encoder.encode(versioned({"core": core.get_state(), "recorder": rec}))


def restore_checkpoint(raw: bytes, core: TradingCore) -> Recorder | None:
    """Restore ``core`` from a checkpoint of :func:`checkpoint_bytes`; the recorder rebuilt from
    its events. None for a finished run (nothing to resume). StateError for another version."""
    head = msgspec.json.decode(raw, type=_Header)
    if head.completed:
        return None
    check_version({"version": head.version}, "paper run")
    cp = msgspec.json.decode(raw, type=_Checkpoint)
    core.set_state(cp.core)
    recorder = Recorder()
    r = cp.recorder
    for events in (r.signals, r.orders, r.results, r.snapshots, r.risk_events, r.alerts):
        for ev in events:
            recorder(ev)
    return recorder


def run_paper(cfg: RunConfig, events: Iterable[Any], *, db_url: str, speed: float | None = None,
              port: int | None = 8000, stop: threading.Event | None = None,
              progress: Callable[[int], Any] | None = None, checkpoint_every_s: float = 2.0,
              resume: bool = True) -> dict[str, Any]:
    """Run the core over ``events``; every ``checkpoint_every_s`` the writer is drained and the
    core's state is stored with the events (same transaction). Started again on the same run
    (same config, same database) it resumes from the last checkpoint: cash, positions, open
    orders, high-water mark, daily PnL and risk state come back exactly, and the events after the
    checkpoint are replayed (their deterministic ids make the repeats no-ops in the database)."""
    run = PaperRun(cfg, events, db_url=db_url, port=port, stop=stop or threading.Event(), resume=resume)
    return run.run(speed, progress, checkpoint_every_s)


class PaperRun:
    """The moving parts of one paper run: the core, the recorder, the in-memory bus with the
    writer thread behind it, the health port, and the checkpoints that make a restart resume."""

    def __init__(self, cfg: RunConfig, events: Iterable[Any], *, db_url: str, port: int | None,
                 stop: threading.Event, resume: bool) -> None:
        # start-up time: SQLAlchemy and the driver only for the runtimes that write a database
        from claire.storage import Database, EventWriter

        self.cfg = cfg
        self.events = events
        self.stop = stop
        self.bus = InMemoryBus("paper:")
        self.metrics = ServiceMetrics("paper")
        self.recorder = Recorder()
        self.pending: list[tuple[str, bytes]] = []
        self.published = 0
        self.core = build_core(cfg, self._emit)
        bind_source(events, self.core)
        # bind the port first: a busy port fails here, before the database is touched or a thread starts
        self.server = HealthServer(port, "paper", self.metrics.registry, self._health, self._ready) \
            if port is not None else None
        try:
            self.db = Database(db_url)
            self.db.upgrade()
        except BaseException:
            if self.server is not None:
                self.server.server.server_close()  # not started: release the port
            raise
        self.writer = EventWriter(self.db, cfg.run_key(), mode="paper")
        self.skip = 0
        cp = self.writer.load_checkpoint() if resume else None
        # a finished run (None) is replayed from the start (its rows are already there: no-ops)
        restored = restore_checkpoint(cp[1], self.core) if cp is not None else None
        if restored is not None:
            self.recorder = restored
            self.skip = self.core.processed
            log.info("resuming run %s from its checkpoint after %d market events", cfg.run_key(), self.skip)
        self.wsvc = WriterService(self.bus, self.writer, metrics=self.metrics, block_ms=50)

    # --- the core's outputs -----------------------------------------------------------------
    def _emit(self, ev: Event) -> None:
        self.recorder(ev)  # `self.recorder` at call time: a resume replaces it
        stream, _ = topic_out(ev)
        self.pending.append((stream, encode(ev)))

    def _flush_pending(self) -> None:
        if not self.pending:
            return
        by_stream: dict[str, list[bytes]] = {}
        for s, raw in self.pending:
            by_stream.setdefault(s, []).append(raw)
        self.pending.clear()
        for s, raws in by_stream.items():
            self.bus.publish_many(s, raws)
            self.published += len(raws)

    def _checkpoint(self) -> None:
        self._flush_pending()
        deadline = time.monotonic() + 60
        while self.wsvc.consumed < self.published and time.monotonic() < deadline:
            time.sleep(0.002)
        self.writer.save_checkpoint(self.core.processed, checkpoint_bytes(self.core, self.recorder))

    # --- /health and /ready ---------------------------------------------------------------
    def _health(self) -> dict[str, Any]:
        return {"processed": self.core.processed, "persisted": self.wsvc.written}

    def _ready(self) -> tuple[bool, dict[str, Any]]:
        try:
            self.db.check()
            ok_db: Any = True
        except Exception as exc:
            ok_db = f"unreachable: {type(exc).__name__}"
        return ok_db is True, {"checks": {"database": ok_db, "bus": True}}

    # --- the run ----------------------------------------------------------------------------
    def _skipped(self) -> Iterator[Any]:
        """The events after the checkpoint's position (those before it are already processed)."""
        it = iter(self.events)
        for _ in range(self.skip):
            if next(it, None) is None:
                break
        yield from it

    def _wait(self, done: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _loop(self, speed: float | None, progress: Callable[[int], Any] | None, every_s: float) -> int:
        n = self.skip
        next_cp = time.monotonic() + every_s
        on_market = self.core.on_market
        for ev in pace(self._skipped(), speed, self.stop):
            on_market(ev)
            n += 1
            if self.pending:
                self._flush_pending()
            if time.monotonic() >= next_cp:
                self._checkpoint()
                next_cp = time.monotonic() + every_s
            if progress is not None and n % 10_000 == 0:
                progress(10_000)
        return n

    def _end(self) -> None:
        """Stopped (SIGTERM/SIGINT): keep the state for a resume. End of data: finish the core
        and mark the run complete once everything is persisted."""
        if self.stop.is_set():
            self._checkpoint()
            return
        self.core.finish("end of data")
        self._flush_pending()
        self._wait(lambda: self.wsvc.final_persisted, 120)
        self.writer.save_checkpoint(self.core.processed, COMPLETED)

    def run(self, speed: float | None, progress: Callable[[int], Any] | None, every_s: float) -> dict[str, Any]:
        """Process the events, then write the summary, the period metrics and the run files."""
        self.wsvc.start()
        wstop = threading.Event()
        wthread = threading.Thread(target=self.wsvc.run, args=(wstop,), name="writer", daemon=True)
        wthread.start()
        if self.server is not None:
            self.server.start()
        t0 = time.perf_counter()
        n = self.skip
        try:
            n = self._loop(speed, progress, every_s)
            self._end()
            if progress is not None:
                progress(n % 10_000)
            self._wait(lambda: self.stop.is_set() or self.wsvc.final_persisted, 120)
        finally:
            wstop.set()
            wthread.join(timeout=30)
            self.writer.close(end_run=True)
            if self.server is not None:
                self.server.stop()
            self.bus.close()
        return self._report(n, time.perf_counter() - t0)

    def _report(self, n: int, seconds: float) -> dict[str, Any]:
        core, stopped = self.core, self.stop.is_set()
        summary = summarize(self.recorder, core.portfolio, {
            "runtime": "paper", **self.cfg.summary_fields(), "events": n,
            "symbols": sorted(core.signals.strategies), "persisted_events": self.wsvc.written,
            "seconds": round(seconds, 3), "resumed_at": self.skip or None, "completed": not stopped,
            "database": self.db.safe_url,
        })
        if not stopped:
            # start-up time: SQLAlchemy only for the runtimes that write a database
            from claire.storage.performance_metrics import write_performance

            write_performance(self.db, self.cfg.run_key(), performance_rows(self.recorder, core.portfolio, summary))
        self.db.dispose()
        if self.cfg.runtime.out:
            write_run_files(Path(self.cfg.runtime.out), self.recorder, summary)
        return summary

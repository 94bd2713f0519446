"""Paper runtime in one process: the core paced by event time, outputs on the in-memory bus,
persisted by the writer into SQLite (default) or PostgreSQL, health/metrics on one port."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
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
from claire.reporting.runfiles import write_run_files
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
    from claire.storage import Database, EventWriter

    stop = stop or threading.Event()
    bus = InMemoryBus("paper:")
    metrics = ServiceMetrics("paper")
    recorder = Recorder()
    pending: list[tuple[str, bytes]] = []

    def emit(ev: Event) -> None:  # reads `recorder` at call time: a resume replaces it
        recorder(ev)
        stream, _ = topic_out(ev)
        pending.append((stream, encode(ev)))

    core = build_core(cfg, emit)
    # bind the port first: a busy port fails here, before the database is touched or a thread starts
    server = HealthServer(port, "paper", metrics.registry, lambda: health(), lambda: ready()) \
        if port is not None else None
    try:
        db = Database(db_url)
        db.upgrade()
    except BaseException:
        if server is not None:
            server.server.server_close()  # not started: release the port
        raise
    writer = EventWriter(db, cfg.run_key(), mode="paper")
    skip = 0
    cp = writer.load_checkpoint() if resume else None
    # a finished run (None) is replayed from the start (its rows are already there: no-ops)
    restored = restore_checkpoint(cp[1], core) if cp is not None else None
    if restored is not None:
        recorder = restored
        skip = core.processed
        log.info("resuming run %s from its checkpoint after %d market events", cfg.run_key(), skip)

    wsvc = WriterService(bus, writer, metrics=metrics, block_ms=50)
    wsvc.start()
    wstop = threading.Event()
    wthread = threading.Thread(target=wsvc.run, args=(wstop,), name="writer", daemon=True)
    wthread.start()
    state = {"last_ts": 0, "processed": 0}

    def health() -> dict[str, Any]:
        return {"processed": core.processed, "persisted": wsvc.written}

    def ready() -> tuple[bool, dict[str, Any]]:
        try:
            db.check()
            ok_db: Any = True
        except Exception as exc:
            ok_db = f"unreachable: {type(exc).__name__}"
        return ok_db is True, {"checks": {"database": ok_db, "bus": True}}

    if server is not None:
        server.start()
    published = [0]

    def flush_pending() -> None:
        if pending:
            by_stream: dict[str, list[bytes]] = {}
            for s, raw in pending:
                by_stream.setdefault(s, []).append(raw)
            pending.clear()
            for s, raws in by_stream.items():
                bus.publish_many(s, raws)
                published[0] += len(raws)

    def checkpoint() -> None:
        flush_pending()
        deadline = time.monotonic() + 60
        while wsvc.consumed < published[0] and time.monotonic() < deadline:
            time.sleep(0.002)
        writer.save_checkpoint(core.processed, checkpoint_bytes(core, recorder))

    def skipped(it: Iterable[Any]) -> Iterable[Any]:
        it = iter(it)
        for _ in range(skip):
            if next(it, None) is None:
                break
        yield from it

    t0 = time.perf_counter()
    n = skip
    next_cp = time.monotonic() + checkpoint_every_s
    try:
        for ev in pace(skipped(events), speed, stop):
            core.on_market(ev)
            n += 1
            if pending:
                flush_pending()
            if time.monotonic() >= next_cp:
                checkpoint()
                next_cp = time.monotonic() + checkpoint_every_s
            state["last_ts"] = ev.ts_event
            if progress is not None and n % 10_000 == 0:
                progress(10_000)
        if stop.is_set():  # stopped (SIGTERM/SIGINT): keep the state for a resume, do not finish
            checkpoint()
        else:
            core.finish("end of data")
            flush_pending()
            deadline = time.monotonic() + 120
            while not wsvc.final_persisted and time.monotonic() < deadline:
                time.sleep(0.02)
            writer.save_checkpoint(core.processed, COMPLETED)
        if progress is not None:
            progress(n % 10_000)
        deadline = time.monotonic() + 120
        while not stop.is_set() and not wsvc.final_persisted and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        wstop.set()
        wthread.join(timeout=30)
        writer.close(end_run=True)
        if server is not None:
            server.stop()
        bus.close()
    seconds = time.perf_counter() - t0
    summary = summarize(recorder, core.portfolio, {
        "runtime": "paper", **cfg.summary_fields(), "events": n,
        "symbols": sorted(core.signals.strategies), "persisted_events": wsvc.written, "seconds": round(seconds, 3),
        "resumed_at": skip or None, "completed": not stop.is_set(),
        "database": db.safe_url,
    })
    if not stop.is_set():
        from claire.reporting.period_metrics import performance_rows
        from claire.storage.performance_metrics import write_performance

        write_performance(db, cfg.run_key(), performance_rows(recorder, core.portfolio, summary))
    db.dispose()
    if cfg.runtime.out:
        write_run_files(Path(cfg.runtime.out), recorder, summary)
    return summary

"""Paper runtime in one process: the core paced by event time, outputs on the in-memory bus,
persisted by the writer into SQLite (default) or PostgreSQL, health/metrics on one port."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from claire.bus import InMemoryBus
from claire.engine.core import TradingCore
from claire.engine.kernel import RunConfig, build_core
from claire.events import (
    Alert,
    AlertLevel,
    Event,
    Order,
    OrderResult,
    PortfolioSnapshot,
    RiskEvent,
    Signal,
    check_version,
    decode,
    encode,
    versioned,
)
from claire.events.ids import IdFactory, make_id
from claire.events.time import NS_PER_SEC
from claire.events.topics import topic_out
from claire.reporting import Recorder, summarize
from claire.reporting.period_metrics import performance_rows
from claire.reporting.runfiles import write_run_files
from claire.runtime.alerts import attach_alerts
from claire.runtime.backtest import bind_source
from claire.runtime.distributed.runner import WriterService
from claire.runtime.http import HealthServer
from claire.runtime.metrics import MarketDataCollector, ServiceMetrics, run_info_labels

log = logging.getLogger("claire.paper")


def _default_spool_dir(cfg: RunConfig) -> Path:
    """Where a run's events wait while the database is away: under its run files, else runs/<id>."""
    base = Path(cfg.runtime.out) if cfg.runtime.out else Path("runs") / cfg.run_key()
    return base / "spool"


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
# JSON written with msgspec: {"version": 1, "core": TradingCore.get_state(), "journal": {"path",
# "offset"}}; a finished run stores COMPLETED instead. The core's state is bounded however long the
# run; the events the recorder keeps (for the run files) are not, so they are appended, at each
# checkpoint only those since the last one, to a journal file beside the run files, and the
# checkpoint names how far into it it reaches (a 7-day run: a checkpoint of a few kB, not ~75 MB
# rewritten every 30 s). Checkpoints of before the journal (their "recorder" inline) still restore.

COMPLETED = b'{"completed": true}'
_cp_encoder = msgspec.json.Encoder()
_RECORDED = ("signals", "orders", "results", "snapshots", "risk_events", "alerts")


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


class _JournalRef(msgspec.Struct):
    path: str
    offset: int


class _Checkpoint(msgspec.Struct):
    version: int
    core: dict[str, Any]
    recorder: _RecorderState = msgspec.field(default_factory=_RecorderState)
    journal: _JournalRef | None = None


class RecorderJournal:
    """The recorder's events as JSON lines in an append-only file (fsync'd before the checkpoint
    that reaches to its end is committed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.written = dict.fromkeys(_RECORDED, 0)

    def begin(self, recorder: Recorder, offset: int = 0) -> None:
        """Start at ``offset`` (0: a new run); what lies beyond it belongs to no checkpoint (the
        events after it are derived again by the resumed core) and is cut off."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, offset)
        finally:
            os.close(fd)
        self.offset = offset
        self.written = {k: len(getattr(recorder, k)) for k in _RECORDED}

    def append(self, recorder: Recorder) -> int:
        """Append the events kept since the last call; the offset the checkpoint reaches to."""
        lines: list[bytes] = []
        for kind in _RECORDED:
            kept = getattr(recorder, kind)
            n = self.written[kind]
            if len(kept) > n:
                lines.extend(encode(ev) for ev in kept[n:])
                self.written[kind] = len(kept)
        if lines:
            data = b"\n".join(lines) + b"\n"
            with open(self.path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            self.offset += len(data)
        return self.offset

    @staticmethod
    def read(path: Path, offset: int) -> list[Event]:
        with open(path, "rb") as fh:
            data = fh.read(offset)
        if len(data) < offset:
            raise OSError(f"{path}: the recorder journal is shorter ({len(data)} bytes) than its checkpoint says ({offset})")
        return [decode(line) for line in data.splitlines() if line]


def checkpoint_bytes(core: TradingCore, recorder: Recorder, journal: RecorderJournal | None = None) -> bytes:
    """The paper run's checkpoint: the core's state and where the recorder's events are (the
    journal, appended to now), or the events inline without one."""
    if journal is not None:
        offset = journal.append(recorder)
        return _cp_encoder.encode(versioned({"core": core.get_state(),
                                             "journal": {"path": str(journal.path.resolve()), "offset": offset}}))
    rec = {k: getattr(recorder, k) for k in _RECORDED}
    return _cp_encoder.encode(versioned({"core": core.get_state(), "recorder": rec}))


def restore_checkpoint(raw: bytes, core: TradingCore,
                       journal: RecorderJournal | None = None) -> Recorder | None:
    """Restore ``core`` from a checkpoint of :func:`checkpoint_bytes`; the recorder rebuilt from
    its events (and ``journal`` continued where the checkpoint left it). None for a finished run
    (nothing to resume). StateError for another version."""
    head = msgspec.json.decode(raw, type=_Header)
    if head.completed:
        return None
    check_version({"version": head.version}, "paper run")
    cp = msgspec.json.decode(raw, type=_Checkpoint)
    core.set_state(cp.core)
    recorder = Recorder()
    if cp.journal is not None:
        path = Path(cp.journal.path)
        if not path.exists() and journal is not None:
            path = journal.path  # the run directory moved: the journal of this run's place
        for ev in RecorderJournal.read(path, cp.journal.offset):
            recorder(ev)
    r = cp.recorder
    for events in (r.signals, r.orders, r.results, r.snapshots, r.risk_events, r.alerts):
        for ev in events:
            recorder(ev)
    if journal is not None and cp.journal is not None:
        journal.begin(recorder, cp.journal.offset)
    elif journal is not None:  # an inline checkpoint: its events start the journal
        journal.begin(recorder, 0)
        journal.written = dict.fromkeys(_RECORDED, 0)
        journal.append(recorder)
    return recorder


def run_paper(cfg: RunConfig, events: Iterable[Any], *, db_url: str, speed: float | None = None,
              port: int | None = 8000, stop: threading.Event | None = None,
              progress: Callable[[int], Any] | None = None, checkpoint_every_s: float = 2.0,
              resume: bool = True, skip_processed: bool = True,
              spool_dir: str | Path | None = None, web: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the core over ``events``; every ``checkpoint_every_s`` the writer is drained and the
    core's state is stored with the events (same transaction). Started again on the same run
    (same config, same database) it resumes from the last checkpoint: cash, positions, open
    orders, high-water mark, daily PnL and risk state come back exactly, and the events after the
    checkpoint are replayed (their deterministic ids make the repeats no-ops in the database).
    ``skip_processed=False``: ``events`` already start after the checkpoint (a live source that
    resumes where the core stopped, as the papertest's), so none of them is skipped.
    While the database is unreachable the events go to a spool file in ``spool_dir`` (default
    ``<out>/spool``, else ``runs/<run id>/spool``) and the run goes on (see :mod:`claire.storage.spool`).
    ``web``: serve the live view beside the run (``host``, ``port``, ``token``, ``announce(url)``)."""
    run = PaperRun(cfg, events, db_url=db_url, port=port, stop=stop or threading.Event(), resume=resume,
                   skip_processed=skip_processed, spool_dir=spool_dir)
    run.web_options = web
    return run.run(speed, progress, checkpoint_every_s)


class PaperRun:
    """The moving parts of one paper run: the core, the recorder, the in-memory bus with the
    writer thread behind it, the health port, and the checkpoints that make a restart resume."""

    def __init__(self, cfg: RunConfig, events: Iterable[Any], *, db_url: str, port: int | None,
                 stop: threading.Event, resume: bool, skip_processed: bool = True,
                 spool_dir: str | Path | None = None) -> None:
        # start-up time: SQLAlchemy and the driver only for the runtimes that write a database
        from claire.storage import Database, EventWriter
        from claire.storage.spool import SpoolingWriter

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
        self._watch_metrics()
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
        # the database may go away: events go to a spool meanwhile (a spool left behind is written now)
        self.db_alerts: queue.SimpleQueue[Alert] = queue.SimpleQueue()
        self.sink = SpoolingWriter(self.writer, spool_dir or _default_spool_dir(cfg), on_change=self._db_state)
        self.skip = 0
        self.resumed_from = 0  # market events processed before this (resumed) start
        cp = self.writer.load_checkpoint() if resume else None
        self.journal = RecorderJournal(Path(spool_dir or _default_spool_dir(cfg)).parent / "recorder.journal")
        # a finished run (None) is replayed from the start (its rows are already there: no-ops)
        restored = restore_checkpoint(cp[1], self.core, self.journal) if cp is not None else None
        if restored is None:
            self.journal.begin(self.recorder)
        else:
            self.recorder = restored
            self.skip = self.core.processed if skip_processed else 0
            self.resumed_from = self.core.processed
            log.info("resuming run %s from its checkpoint after %d market events", cfg.run_key(), self.skip)
        self.metrics.start_equity(float(self.core.portfolio.equity()))  # not 0.0 before the first snapshot
        self.wsvc = WriterService(self.bus, self.sink, metrics=self.metrics, block_ms=50)
        # the alert rules see what the writer stores; new alerts go to `alerts` and CLAIRE_NOTIFY_URLS
        self.alerts = attach_alerts(self.wsvc, cfg.run_key(), cfg.alerts, self.db, cfg.runtime.out or ".")

    # --- the core's outputs -----------------------------------------------------------------
    def _emit(self, ev: Event) -> None:
        self.recorder(ev)  # `self.recorder` at call time: a resume replaces it
        self.metrics.observe(ev)  # this process owns every metric: the snapshots the database stores
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
        while not self.db_alerts.empty():  # raised on the writer's thread, emitted on the core's
            self._emit(self.db_alerts.get())
        self._flush_pending()
        self._hand_prices_after()
        deadline = time.monotonic() + 60
        while self.wsvc.consumed < self.published and time.monotonic() < deadline:
            time.sleep(0.002)
        self.sink.save_checkpoint(self.core.processed, checkpoint_bytes(self.core, self.recorder, self.journal))

    # --- metrics and progress ------------------------------------------------------------
    def _watch_metrics(self) -> None:
        """What /metrics reads at scrape time: the run, the risk state, the run directory's disk,
        readiness, the database, and the freshness of each symbol (as the market data service's)."""
        m = self.metrics
        m.run_info = run_info_labels(self.cfg)
        m.disk_path = self.cfg.runtime.out
        risk = self.core.risk
        m.trading_state = lambda: risk.state
        m.ready_check = self._ready
        m.database_check = lambda: self.db.check()
        self.last_seen: dict[str, float] = {}  # symbol -> time.monotonic() of its last event
        self.last_ts: dict[str, int] = {}  # symbol -> its last event time (ns)
        self.per_symbol: dict[str, int] = {}  # symbol -> market events processed
        m.registry.register(MarketDataCollector("paper", self._ages, lambda: dict(self.last_ts),
                                                lambda: dict(self.per_symbol)))
        self._progress_n = 0
        self._finished = False  # the progress reporter stops

    def _ages(self) -> dict[str, float | None]:
        now = time.monotonic()
        return {sym: now - t for sym, t in list(self.last_seen.items())}

    def _seen(self, ev: Any, now: float) -> None:
        sym = ev.symbol
        self.last_seen[sym] = now
        self.last_ts[sym] = ev.ts_event
        self.per_symbol[sym] = self.per_symbol.get(sym, 0) + 1

    PROGRESS_EVERY_S = 10.0

    def _tick(self, n: int) -> None:
        """At each checkpoint: the market events counted, the last event time and its lag."""
        m = self.metrics
        m.child(m.events_in, "paper", "market_data").inc(n - self._progress_n)
        self._progress_n = n
        last = max(self.last_ts.values(), default=0)
        if last:
            m.child(m.last_event_ts, "paper").set(last / NS_PER_SEC)
            m.child(m.lag, "paper").set(time.time() - last / NS_PER_SEC)

    def _report_progress(self) -> None:
        """A progress line in the log every PROGRESS_EVERY_S (also when the output is not a
        terminal, where no progress bar shows), until the run ends."""
        while not self.stop.wait(self.PROGRESS_EVERY_S) and not self._finished:
            core = self.core
            n = core.processed
            pf = core.portfolio
            snaps = self.recorder.snapshots
            snap = snaps[-1] if snaps else None
            log.info("progress: %d market events, equity %.2f USDT, drawdown %.2f %%, %d order results, "
                     "%d events persisted, trading %s", n, float(snap.equity if snap else pf.start_cash),
                     float(snap.drawdown_pct) * 100 if snap else 0.0, len(self.recorder.results),
                     self.wsvc.written, getattr(core.risk.state, "value", core.risk.state))

    # --- /health and /ready ---------------------------------------------------------------
    def _health(self) -> dict[str, Any]:
        return {"processed": self.core.processed, "persisted": self.wsvc.written, "spool": self.sink.state()}

    def _db_state(self, reachable: bool, reason: str) -> None:
        """The spooling writer lost or found the database: an alert, emitted at the next checkpoint."""
        n = self.sink.outages
        ts = max(self.core.clock.now, 0)
        if reachable:
            level, code, msg = AlertLevel.INFO, "database_reachable", f"database reachable again: {reason}"
        else:
            level, code = AlertLevel.CRITICAL, "database_unreachable"
            msg = f"database unreachable ({reason}); trading goes on, events are held in {self.sink.spool.directory}"
        self.db_alerts.put(Alert(
            id=make_id(IdFactory(self.cfg.run_key()).namespace, code, n, ts), ts_event=ts,
            ts_recv=time.time_ns(), level=level, source="paper", code=code, message=msg,
            details={"spool": str(self.sink.spool.directory), "outage": n},
        ))

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
            now = time.monotonic()
            self._seen(ev, now)
            if now >= next_cp:
                self._checkpoint()
                self._tick(n)
                next_cp = time.monotonic() + every_s
            if progress is not None and n % 10_000 == 0:
                progress(10_000)
        return n

    def _hand_prices_after(self) -> None:
        """The fills' prices after found by the core's signal engine, to the writer's analytics
        (``execution_analysis.price_after``, written once their rows are stored)."""
        take = getattr(self.core.signals, "take_prices_after", None)
        analytics = getattr(self.wsvc, "analytics", None)
        if take is not None and analytics is not None:
            analytics.prices_after(take())

    def _end(self) -> None:
        """Stopped (SIGTERM/SIGINT): keep the state for a resume. End of data: finish the core
        and mark the run complete once everything is persisted."""
        if self.stop.is_set():
            self._checkpoint()
            return
        while not self.db_alerts.empty():  # a database alert not yet emitted: before the final snapshot
            self._emit(self.db_alerts.get())
        self.core.finish("end of data")
        self._hand_prices_after()  # before the final snapshot: the writer completes them at the end
        self._flush_pending()
        self._wait(lambda: self.wsvc.final_persisted, 120)
        self.sink.save_checkpoint(self.core.processed, COMPLETED)

    def run(self, speed: float | None, progress: Callable[[int], Any] | None, every_s: float) -> dict[str, Any]:
        """Process the events, then write the summary, the period metrics and the run files."""
        self.wsvc.start()
        wstop = threading.Event()
        wthread = threading.Thread(target=self.wsvc.run, args=(wstop,), name="writer", daemon=True)
        wthread.start()
        if self.server is not None:
            self.server.start()
            log.info("serving /health /ready /metrics on http://127.0.0.1:%d", self.server.port)
        reporter = threading.Thread(target=self._report_progress, name="progress", daemon=True)
        reporter.start()
        t0 = time.perf_counter()
        n = self.skip
        failed = True
        try:
            self._start_status()
            n = self._loop(speed, progress, every_s)
            self._end()
            if progress is not None:
                progress(n % 10_000)
            self._wait(lambda: self.stop.is_set() or self.wsvc.final_persisted, 120)
            failed = False
        finally:
            self._finished = True
            wstop.set()
            wthread.join(timeout=30)
            if not failed and not self.stop.is_set():
                self.alerts.final_summary()  # the day so far, at the end of the data
            self.alerts.close()
            self.sink.close(end_run=True)
            self._stop_status("failed" if failed else "stopped")
            if self.server is not None:
                self.server.stop()
            self.bus.close()
        return self._report(n, time.perf_counter() - t0)

    # --- heartbeat in service_status and the live view (issue 12) -------------------------------
    web_options: dict[str, Any] | None = None
    STATUS_EVERY_S = 1.0

    def _start_status(self) -> None:
        """Heartbeats of service "paper" every STATUS_EVERY_S (a thread; a database away is
        logged, never fatal), and the live view when asked (``web_options``)."""
        from claire.storage.service_status import StatusHeartbeat  # start-up time: only with a database

        self.status = StatusHeartbeat(self.db, self.cfg.run_key(), "paper", 0, self._status_sample,
                                      self.STATUS_EVERY_S).start()
        self.web: Any = None
        if self.web_options is not None:
            from claire.runtime.web import serve_in_thread  # start-up time: FastAPI only with --web

            opts = self.web_options
            web = serve_in_thread(self.db.url.render_as_string(hide_password=False), self.cfg.run_key(),
                                  opts.get("host", "127.0.0.1"), int(opts.get("port", 8080)), opts.get("token"))
            self.web = web
            announce = opts.get("announce")
            if announce is not None:
                announce(web.url)

    def _status_sample(self) -> dict[str, Any]:
        """What a heartbeat says: events processed, the last event time per symbol, the lag (live
        data: wall clock minus event time; a replay runs on its own clock, so none), the backlog."""
        last_ts = dict(list(getattr(self, "last_ts", {}).items()))
        last = max(last_ts.values(), default=0) or self.core.clock.now
        live = self.cfg.data.source == "mexc" and not self.cfg.data.paths
        iso = {sym: datetime.fromtimestamp(ts / NS_PER_SEC, UTC).isoformat() for sym, ts in last_ts.items()}
        return {"status": "running", "ready": True, "events_processed": self.core.processed,
                "last_event_ts": last or None, "lag_ms": max(time.time() * 1000 - last / 1e6, 0) if live and last else None,
                "details": {"symbols": iso, "backlog": max(self.published - self.wsvc.consumed, 0),
                            "persisted": self.wsvc.written, "source": "live" if live else "replay"}}

    def _stop_status(self, status: str) -> None:
        heartbeat, web = getattr(self, "status", None), getattr(self, "web", None)
        if heartbeat is not None:
            heartbeat.stop(status)
        if web is not None:
            web.stop()

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

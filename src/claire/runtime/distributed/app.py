"""Build and run one service of the distributed runtime (`claire service NAME`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from claire.bus import make_bus
from claire.bus.base import Bus
from claire.config import DEFAULT_PORTS, TOPOLOGIES, RunConfig, from_spec, to_spec
from claire.engine.kernel import build_core
from claire.events import Alert, AlertLevel, Bar, IdFactory, encode
from claire.events.topics import ALERTS, PIPE_RESULTS, PIPE_SIGNALS
from claire.portfolio import Portfolio
from claire.runtime.alerts import attach_alerts
from claire.runtime.distributed.runner import (
    MarketDataService,
    StageService,
    WriterService,
    dead_letter_streams,
    stage_inputs,
    start_status,
)
from claire.runtime.distributed.stages import (
    AccountStage,
    ExecutionStage,
    PortfolioStage,
    RiskStage,
    SignalStage,
    partition_stream,
)
from claire.runtime.http import HealthServer
from claire.runtime.metrics import MarketDataCollector, ServiceMetrics

log = logging.getLogger("claire.runtime.distributed")

SERVICES = ["marketdata", "signal", "risk", "execution", "portfolio", "writer", "account"]
__all__ = ["DEFAULT_PORTS", "SERVICES", "TOPOLOGIES", "build_service", "config_from_spec", "market_events",
           "resolve_secrets", "run_hash", "run_service", "spec_from_config", "split_secrets", "with_exchange_rules"]


# --- the run spec: everything a service needs, shared by all services of a run ---------------
# The spec is the run's configuration tree (claire.config.RunConfig) serialised, nothing else.

def spec_from_config(cfg: RunConfig, **runtime: Any) -> dict[str, Any]:
    """The run spec of ``cfg``: its tree as JSON builtins, with the run id fixed and the data
    files absolute (every service derives the same ids and finds the same files). ``runtime``
    sets fields of ``cfg.runtime`` (bus_url, prefix, database_url, partitions, speed, ...)."""
    rt = msgspec.structs.replace(cfg.runtime, **runtime) if runtime else cfg.runtime
    if rt.topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {rt.topology!r} (one of {', '.join(TOPOLOGIES)})")
    rt = msgspec.structs.replace(rt, run_id=cfg.run_key())
    data = msgspec.structs.replace(cfg.data, paths=[str(Path(p).resolve()) for p in cfg.data.paths])
    return to_spec(msgspec.structs.replace(cfg, data=data, runtime=rt))


def config_from_spec(spec: dict[str, Any]) -> RunConfig:
    """The configuration tree of a run spec (see :func:`spec_from_config`)."""
    return from_spec(spec)


# --- secrets: a spec on disk names environment variables, never passwords -------------------
#: spec key of a URL -> the environment variable that carries its password to the services
SECRET_ENV = {"database_url": "CLAIRE_SPEC_DATABASE_PASSWORD", "bus_url": "CLAIRE_SPEC_REDIS_PASSWORD"}


def _split_userinfo(url: str) -> tuple[str, str, str] | None:
    """``scheme://user:password@rest`` -> (``scheme://user``, password, ``@rest``), the password
    as written (still percent-encoded); None when the URL carries no password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    netloc_end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1:
            netloc_end = min(netloc_end, i)
    at = rest.rfind("@", 0, netloc_end)
    if at == -1 or ":" not in rest[:at]:
        return None
    user, _, password = rest[:at].partition(":")
    return f"{scheme}://{user}", password, rest[at:]


def split_secrets(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec with every password taken out of its URLs (each URL then names the environment
    variable that holds it, ``runtime.<key>_password_env``), and that environment for the services.
    What ``claire up`` writes to disk is the first; the second goes only to the child processes."""
    runtime = spec.get("runtime") or {}
    public = dict(runtime)
    env: dict[str, str] = {}
    for key, var in SECRET_ENV.items():
        url = runtime.get(key)
        parts = _split_userinfo(url) if isinstance(url, str) else None
        if parts is None:
            continue
        head, password, tail = parts
        public[key] = head + tail
        public[f"{key}_password_env"] = var
        env[var] = password
    return {**spec, "runtime": public} if "runtime" in spec else dict(spec), env


def resolve_secrets(spec: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The inverse of :func:`split_secrets`: passwords put back from the environment."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    runtime = spec.get("runtime") or {}
    out = dict(runtime)
    for key in SECRET_ENV:
        var = runtime.get(f"{key}_password_env")
        if not var:
            continue
        password = environ.get(var)
        if password is None:
            raise ValueError(f"the run spec takes the password of `{key}` from the environment variable "
                             f"{var}, which is not set")
        head, _, tail = runtime[key].partition("@")
        out[key] = f"{head}:{password}@{tail}"
        out[f"{key}_password_env"] = None
    return {**spec, "runtime": out} if "runtime" in spec else dict(spec)


def market_events(cfg: RunConfig) -> Any:
    """The market events a run replays: its data files, or synthetic bars (``data.synthetic``)."""
    if cfg.data.synthetic:
        # start-up time: the core and its readers only for the command that runs them
        from claire.marketdata import synthetic_bars

        return synthetic_bars(["BTCUSDT", "ETHUSDT"], int(cfg.data.synthetic), 1_767_225_600_000_000_000)
    # start-up time: the core and its readers only for the command that runs them
    from claire.marketdata import open_market_data

    return open_market_data(cfg.data.paths, cfg.data.symbol)


def with_exchange_rules(cfg: RunConfig) -> RunConfig:
    """A MEXC run's config with the exchange's trading rules of its symbols (exchangeInfo, by REST;
    a capture: those it recorded), so that every service's core sizes and fills by the same rules
    (they travel in the run spec). Unchanged for files, or when it has rules already."""
    if cfg.data.source != "mexc" or getattr(cfg.data, "rules", None):
        return cfg
    # start-up time: the core and its readers only for the command that runs them
    from claire.runtime.sources import market_source, with_rules

    if cfg.data.paths:  # a capture: start its replay for the rules it recorded
        src = market_source(cfg)
        try:
            src.start()
            return with_rules(cfg, src)
        finally:
            src.close()

    # start-up time: aiohttp and protobuf only with --source mexc
    from claire.adapters.mexc import MexcRestClient

    async def fetch() -> Any:
        rest = MexcRestClient()
        try:
            return await rest.symbol_rules(list(cfg.data.symbols))
        finally:
            await rest.close()

    return with_rules(cfg, SimpleNamespace(rules=asyncio.run(fetch())))  # type: ignore[arg-type]


def run_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """What makes the run (everything but where it runs): its row in the database, its hash."""
    runtime = spec.get("runtime") or {}
    return {**{k: v for k, v in spec.items() if k != "runtime"},
            "run_id": runtime.get("run_id"), "out": runtime.get("out")}


def run_hash(spec: dict[str, Any]) -> str:
    """A short hash of the run's settings: its keys on the bus (``claire:{hash}:``)."""
    text = json.dumps(run_settings(spec), sort_keys=True)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]


def _with_db_retry(fn: Any, what: str, timeout: float = 120.0) -> Any:
    """Start-up work against a database that may be restarting: retry with capped backoff."""
    # start-up time: SQLAlchemy only for commands with a database
    from sqlalchemy.exc import OperationalError

    delay, deadline = 0.2, time.monotonic() + timeout
    while True:
        try:
            return fn()
        except OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


# --- building one service ----------------------------------------------------------------------

#: environment variable: seconds without progress, with input waiting, before a service is
#: reported stalled (not ready, an alert)
STALL_ENV = "CLAIRE_STALL_AFTER_S"


def stall_after_s() -> float:
    """Seconds without progress (input waiting) after which a service counts as stalled (default 60)."""
    raw = os.environ.get(STALL_ENV, "60")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{STALL_ENV} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{STALL_ENV} must be > 0, got {raw}")
    return value


class Service:
    """A built service: its loop, metrics and health/readiness checks."""

    def __init__(self, name: str, loop: Any, metrics: ServiceMetrics, bus: Bus, extra_ready: Any = None,
                 stall_s: float | None = None) -> None:
        self.name = name
        self.loop = loop
        self.metrics = metrics
        self.bus = bus
        self.extra_ready = extra_ready
        self.started = time.time()
        self.stall_s = stall_after_s() if stall_s is None else stall_s
        self.stalled: str | None = None  # why the service counts as stalled, None while it progresses
        self._last_progress: int | None = None
        self._progress_since = time.monotonic()
        metrics.ready_check = self.ready  # claire_ready: what /ready says, for the ClaireServiceNotReady rule

    def health(self) -> dict[str, Any]:
        out = {"uptime_s": round(time.time() - self.started, 1),
               "processed": getattr(self.loop, "processed", getattr(self.loop, "written", None)),
               "done": bool(getattr(self.loop, "done", False) or getattr(self.loop, "final_persisted", False)
                            or getattr(getattr(self.loop, "stage", None), "done", False))}
        duplicates = getattr(getattr(self.loop, "stage", None), "duplicates", None)
        if duplicates is not None:
            out["duplicates_skipped"] = duplicates
        return out

    # --- stalls -----------------------------------------------------------------------------
    def _progress(self) -> int:
        loop = self.loop
        return int(getattr(loop, "processed", None) or getattr(loop, "consumed", 0) or 0)

    def check_stall(self, now: float | None = None) -> str | None:
        """Whether input is waiting while nothing has been processed for ``stall_s`` seconds; on
        the moment it becomes so: an error counted and an Alert on ``alerts``. The reason, or None."""
        inputs, group = getattr(self.loop, "inputs", None), getattr(self.loop, "group", None)
        if not inputs or not group:
            return None
        now = time.monotonic() if now is None else now
        n = self._progress()
        waiting = {s: b for s in inputs if (b := self.bus.backlog(s, group))}
        if not waiting or n != self._last_progress:
            self._last_progress, self._progress_since = n, now
        idle = now - self._progress_since
        reason = None
        if waiting and idle >= self.stall_s:
            where = ", ".join(f"{b} on {s}" for s, b in waiting.items())
            reason = f"stalled: no progress for {idle:.0f} s with input waiting ({where})"
        if reason and not self.stalled:
            log.error("%s: %s", self.name, reason)
            self.metrics.errors.labels(self.name, "stalled").inc()
            self._alert("service_stalled", reason)
        elif self.stalled and not reason:
            log.warning("%s: progressing again", self.name)
        self.stalled = reason
        return reason

    def _alert(self, code: str, message: str) -> None:
        now = time.time_ns()
        alert = Alert(id=f"{self.name}:{code}:{now}", ts_event=now, ts_recv=now, level=AlertLevel.WARNING,
                      source=self.name, code=code, message=f"{self.name}: {message}", details={"service": self.name})
        try:
            self.bus.publish(ALERTS, encode(alert))
        except Exception:  # the bus is what may be broken: the log and /ready still tell
            log.exception("%s: cannot publish the %s alert", self.name, code)

    def watch_stalls(self, stop: threading.Event) -> threading.Thread:
        """A thread that checks for a stall every second until ``stop``."""

        def run() -> None:
            while not stop.wait(min(1.0, self.stall_s / 4)):
                try:
                    self.check_stall()
                except Exception:
                    log.exception("%s: stall check failed", self.name)

        t = threading.Thread(target=run, name=f"{self.name}-stall-watch", daemon=True)
        t.start()
        return t

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            ping = getattr(self.bus, "ping", None)
            checks["bus"] = bool(ping()) if ping else True
        except Exception as exc:
            checks["bus"] = f"unreachable: {exc}"
        if self.extra_ready is not None:
            checks.update(self.extra_ready())
        checks["progress"] = self.stalled or True
        last = getattr(self.loop, "last_event_ts", 0)
        checks["last_event_age_s"] = round(time.time() - last / 1e9, 3) if last else None
        ok = all(v is True for k, v in checks.items() if k not in ("last_event_age_s", "symbols", "stale_after_s"))
        return ok, {"checks": checks}


def dead_letter_store(db: Any, run_id: str) -> Any:
    """Store bus dead letters in the database's ``dead_letters`` (each once: keyed by stream,
    group and payload), so that what any service dead-lettered is in the system of record."""
    # start-up time: SQLAlchemy only for commands with a database
    from sqlalchemy.dialects import postgresql, sqlite

    from claire.storage.models import DeadLetter as DeadLetterRow

    table = DeadLetterRow.__table__
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite

    def store(dead: list[Any]) -> None:
        rows = []
        for d in dead:
            kind, ev_id = _type_and_id(d.payload)
            rows.append({"digest": hashlib.sha256(f"{d.stream}\0{d.group}\0".encode() + d.payload).hexdigest(),
                         "run_id": run_id, "source": d.stream, "event_type": str(kind)[:32] if kind else None,
                         "event_id": str(ev_id)[:128] if ev_id else None,
                         "reason": f"{d.reason} ({d.group}, {d.deliveries} deliveries)", "payload": d.payload})
        stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=["digest"])
        _with_db_retry(lambda: _execute(db, stmt, rows), "storing dead letters")

    return store


def _type_and_id(payload: bytes) -> tuple[str | None, str | None]:
    """The ``type`` and ``id`` of a JSON event payload, when it has them."""
    try:
        head = msgspec.json.decode(payload) if payload.startswith(b"{") else None
    except msgspec.DecodeError:
        return None, None
    if not isinstance(head, dict):
        return None, None
    kind, ev_id = head.get("type"), head.get("id")
    return (str(kind) if kind else None), (str(ev_id) if ev_id else None)


def _execute(db: Any, stmt: Any, rows: list[dict[str, Any]]) -> None:
    with db.engine.begin() as conn:
        conn.execute(stmt, rows)


def _writer_service(cfg: RunConfig, spec: dict[str, Any], bus: Bus, metrics: ServiceMetrics) -> Service:
    # start-up time: SQLAlchemy only for commands with a database
    from claire.storage import Database, EventWriter

    db = Database(cfg.runtime.database_url)
    _with_db_retry(db.upgrade, "schema upgrade")
    writer = EventWriter(db, cfg.run_key(), mode="paper", config=run_settings(spec))
    loop = WriterService(bus, writer, cfg.runtime.partitions, metrics=metrics,
                         dlq_streams=dead_letter_streams(bus, cfg.runtime.partitions, cfg.runtime.topology),
                         store_dead=dead_letter_store(db, cfg.run_key()))
    # the run's alerts (rules, daily summary, pushes to CLAIRE_NOTIFY_URLS) are fed what the writer
    # stores, as in the one-process runtime
    attach_alerts(loop, cfg.run_key(), cfg.alerts, db, os.getcwd())

    def db_ready() -> dict[str, Any]:
        try:
            db.check()
            return {"database": True}
        except Exception as exc:
            return {"database": f"unreachable: {type(exc).__name__}"}

    return Service("writer", loop, metrics, bus, db_ready)


class _SourceBinding:
    """What a MEXC source binds to in place of a core (``MexcSource.bind``): its data-quality
    alerts go to ``emit`` (the market data service publishes them on ``alerts``); the ids are the
    run's, so they are those of a one-process run."""

    def __init__(self, emit: Any, ids: IdFactory) -> None:
        self.emit = emit
        self.signals = _Signals(ids)


class _Signals:
    def __init__(self, ids: IdFactory) -> None:
        self.ids = ids
        self.history_until = -1


def _marketdata_service(cfg: RunConfig, bus: Bus, metrics: ServiceMetrics, batch: int) -> Service:
    """Files or synthetic bars (replayed at ``runtime.speed``), or MEXC: live for ``data.symbols``
    (recorded to ``<out>/capture`` when the run has an ``out``), or a capture in ``data.paths``."""
    partitions = cfg.runtime.partitions
    if cfg.data.source != "mexc":
        loop = MarketDataService(bus, market_events(cfg), partitions, cfg.runtime.speed, batch=batch, metrics=metrics)
        _md_collector(loop, metrics)
        return Service("marketdata", loop, metrics, bus)
    # start-up time: aiohttp and protobuf only with --source mexc
    from claire.adapters.mexc.stream import stale_seconds
    from claire.runtime.sources import market_source

    replay = bool(cfg.data.paths)
    capture = Path(cfg.runtime.out) / "capture" if cfg.runtime.out and not replay else None
    source = market_source(cfg, capture_dir=capture)  # books too: the paper exchange fills on their levels
    loop = MarketDataService(bus, source, partitions, None, batch=batch, metrics=metrics, live=True,
                             finite=replay, symbols=() if replay else cfg.data.symbols)
    source.bind(_SourceBinding(lambda ev: loop.side_output(ALERTS, ev), IdFactory(cfg.run_key())))
    _md_collector(loop, metrics)
    if replay:
        return Service("marketdata", loop, metrics, bus)
    stale_s = stale_seconds()

    def fresh() -> dict[str, Any]:
        """Not ready while a subscribed symbol has had no data for MEXC_STALE_SEC (or none yet)."""
        ages = loop.ages()
        stale = [s for s, a in ages.items() if a is None or a > stale_s]
        checks: dict[str, Any] = {"symbols": {s: None if a is None else round(a, 3) for s, a in ages.items()},
                                  "stale_after_s": stale_s}
        if loop.error is not None:
            checks["source"] = f"failed: {type(loop.error).__name__}: {loop.error}"
        checks["data_fresh"] = True if not stale else f"no data for {stale_s:g} s: {', '.join(stale)}"
        return checks

    return Service("marketdata", loop, metrics, bus, fresh)


def _md_collector(loop: MarketDataService, metrics: ServiceMetrics) -> None:
    """Per-symbol freshness and the live source's data quality, on /metrics."""
    metrics.registry.register(MarketDataCollector(metrics.service, loop.ages, lambda: dict(loop.last_ts),
                                                  lambda: dict(loop.per_symbol), loop.feed_stats))


def _history_gate(handle: Any, engine: Any, bus: Bus) -> Any:
    """A MEXC run's warm-up bars are history: their signals are dropped, as in one process
    (``SignalEngine.history_until``). Where the warm-up ends, the market data service tells in its
    checkpoint (``live_from``, committed with its first events), read here once, at the first bar."""
    known = False

    def gated(stream: str, ev: Any, raw: bytes) -> Any:
        nonlocal known
        if not known and type(ev) is Bar:
            cp = bus.load_checkpoint("marketdata")
            live_from = msgspec.json.decode(cp[1]).get("live_from") if cp is not None else None
            if live_from is not None:
                engine.history_until = int(live_from) * 1_000_000  # ms: the close of the last warm-up bar
                known = True
        return handle(stream, ev, raw)

    return gated


def _stage(name: str, cfg: RunConfig, ids: IdFactory, replica: int) -> tuple[Any, str]:
    """The stage of a core service and the service's name."""
    partitions = cfg.runtime.partitions
    core = build_core(cfg, lambda e: None, ids)
    if name == "signal":
        stage = SignalStage(core.signals, partition_stream(PIPE_SIGNALS, replica, partitions))
        return stage, f"signal-{replica}" if partitions > 1 else "signal"
    stages: dict[str, Any] = {
        "risk": lambda: RiskStage(core.risk, core.portfolio, partitions, clock=core.clock),
        "execution": lambda: ExecutionStage(core.execution),
        "portfolio": lambda: PortfolioStage(Portfolio(cfg.portfolio.start_cash, ids)),
        "account": lambda: AccountStage(core, partitions),
    }
    if name not in stages:
        raise ValueError(f"unknown service {name!r} (one of {', '.join(SERVICES)})")
    return stages[name](), name


def _published(bus: Bus) -> int:
    """How many market events the market data service has committed (its checkpoint)."""
    cp = bus.load_checkpoint("marketdata")
    return int(msgspec.json.decode(cp[1]).get("pos", 0)) if cp is not None else 0


def build_service(name: str, spec: dict[str, Any], bus: Bus, replica: int = 0, batch: int = 500) -> Service:
    """One service of the run ``spec`` on ``bus``: its loop, metrics and health checks."""
    cfg = config_from_spec(spec)
    partitions = cfg.runtime.partitions
    metrics = ServiceMetrics(name if name != "signal" else f"signal-{replica}")
    ids = IdFactory(cfg.run_key())
    if name == "marketdata":
        return _marketdata_service(cfg, bus, metrics, batch)
    if name == "writer":
        return _writer_service(cfg, spec, bus, metrics)
    stage, svc_name = _stage(name, cfg, ids, replica)
    if name == "signal":  # sequence integrity: a seq that cannot be the next is dead-lettered
        stage.contiguous = partitions == 1
        stage.published = lambda: _published(bus)
    inputs = stage_inputs(name, replica, partitions)
    if name in ("risk", "account"):
        part_of = {partition_stream(PIPE_SIGNALS, i, partitions): i for i in range(partitions)}

        def handle(stream: str, ev: Any, raw: bytes) -> Any:
            if stream == PIPE_RESULTS:
                return stage.handle_feedback(ev, raw)
            return stage.handle_signal_stream(ev, raw, part_of[stream])
    else:  # one input stream

        def handle(stream: str, ev: Any, raw: bytes) -> Any:
            return stage.handle(ev, raw)

    if name == "signal" and cfg.data.source == "mexc":
        handle = _history_gate(handle, stage.engine, bus)
    loop = StageService(svc_name, bus, inputs, handle, stage, metrics, batch=batch)
    metrics.start_equity(float(cfg.portfolio.start_cash))  # the portfolio owner's: not 0.0 before a snapshot
    if name == "portfolio":
        loop.skip_prefixes = (b'{"type":"order"',)  # echoed orders: nothing for the portfolio
    return Service(svc_name, loop, metrics, bus)


def run_service(name: str, spec: dict[str, Any], replica: int = 0, port: int | None = None,
                stop: threading.Event | None = None) -> int:
    """Run one service until SIGTERM/SIGINT (or ``stop``): finish the batch in hand, exit 0."""
    stop = stop or threading.Event()
    spec = resolve_secrets(spec)
    runtime = config_from_spec(spec).runtime
    bus = make_bus(runtime.bus_url, prefix=runtime.prefix)
    svc = build_service(name, spec, bus, replica)
    if port is None:
        port = int(runtime.ports.get(name, 0)) + (10 * replica if name == "signal" else 0)
    # 127.0.0.1 by default; containers set CLAIRE_HTTP_HOST=0.0.0.0 (Prometheus, published ports)
    host = os.environ.get("CLAIRE_HTTP_HOST", "127.0.0.1")
    server = HealthServer(port, svc.name, svc.metrics.registry, svc.health, svc.ready, host=host).start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        finish = getattr(svc.loop, "finish", None)
        if finish is not None:  # market data: SIGUSR1 ends a live stream with end_of_data (a run's end)
            signal.signal(signal.SIGUSR1, lambda *_: finish.set())
    log.info("%s: serving /health /ready /metrics on port %d (pid %d)", svc.name, server.port, os.getpid())
    svc.watch_stalls(stop)
    cfg = config_from_spec(spec)  # issue 12: heartbeats of this replica in service_status (the live view)
    status = start_status(runtime.database_url, cfg.run_key(), name, replica, svc.loop, svc.ready,
                          live=cfg.data.source == "mexc" and not cfg.data.paths)
    try:
        svc.loop.run(stop)
        stop.wait()  # market data returns after end of data: stay up (health) until told to stop
    finally:
        if status is not None:
            status.stop("stopped")
        server.stop()
        if name == "writer":
            svc.loop.writer.close()
            if getattr(svc.loop, "alerts", None) is not None:
                svc.loop.alerts.close()
        bus.close()
    log.info("%s: stopped cleanly", svc.name)
    return 0

"""Build and run one service of the distributed runtime (`claire service NAME`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from claire.bus import make_bus
from claire.bus.base import Bus
from claire.engine.kernel import RunConfig, build_core
from claire.events import IdFactory
from claire.events.topics import PIPE_RESULTS, PIPE_SIGNALS
from claire.portfolio import Portfolio
from claire.risk import RiskConfig
from claire.runtime.distributed.runner import MarketDataService, StageService, WriterService, stage_inputs
from claire.runtime.distributed.stages import (
    AccountStage,
    ExecutionStage,
    PortfolioStage,
    RiskStage,
    SignalStage,
    partition_stream,
)
from claire.runtime.http import HealthServer
from claire.runtime.metrics import ServiceMetrics

log = logging.getLogger("claire.runtime.distributed")

SERVICES = ["marketdata", "signal", "risk", "execution", "portfolio", "writer", "account"]
DEFAULT_PORTS = {"marketdata": 8000, "signal": 8001, "risk": 8002, "execution": 8003, "portfolio": 8004, "writer": 8005,
                 "account": 8006}
# "seeds": the seeds' six services; "account": risk, execution and portfolio as one service
TOPOLOGIES = ("seeds", "account")


# --- the run spec: everything a service needs, shared by all services of a run ---------------

def spec_from_config(cfg: RunConfig, *, bus_url: str, prefix: str, database_url: str | None,
                     partitions: int = 1, speed: float | None = None, synthetic: int = 0,
                     ports: dict[str, int] | None = None, topology: str = "seeds") -> dict[str, Any]:
    if topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {topology!r} (one of {', '.join(TOPOLOGIES)})")
    return {
        "run_id": cfg.run_key(),
        "bus_url": bus_url,
        "prefix": prefix,
        "database_url": database_url,
        "partitions": partitions,
        "topology": topology,
        "speed": speed,
        "synthetic": synthetic,
        "ports": ports or DEFAULT_PORTS,
        "backtest": {
            "data": [str(Path(p).resolve()) for p in cfg.data], "symbol": cfg.symbol, "strategy": cfg.strategy,
            "params": {k: str(v) for k, v in cfg.params.items()},
            "quantity": str(cfg.quantity) if cfg.quantity is not None else None,
            "fee_bps": str(cfg.fee_bps), "maker_fee_bps": str(cfg.maker_fee_bps) if cfg.maker_fee_bps is not None else None,
            "slippage_bps": str(cfg.slippage_bps), "fill": cfg.fill, "risk": cfg.risk,
            "risk_config": msgspec.to_builtins(cfg.risk_config) if cfg.risk_config is not None else None,
            "start_cash": str(cfg.start_cash),
            "max_volume_share": str(cfg.max_volume_share) if cfg.max_volume_share is not None else None,
            "max_quote_share": str(cfg.max_quote_share) if cfg.max_quote_share is not None else None,
            "out": str(cfg.out) if cfg.out else None, "run_id": cfg.run_key(),
        },
    }


def config_from_spec(spec: dict[str, Any]) -> RunConfig:
    from claire.strategy.base import coerce_params
    from claire.strategy.registry import load_strategy

    b = spec["backtest"]
    D = Decimal
    cls = load_strategy(b["strategy"])
    return RunConfig(
        data=[Path(p) for p in b["data"]], symbol=b["symbol"], strategy=b["strategy"],
        params=coerce_params(cls, b["params"]),
        quantity=D(b["quantity"]) if b["quantity"] is not None else None,
        fee_bps=D(b["fee_bps"]), maker_fee_bps=D(b["maker_fee_bps"]) if b["maker_fee_bps"] is not None else None,
        slippage_bps=D(b["slippage_bps"]), fill=b["fill"], risk=b["risk"],
        risk_config=msgspec.convert(b["risk_config"], RiskConfig) if b["risk_config"] is not None else None,
        start_cash=D(b["start_cash"]),
        max_volume_share=D(b["max_volume_share"]) if b["max_volume_share"] is not None else None,
        max_quote_share=D(b["max_quote_share"]) if b["max_quote_share"] is not None else None,
        out=b["out"], run_id=b["run_id"],
    )


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
    variable that holds it, ``<key>_password_env``), and that environment for the services.
    What ``claire up`` writes to disk is the first; the second goes only to the child processes."""
    public = dict(spec)
    env: dict[str, str] = {}
    for key, var in SECRET_ENV.items():
        url = spec.get(key)
        parts = _split_userinfo(url) if isinstance(url, str) else None
        if parts is None:
            continue
        head, password, tail = parts
        public[key] = head + tail
        public[f"{key}_password_env"] = var
        env[var] = password
    return public, env


def resolve_secrets(spec: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The inverse of :func:`split_secrets`: passwords put back from the environment."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    out = dict(spec)
    for key in SECRET_ENV:
        var = spec.get(f"{key}_password_env")
        if not var:
            continue
        password = environ.get(var)
        if password is None:
            raise ValueError(f"the run spec takes the password of `{key}` from the environment variable "
                             f"{var}, which is not set")
        head, _, tail = spec[key].partition("@")
        out[key] = f"{head}:{password}@{tail}"
        del out[f"{key}_password_env"]
    return out


def market_events(spec: dict[str, Any], cfg: RunConfig) -> Any:
    if spec.get("synthetic"):
        from claire.marketdata import synthetic_bars

        return synthetic_bars(["BTCUSDT", "ETHUSDT"], int(spec["synthetic"]), 1_767_225_600_000_000_000)
    from claire.marketdata import open_market_data

    return open_market_data(cfg.data, cfg.symbol)


def run_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(spec["backtest"], sort_keys=True).encode()).hexdigest()[:10]


def _with_db_retry(fn: Any, what: str, timeout: float = 120.0) -> Any:
    """Start-up work against a database that may be restarting: retry with capped backoff."""
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

class Service:
    """A built service: its loop, metrics and health/readiness checks."""

    def __init__(self, name: str, loop: Any, metrics: ServiceMetrics, bus: Bus, extra_ready: Any = None) -> None:
        self.name = name
        self.loop = loop
        self.metrics = metrics
        self.bus = bus
        self.extra_ready = extra_ready
        self.started = time.time()

    def health(self) -> dict[str, Any]:
        return {"uptime_s": round(time.time() - self.started, 1),
                "processed": getattr(self.loop, "processed", getattr(self.loop, "written", None)),
                "done": bool(getattr(self.loop, "done", False) or getattr(self.loop, "final_persisted", False)
                             or getattr(getattr(self.loop, "stage", None), "done", False))}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            ping = getattr(self.bus, "ping", None)
            checks["bus"] = bool(ping()) if ping else True
        except Exception as exc:
            checks["bus"] = f"unreachable: {exc}"
        if self.extra_ready is not None:
            checks.update(self.extra_ready())
        last = getattr(self.loop, "last_event_ts", 0)
        checks["last_event_age_s"] = round(time.time() - last / 1e9, 3) if last else None
        ok = all(v is True for k, v in checks.items() if k not in ("last_event_age_s",))
        return ok, {"checks": checks}


def build_service(name: str, spec: dict[str, Any], bus: Bus, replica: int = 0, batch: int = 500) -> Service:
    cfg = config_from_spec(spec)
    partitions = int(spec.get("partitions", 1))
    metrics = ServiceMetrics(name if name != "signal" else f"signal-{replica}")
    ids = IdFactory(cfg.run_key())
    if name == "marketdata":
        speed = spec.get("speed")
        loop = MarketDataService(bus, market_events(spec, cfg), partitions, speed, batch=batch, metrics=metrics)
        return Service(name, loop, metrics, bus)
    if name == "writer":
        from claire.storage import Database, EventWriter

        db = Database(spec["database_url"])
        _with_db_retry(db.upgrade, "schema upgrade")
        writer = EventWriter(db, cfg.run_key(), mode="paper", config=spec["backtest"])
        loop = WriterService(bus, writer, partitions, metrics=metrics)

        def db_ready() -> dict[str, Any]:
            try:
                db.check()
                return {"database": True}
            except Exception as exc:
                return {"database": f"unreachable: {type(exc).__name__}"}

        return Service(name, loop, metrics, bus, db_ready)
    core = build_core(cfg, lambda e: None, ids)
    inputs = stage_inputs(name, replica, partitions)
    if name == "signal":
        stage: Any = SignalStage(core.signals, partition_stream(PIPE_SIGNALS, replica, partitions))
        svc_name = f"signal-{replica}" if partitions > 1 else "signal"
    elif name == "risk":
        stage = RiskStage(core.risk, core.portfolio, partitions, clock=core.clock)
        svc_name = name
    elif name == "execution":
        stage = ExecutionStage(core.execution)
        svc_name = name
    elif name == "portfolio":
        stage = PortfolioStage(Portfolio(cfg.start_cash, ids))
        svc_name = name
    elif name == "account":
        stage = AccountStage(core, partitions)
        svc_name = name
    else:
        raise ValueError(f"unknown service {name!r} (one of {', '.join(SERVICES)})")
    if name in ("risk", "account"):
        part_of = {partition_stream(PIPE_SIGNALS, i, partitions): i for i in range(partitions)}

        def handle(stream: str, ev: Any, raw: bytes) -> Any:
            if stream == PIPE_RESULTS:
                return stage.handle_feedback(ev, raw)
            return stage.handle_signal_stream(ev, raw, part_of[stream])
    else:  # one input stream

        def handle(stream: str, ev: Any, raw: bytes) -> Any:
            return stage.handle(ev, raw)

    loop = StageService(svc_name, bus, inputs, handle, stage, metrics, batch=batch)
    if name == "portfolio":
        loop.skip_prefixes = (b'{"type":"order"',)  # echoed orders: nothing for the portfolio
    return Service(svc_name, loop, metrics, bus)


def run_service(name: str, spec: dict[str, Any], replica: int = 0, port: int | None = None,
                stop: threading.Event | None = None) -> int:
    """Run one service until SIGTERM/SIGINT (or ``stop``): finish the batch in hand, exit 0."""
    stop = stop or threading.Event()
    spec = resolve_secrets(spec)
    bus = make_bus(spec["bus_url"], prefix=spec["prefix"])
    svc = build_service(name, spec, bus, replica)
    if port is None:
        port = int(spec.get("ports", DEFAULT_PORTS).get(name, 0)) + (10 * replica if name == "signal" else 0)
    # 127.0.0.1 by default; containers set CLAIRE_HTTP_HOST=0.0.0.0 (Prometheus, published ports)
    host = os.environ.get("CLAIRE_HTTP_HOST", "127.0.0.1")
    server = HealthServer(port, svc.name, svc.metrics.registry, svc.health, svc.ready, host=host).start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("%s: serving /health /ready /metrics on port %d (pid %d)", svc.name, server.port, os.getpid())
    try:
        svc.loop.run(stop)
        stop.wait()  # market data returns after end of data: stay up (health) until told to stop
    finally:
        server.stop()
        if name == "writer":
            svc.loop.writer.close()
        bus.close()
    log.info("%s: stopped cleanly", svc.name)
    return 0

"""Prometheus metrics of one component (each has its own registry).

Every metric comes from the component that owns it, under the same name in every runtime (the
one-process ``paper`` owns them all; in the distributed runtime each service owns its part):

- signal stage: ``signals_generated_total{strategy,symbol}``;
- risk: ``risk_decisions_total{check,action}``, ``claire_trading_state{state}`` (1 for the
  current state: active, halted (R3), circuit_broken (R5));
- execution: ``order_processing_seconds{service}``, ``claire_order_results_total{service,status}``;
- portfolio: ``portfolio_equity_usd``, ``portfolio_drawdown_ratio``, ``portfolio_exposure_ratio``,
  ``portfolio_daily_pnl_usd``, ``portfolio_cash_usd``, ``portfolio_open_positions``, set from the
  snapshots the component publishes (the rows the database stores).

A family a component does not own is not registered at all, so a service never exports a gauge
that reads 0 because nobody sets it. Every component exports ``claire_heartbeat_timestamp_seconds``
(wall clock, refreshed every :data:`HEARTBEAT_S` seconds while the process's main thread lives:
the dead-man signal), ``claire_run_info`` (the run's identity as labels), the free disk space of
its run directory (``claire_disk_free_bytes``/``claire_disk_size_bytes``) and the process
metrics (``process_start_time_seconds``: its changes count restarts).
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from claire.events import OrderResult, PortfolioSnapshot, RiskEvent, Signal, TradingState
from claire.events.time import NS_PER_SEC

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: seconds between two heartbeats
HEARTBEAT_S = 2.0

#: what each kind of component owns
SIGNAL, RISK, EXECUTION, PORTFOLIO = "signal", "risk", "execution", "portfolio"
ALL_ROLES = frozenset({SIGNAL, RISK, EXECUTION, PORTFOLIO})


def roles_of(service: str) -> frozenset[str]:
    """The metric families a component owns, from its name (``signal-2`` is a signal replica;
    ``paper`` is the whole core in one process; ``account`` is risk, execution and portfolio)."""
    if service == "paper":
        return ALL_ROLES
    if service == "account":
        return frozenset({RISK, EXECUTION, PORTFOLIO})
    if service == SIGNAL or service.startswith("signal-"):
        return frozenset({SIGNAL})
    if service in (RISK, EXECUTION, PORTFOLIO):
        return frozenset({service})
    return frozenset()


# --- the process-wide heartbeat and run identity -----------------------------------------------

_beat = {"ts": time.time()}
_beat_lock = threading.Lock()
_beat_thread: threading.Thread | None = None
_process_run_info: dict[str, str] = {}


def _heartbeat_loop() -> None:
    main = threading.main_thread()
    while main.is_alive():
        _beat["ts"] = time.time()
        time.sleep(HEARTBEAT_S)


def _ensure_heartbeat() -> None:
    """One thread per process beats for every registry in it (started with the first one)."""
    global _beat_thread
    with _beat_lock:
        if _beat_thread is None or not _beat_thread.is_alive():
            _beat["ts"] = time.time()
            _beat_thread = threading.Thread(target=_heartbeat_loop, name="claire-heartbeat", daemon=True)
            _beat_thread.start()


def set_process_run_info(**labels: Any) -> None:
    """The run this process works for (``claire service``): the labels of ``claire_run_info`` of
    every component in the process that has none of its own."""
    _process_run_info.clear()
    _process_run_info.update({k: "" if v is None else str(v) for k, v in labels.items()})


def run_info_labels(cfg: Any) -> dict[str, str]:
    """``claire_run_info``'s labels of a run configuration (``claire.config.RunConfig``)."""
    data, rt = cfg.data, cfg.runtime
    live = data.source == "mexc" and not data.paths
    symbols = ",".join(data.symbols) if data.symbols else (data.symbol or "")
    return {"run_id": str(rt.run_id or cfg.run_key()), "strategy": cfg.strategy.name, "source": data.source,
            "symbols": symbols, "live": "true" if live else "false", "topology": str(rt.topology)}


def _disk_dir(explicit: str | Path | None) -> Path:
    """The directory whose file system is watched: the run's (``explicit``), else the log
    directory, else the working directory."""
    if explicit is not None:
        return Path(explicit)
    from claire.runtime.logs import current_log_dir  # the same layer; read at scrape time

    return current_log_dir() or Path.cwd()


class ServiceMetrics:
    """The registry of one component and the metric families it owns (see the module doc)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None,
                 roles: frozenset[str] | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.service = service
        self.roles = roles_of(service) if roles is None else roles
        lab = ["service", "stream"]
        self.events_in = Counter("claire_events_in_total", "Messages consumed", lab, registry=r)
        self.events_out = Counter("claire_events_out_total", "Messages published", lab, registry=r)
        self.errors = Counter("claire_errors_total", "Errors by kind", ["service", "kind"], registry=r)
        self.dead_letters = Counter("claire_dead_letters_total", "Messages dead-lettered", lab, registry=r)
        self.batch_seconds = Histogram("claire_batch_processing_seconds", "Time to process one batch (decode, handle, encode; the commit travels with the next read)",
                                       ["service"], buckets=LATENCY_BUCKETS, registry=r)
        self.event_seconds = Histogram("claire_event_processing_seconds", "Processing time per message",
                                       ["service"], buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("claire_event_lag_seconds", "Wall time minus event time of the last event processed",
                         ["service"], registry=r)
        self.last_event_ts = Gauge("claire_last_event_timestamp_seconds", "Event time of the last event processed",
                                   ["service"], registry=r)
        self.commits = Counter("claire_commits_total", "Atomic commits (outputs + acks + checkpoint)",
                               ["service"], registry=r)
        # the seeds' names, each only in the component that owns it
        self.signals_generated: Any = None
        self.order_processing: Any = None
        self.order_results: Any = None
        self.equity: Any = None
        self.drawdown: Any = None
        self.exposure: Any = None
        self.daily_pnl: Any = None
        self.cash: Any = None
        self.positions: Any = None
        self.risk_decisions: Any = None
        if SIGNAL in self.roles:
            self.signals_generated = Counter("signals_generated_total", "Signals generated", ["strategy", "symbol"],
                                             registry=r)
        if EXECUTION in self.roles:
            self.order_processing = Histogram("order_processing_seconds", "Time from order receipt to result",
                                              ["service"], buckets=LATENCY_BUCKETS, registry=r)
            self.order_results = Counter("claire_order_results_total", "Order results of the paper exchange, by status",
                                         ["service", "status"], registry=r)
        if PORTFOLIO in self.roles:
            self.equity = Gauge("portfolio_equity_usd", "Portfolio equity in USDT (the last snapshot)", registry=r)
            self.drawdown = Gauge("portfolio_drawdown_ratio", "Drawdown from the high-water mark", registry=r)
            self.exposure = Gauge("portfolio_exposure_ratio", "Total exposure as a share of equity", registry=r)
            self.daily_pnl = Gauge("portfolio_daily_pnl_usd", "Equity minus the UTC day's start equity, USDT",
                                   registry=r)
            self.cash = Gauge("portfolio_cash_usd", "Cash in USDT", registry=r)
            self.positions = Gauge("portfolio_open_positions", "Open positions", registry=r)
        if RISK in self.roles:
            self.risk_decisions = Counter("risk_decisions_total", "Risk decisions", ["check", "action"], registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        #: scrape-time probes, set by the runtime that knows them (None: not exported)
        self.trading_state: Callable[[], Any] | None = None
        self.database_check: Callable[[], Any] | None = None
        self.ready_check: Callable[[], tuple[bool, Any]] | None = None
        self.disk_path: str | Path | None = None
        self.run_info: dict[str, str] | None = None
        self._last_state: Any = TradingState.ACTIVE
        self._db_cache: tuple[float, float] = (0.0, math.nan)
        ProcessCollector(registry=r)
        r.register(_ComponentCollector(self))
        _ensure_heartbeat()

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the label lookup costs more than the update."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def start_equity(self, equity: float) -> None:
        """The portfolio owner's equity before its first snapshot (the start cash, or a resumed
        run's): a gauge reads 0.0 until set, which would be a lie."""
        if self.equity is not None:
            self.equity.set(equity)
            self.cash.set(equity)

    def observe(self, ev: Any) -> None:
        """Count an event the component published, if it owns the event's metrics."""
        t = type(ev)
        if t is Signal:
            if self.signals_generated is not None:
                self.child(self.signals_generated, ev.strategy, ev.symbol).inc()
        elif t is PortfolioSnapshot:
            if self.equity is not None:
                self.equity.set(float(ev.equity))
                self.drawdown.set(float(ev.drawdown_pct))
                self.exposure.set(float(ev.total_exposure_pct))
                self.daily_pnl.set(float(ev.daily_pnl))
                self.cash.set(float(ev.cash))
                self.positions.set(ev.num_positions)
        elif t is RiskEvent:
            if self.risk_decisions is not None:
                self.child(self.risk_decisions, ev.check.value, ev.action.value).inc()
                self._last_state = ev.trading_state
        elif t is OrderResult and self.order_processing is not None:
            self.child(self.order_processing, self.service).observe(ev.latency_ns / NS_PER_SEC)
            self.child(self.order_results, self.service, ev.status.value).inc()

    def watch_stage(self, stage: Any) -> None:
        """Read the trading state from the stage's risk manager (a risk or account stage)."""
        risk = getattr(stage, "risk", None) or getattr(getattr(stage, "core", None), "risk", None)
        if risk is not None and RISK in self.roles and hasattr(risk, "state"):
            self.trading_state = lambda: risk.state

    def database_up(self) -> float:
        """1 when the database answers (checked at most every 2 s), 0 when not, NaN: not watched."""
        if self.database_check is None:
            return math.nan
        at, value = self._db_cache
        now = time.monotonic()
        if now - at < 2.0:
            return value
        try:
            self.database_check()
            value = 1.0
        except Exception:
            value = 0.0
        self._db_cache = (now, value)
        return value

    def current_state(self) -> str:
        state = self.trading_state() if self.trading_state is not None else self._last_state
        return str(getattr(state, "value", state))


class _ComponentCollector:
    """What every component exports at scrape time: heartbeat, run info, disk, readiness,
    database and (risk owners) the trading state."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m, svc = self.m, self.m.service
        hb = GaugeMetricFamily("claire_heartbeat_timestamp_seconds",
                               "Wall clock of the component's last heartbeat (the dead-man signal)",
                               labels=["service"])
        hb.add_metric([svc], _beat["ts"])
        yield hb
        info = m.run_info if m.run_info is not None else _process_run_info
        if info:
            keys = sorted(info)
            ri = GaugeMetricFamily("claire_run_info", "The run this component works for (always 1)",
                                   labels=["service", *keys])
            ri.add_metric([svc, *(info[k] for k in keys)], 1.0)
            yield ri
        yield from self._disk(svc)
        if m.ready_check is not None:
            try:
                ok = bool(m.ready_check()[0])
            except Exception:
                ok = False
            rd = GaugeMetricFamily("claire_ready", "1 when the component is ready (/ready answers 200)",
                                   labels=["service"])
            rd.add_metric([svc], 1.0 if ok else 0.0)
            yield rd
        if m.database_check is not None:
            db = GaugeMetricFamily("claire_database_up", "1 when the component reaches its database",
                                   labels=["service"])
            db.add_metric([svc], m.database_up())
            yield db
        if RISK in m.roles:
            cur = m.current_state()
            ts = GaugeMetricFamily("claire_trading_state", "1 for the risk manager's current trading state",
                                   labels=["service", "state"])
            for state in TradingState:
                ts.add_metric([svc, state.value], 1.0 if state.value == cur else 0.0)
            yield ts

    def _disk(self, svc: str) -> Iterator[Metric]:
        path = _disk_dir(self.m.disk_path)
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            return
        where = str(path.resolve()) if path.exists() else os.fspath(path)
        free = GaugeMetricFamily("claire_disk_free_bytes", "Free bytes of the run directory's file system",
                                 labels=["service", "path"])
        free.add_metric([svc, where], float(usage.free))
        yield free
        size = GaugeMetricFamily("claire_disk_size_bytes", "Size of the run directory's file system in bytes",
                                 labels=["service", "path"])
        size.add_metric([svc, where], float(usage.total))
        yield size


class MarketDataCollector:
    """The market data service's freshness and data quality, read when /metrics is scraped (no
    cost per event; the live source's counters live in its own thread).

    ``ages()``: symbol -> seconds since its last event (None: none yet); ``last_ts()``: symbol ->
    event time (ns) of its last event; ``events()``: symbol -> events published; ``feed()``: what
    a live source reports (``frames``, ``decode_errors`` by reason, ``reconnects``,
    ``connections``, ``quality``: its data-quality records), empty for a replay.

    Families (all with the ``service`` label):

    - ``claire_marketdata_last_event_age_seconds{symbol}``: wall seconds since the symbol's last
      event (NaN before the first); ``claire_marketdata_last_event_timestamp_seconds{symbol}``:
      its event time; ``claire_marketdata_events_total{symbol}``: events published;
    - live: ``claire_marketdata_frames_decoded_total``, ``claire_marketdata_decode_errors_total{reason}``,
      ``claire_marketdata_ws_reconnects_total`` (connections re-opened),
      ``claire_marketdata_connections`` (open now), ``claire_marketdata_reconnects_total{symbol}``
      (the symbol's connection came back after a drop), ``claire_marketdata_gaps_repaired_total{symbol}``
      and ``claire_marketdata_bars_repaired_total{symbol}`` (missing bars fetched by REST),
      ``claire_marketdata_quality_records_total{symbol,kind}`` (every data-quality record).
    """

    def __init__(self, service: str, ages: Callable[[], Mapping[str, float | None]],
                 last_ts: Callable[[], Mapping[str, int]], events: Callable[[], Mapping[str, int]],
                 feed: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.service = service
        self._ages, self._last_ts, self._events, self._feed = ages, last_ts, events, feed

    def describe(self) -> list[Metric]:
        return []  # families depend on the source: no check against other collectors

    def collect(self) -> Iterator[Metric]:
        svc = self.service
        ages = dict(self._ages())
        age = GaugeMetricFamily("claire_marketdata_last_event_age_seconds",
                                "Wall seconds since the symbol's last market event (NaN: none yet)",
                                labels=["service", "symbol"])
        for sym, a in sorted(ages.items()):
            age.add_metric([svc, sym], math.nan if a is None else a)
        yield age
        ts = GaugeMetricFamily("claire_marketdata_last_event_timestamp_seconds",
                               "Event time of the symbol's last market event", labels=["service", "symbol"])
        for sym, t in sorted(dict(self._last_ts()).items()):
            ts.add_metric([svc, sym], t / 1e9)
        yield ts
        ev = CounterMetricFamily("claire_marketdata_events", "Market events published, per symbol",
                                 labels=["service", "symbol"])
        for sym, n in sorted(dict(self._events()).items()):
            ev.add_metric([svc, sym], n)
        yield ev
        feed = dict(self._feed()) if self._feed is not None else {}
        if feed:
            yield from self._live(svc, feed, list(ages))

    @staticmethod
    def _live(svc: str, feed: Mapping[str, Any], symbols: list[str]) -> Iterator[Metric]:
        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=["service"])
            c.add_metric([svc], value)
            return c

        yield counter("claire_marketdata_frames_decoded", "WebSocket frames decoded", feed.get("frames", 0))
        errors = CounterMetricFamily("claire_marketdata_decode_errors", "Frames or messages that could not be decoded",
                                     labels=["service", "reason"])
        for reason, n in sorted(dict(feed.get("decode_errors") or {}).items()):
            errors.add_metric([svc, reason], n)
        yield errors
        yield counter("claire_marketdata_ws_reconnects", "WebSocket connections re-opened after a drop",
                      feed.get("reconnects", 0))
        conns = GaugeMetricFamily("claire_marketdata_connections", "WebSocket connections open", labels=["service"])
        conns.add_metric([svc], feed.get("connections", 0))
        yield conns
        kinds: dict[tuple[str, str], int] = {}
        reconnects = dict.fromkeys(symbols, 0)  # every subscribed symbol has its series, 0 or not
        gaps = dict.fromkeys(symbols, 0)
        bars = dict.fromkeys(symbols, 0)
        for rec in feed.get("quality") or ():
            kinds[(rec.symbol, rec.kind)] = kinds.get((rec.symbol, rec.kind), 0) + 1
            if rec.kind == "disconnect":
                reconnects[rec.symbol] = reconnects.get(rec.symbol, 0) + 1
            elif rec.kind == "gap_repaired":
                gaps[rec.symbol] = gaps.get(rec.symbol, 0) + 1
                bars[rec.symbol] = bars.get(rec.symbol, 0) + rec.bars_repaired
        for name, doc, values in (
                ("claire_marketdata_reconnects", "Reconnections of the symbol's connection after a drop", reconnects),
                ("claire_marketdata_gaps_repaired", "Gaps in the symbol's bars repaired by REST", gaps),
                ("claire_marketdata_bars_repaired", "Missing bars of the symbol fetched by REST", bars)):
            c = CounterMetricFamily(name, doc, labels=["service", "symbol"])
            for sym, n in sorted(values.items()):
                c.add_metric([svc, sym], n)
            yield c
        q = CounterMetricFamily("claire_marketdata_quality_records", "Data-quality records of the live source",
                                labels=["service", "symbol", "kind"])
        for (sym, kind), n in sorted(kinds.items()):
            q.add_metric([svc, sym, kind], n)
        yield q

"""Prometheus metrics of one service (each process has its own registry)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.service = service
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
        # the seeds' names
        self.signals_generated = Counter("signals_generated_total", "Signals generated", ["strategy", "symbol"],
                                         registry=r)
        self.order_processing = Histogram("order_processing_seconds", "Time from order receipt to result",
                                          ["service"], buckets=LATENCY_BUCKETS, registry=r)
        self.equity = Gauge("portfolio_equity_usd", "Portfolio equity in USDT", registry=r)
        self.drawdown = Gauge("portfolio_drawdown_ratio", "Drawdown from the high-water mark", registry=r)
        self.exposure = Gauge("portfolio_exposure_ratio", "Total exposure as a share of equity", registry=r)
        self.risk_decisions = Counter("risk_decisions_total", "Risk decisions", ["check", "action"], registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the label lookup costs more than the update."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c


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

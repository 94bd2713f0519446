"""Prometheus metrics of one service (each process has its own registry)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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

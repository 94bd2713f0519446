"""The figures of a report, computed from a :class:`RunData`: metrics, confidence, verdict,
drawdown, benchmark, tables, downsampled series for the charts."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np

from claire.reporting import metrics as M
from claire.reporting.confidence import Confidence, assess
from claire.reporting.report.model import RunData
from claire.reporting.verdict import Verdict, VerdictThresholds, decide

MAX_POINTS = 2000
NS_PER_SEC = 1_000_000_000


def downsample(ts: np.ndarray, *ys: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, ...]:
    """At most ~``max_points`` points: per bucket its first, lowest and highest point (in time
    order), so that peaks and troughs (the drawdown) survive; the last point is always kept."""
    n = len(ts)
    if n <= max_points:
        return (ts, *ys)
    buckets = max(1, max_points // 3)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    key = ys[0]
    idx: list[int] = []
    for a, b in pairwise(edges):
        if b <= a:
            continue
        seg = key[a:b]
        idx += sorted({int(a), int(a + np.argmin(seg)), int(a + np.argmax(seg))})
    if idx[-1] != n - 1:
        idx.append(n - 1)
    sel = np.asarray(idx, dtype=np.int64)
    return (ts[sel], *(y[sel] for y in ys))


def drawdown_of(eq: np.ndarray, start: float) -> np.ndarray:
    """Share below the running high-water mark (starting at the start cash), >= 0."""
    if len(eq) == 0:
        return np.zeros(0)
    peak = np.maximum.accumulate(np.maximum(eq, start))
    return np.where(peak > 0, 1 - eq / peak, 0.0)


def worst_daily_drawdown(ts: np.ndarray, eq: np.ndarray, start: float) -> float | None:
    """The deepest fall within a UTC day below that day's start (the previous day's close; the
    start cash on the first day), as R3 measures it."""
    if len(eq) == 0:
        return None
    days = ts // M.NS_PER_DAY
    worst, prev_close = 0.0, start
    bounds = np.flatnonzero(np.diff(days)) + 1
    for seg in np.split(eq, bounds):
        if prev_close > 0:
            worst = max(worst, float(1 - seg.min() / prev_close))
        prev_close = float(seg[-1])
    return worst


def benchmark_curve(data: RunData, ts: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """Buy and hold of the traded symbols, equal weight, from the run's start cash: each symbol's
    last observed price at each time over its first observed price (None without prices)."""
    symbols = [s for s in data.symbols if data.prices.get(s)] or [s for s in data.prices if data.prices[s]]
    if not symbols or len(ts) == 0:
        return None, None
    total = np.zeros(len(ts))
    for s in symbols:
        pts = sorted(data.prices[s])
        pt = np.asarray([p[0] for p in pts], dtype=np.int64)
        pp = np.asarray([p[1] for p in pts], dtype=float)
        i = np.clip(np.searchsorted(pt, ts, side="right") - 1, 0, len(pp) - 1)
        total += pp[i] / pp[0]
    curve = data.start_cash * total / len(symbols)
    last = np.asarray([sorted(data.prices[s])[-1][1] / sorted(data.prices[s])[0][1] for s in symbols])
    return curve, float(last.mean() - 1)


@dataclass
class Report:
    data: RunData
    returns: list[float]
    days: list[tuple[int, float]]  # (day, close)
    metrics: dict[str, Any]
    trade_stats: dict[str, Any]
    confidence: Confidence
    verdict: Verdict
    figures: dict[str, Any]
    chart: dict[str, Any] = field(default_factory=dict)  # downsampled series
    per_symbol: list[dict[str, Any]] = field(default_factory=list)
    monthly: list[dict[str, Any]] = field(default_factory=list)
    benchmark_return: float | None = None


def _mean(xs: list[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def per_symbol(data: RunData) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"trades": 0, "wins": 0, "pnl": 0.0, "fees": 0.0,
                                                           "volume": 0.0, "fills": 0, "open": 0})
    for t in data.trips:
        r = rows[t.symbol]
        if t.exit_time is None:
            r["open"] += 1
            continue
        r["trades"] += 1
        r["wins"] += t.pnl > 0
        r["pnl"] += t.pnl
        r["fees"] += t.fees
    for f in data.fills:
        rows[f.symbol]["fills"] += 1
        rows[f.symbol]["volume"] += f.quantity * f.price
    out = []
    for s, r in sorted(rows.items()):
        pts = sorted(data.prices.get(s) or [])
        hold = pts[-1][1] / pts[0][1] - 1 if pts and pts[0][1] > 0 else None
        out.append({"symbol": s, **r, "win_rate": r["wins"] / r["trades"] if r["trades"] else None,
                    "buy_and_hold": hold})
    return out


def monthly_returns(days: list[tuple[int, float]], start: float) -> list[dict[str, Any]]:
    """Compounded return per calendar month (UTC) from the daily closes."""
    out: dict[str, dict[str, Any]] = {}
    prev = start
    for day, close in days:
        key = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m")
        m = out.setdefault(key, {"month": key, "open": prev, "days": 0})
        m["close"] = close
        m["days"] += 1
        prev = close
    return [{**m, "return": m["close"] / m["open"] - 1 if m["open"] > 0 else None} for m in out.values()]


def _execution_figures(data: RunData) -> dict[str, Any]:
    slips = [abs(e.slippage_bps) for e in data.execution if e.slippage_bps is not None]
    scores = [e.quality_score for e in data.execution if e.quality_score is not None]
    lat = [e.latency_ms for e in data.execution if e.latency_ms is not None]
    return {"mean_abs_slippage_bps": _mean(slips), "mean_quality_score": _mean(scores),
            "mean_latency_ms": _mean(lat), "fills_analysed": len(data.execution)}


def build(data: RunData, thresholds: VerdictThresholds | None = None, *, seed: int | None = None) -> Report:
    """Everything the report shows, from the run's data."""
    days = data.daily_closes()
    returns = M.returns_from_closes(data.start_cash, days)
    metrics = M.daily_metrics(returns)
    closed = data.closed_trips
    tstats = M.trade_stats([t.pnl for t in closed])
    t = thresholds or VerdictThresholds()
    conf = assess(returns, len(closed), min_days=t.min_days, min_trades=t.min_trades,
                  **({"seed": seed} if seed is not None else {}))
    dd = drawdown_of(data.equity, data.start_cash)
    final = float(data.equity[-1]) if len(data.equity) else data.start_cash
    breaches = sum(1 for _ts, state, _r in data.state_changes if state in ("halted", "circuit_broken"))
    ex = _execution_figures(data)
    sysf = data.system
    figures = {
        "return_pct": (final / data.start_cash - 1) * 100 if data.start_cash > 0 else None,
        "final_equity": final,
        "max_drawdown_pct": float(dd.max()) if len(dd) else 0.0,
        "max_daily_drawdown_pct": worst_daily_drawdown(data.equity_ts, data.equity, data.start_cash),
        "circuit_breaker_threshold_pct": data.risk_limits.get("circuit_breaker_threshold_pct"),
        "max_daily_drawdown_limit_pct": data.risk_limits.get("max_daily_drawdown_pct"),
        "risk_breaches": breaches,
        "days": conf.days, "trades": conf.trades, "psr": conf.psr, "sharpe_ci_low": conf.sharpe.low,
        **ex,
        "data_gaps": sysf.get("data_gaps"), "restarts": sysf.get("restarts"),
        "critical_alerts": sysf.get("critical_alerts"), "dead_letters": sysf.get("dead_letters"),
        "fees": math.fsum(t.fees for t in data.trips),
    }
    verdict = decide(figures, t)
    ts_d, eq_d, dd_d = downsample(data.equity_ts, data.equity, dd)
    bench, bench_ret = benchmark_curve(data, ts_d)
    chart = {"t": (ts_d // NS_PER_SEC).tolist(), "equity": eq_d.round(2).tolist(),
             "drawdown": (-dd_d * 100).round(4).tolist(),
             "benchmark": None if bench is None else bench.round(2).tolist(),
             "full_points": len(data.equity_ts)}
    return Report(data=data, returns=returns, days=days, metrics=metrics, trade_stats=tstats, confidence=conf,
                  verdict=verdict, figures=figures, chart=chart, per_symbol=per_symbol(data),
                  monthly=monthly_returns(days, data.start_cash), benchmark_return=bench_ret)

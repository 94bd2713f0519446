"""The report's PNG charts (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, no display

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from claire.reporting.report.figures import Report

DPI = 100
MAX_SCATTER = 2000


def _dates(seconds: list[int] | np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype="datetime64[s]")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def equity_drawdown(rep: Report, path: Path) -> Path:
    c = rep.chart
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, height_ratios=[3, 1.3],
                                   layout="constrained")
    t = _dates(c["t"])
    ax1.plot(t, c["equity"], color="#1f5fa8", lw=1.2, label="equity (incl. unrealised)")
    if c["benchmark"] is not None:
        ax1.plot(t, c["benchmark"], color="#999999", lw=1, ls="--", label="buy and hold (equal weight)")
    ax1.axhline(rep.data.start_cash, color="#cccccc", lw=0.8)
    ax1.set_ylabel("USDT")
    ax1.legend(loc="best", fontsize=8)
    ax1.set_title("Equity and drawdown")
    ax2.fill_between(t, c["drawdown"], 0, color="#c0392b", alpha=0.5, step="post")
    ax2.set_ylabel("drawdown %")
    _time_axis(ax2)
    return _save(fig, path)


def _time_axis(ax: Any) -> None:
    """Dates and times as the span needs them (hours within a day, days over a week, ...), in UTC."""
    locator = mdates.AutoDateLocator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))


def daily_returns(rep: Report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 3), layout="constrained")
    t = _dates([d * 86_400 for d, _ in rep.days])
    r = np.asarray(rep.returns) * 100
    ax.bar(t, r, color=np.where(r >= 0, "#27ae60", "#c0392b"), width=0.8)
    ax.axhline(0, color="#333333", lw=0.6)
    ax.set_ylabel("daily return %")
    ax.set_title("Daily returns (UTC days)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    return _save(fig, path)


def trade_pnl(rep: Report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 3), layout="constrained")
    pnl = np.asarray([t.pnl for t in rep.data.closed_trips])
    if len(pnl):
        ax.hist(pnl, bins=min(60, max(5, len(pnl) // 5)), color="#1f5fa8")
        ax.axvline(0, color="#333333", lw=0.6)
    else:
        ax.text(0.5, 0.5, "no closed trades", ha="center", transform=ax.transAxes)
    ax.set_xlabel("PnL per round trip after fees (USDT)")
    ax.set_title("Trade PnL distribution")
    return _save(fig, path)


def execution(rep: Report, path: Path) -> Path:
    ex = rep.data.execution
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.2), layout="constrained")
    slip = [e.slippage_bps for e in ex if e.slippage_bps is not None]
    lat = [e.latency_ms for e in ex if e.latency_ms is not None]
    for ax, xs, label in ((axs[0], slip, "slippage (bps)"), (axs[1], lat, "latency (ms)")):
        if xs:
            ax.hist(xs, bins=40, color="#8e44ad")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        ax.set_xlabel(label)
    by_symbol: dict[str, list[tuple[int, float]]] = {}
    for e in ex:
        if e.expected_price:
            by_symbol.setdefault(e.symbol, []).append((e.time, (e.fill_price / e.expected_price - 1) * 1e4))
    for sym, pts in sorted(by_symbol.items()):
        pts = pts[:: max(1, len(pts) // MAX_SCATTER)]
        axs[2].scatter(_dates([t // 1_000_000_000 for t, _ in pts]), [b for _, b in pts], s=4, label=sym)
    if by_symbol:
        axs[2].legend(fontsize=7, loc="best")
    axs[2].axhline(0, color="#333333", lw=0.6)
    _time_axis(axs[2])
    axs[2].set_xlabel("time of the fill")
    axs[2].set_ylabel("filled vs expected (bps)")
    fig.suptitle("Execution quality")
    return _save(fig, path)


def write_charts(rep: Report, out_dir: Path) -> dict[str, Path]:
    """Every chart as a PNG in ``out_dir`` (created); name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"equity_drawdown": equity_drawdown(rep, out_dir / "equity_drawdown.png"),
            "daily_returns": daily_returns(rep, out_dir / "daily_returns.png"),
            "trade_pnl": trade_pnl(rep, out_dir / "trade_pnl.png"),
            "execution": execution(rep, out_dir / "execution.png")}

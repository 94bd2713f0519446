"""Performance figures of a run (A2): returns, Sharpe, Sortino, win rate, drawdown ..."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from claire.events import PortfolioSnapshot, iso_from_ns
from claire.events.time import NS_PER_DAY
from claire.reporting import metrics
from claire.reporting.recorder import R_EXPOSURE_PCT, R_TS, snapshot_rows

CENT = Decimal("0.01")


def _money(x: Decimal) -> str:
    return str(x.quantize(CENT))


def drawdown_duration(snapshots: list[PortfolioSnapshot]) -> tuple[Decimal, int]:
    """Largest drawdown (share of the high-water mark) and longest time under water (ns)."""
    return drawdown_duration_of([(s.ts_event, s.equity) for s in snapshots])


def drawdown_duration_of(points: Iterable[Sequence[Any]]) -> tuple[Decimal, int]:
    """:func:`drawdown_duration` over ``(ts_event, equity, ...)`` sequences (``Recorder.snapshot_rows``)."""
    hwm = None
    hwm_ts = 0
    max_dd = Decimal(0)
    longest = 0
    low = None  # the lowest equity since the high-water mark was set
    last: Sequence[Any] | None = None
    for last in points:
        ts, eq = last[0], last[1]
        if hwm is None or eq >= hwm:
            if hwm is not None and ts - hwm_ts > longest:
                longest = ts - hwm_ts
            hwm, hwm_ts, low = eq, ts, eq
        elif eq < low:  # (hwm - eq) / hwm rounds monotonically: only a new low can raise it
            low = eq
            dd = (hwm - eq) / hwm
            if dd > max_dd:
                max_dd = dd
    if last is not None and hwm is not None and last[1] < hwm:
        longest = max(longest, last[0] - hwm_ts)
    return max_dd, longest


def daily_closes(portfolio: Any) -> list[tuple[int, Decimal]]:
    """``(UTC day, close)`` per day with a snapshot, ascending. A day's close is the equity of its
    last snapshot; the last day closes at the final equity (the same unless a run stopped without a
    final snapshot). A day's PnL is its close minus the previous day's close (the first day: minus
    the start cash), so the days add up to the run's net PnL exactly."""
    closes = [(day, v[1]) for day, v in sorted(portfolio.daily.items())]
    if closes:
        final = portfolio.equity()
        if closes[-1][1] != final:
            closes[-1] = (closes[-1][0], final)
    return closes


def daily_pnl(start_cash: Decimal, closes: list[tuple[int, Decimal]], quantum: Decimal | None = None,
              ) -> list[tuple[int, Decimal]]:
    """``(day, close - previous close)``; with ``quantum`` the closes are rounded first, so the
    rounded days still add up exactly to the rounded final equity minus the rounded start cash."""
    q = (lambda x: x.quantize(quantum)) if quantum is not None else (lambda x: x)
    prev = q(start_cash)
    out = []
    for day, close in closes:
        c = q(close)
        out.append((day, c - prev))
        prev = c
    return out


def daily_returns(start_cash: Decimal, closes: list[tuple[int, Decimal]]) -> list[float]:
    prev = start_cash
    out = []
    for _day, end in closes:
        if prev > 0:
            out.append(float(end / prev - 1))
        prev = end
    return out


def sharpe_sortino(returns: list[float], periods_per_year: int = 365) -> tuple[float | None, float | None]:
    """Annualised Sharpe and Sortino of daily returns, as quantstats defines them (see
    :mod:`claire.reporting.metrics`); None where undefined (fewer than 2 days, no variation)."""
    return metrics.sharpe(returns, periods_per_year), metrics.sortino(returns, periods_per_year)


def _count(recorder: Any, attr: str, events: str) -> int:
    n = getattr(recorder, attr, None)  # a Recorder counts what it does not keep
    return len(getattr(recorder, events)) if n is None else n


def summarize(recorder: Any, portfolio: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    closed = [t for t in recorder.round_trips if not t.is_open]
    wins = [t for t in closed if t.pnl > 0]
    losses = [t for t in closed if t.pnl <= 0]
    won = sum((t.pnl for t in wins), Decimal(0))
    lost = -sum((t.pnl for t in losses), Decimal(0))
    final = portfolio.equity()
    start = portfolio.start_cash
    net_pnl = final.quantize(CENT) - start.quantize(CENT)  # = final_equity - start_equity as shown
    rows = snapshot_rows(recorder)
    max_dd, dd_ns = drawdown_duration_of(rows)
    max_dd = max(max_dd, portfolio.max_drawdown)
    closes = daily_closes(portfolio)
    rets = daily_returns(start, closes)
    sharpe, sortino = sharpe_sortino(rets)
    exposures = [r[R_EXPOSURE_PCT] for r in rows]
    volume = sum((f.quantity * f.price for f in recorder.fills), Decimal(0))
    rejected = sum(1 for r in recorder.risk_events if r.signal_id is not None and not r.passed and r.action.value == "rejected")
    by_check: dict[str, int] = {}
    for r in recorder.risk_events:
        if r.signal_id is not None and r.action.value == "rejected":
            by_check[r.check.value] = by_check.get(r.check.value, 0) + 1
    states = [r for r in recorder.risk_events if r.signal_id is None]
    out: dict[str, Any] = {
        "trades": len(closed),
        "open_trades": len(recorder.round_trips) - len(closed),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": round(len(wins) / len(closed), 6) if closed else None,  # of trades.csv: after fees
        # gross = before fees, net = after fees; realized_pnl_net is the sum of trades.csv's pnl
        "gross_pnl": str(net_pnl + portfolio.fees.quantize(CENT)),
        "fees": _money(portfolio.fees),
        "net_pnl": str(net_pnl),
        "realized_pnl_gross": _money(portfolio.realized),
        "realized_pnl_net": _money(portfolio.realized - portfolio.fees),
        "unrealized_pnl": _money(portfolio.unrealized()),
        "start_equity": _money(start),
        "final_equity": _money(final),
        "total_return_pct": round(float((final / start - 1) * 100), 6),
        "max_drawdown": round(float(max_dd), 6),
        "max_drawdown_duration_hours": round(dd_ns / 3_600_000_000_000, 3),
        "sharpe": round(sharpe, 6) if sharpe is not None else None,
        "sortino": round(sortino, 6) if sortino is not None else None,
        "profit_factor": round(float(won / lost), 6) if lost > 0 else None,
        "avg_win": _money(won / len(wins)) if wins else None,
        "avg_loss": _money(-lost / len(losses)) if losses else None,
        "volume": _money(volume),
        "avg_exposure_pct": round(float(sum(exposures) / len(exposures)) * 100, 6) if exposures else 0.0,
        "max_exposure_pct": round(float(max(exposures)) * 100, 6) if exposures else 0.0,
        "signals": _count(recorder, "signal_count", "signals"),
        "orders": _count(recorder, "order_count", "orders"),
        "fills": len(recorder.fills),
        "risk_rejections": rejected,
        "rejections_by_check": dict(sorted(by_check.items(), key=lambda kv: -kv[1])),
        "trading_state_changes": [
            {"time": iso_from_ns(r.ts_event), "state": r.trading_state.value, "reason": r.reason} for r in states],
        "days": len(closes),
        # per UTC day: close minus the previous day's close, in cents; adds up to net_pnl exactly
        "daily_pnl": {iso_from_ns(d * NS_PER_DAY)[:10]: str(v) for d, v in daily_pnl(start, closes, CENT)},
    }
    if rows:
        out["start_time"] = iso_from_ns(rows[0][R_TS])
        out["end_time"] = iso_from_ns(rows[-1][R_TS])
    if extra:
        out.update(extra)
    return out

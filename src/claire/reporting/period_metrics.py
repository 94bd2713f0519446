"""Performance figures per period (A2): one row per UTC day and one for the whole run."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from claire.events.time import NS_PER_DAY, NS_PER_SEC
from claire.reporting.recorder import R_EQUITY, R_EXPOSURE_PCT, R_TS, snapshot_rows
from claire.reporting.stats import daily_closes, drawdown_duration_of

ZERO = Decimal(0)


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS_PER_SEC, tz=UTC)


def _q(x: float | Decimal | None, places: str = "0.000001") -> Decimal | None:
    if x is None:
        return None
    return Decimal(str(x)).quantize(Decimal(places))


def _period(trips: list[Any], fills: list[Any], snaps: list[Any], start_equity: Decimal,
            end_equity: Decimal) -> dict[str, Any]:
    closed = [t for t in trips if t.exit_time is not None]
    wins = [t for t in closed if t.pnl > 0]
    losses = [t for t in closed if t.pnl <= 0]
    gw = sum((t.pnl for t in wins), ZERO)
    gl = -sum((t.pnl for t in losses), ZERO)
    dd, dd_ns = drawdown_duration_of(snaps)
    exp = [s[R_EXPOSURE_PCT] for s in snaps]
    return {
        "total_return_pct": _q((end_equity / start_equity - 1) * 100) if start_equity > 0 else None,
        "win_rate": _q(Decimal(len(wins)) / len(closed)) if closed else None,
        "profit_factor": _q(gw / gl) if gl > 0 else None,
        "avg_win": _q(gw / len(wins), "0.00000001") if wins else None,
        "avg_loss": _q(-gl / len(losses), "0.00000001") if losses else None,
        "max_drawdown_pct": _q(dd * 100),
        "max_drawdown_duration_hours": _q(Decimal(dd_ns) / (3600 * NS_PER_SEC), "0.001"),
        "total_trades": len(closed),
        "total_volume": sum((f.quantity * f.price for f in fills), ZERO),
        "total_fees": sum((f.fee for f in fills), ZERO),
        "avg_exposure_pct": _q(sum(exp, ZERO) / len(exp) * 100) if exp else None,
        "max_exposure_pct": _q(max(exp) * 100) if exp else None,
    }


def performance_rows(recorder: Any, portfolio: Any, summary: dict[str, Any]) -> list[dict[str, Any]]:
    snaps = snapshot_rows(recorder)  # (ts_event, equity, ...): see Recorder.snapshot_rows
    if not snaps:
        return []
    rows = []
    by_day: dict[int, list[Any]] = {}
    day = snaps[0][R_TS] // NS_PER_DAY
    for s in snaps:  # days only move forward, as in the portfolio (a late-stamped fill: current day)
        d = s[R_TS] // NS_PER_DAY
        if d > day:
            day = d
        by_day.setdefault(day, []).append(s)
    # a day's PnL: its close (last snapshot) minus the previous day's close (the first day: minus
    # the start cash), the same figures as summary.json's daily_pnl; they add up to the run's PnL
    closes = dict(daily_closes(portfolio))
    prev_end = portfolio.start_cash
    for day in sorted(by_day):
        d_snaps = by_day[day]
        end = closes.get(day, d_snaps[-1][R_EQUITY])
        lo, hi = day * NS_PER_DAY, (day + 1) * NS_PER_DAY
        trips = [t for t in recorder.round_trips if t.exit_time is not None and lo <= t.exit_time < hi]
        fills = [f for f in recorder.fills if lo <= f.ts_event < hi]
        row = _period(trips, fills, d_snaps, prev_end, end)
        row.update(period_type="day", period_start=_dt(lo), period_end=_dt(hi), sharpe_ratio=None,
                   sortino_ratio=None, metadata={"daily_pnl": str(end - prev_end)})
        prev_end = end
        rows.append(row)
    run = _period(recorder.round_trips, recorder.fills, snaps, portfolio.start_cash, portfolio.equity())
    run.update(period_type="run", period_start=_dt(snaps[0][R_TS]), period_end=_dt(snaps[-1][R_TS]),
               sharpe_ratio=_q(summary.get("sharpe")), sortino_ratio=_q(summary.get("sortino")),
               metadata={"final_equity": summary.get("final_equity"), "strategy": summary.get("strategy")})
    rows.append(run)
    return rows

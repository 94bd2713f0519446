"""Performance figures per period (A2): one row per UTC day, per ISO week and for the whole run.

One pure function, :func:`period_rows`, over plain series (snapshots as ``(ts, equity, exposure
share)``, fills), so the rows are the same whether they come from a run's Recorder at its end
(:func:`performance_rows`) or from what the database holds while the run goes on
(``claire.runtime.analytics``). Definitions (docs/database.md, "Analytics columns"):

- a UTC day's close is the equity of its last snapshot (days only move forward, as in the
  portfolio); the run's last day closes at the final equity. Return = close / previous close - 1
  (the first day: against the start cash);
- Sharpe and Sortino (:func:`claire.reporting.stats.sharpe_sortino`): day rows from the hourly
  returns of equity within the day (hourly closes, the first against the previous day's close),
  annualised with 24 x 365 periods; week and run rows from the daily returns, 365 per year;
- win rate, profit factor, average win / loss, trade count: the round trips closed in the period
  (after fees); volume and fees: the fills in the period; drawdown and its duration: over the
  period's snapshots, from its own high-water mark; exposure: average / maximum share of equity
  over its snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from claire.events import OrderResult, OrderStatus, Side
from claire.events.time import NS_PER_DAY, NS_PER_SEC
from claire.reporting.recorder import R_EQUITY, R_EXPOSURE_PCT, R_TS, Recorder, RoundTrip, snapshot_rows
from claire.reporting.stats import drawdown_duration_of, sharpe_sortino

ZERO = Decimal(0)
NS_PER_HOUR = 3600 * NS_PER_SEC
HOURS_PER_YEAR = 24 * 365
DAYS_PER_YEAR = 365
#: (ts, equity, exposure share of equity) of one snapshot
Point = tuple[int, Decimal, Decimal]


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS_PER_SEC, tz=UTC)


def _q(x: float | Decimal | None, places: str = "0.000001") -> Decimal | None:
    if x is None:
        return None
    return Decimal(str(x)).quantize(Decimal(places))


def week_of(day: int) -> int:
    """The first day (days since the epoch) of the ISO week (Monday to Sunday) holding ``day``
    (1970-01-01 was a Thursday)."""
    return day - (day + 3) % 7


def round_trips_of(fills: Iterable[Any]) -> list[RoundTrip]:
    """The round trips of fills in their order (the Recorder's pairing)."""
    rec = Recorder(keep_events=False)
    for f in fills:
        rec._pair(f)
    return rec.round_trips


def _figures(trips: list[RoundTrip], fills: list[Any], points: list[Point], start_equity: Decimal,
             end_equity: Decimal, returns: list[float], periods_per_year: int) -> dict[str, Any]:
    closed = [t for t in trips if t.exit_time is not None]
    wins = [t for t in closed if t.pnl > 0]
    losses = [t for t in closed if t.pnl <= 0]
    gw = sum((t.pnl for t in wins), ZERO)
    gl = -sum((t.pnl for t in losses), ZERO)
    dd, dd_ns = drawdown_duration_of(points)
    exp = [p[2] for p in points]
    sharpe, sortino = sharpe_sortino(returns, periods_per_year)
    return {
        "total_return_pct": _q((end_equity / start_equity - 1) * 100) if start_equity > 0 else None,
        "sharpe_ratio": _q(sharpe),
        "sortino_ratio": _q(sortino),
        "win_rate": _q(Decimal(len(wins)) / len(closed)) if closed else None,
        "profit_factor": _q(gw / gl) if gl > 0 else None,
        "avg_win": _q(gw / len(wins), "0.00000001") if wins else None,
        "avg_loss": _q(-gl / len(losses), "0.00000001") if losses else None,
        "max_drawdown_pct": _q(dd * 100),
        "max_drawdown_duration_hours": _q(Decimal(dd_ns) / NS_PER_HOUR, "0.001"),
        "total_trades": len(closed),
        "total_volume": sum((f.quantity * f.price for f in fills), ZERO),
        "total_fees": sum((f.fee for f in fills), ZERO),
        "avg_exposure_pct": _q(sum(exp, ZERO) / len(exp) * 100) if exp else None,
        "max_exposure_pct": _q(max(exp) * 100) if exp else None,
    }


def _why_no_ratio(row: dict[str, Any], returns: list[float], meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with ``unavailable.sharpe_ratio`` when the period has no Sharpe ratio, saying why."""
    if row["sharpe_ratio"] is None:
        why = f"{len(returns)} return(s), 2 needed" if len(returns) < 2 else "the returns do not vary (no position)"
        meta["unavailable"] = {"sharpe_ratio": why}
    return meta


def _returns(closes: Sequence[Decimal], prev: Decimal) -> list[float]:
    out = []
    for c in closes:
        if prev > 0:
            out.append(float(c / prev - 1))
        prev = c
    return out


def _by_day(points: Sequence[Point]) -> dict[int, list[Point]]:
    """Snapshots per UTC day, days only moving forward (as in the portfolio: a fill stamped
    before the last periodic snapshot counts in the current day)."""
    by_day: dict[int, list[Point]] = {}
    day = points[0][0] // NS_PER_DAY
    for p in points:
        d = p[0] // NS_PER_DAY
        if d > day:
            day = d
        by_day.setdefault(day, []).append(p)
    return by_day


def _hourly_closes(points: list[Point], day: int) -> list[Decimal]:
    """The equity of the last snapshot of each hour of ``day`` that has one (hours forward only)."""
    closes: dict[int, Decimal] = {}
    lo = day * 24
    hour = lo
    for p in points:
        h = min(max(p[0] // NS_PER_HOUR, lo), lo + 23)
        if h > hour:
            hour = h
        closes[hour] = p[1]
    return [closes[h] for h in sorted(closes)]


def period_rows(points: Sequence[Point], fills: Sequence[Any], start_cash: Decimal, *,
                trips: list[RoundTrip] | None = None, final_equity: Decimal | None = None,
                until_ns: int | None = None) -> list[dict[str, Any]]:
    """The rows of ``performance_metrics`` (without ``run_id``): every day, every ISO week and the
    run, from snapshots ``points`` (ascending) and ``fills`` (in their order; ``trips``: their
    round trips when known). With ``until_ns`` (a UTC day boundary while the run goes on) only
    what happened before it counts: the finished days, the week and the run to date. A row's
    ``metadata["final"]`` says whether it can still change (a week or run to date). ``final_equity``: the run's last close when the
    run has ended (else the equity of the last snapshot)."""
    if until_ns is not None:
        points = [p for p in points if p[0] < until_ns]
        fills = [f for f in fills if f.ts_event < until_ns]
        trips = None
    if not points:
        return []
    if trips is None:
        trips = round_trips_of(fills)
    by_day = _by_day(points)
    days = sorted(by_day)
    closes = {d: by_day[d][-1][1] for d in days}
    if final_equity is not None and until_ns is None:
        closes[days[-1]] = final_equity
    ended = until_ns is None and final_equity is not None
    last_day = days[-1]
    rows = []
    prev_close: dict[int, Decimal] = {}
    prev = start_cash
    for d in days:
        prev_close[d] = prev
        prev = closes[d]

    def in_range(lo: int, hi: int) -> tuple[list[RoundTrip], list[Any]]:
        return ([t for t in trips if t.exit_time is not None and lo <= t.exit_time < hi],
                [f for f in fills if lo <= f.ts_event < hi])

    for d in days:
        lo, hi = d * NS_PER_DAY, (d + 1) * NS_PER_DAY
        hourly = _hourly_closes(by_day[d], d)
        if closes[d] != hourly[-1]:
            hourly[-1] = closes[d]  # the run's last day closes at the final equity
        t, f = in_range(lo, hi)
        rets = _returns(hourly, prev_close[d])
        row = _figures(t, f, by_day[d], prev_close[d], closes[d], rets, HOURS_PER_YEAR)
        row.update(period_type="day", period_start=_dt(lo), period_end=_dt(hi),
                   metadata=_why_no_ratio(row, rets, {
                       "daily_pnl": str(closes[d] - prev_close[d]), "returns": "hourly",
                       "periods_per_year": HOURS_PER_YEAR, "return_count": len(rets),
                       "final": ended or until_ns is not None or d < last_day}))
        rows.append(row)
    weeks: dict[int, list[int]] = {}
    for d in days:
        weeks.setdefault(week_of(d), []).append(d)
    for w, wdays in weeks.items():
        lo, hi = w * NS_PER_DAY, (w + 7) * NS_PER_DAY
        t, f = in_range(lo, hi)
        pts = [p for d in wdays for p in by_day[d]]
        rets = _returns([closes[d] for d in wdays], prev_close[wdays[0]])
        row = _figures(t, f, pts, prev_close[wdays[0]], closes[wdays[-1]], rets, DAYS_PER_YEAR)
        row.update(period_type="week", period_start=_dt(lo), period_end=_dt(hi),
                   metadata={"returns": "daily", "periods_per_year": DAYS_PER_YEAR, "return_count": len(rets),
                             "final": ended or w < week_of(last_day) or (until_ns is not None and
                                                                         (w + 7) * NS_PER_DAY <= until_ns)})
        _why_no_ratio(row, rets, row["metadata"])
        rows.append(row)
    end = closes[days[-1]]
    rets = _returns([closes[d] for d in days], start_cash)
    run = _figures(trips, list(fills), list(points), start_cash, end, rets, DAYS_PER_YEAR)
    run.update(period_type="run", period_start=_dt(points[0][0]),
               period_end=_dt(points[-1][0] if until_ns is None else until_ns),
               metadata={"returns": "daily", "periods_per_year": DAYS_PER_YEAR, "return_count": len(rets),
                         "final": ended, "equity": str(end)})
    _why_no_ratio(run, rets, run["metadata"])
    rows.append(run)
    return rows


def points_of(recorder: Any) -> list[Point]:
    """``(ts, equity, exposure share)`` of the recorder's snapshots."""
    return [(s[R_TS], s[R_EQUITY], s[R_EXPOSURE_PCT]) for s in snapshot_rows(recorder)]


def performance_rows(recorder: Any, portfolio: Any, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The final rows of a run from its Recorder and portfolio (the run has ended)."""
    rows = period_rows(points_of(recorder), recorder.fills, portfolio.start_cash, trips=recorder.round_trips,
                       final_equity=portfolio.equity())
    if rows:
        rows[-1]["metadata"].update(final_equity=summary.get("final_equity"), strategy=summary.get("strategy"))
    return rows


def fill_of(ts: int, fid: str, symbol: str, side: str, quantity: Decimal, price: Decimal, fee: Decimal) -> OrderResult:
    """A fill as the pairing reads it, from a stored trade."""
    return OrderResult(id=fid, ts_event=ts, ts_recv=ts, order_id="", signal_id="", symbol=symbol, side=Side(side),
                       status=OrderStatus.FILLED, quantity=quantity, price=price, fee=fee)

"""The daily summary: at each UTC midnight of the run's clock, one info alert with the day's figures.

Pure and fed the same events as :class:`~claire.alerting.rules.AlertRules` (plus the alerts the
rules raised). The clock is the event time of the portfolio's snapshots: the first snapshot of a
new UTC day closes the day before, so a fast replay sends one summary per simulated day and a live
run one per real day (days without any snapshot send none). A fill or alert of a later day waits
for that day's first snapshot; one of a day already summarised (a late arrival across streams in
the distributed runtime) is counted in the day that is open.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from claire.events import Alert, AlertLevel, OrderResult, PortfolioSnapshot

NS_PER_DAY = 86_400 * 1_000_000_000
SOURCE = "alerting"
_GAP_CODES = ("data_quality.gap_repaired", "data_quality.gap_unrepaired", "data_quality.repair_pending")


def utc_date(ts_ns: int) -> str:
    """The UTC date of an event time, as YYYY-MM-DD."""
    return datetime.datetime.fromtimestamp(ts_ns // 1_000_000_000, datetime.UTC).strftime("%Y-%m-%d")


class _Day:
    """The running figures of one UTC day."""

    def __init__(self, day: int, start_equity: Decimal | None) -> None:
        self.day = day
        self.last_ts = day * NS_PER_DAY
        self.start_equity = start_equity  # the last equity of the day before (else the day's first snapshot's)
        self.equity: Decimal | None = None
        self.drawdown = Decimal(0)
        self.max_drawdown = Decimal(0)
        self.realized = Decimal(0)
        self.fees = Decimal(0)
        self.fills = 0
        self.rejected = 0
        self.volume = Decimal(0)
        self.alerts: dict[str, int] = {}
        self.repeats = 0
        self.gaps = 0
        self.bars_repaired = 0


class DailySummary:
    """Builds the daily summaries of one run (see the module doc)."""

    def __init__(self, run_id: str = "run") -> None:
        self.run_id = run_id
        self.day: _Day | None = None
        self.last_equity: Decimal | None = None
        #: fills and alerts of a later day than the open one, held until a snapshot of that day
        #: closes the open day (in the distributed runtime the streams are read batch by batch)
        self.ahead: list[Any] = []

    def feed(self, event: Any) -> list[Alert]:
        """The summaries ``event`` closes (at most one: the day before its own)."""
        ts = getattr(event, "ts_event", None)
        if not isinstance(ts, int) or ts <= 0 or not isinstance(event, PortfolioSnapshot | OrderResult | Alert):
            return []
        day = ts // NS_PER_DAY
        if self.day is None:
            self.day = _Day(day, None)
        if day <= self.day.day:
            self._count(self.day, event)
            return []
        if not isinstance(event, PortfolioSnapshot):  # the portfolio's snapshots move the clock
            self.ahead.append(event)
            return []
        out = [self.summary()]
        self.day = _Day(day, self.last_equity)
        waiting, self.ahead = self.ahead, []
        for ev in waiting:
            if ev.ts_event // NS_PER_DAY <= day:
                self._count(self.day, ev)
            else:
                self.ahead.append(ev)
        self._count(self.day, event)
        return out

    def _count(self, d: _Day, event: Any) -> None:
        d.last_ts = max(d.last_ts, event.ts_event)
        if isinstance(event, PortfolioSnapshot):
            if d.start_equity is None:
                d.start_equity = event.day_start_equity
            d.equity = self.last_equity = event.equity
            d.drawdown = event.drawdown_pct
            d.max_drawdown = max(d.max_drawdown, event.drawdown_pct)
        elif isinstance(event, OrderResult):
            if event.is_fill:
                d.fills += 1
                d.volume += event.notional
                d.fees += event.fee
            elif event.status.value == "rejected":
                d.rejected += 1
        elif event.source == SOURCE:  # the rules' alerts (a repeat within the cool-down counted apart)
            if event.details.get("repeat_of"):
                d.repeats += 1
            elif event.code != "daily_summary":
                d.alerts[event.level.value] = d.alerts.get(event.level.value, 0) + 1
        elif event.code in _GAP_CODES:
            d.gaps += 1
            d.bars_repaired += int(event.details.get("bars_repaired") or 0)

    def summary(self, final: bool = False) -> Alert:
        """The summary of the day that is open (``final``: at the end of the run, the day so far)."""
        d = self.day
        if d is None:
            raise ValueError("no event seen yet: nothing to summarise")
        date = utc_date(d.day * NS_PER_DAY)
        ts = d.last_ts if final else (d.day + 1) * NS_PER_DAY
        pnl = (d.equity - d.start_equity) if d.equity is not None and d.start_equity is not None else None
        n_alerts = sum(d.alerts.values())
        details: dict[str, Any] = {
            "category": "summary", "key": date, "date": date, "final": final,
            "equity": str(d.equity) if d.equity is not None else None,
            "start_equity": str(d.start_equity) if d.start_equity is not None else None,
            "pnl": str(pnl) if pnl is not None else None,
            "trades": d.fills, "rejected_orders": d.rejected, "volume": str(d.volume), "fees": str(d.fees),
            "drawdown_pct": str(d.drawdown), "max_drawdown_pct": str(d.max_drawdown),
            "alerts": n_alerts, "alerts_by_level": dict(sorted(d.alerts.items())),
            "alert_repeats": d.repeats,
            "data_gaps": d.gaps, "bars_repaired": d.bars_repaired, "occurrences": 1,
        }
        eq = f"{d.equity:.2f}" if d.equity is not None else "n/a"
        pnl_txt = f"{pnl:+.2f}" if pnl is not None else "n/a"
        what = "so far" if final else "summary"
        message = (f"{date} {what}: equity {eq} USDT, PnL {pnl_txt} USDT, {d.fills} trade(s), "
                   f"drawdown {d.drawdown * 100:.2f} % (max {d.max_drawdown * 100:.2f} %), "
                   f"{n_alerts} alert(s), {d.gaps} data gap(s)")
        suffix = "final" if final else "day"
        return Alert(id=f"{self.run_id}:alert:daily_summary:{date}:{suffix}", ts_event=ts, ts_recv=ts,
                     level=AlertLevel.INFO, source=SOURCE, code="daily_summary", message=message, details=details)

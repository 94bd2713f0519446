"""The daily summary: once per UTC day of event time, with the day's figures."""

from __future__ import annotations

from decimal import Decimal

from claire.alerting.daily import DailySummary
from claire.alerting.rules import AlertRules
from claire.events import OrderResult, OrderStatus, Side
from tests.alerting.conftest import DAY0, NS_PER_DAY, NS_PER_SEC, component_alert, snap

HOUR = 3600 * NS_PER_SEC


def fill(ts: int, n: int) -> OrderResult:
    return OrderResult(id=f"fill:{n}", ts_event=ts, ts_recv=ts, order_id=f"o{n}", signal_id=f"s{n}",
                       symbol="BTCUSDT", side=Side.BUY, status=OrderStatus.FILLED, quantity=Decimal(1),
                       price=Decimal(100), fee=Decimal("0.1"))


def test_one_summary_per_event_time_day_over_a_replay_of_three_days() -> None:
    d = DailySummary("run-t")
    rules = AlertRules(run_id="run-t")
    out = []
    events = []
    for day in range(3):  # hourly snapshots, two fills a day, a drawdown on day 1
        for h in range(24):
            ts = DAY0 + day * NS_PER_DAY + h * HOUR + 30 * NS_PER_SEC
            equity = "96000" if (day == 1 and h == 12) else str(100000 + day * 100 + h)
            events.append(snap(ts, equity, hwm=str(100000 + day * 100 + 23) if day else "100023",
                               day_start=str(100000 + day * 100)))
            if h in (3, 9):
                events.append(fill(ts, day * 10 + h))
    events.append(component_alert(DAY0 + NS_PER_DAY + 5 * HOUR, "data_quality.gap_repaired", symbol="BTCUSDT",
                                  bars_repaired=4))
    events.sort(key=lambda e: e.ts_event)
    for ev in events:
        out += d.feed(ev)
        for a in rules.feed(ev):
            out += d.feed(a)
    assert [a.code for a in out] == ["daily_summary", "daily_summary"]  # day 0 and day 1 closed; day 2 open
    s0, s1 = out
    assert s0.ts_event == DAY0 + NS_PER_DAY and s1.ts_event == DAY0 + 2 * NS_PER_DAY  # each at UTC midnight
    assert s0.details["date"] == "2022-01-08" and s1.details["date"] == "2022-01-09"
    assert s0.details["trades"] == 2 and s0.details["equity"] == "100023" and s0.details["pnl"] == "23"
    assert s0.details["alerts"] == 0 and s0.details["data_gaps"] == 0
    assert s1.details["start_equity"] == "100023" and s1.details["equity"] == "100123"
    assert s1.details["pnl"] == "100" and s1.details["trades"] == 2
    assert s1.details["alerts"] == 2 and s1.details["alerts_by_level"] == {"info": 1, "warning": 1}
    assert s1.details["data_gaps"] == 1 and s1.details["bars_repaired"] == 4
    assert Decimal(s1.details["max_drawdown_pct"]) > Decimal("0.04")
    assert s1.level.value == "info" and s1.details["category"] == "summary" and "2022-01-09" in s1.message
    final = d.summary(final=True)
    assert final.details["date"] == "2022-01-10" and final.details["final"] is True
    assert final.id != s1.id and final.ts_event == events[-1].ts_event


def test_a_later_days_fill_waits_for_that_days_first_snapshot() -> None:
    d = DailySummary()
    d.feed(snap(DAY0 + HOUR, "100000"))
    assert d.feed(fill(DAY0 + NS_PER_DAY + 1, 1)) == []  # read before the snapshots of its day
    assert d.feed(snap(DAY0 + 2 * HOUR, "100010")) == []  # day 0 goes on
    out = d.feed(snap(DAY0 + NS_PER_DAY + 2, "100020"))
    assert len(out) == 1 and out[0].details["trades"] == 0 and out[0].details["equity"] == "100010"
    assert d.summary(final=True).details["trades"] == 1


def test_no_summary_within_one_day() -> None:
    d = DailySummary()
    assert [a for h in range(24) for a in d.feed(snap(DAY0 + h * HOUR, "100000"))] == []

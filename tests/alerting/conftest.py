"""The local apprise json:// receiver (tests.support), and event builders for the rules."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from claire.events import Alert, AlertLevel, PortfolioSnapshot
from tests.support.notify_receiver import NotifyReceiver, serve_receiver

NS_PER_SEC = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SEC
DAY0 = 19_000 * NS_PER_DAY  # a UTC midnight (2022-01-08)


@pytest.fixture()
def receiver() -> Iterator[tuple[NotifyReceiver, int]]:
    """(receiver, port) of a local apprise json:// receiver."""
    with serve_receiver() as (rec, port):
        yield rec, port


def snap(ts: int, equity: str, hwm: str = "100000", *, day_start: str = "100000", sid: str | None = None,
         reason: str = "periodic") -> PortfolioSnapshot:
    """A snapshot with the given equity and high-water mark (drawdown computed from them)."""
    eq, hw = Decimal(equity), Decimal(hwm)
    return PortfolioSnapshot(
        id=sid or f"snap:{ts}", ts_event=ts, ts_recv=ts, start_cash=Decimal(100000), cash=eq, equity=eq,
        realized_pnl=Decimal(0), unrealized_pnl=Decimal(0), fees=Decimal(0), total_exposure=Decimal(0),
        total_exposure_pct=Decimal(0), high_water_mark=hw, drawdown_pct=(hw - eq) / hw,
        day_start_equity=Decimal(day_start), daily_pnl=eq - Decimal(day_start), num_positions=0, reason=reason)


def component_alert(ts: int, code: str, source: str = "marketdata.mexc", level: AlertLevel = AlertLevel.WARNING,
                    **details: Any) -> Alert:
    return Alert(id=f"a:{code}:{ts}", ts_event=ts, ts_recv=ts, level=level, source=source, code=code,
                 message=f"{source} says {code}", details=details)

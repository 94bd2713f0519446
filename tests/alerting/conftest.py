"""A local HTTP receiver for apprise's json:// target, and event builders for the rules."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from claire.events import Alert, AlertLevel, PortfolioSnapshot

NS_PER_SEC = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SEC
DAY0 = 19_000 * NS_PER_DAY  # a UTC midnight (2022-01-08)


class Receiver:
    """What apprise's json:// target POSTed: one decoded JSON body per request (and the paths)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.cond = threading.Condition()

    def wait_for(self, pred: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: any(pred(m) for m in self.messages), timeout)
            return [m for m in self.messages if pred(m)]


@pytest.fixture()
def receiver() -> Iterator[tuple[Receiver, int]]:
    """An HTTP server on a free port of 127.0.0.1 collecting POSTed JSON: (receiver, port)."""
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.cond:
                rec.messages.append(json.loads(body))
                rec.paths.append(self.path)
                rec.cond.notify_all()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


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

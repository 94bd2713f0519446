"""The run-file writer as it was before the columnar one (csv.writer, row by row): the reference
the columnar writer must match byte for byte."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from claire.events import iso_from_ns
from claire.reporting.runfiles import (
    EQUITY_COLUMNS,
    FILLS_COLUMNS,
    RISK_COLUMNS,
    SIGNALS_COLUMNS,
    TRADES_COLUMNS,
)


def _s(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, Decimal):
        return format(x, "f")
    return str(x)


def write_csvs_reference(out: Path, recorder: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "trades.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TRADES_COLUMNS)
        for t in recorder.round_trips:
            w.writerow([t.symbol, t.side, _s(t.quantity), iso_from_ns(t.entry_time), _s(t.entry_price),
                        iso_from_ns(t.exit_time) if t.exit_time is not None else "", _s(t.exit_price),
                        _s(t.fees), _s(t.pnl)])
    with (out / "fills.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(FILLS_COLUMNS)
        for r in recorder.results:
            w.writerow([iso_from_ns(r.ts_event), r.id, r.order_id, r.signal_id, r.symbol, r.side.value, r.status.value,
                        r.order_type.value, _s(r.quantity), _s(r.price), _s(r.fee), r.liquidity.value,
                        _s(r.reference_price), _s(r.slippage_bps), r.latency_ns / 1e6,
                        _s(r.cum_quantity), _s(r.leaves_quantity), r.reason or ""])
    with (out / "equity.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(EQUITY_COLUMNS)
        for s in recorder.snapshots:
            w.writerow([iso_from_ns(s.ts_event), _s(s.equity), _s(s.cash), _s(s.realized_pnl), _s(s.unrealized_pnl),
                        _s(s.fees), _s(s.total_exposure_pct), _s(s.drawdown_pct), _s(s.high_water_mark),
                        _s(s.daily_pnl), s.num_positions, s.reason])
    with (out / "risk_events.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(RISK_COLUMNS)
        for e in recorder.risk_events:
            checks = ";".join(f"{c.check.value}={'pass' if c.passed else 'FAIL'}" for c in e.checks)
            w.writerow([iso_from_ns(e.ts_event), e.id, e.signal_id or "", e.symbol or "", e.check.value, e.action.value,
                        e.passed, _s(e.value), _s(e.limit), e.reason, e.trading_state.value,
                        _s(e.requested_quantity), _s(e.approved_quantity), e.order_id or "", checks])
    with (out / "signals.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SIGNALS_COLUMNS)
        enc = msgspec.json.Encoder(decimal_format="string", order="sorted")
        for g in getattr(recorder, "signals", []):
            w.writerow([iso_from_ns(g.ts_event), g.id, g.symbol, g.side.value, _s(g.price), _s(g.confidence),
                        _s(g.quantity), g.reduce_only, g.strategy, g.strategy_version,
                        iso_from_ns(g.market_ts) if g.market_ts else "",
                        enc.encode(g.metadata).decode() if g.metadata else ""])

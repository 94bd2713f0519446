"""The replay runtime end to end on the real BTC file: run files, their reconciliation, determinism.

Run: sma_cross fast=10 slow=30, fixed quantity 0.1, risk none, fills at the next bar's open,
taker fee 10 bps (the defaults), start 100,000 USDT.

The reconciliation identity (exact in Decimal on the run's objects, to the cent on the files)::

    final_equity - start_cash
        = realized_pnl - fees + unrealized_pnl                                  (portfolio)
        = sum(pnl of closed trades) + pnl of the open trade + unrealized_pnl    (round trips)

because a round trip's ``pnl`` is its realized PnL after *all* its fees (entry and exit), so the
open trade's ``pnl`` is minus its entry fees, and ``unrealized_pnl`` is the open trade's
``open_qty * (mark - entry_price)``.
"""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.events import OrderResult, ns_from_iso
from claire.reporting.runfiles import TRADES_COLUMNS
from claire.risk import RiskConfig
from claire.runtime.backtest import RunResult, run_backtest

D = Decimal
DATA = Path(__file__).resolve().parents[2] / "data"
BTC_FILE = DATA / "BTC_USDT-1m.feather"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
CENT = D("0.01")


def _config(out: Path) -> RunConfig:
    return RunConfig(data=DataSettings(paths=[str(BTC_FILE)]),
                     strategy=StrategySettings(name="sma_cross", params={"fast": 10, "slow": 30}),
                     risk=RiskConfig(enabled=False, quantity=D("0.1")), runtime=RuntimeSettings(out=str(out)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, RunResult]:
    a = run_backtest(_config(tmp_path_factory.mktemp("run_a")))
    b = run_backtest(_config(tmp_path_factory.mktemp("run_b")))
    return a, b


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def test_trades_csv_has_the_documented_columns_and_iso_utc_times(runs: Any) -> None:
    res, _ = runs
    header, rows = _rows(res.out / "trades.csv")
    assert header == TRADES_COLUMNS == ["symbol", "side", "quantity", "entry_time", "entry_price", "exit_time",
                                        "exit_price", "fees", "pnl"]
    assert len(rows) == len(res.round_trips) > 100
    for row, rt in zip(rows, res.round_trips, strict=True):
        assert row["symbol"] == "BTCUSDT" and row["side"] == "long"
        assert D(row["quantity"]) == D("0.1")
        assert ISO_Z.match(row["entry_time"]), row["entry_time"]
        assert ns_from_iso(row["entry_time"]) == rt.entry_time
        assert D(row["entry_price"]) == rt.entry_price and D(row["pnl"]) == rt.pnl and D(row["fees"]) == rt.fees
        if rt.is_open:
            continue
        assert ISO_Z.match(row["exit_time"]), row["exit_time"]
        assert ns_from_iso(row["exit_time"]) == rt.exit_time >= rt.entry_time
        assert D(row["exit_price"]) == rt.exit_price
        assert D(row["pnl"]) == (rt.exit_price - rt.entry_price) * D("0.1") - rt.fees
    # the data ends with a position open: its round trip is the last row, exit fields empty
    open_rows = [r for r in rows if r["exit_time"] == ""]
    assert open_rows == [rows[-1]]
    assert rows[-1]["exit_price"] == "" and D(rows[-1]["fees"]) > 0
    assert D(rows[-1]["pnl"]) == -D(rows[-1]["fees"])  # only the entry fee is realized so far


def test_other_run_files_use_iso_utc_times(runs: Any) -> None:
    res, _ = runs
    for name, col in (("fills.csv", "time"), ("equity.csv", "time"), ("risk_events.csv", "time")):
        _, rows = _rows(res.out / name)
        assert rows, name
        assert all(ISO_Z.match(r[col]) for r in rows), name


def test_summary_json_fields_and_trade_count(runs: Any) -> None:
    res, _ = runs
    summary = json.loads((res.out / "summary.json").read_text())
    for key in ("trades", "win_rate", "realized_pnl_gross", "realized_pnl_net", "net_pnl", "fees", "max_drawdown",
                "sharpe", "final_equity"):
        assert key in summary, key
    _, rows = _rows(res.out / "trades.csv")
    closed = [r for r in rows if r["exit_time"]]
    assert summary["trades"] == len(closed) == len(rows) - 1
    assert summary["open_trades"] == 1
    wins = sum(1 for r in closed if D(r["pnl"]) > 0)
    assert summary["win_rate"] == round(wins / len(closed), 6)
    pf = res.portfolio
    assert D(summary["realized_pnl_gross"]) == pf.realized.quantize(CENT)  # before fees
    # after fees: the sum of trades.csv's pnl (which the win rate and profit factor are of)
    assert D(summary["realized_pnl_net"]) == (pf.realized - pf.fees).quantize(CENT)
    assert D(summary["realized_pnl_net"]) == sum((D(r["pnl"]) for r in rows), D(0)).quantize(CENT)
    assert D(summary["net_pnl"]) == D(summary["final_equity"]) - D(summary["start_equity"])
    assert D(summary["gross_pnl"]) == D(summary["net_pnl"]) + D(summary["fees"])
    assert sum((D(v) for v in summary["daily_pnl"].values()), D(0)) == D(summary["net_pnl"])
    assert D(summary["fees"]) == pf.fees.quantize(CENT)
    assert D(summary["final_equity"]) == pf.equity().quantize(CENT)
    assert D(summary["start_equity"]) == D(100_000)
    _, eq_rows = _rows(res.out / "equity.csv")
    assert summary["max_drawdown"] == pytest.approx(max(float(r["drawdown_pct"]) for r in eq_rows), abs=1e-6)
    assert 0 < summary["max_drawdown"] < 1
    assert summary["sharpe"] is None or isinstance(summary["sharpe"], float)
    assert summary["fills"] == len(res.fills) and summary["risk"] == "none"


def test_trade_pnl_reconciles_with_final_equity(runs: Any) -> None:
    res, _ = runs
    pf = res.portfolio
    rts = res.round_trips
    start = pf.start_cash
    closed = [t for t in rts if not t.is_open]
    (open_rt,) = [t for t in rts if t.is_open]
    mark = pf.marks["BTCUSDT"]
    unrealized = pf.unrealized()
    # exact, on the run's objects
    assert unrealized == open_rt.open_qty * (mark - open_rt.entry_price)
    assert sum((t.pnl for t in rts), D(0)) == pf.realized - pf.fees
    assert pf.equity() - start == pf.realized - pf.fees + unrealized
    assert pf.equity() - start == sum((t.pnl for t in closed), D(0)) + open_rt.pnl + unrealized
    assert sum((t.fees for t in rts), D(0)) == pf.fees == sum((f.fee for f in res.fills), D(0))
    # to the cent, on the files alone
    summary = json.loads((res.out / "summary.json").read_text())
    _, rows = _rows(res.out / "trades.csv")
    from_files = sum((D(r["pnl"]) for r in rows), D(0)) + D(summary["unrealized_pnl"])
    assert abs(from_files - (D(summary["final_equity"]) - D(summary["start_equity"]))) <= 2 * CENT


def test_two_identical_runs_give_identical_fills_and_files(runs: Any) -> None:
    a, b = runs
    assert len(a.fills) > 1000
    assert a.fills == b.fills  # every field, ids included
    assert [r.id for r in a.recorder.results] == [r.id for r in b.recorder.results]
    assert [o.id for o in a.recorder.orders] == [o.id for o in b.recorder.orders]
    assert [e.id for e in a.recorder.risk_events] == [e.id for e in b.recorder.risk_events]
    assert len({f.id for f in a.fills}) == len(a.fills)
    for name in ("trades.csv", "fills.csv", "equity.csv", "risk_events.csv", "summary.json"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    assert all(type(f) is OrderResult and f.is_fill for f in a.fills)

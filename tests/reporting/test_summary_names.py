"""The summary names gross and net PnL as such (issue 9, acceptance 7): its figures agree with
trades.csv, whose pnl is after fees."""

from __future__ import annotations

import csv
import heapq
import json
from decimal import Decimal
from pathlib import Path

import pytest

from claire.cli.main import print_summary
from claire.config import RunConfig, RuntimeSettings, StrategySettings
from claire.marketdata.bars import read_bars_feather
from claire.runtime.backtest import run_backtest

DATA = Path(__file__).resolve().parents[2] / "data"
D = Decimal
CENT = D("0.01")


def test_summary_names_gross_and_net_pnl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 3_000
    bars = heapq.merge(read_bars_feather(DATA / "BTC_USDT-1m.feather")[:n],
                       read_bars_feather(DATA / "ETH_USDT-1m.feather")[:n], key=lambda b: b.ts_event)
    res = run_backtest(RunConfig(strategy=StrategySettings(name="momentum"), runtime=RuntimeSettings(out=str(tmp_path), run_id="names")), events=bars)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert "realized_pnl" not in s  # the ambiguous name is gone
    pf = res.portfolio
    rows = list(csv.DictReader((tmp_path / "trades.csv").open()))
    assert len(rows) > 10
    # gross = before fees, net = after fees
    assert D(s["realized_pnl_gross"]) == pf.realized.quantize(CENT)
    assert D(s["realized_pnl_net"]) == sum((D(r["pnl"]) for r in rows), D(0)).quantize(CENT)
    assert D(s["net_pnl"]) == D(s["final_equity"]) - D(s["start_equity"])
    assert D(s["gross_pnl"]) == D(s["net_pnl"]) + D(s["fees"])
    assert abs(D(s["realized_pnl_net"]) + D(s["unrealized_pnl"]) - D(s["net_pnl"])) <= 2 * CENT
    # the win rate and profit factor are of trades.csv's (after-fee) pnl
    closed = [D(r["pnl"]) for r in rows if r["exit_time"]]
    assert s["win_rate"] == round(sum(1 for p in closed if p > 0) / len(closed), 6)
    won, lost = sum(p for p in closed if p > 0), -sum(p for p in closed if p <= 0)
    assert s["profit_factor"] == round(float(won / lost), 6)

    print_summary(s)
    text = capsys.readouterr().out
    for label in ("gross realized PnL", "net realized PnL", "net PnL (after fees)", "win rate (net)",
                  "profit factor (net)"):
        assert label in text, label
    assert s["realized_pnl_net"] in text and s["net_pnl"] in text

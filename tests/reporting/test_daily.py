"""The UTC days add up (issue 9, acceptance 5): a day's PnL is its close (the equity of its last
snapshot) minus the previous day's close (the first day: minus the start cash), in summary.json,
in the performance rows and in the snapshots' ``day_start_equity``/``daily_pnl``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claire.config import RunConfig, RuntimeSettings, StrategySettings
from claire.events import PortfolioSnapshot, iso_from_ns
from claire.events.time import NS_PER_DAY
from claire.execution import ExecutionConfig
from claire.marketdata import synthetic_bars
from claire.portfolio import Portfolio
from claire.reporting import Recorder, summarize
from claire.reporting.period_metrics import performance_rows
from claire.risk import RiskConfig
from claire.runtime.backtest import run_backtest

from ..core._util import DAY, MIN, SEC, T0, D, bar, fill

CENT = Decimal("0.01")
SYMS = ("BTCUSDT", "ETHUSDT")


def check_days(recorder: Recorder, pf: Portfolio, summary: dict) -> None:
    """Everything a run reports per day, against the snapshots alone."""
    start = pf.start_cash
    snaps = [s for s in recorder.snapshots if type(s) is PortfolioSnapshot]
    assert snaps
    # the snapshots: each day starts from the previous day's last snapshot
    close: dict[int, Decimal] = {}
    prev_close = start
    day = None
    for s in snaps:
        # days only move forward (a fill stamped at the open of a bar longer than the snapshot
        # interval can come after a later periodic snapshot: it counts in the current day)
        d = s.ts_event // NS_PER_DAY if day is None else max(day, s.ts_event // NS_PER_DAY)
        if d != day:
            if day is not None:
                prev_close = close[day]
            day = d
        assert s.day_start_equity == prev_close, s
        assert s.daily_pnl == s.equity - s.day_start_equity
        close[d] = s.equity
    final = pf.equity()
    assert snaps[-1].equity == final  # the final snapshot
    # the portfolio's days, exactly
    assert sum((b - a for a, b in pf.daily.values()), D(0)) == final - start
    assert {d: v[1] for d, v in pf.daily.items() if d in close} == close
    # summary.json: in cents, adding up to net_pnl exactly
    net = D(summary["net_pnl"])
    assert net == D(summary["final_equity"]) - D(summary["start_equity"]) == (final - start).quantize(CENT)
    days = summary["daily_pnl"]
    assert sum((D(v) for v in days.values()), D(0)) == net
    iso = {iso_from_ns(d * NS_PER_DAY)[:10]: d for d in close}
    prev = start.quantize(CENT)
    for iso_day, v in days.items():
        d = iso.get(iso_day)
        if d is None:  # a day without snapshots (the run began at its very end): no PnL
            assert D(v) == 0
            continue
        assert D(v) == close[d].quantize(CENT) - prev
        prev = close[d].quantize(CENT)
    # performance_metrics rows: exact
    rows = performance_rows(recorder, pf, summary)
    day_rows = [r for r in rows if r["period_type"] == "day"]
    assert [D(r["metadata"]["daily_pnl"]) for r in day_rows] == _exact_days(start, close)
    assert sum((D(r["metadata"]["daily_pnl"]) for r in day_rows), D(0)) == final - start


def _exact_days(start: Decimal, close: dict[int, Decimal]) -> list[Decimal]:
    out, prev = [], start
    for d in sorted(close):
        out.append(close[d] - prev)
        prev = close[d]
    return out


# --- random runs through the portfolio: fills at any minute, at 00:00 too, gaps over midnight ---

steps = st.lists(
    st.tuples(
        st.sampled_from([1, 1, 1, 2, 7, 60, 600, 24 * 60]),  # minutes to the next event
        st.sampled_from(SYMS),
        st.integers(5_000, 15_000),  # price in cents
        st.one_of(st.none(), st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 5_000),
                                       st.integers(0, 500), st.booleans())),  # side, qty/1000, fee/100, before mark
    ),
    min_size=1, max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, start_min=st.integers(0, 2 * 24 * 60), midnight=st.booleans())
def test_days_add_up_on_random_portfolio_runs(steps: list, start_min: int, midnight: bool) -> None:
    pf = Portfolio(D("100000"))
    rec = Recorder()
    # start at a random minute, or such that events fall exactly on 00:00
    ts = T0 + (DAY - 3 * MIN if midnight else start_min * MIN)

    def do_fill(f: tuple, sym: str, price: Decimal, ts: int) -> None:
        fl = fill(sym, f[0], D(f[1]).scaleb(-3), price, ts, D(f[2]).scaleb(-2))
        rec(fl)  # round trips
        for snap in pf.on_fill(fl):
            rec(snap)

    for gap, sym, cents, f in steps:
        ts += gap * MIN
        price = D(cents).scaleb(-2)
        before = f is not None and f[3] and sym in pf.marks
        if before:  # at the bar's time, before its mark (a next_open fill at 00:00 ...)
            do_fill(f, sym, price, ts)
        snap = pf.on_bar(bar(sym, ts, price))
        if snap is not None:
            rec(snap)
        if f is not None and not before:  # after the mark, or half a minute later
            do_fill(f, sym, price, ts + (30 * SEC if f[3] else 0))
    rec(pf.snapshot(max(ts, pf.last_ts), "final"))
    check_days(rec, pf, summarize(rec, pf))


# --- random runs through the whole core -------------------------------------------------------

@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), offset_min=st.integers(0, 24 * 60 - 1), fill_mode=st.sampled_from(["next_open", "close"]),
       risk=st.sampled_from(["default", "none"]))
def test_days_add_up_on_random_backtests(seed: int, offset_min: int, fill_mode: str, risk: str) -> None:
    bars = synthetic_bars(list(SYMS), 3 * 24 * 60 // 5, T0 + offset_min * MIN, interval_s=300, seed=seed,
                          volatility=0.01)
    res = run_backtest(RunConfig(strategy=StrategySettings(name="sma_cross", params={"fast": 3, "slow": 8}),
                                      execution=ExecutionConfig(fill=fill_mode),
                                      risk=RiskConfig(enabled=risk != "none",
                                                      quantity=None if risk == "default" else D("0.5")),
                                      runtime=RuntimeSettings(run_id=f"days-{seed}")),
                       events=bars)
    assert len(res.fills) > 10
    check_days(res.recorder, res.portfolio, res.summary)


def test_demo_like_run_days_add_up_in_summary_json(tmp_path: Path) -> None:
    from claire.marketdata.bars import read_bars_feather

    data = Path(__file__).resolve().parents[2] / "data"
    import heapq

    n = 6_000  # a bit over four days of two symbols
    bars = heapq.merge(read_bars_feather(data / "BTC_USDT-1m.feather")[:n],
                       read_bars_feather(data / "ETH_USDT-1m.feather")[:n], key=lambda b: b.ts_event)
    res = run_backtest(RunConfig(strategy=StrategySettings(name="momentum"), runtime=RuntimeSettings(out=str(tmp_path), run_id="days-demo")), events=bars)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["days"] == len(summary["daily_pnl"]) >= 5
    assert sum((D(v) for v in summary["daily_pnl"].values()), D(0)) == D(summary["net_pnl"])
    check_days(res.recorder, res.portfolio, summary)

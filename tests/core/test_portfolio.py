"""Portfolio accounting (P5): exact identities on a real replay, long/short/flip by hand, fees,
high-water mark and drawdown, the UTC day, when snapshots are taken, and restart from state."""

from __future__ import annotations

import heapq
import json
from decimal import Decimal, localcontext
from pathlib import Path

import pytest

from claire.config import RunConfig, RuntimeSettings, StrategySettings
from claire.engine.kernel import build_core
from claire.events import Bar, Event, OrderResult, OrderStatus, PortfolioSnapshot, PositionSide, Side
from claire.execution import ExecutionConfig
from claire.marketdata import synthetic_bars
from claire.marketdata.bars import read_bars_feather
from claire.portfolio import Portfolio
from claire.runtime.backtest import run_events

from ._util import DAY, MIN, SEC, T0, D, bar, fill, quote

DATA = Path(__file__).resolve().parents[2] / "data"
N_BARS = 5_000
BTC, ETH = "BTCUSDT", "ETHUSDT"


@pytest.fixture(scope="module")
def replay_events() -> list[Bar]:
    btc = read_bars_feather(DATA / "BTC_USDT-1m.feather")[:N_BARS]
    eth = read_bars_feather(DATA / "ETH_USDT-1m.feather")[:N_BARS]
    assert len(btc) == len(eth) == N_BARS
    return list(heapq.merge(btc, eth, key=lambda b: b.ts_event))


def _replay(events: list[Bar], strategy: str, **kw: object) -> list[Event]:
    out: list[Event] = []
    core = build_core(RunConfig(strategy=StrategySettings(name=strategy), runtime=RuntimeSettings(run_id=f"pf-{strategy}"),
                                **kw), out.append)  # type: ignore[arg-type]
    run_events(core, events)
    core.finish()
    return out


def _identity_walk(events: list[Event], start_cash: Decimal) -> tuple[int, int]:
    """Check every snapshot against the identities and against cash/quantities recomputed from
    the fills seen so far (independently of the portfolio). Returns (snapshots, fills)."""
    cash = start_cash
    qty: dict[str, Decimal] = {}
    fees = Decimal(0)
    n_snap = n_fill = 0
    with localcontext() as ctx:
        ctx.prec = 200  # the test's own arithmetic must not round
        for ev in events:
            if type(ev) is OrderResult and ev.is_fill:
                n_fill += 1
                signed = ev.quantity if ev.side.value == "buy" else -ev.quantity
                qty[ev.symbol] = qty.get(ev.symbol, Decimal(0)) + signed
                cash -= signed * ev.price + ev.fee
                fees += ev.fee
            elif type(ev) is PortfolioSnapshot:
                n_snap += 1
                s = ev
                held = sum((p.quantity * p.mark_price for p in s.positions), Decimal(0))
                assert s.equity == s.start_cash + s.realized_pnl - s.fees + s.unrealized_pnl, s
                assert s.equity == s.cash + held, s
                assert s.cash == cash and s.fees == fees
                assert {p.symbol: p.quantity for p in s.positions} == {k: v for k, v in qty.items() if v}
                assert s.unrealized_pnl == sum((p.quantity * p.mark_price - p.cost_basis for p in s.positions),
                                               Decimal(0))
                assert s.total_exposure == sum((abs(p.quantity * p.mark_price) for p in s.positions), Decimal(0))
                assert s.num_positions == len(s.positions)
                assert s.daily_pnl == s.equity - s.day_start_equity
                assert s.high_water_mark >= s.equity
                # a ratio: rounded to the 28 digits of the default context, so compared to 1e-24
                assert abs(s.drawdown_pct - (s.high_water_mark - s.equity) / s.high_water_mark) < D("1e-24")
    return n_snap, n_fill


@pytest.mark.parametrize("strategy", ["sma_cross", "momentum"])
def test_equity_identity_at_every_snapshot_of_a_real_replay(replay_events: list[Bar], strategy: str) -> None:
    events = _replay(replay_events, strategy)
    n_snap, n_fill = _identity_walk(events, D(100_000))
    assert n_fill > 50, "the replay should trade"
    # one periodic snapshot per minute (the first event only sets the clock), one per fill, one final
    assert n_snap == (N_BARS - 1) + n_fill + 1
    fills = [e for e in events if type(e) is OrderResult and e.is_fill]
    assert {f.symbol for f in fills} == {BTC, ETH}
    final = [e for e in events if type(e) is PortfolioSnapshot][-1]
    assert final.reason == "final" and final.equity != D(100_000)


def test_equity_identity_with_close_fills_and_slippage(replay_events: list[Bar]) -> None:
    events = _replay(replay_events[:4000], "sma_cross", execution=ExecutionConfig(
        fill="close", slippage_bps=D(7), taker_fee_bps=D("7.5"), maker_fee_bps=D("7.5")))
    _, n_fill = _identity_walk(events, D(100_000))
    assert n_fill > 20


# --- accounting by hand ------------------------------------------------------------------------


def _snap_after(pf: Portfolio, side: str, q: str, p: str, ts: int, fee: str = "0") -> PortfolioSnapshot:
    snaps = pf.on_fill(fill(BTC, side, q, p, ts, fee))
    assert snaps[-1].reason == "fill"
    return snaps[-1]


def test_long_short_flip_accounting_by_hand() -> None:
    pf = Portfolio(D(10_000))
    t = T0 + MIN
    pf.on_bar(bar(BTC, t, "100"))

    s = _snap_after(pf, "buy", "2", "100", t)
    s = _snap_after(pf, "buy", "1", "130", t + 1)
    (p,) = s.positions
    assert (p.side, p.quantity, p.avg_price, p.cost_basis) == (PositionSide.LONG, D(3), D(110), D(330))
    assert s.realized_pnl == 0 and s.cash == D(10_000 - 330)

    s = _snap_after(pf, "sell", "2", "120", t + 2)
    (p,) = s.positions
    assert (p.side, p.quantity, p.avg_price) == (PositionSide.LONG, D(1), D(110))
    assert p.realized_pnl == D(20) == s.realized_pnl

    s = _snap_after(pf, "sell", "3", "90", t + 3)  # closes 1 at a loss of 20, opens a short of 2 at 90
    (p,) = s.positions
    assert (p.side, p.quantity, p.avg_price, p.cost_basis) == (PositionSide.SHORT, D(-2), D(90), D(-180))
    assert p.opened_ts == t + 3
    assert s.realized_pnl == D(0) and p.realized_pnl == D(0)  # +20 - 20
    assert s.cash == D(10_000 - 330 + 240 + 270)

    s = _snap_after(pf, "buy", "1", "80", t + 4)  # covers 1 of the short: +10
    (p,) = s.positions
    assert (p.side, p.quantity, p.avg_price) == (PositionSide.SHORT, D(-1), D(90))
    assert s.realized_pnl == D(10)

    s = _snap_after(pf, "buy", "3", "100", t + 5)  # covers the last 1 at -10, flips long 2 at 100
    (p,) = s.positions
    assert (p.side, p.quantity, p.avg_price, p.opened_ts) == (PositionSide.LONG, D(2), D(100), t + 5)
    assert s.realized_pnl == D(0)

    s = _snap_after(pf, "sell", "2", "105", t + 6)
    assert s.positions == () and s.num_positions == 0
    assert s.realized_pnl == D(10) and s.unrealized_pnl == 0
    assert s.equity == s.cash == D(10_010)
    assert pf.positions[BTC].side is PositionSide.FLAT and pf.positions[BTC].opened_ts is None


def test_unrealized_pnl_marks_long_and_short() -> None:
    pf = Portfolio(D(10_000))
    pf.on_bar(bar(BTC, T0 + MIN, "100"))
    pf.on_bar(bar(ETH, T0 + MIN, "50"))
    pf.on_fill(fill(BTC, "buy", "2", "100", T0 + MIN))
    pf.on_fill(fill(ETH, "sell", "4", "50", T0 + MIN))
    pf.on_bar(bar(BTC, T0 + 2 * MIN, "110"))
    pf.on_bar(bar(ETH, T0 + 2 * MIN, "45"))
    s = pf.snapshot(T0 + 2 * MIN, "test")
    by = {p.symbol: p for p in s.positions}
    assert by[BTC].unrealized_pnl == D(20) and by[ETH].unrealized_pnl == D(20)
    assert s.unrealized_pnl == D(40) and s.equity == D(10_040)
    assert s.total_exposure == D(220 + 180) and s.total_exposure_pct == D(400) / D(10_040)
    assert pf.exposure(ETH) == D(180) and pf.position_qty(ETH) == D(-4)
    # a quote marks at the mid
    pf.on_quote(quote(ETH, T0 + 2 * MIN + SEC, "39", "41"))
    assert pf.snapshot(T0 + 2 * MIN + SEC, "test").unrealized_pnl == D(20 + 40)


def test_average_entry_rounding_leaves_no_residue() -> None:
    """avg = 302/3 is rounded to 1e-12; closing the whole position books exactly 306 - 302."""
    pf = Portfolio(D(10_000))
    pf.on_bar(bar(BTC, T0 + MIN, "100"))
    _snap_after(pf, "buy", "1", "100", T0 + MIN)
    s = _snap_after(pf, "buy", "2", "101", T0 + MIN)
    assert s.positions[0].avg_price == D("100.666666666667")
    s = _snap_after(pf, "sell", "1", "102", T0 + MIN)
    assert s.realized_pnl == D("102") - D("100.666666666667")
    assert s.equity == s.start_cash + s.realized_pnl - s.fees + s.unrealized_pnl
    s = _snap_after(pf, "sell", "2", "102", T0 + MIN)
    assert s.realized_pnl == D(4) and s.cash == D(10_004) and s.equity == D(10_004)
    assert pf.positions[BTC].cost == 0


def test_fees_are_kept_apart_from_realized_pnl() -> None:
    pf = Portfolio(D(10_000))
    pf.on_bar(bar(BTC, T0 + MIN, "100"))
    s = _snap_after(pf, "buy", "10", "100", T0 + MIN, fee="1.5")
    assert (s.fees, s.realized_pnl, s.cash, s.equity) == (D("1.5"), 0, D("8998.5"), D("9998.5"))
    assert s.positions[0].fees == D("1.5") and s.positions[0].avg_price == D(100)  # fee not in the entry
    s = _snap_after(pf, "sell", "10", "110", T0 + MIN, fee="1.65")
    assert (s.fees, s.realized_pnl) == (D("3.15"), D(100))
    assert s.equity == s.cash == D(10_000) + D(100) - D("3.15")
    # a rejected or cancelled result changes nothing
    before = pf.get_state()
    for st in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
        r = OrderResult(id=f"r-{st}", ts_event=T0 + MIN, ts_recv=T0 + MIN, order_id="o", signal_id="s",
                        symbol=BTC, side=Side.BUY, status=st)
        assert pf.on_fill(r) == ()
    assert pf.get_state() == before


def test_high_water_mark_and_drawdown_include_unrealized_pnl() -> None:
    pf = Portfolio(D(100_000))
    snaps: list[PortfolioSnapshot] = []

    def feed(i: int, price: str) -> None:
        s = pf.on_bar(bar(BTC, T0 + i * MIN, price))
        if s is not None:
            snaps.append(s)

    feed(1, "100")
    pf.on_fill(fill(BTC, "buy", "100", "100", T0 + MIN))
    for i, price in enumerate(["120", "90", "95", "130", "130"], start=2):
        feed(i, price)
    # periodic snapshots at minutes 1..5, each with the marks of the bars before it
    assert [s.equity for s in snaps] == [D(100_000), D(102_000), D(99_000), D(99_500), D(103_000)]
    assert [s.high_water_mark for s in snaps] == [D(100_000), D(102_000), D(102_000), D(102_000), D(103_000)]
    assert snaps[2].drawdown_pct == D(3_000) / D(102_000)
    assert snaps[3].drawdown_pct == D(2_500) / D(102_000)
    assert snaps[4].drawdown_pct == 0
    assert pf.max_drawdown == D(3_000) / D(102_000)
    assert all(s.realized_pnl == 0 for s in snaps)  # all of it unrealized
    # between snapshots the current drawdown is against the mark-to-market equity
    feed(7, "80")
    assert pf.drawdown() == (D(103_000) - D(98_000)) / D(103_000)


def test_daily_pnl_resets_at_the_utc_day_boundary() -> None:
    pf = Portfolio(D(100_000))
    snaps: list[PortfolioSnapshot] = []
    prices = {T0 + DAY - 3 * MIN: "100", T0 + DAY - 2 * MIN: "100", T0 + DAY - MIN: "90", T0 + DAY: "95",
              T0 + DAY + MIN: "97", T0 + DAY + 2 * MIN: "97"}
    first = True
    for ts, price in prices.items():
        s = pf.on_bar(bar(BTC, ts, price))
        if first:
            pf.on_fill(fill(BTC, "buy", "100", "100", ts))
            first = False
        if s is not None:
            snaps.append(s)
    by_ts = {s.ts_event: s for s in snaps}
    last_of_day0 = by_ts[T0 + DAY - MIN]
    assert (last_of_day0.day_start_equity, last_of_day0.equity, last_of_day0.daily_pnl) == (
        D(100_000), D(99_000), D(-1_000))
    # 00:00:00: the new day starts from the previous day's close (its last snapshot, 99,000), so
    # the move to 95 at 00:00 counts in the new day and the days add up to the run's PnL
    first_of_day1 = by_ts[T0 + DAY]
    assert (first_of_day1.day_start_equity, first_of_day1.equity, first_of_day1.daily_pnl) == (
        D(99_000), D(99_500), D(500))
    nxt = by_ts[T0 + DAY + MIN]
    assert (nxt.day_start_equity, nxt.daily_pnl) == (D(99_000), D(700))
    assert pf.daily == {T0 // DAY: [D(100_000), D(99_000)], T0 // DAY + 1: [D(99_000), D(99_700)]}
    assert sum(end - start for start, end in pf.daily.values()) == nxt.equity - pf.start_cash
    assert pf.daily_loss_pct() == (D(99_000) - D(99_700)) / D(99_000)


def test_a_snapshot_after_each_fill_and_one_per_minute_of_event_time() -> None:
    bars = synthetic_bars(BTC, 120, T0)  # 1-minute bars closing at T0+1min .. T0+120min
    pf = Portfolio(D(100_000))
    periodic: list[PortfolioSnapshot] = []
    fills: list[PortfolioSnapshot] = []
    fill_results: list[OrderResult] = []
    for i, b in enumerate(bars):
        s = pf.on_bar(b)
        if s is not None:
            periodic.append(s)
        if i % 10 == 5:
            f = fill(BTC, "buy" if i % 20 == 5 else "sell", "0.01", b.close, b.ts_event)
            fill_results.append(f)
            fills += pf.on_fill(f)
    assert len(fills) == 12 and all(s.reason == "fill" for s in fills)
    assert [(s.causation_id, s.ts_event) for s in fills] == [(f.id, f.ts_event) for f in fill_results]
    assert len(periodic) == 119 and all(s.reason == "periodic" for s in periodic)
    assert [s.ts_event for s in periodic] == [T0 + k * MIN for k in range(1, 120)]
    assert pf.seq == 119 + 12 and len({s.id for s in periodic + fills}) == 131

    # ticks every 10 s over 5 minutes: one periodic snapshot per minute, whatever the event rate
    pf = Portfolio(D(100_000))
    out = [pf.on_quote(quote(BTC, T0 + k * 10 * SEC, "100", "100.2")) for k in range(1, 31)]
    got = [s for s in out if s is not None]
    assert [s.ts_event for s in got] == [T0 + k * MIN for k in range(1, 5)]

    # a gap in the data: one snapshot, at the last minute boundary before the next event
    pf = Portfolio(D(100_000))
    assert pf.on_bar(bar(BTC, T0 + MIN, "100")) is None
    s = pf.on_bar(bar(BTC, T0 + 11 * MIN + 30 * SEC, "101"))
    assert s is not None and s.ts_event == T0 + 11 * MIN
    assert pf.on_bar(bar(BTC, T0 + 11 * MIN + 40 * SEC, "101")) is None


def test_snapshot_ids_are_unique_and_deterministic(replay_events: list[Bar]) -> None:
    a = [e.id for e in _replay(replay_events[:2000], "sma_cross") if type(e) is PortfolioSnapshot]
    b = [e.id for e in _replay(replay_events[:2000], "sma_cross") if type(e) is PortfolioSnapshot]
    assert a == b and len(set(a)) == len(a)


# --- restart ------------------------------------------------------------------------------------


def test_portfolio_state_round_trip_gives_identical_snapshots() -> None:
    bars = synthetic_bars([BTC, ETH], 300, T0 + DAY - 100 * MIN)  # crosses a UTC midnight
    a = Portfolio(D(100_000))
    for i, b in enumerate(bars[:200]):
        a.on_bar(b)
        if i % 37 == 3:
            a.on_fill(fill(b.symbol, "buy" if i % 74 == 3 else "sell", "0.5", b.close, b.ts_event, "0.1"))
    state = json.loads(json.dumps(a.get_state()))  # it must survive JSON
    b_ = Portfolio(D(100_000))
    b_.set_state(state)
    assert b_.get_state() == a.get_state()
    out_a: list[object] = []
    out_b: list[object] = []
    for i, b in enumerate(bars[200:]):
        out_a.append(a.on_bar(b))
        out_b.append(b_.on_bar(b))
        if i % 13 == 0:
            f = fill(b.symbol, "sell", "0.25", b.close, b.ts_event, "0.05")
            out_a += a.on_fill(f)
            out_b += b_.on_fill(f)
    out_a.append(a.snapshot(bars[-1].ts_event, "final"))
    out_b.append(b_.snapshot(bars[-1].ts_event, "final"))
    assert sum(1 for s in out_a if s is not None) > 100
    assert out_a == out_b
    assert a.daily == b_.daily and a.max_drawdown == b_.max_drawdown


def test_core_state_round_trip_gives_identical_events(replay_events: list[Bar]) -> None:
    """Stop a replay half way, restart a new core from the saved state: the rest is identical."""
    events = replay_events[:3000]
    cfg = RunConfig(strategy=StrategySettings(name="sma_cross"), runtime=RuntimeSettings(run_id="restart"))
    out_a: list[Event] = []
    a = build_core(cfg, out_a.append)
    run_events(a, events[:1500])
    state = json.loads(json.dumps(a.get_state()))
    out_b: list[Event] = []
    b = build_core(cfg, out_b.append)
    b.set_state(state)
    del out_a[:]
    run_events(a, events[1500:])
    run_events(b, events[1500:])
    a.finish()
    b.finish()
    assert len(out_a) > 750  # a periodic snapshot per minute at least
    assert any(type(e) is OrderResult for e in out_a)
    assert out_a == out_b

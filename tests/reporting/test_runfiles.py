"""The columnar run-file writer writes the very bytes of the csv.writer one it replaced."""

from __future__ import annotations

import csv
import heapq
import io
import tempfile
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claire.config import RunConfig, RuntimeSettings, StrategySettings
from claire.events import (
    CheckResult,
    Liquidity,
    OrderResult,
    OrderStatus,
    OrderType,
    PortfolioSnapshot,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    TradingState,
    iso_from_ns,
)
from claire.marketdata.bars import read_bars_feather
from claire.reporting import RoundTrip
from claire.reporting.runfiles import _s, _text, _times, _values, _write_csv, write_run_files
from claire.runtime.backtest import run_backtest

from ._csv_reference import _s as _s_reference
from ._csv_reference import write_csvs_reference

DATA = Path(__file__).resolve().parents[2] / "data"
CSVS = ("trades.csv", "fills.csv", "equity.csv", "risk_events.csv", "signals.csv")
D = Decimal
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z


def _same_files(recorder: object, tmp_path: Path) -> dict[str, bytes]:
    new, old = tmp_path / "new", tmp_path / "old"
    write_run_files(new, recorder, {"x": 1})
    write_csvs_reference(old, recorder)
    out = {}
    for name in CSVS:
        a, b = (new / name).read_bytes(), (old / name).read_bytes()
        assert a == b, name
        out[name] = a
    return out


def test_real_run_files_are_byte_identical_to_the_csv_writer(tmp_path: Path) -> None:
    n = 4_000
    bars = heapq.merge(read_bars_feather(DATA / "BTC_USDT-1m.feather")[:n],
                       read_bars_feather(DATA / "ETH_USDT-1m.feather")[:n], key=lambda b: b.ts_event)
    res = run_backtest(RunConfig(strategy=StrategySettings(name="momentum"), runtime=RuntimeSettings(run_id="rf-bytes")), events=bars)
    rec = res.recorder
    assert len(rec.snapshots) > 3_000 and len(rec.fills) > 50 and len(rec.risk_events) > 100
    files = _same_files(rec, tmp_path)
    # the run exercises the quoting (risk reasons with commas) and open round trips
    assert b'"approved, sized down' in files["risk_events.csv"] or b'",' in files["risk_events.csv"]
    assert files["equity.csv"].count(b"\r\n") == len(rec.snapshots) + 1


def _snapshot(i: int, ts: int, equity: Decimal, reason: str) -> PortfolioSnapshot:
    z = D(0)
    return PortfolioSnapshot(
        id=f"s{i}", ts_event=ts, ts_recv=ts, start_cash=D(100_000), cash=D("1E+5"), equity=equity,
        realized_pnl=D("0E-8"), unrealized_pnl=D("-0"), fees=D("1.2E-7"), total_exposure=z,
        total_exposure_pct=D("0.09999999998813819811666647817"), high_water_mark=D("100000.00"),
        drawdown_pct=D("1E-12"), day_start_equity=D(100_000), daily_pnl=D("-0.000"), num_positions=i,
        reason=reason)


def test_edge_values_are_byte_identical_to_the_csv_writer(tmp_path: Path) -> None:
    """Exponent decimals, None, text that needs quotes, sub-second times, a day boundary."""
    odd = 'a "quoted", multi\nline\rreason'
    times = [T0, T0 + 1, T0 + 1_000_000, T0 + 123_456_789, T0 - 1, T0 + 86_399_999_999_999, 0, 1_500_000_000]
    rec = SimpleNamespace(
        round_trips=[
            RoundTrip(symbol="BTC,USDT", side="long", quantity=D("1E+1"), entry_time=times[2],
                      entry_price=D("100.5000"), exit_time=times[3], exit_price=D("1E-7"), fees=D("0.01"),
                      pnl=D("-3.14")),
            RoundTrip(symbol="ETHUSDT", side="short", quantity=D("0.1"), entry_time=times[4], entry_price=D(7)),
        ],
        results=[
            OrderResult(id="f,1", ts_event=t, ts_recv=t, order_id='o"1', signal_id="s1", symbol="BTCUSDT",
                        side=Side.BUY, status=OrderStatus.FILLED, order_type=OrderType.LIMIT,
                        quantity=D("0.000001"), price=D("1E+3"), fee=D("0E-10"), liquidity=Liquidity.MAKER,
                        reference_price=None if k % 2 else D("99.99"), slippage_bps=D("-0.5"),
                        latency_ns=k * 333_333, reason=odd if k == 1 else None)
            for k, t in enumerate(times)
        ] + [OrderResult(id="r1", ts_event=T0, ts_recv=T0, order_id="o2", signal_id="s2", symbol="ETHUSDT",
                         side=Side.SELL, status=OrderStatus.REJECTED, reason="no, liquidity")],
        snapshots=[_snapshot(k, t, D(100_000) + k, "fill" if k % 3 else "periodic") for k, t in enumerate(times)],
        risk_events=[
            RiskEvent(id=f"e{k}", ts_event=t, ts_recv=t, signal_id=None if k % 2 else "s", symbol=None,
                      check=RiskCheck.POSITION_LIMIT, action=RiskAction.RESIZED, passed=bool(k % 3),
                      value=D("0.100000"), limit=None, reason=odd if k == 2 else f"reason {k}, with a comma",
                      trading_state=TradingState.HALTED, order_id=None, requested_quantity=D("2E+2"),
                      approved_quantity=None,
                      checks=(CheckResult(check=RiskCheck.DATA_QUALITY, passed=True),
                              CheckResult(check=RiskCheck.SPREAD, passed=False)))
            for k, t in enumerate(times)
        ],
    )
    _same_files(rec, tmp_path)
    empty = SimpleNamespace(round_trips=[], results=[], snapshots=[], risk_events=[])
    files = _same_files(empty, tmp_path / "empty")
    assert files["trades.csv"].count(b"\r\n") == 1


texts = st.one_of(st.none(), st.text(alphabet=st.sampled_from('ab ,"\r\n;=-.E0'), max_size=8), st.text(max_size=6))
decimals = st.one_of(
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.builds(lambda m, e: Decimal(m).scaleb(e), st.integers(-10**20, 10**20), st.integers(-30, 30)),
    st.integers(-5, 5), st.booleans(), st.floats(allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(texts, decimals, st.integers(-10**18, 4 * 10**18), decimals), max_size=6))
def test_columns_match_csv_writer_for_any_values(rows: list[tuple]) -> None:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["t", "d", "time", "d2"])
    for t, d, ns, d2 in rows:
        w.writerow([_s_reference(t), _s_reference(d), iso_from_ns(ns), _s_reference(d2)])
    assert [_s(d) for _t, d, _n, _d in rows] == [_s_reference(d) for _t, d, _n, _d in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.csv"
        _write_csv(path, ["t", "d", "time", "d2"], [
            _text([r[0] for r in rows]), _values([r[1] for r in rows]), _times([r[2] for r in rows]),
            _values([r[3] for r in rows])])
        with path.open(newline="") as fh:
            assert fh.read() == buf.getvalue()


@pytest.mark.parametrize("ns", [0, 1, 999, 1_000_000, 59_999_999_999, 86_400_000_000_000 - 1, T0, T0 + 10**9 // 2,
                                4_102_444_800_000_000_000, -1, -86_400_000_000_001])
def test_times_match_iso_from_ns(ns: int) -> None:
    assert _times([ns, ns, None, ns + 1]) == [iso_from_ns(ns), iso_from_ns(ns), "", iso_from_ns(ns + 1)]

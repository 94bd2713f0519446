"""Parity with an established engine (backtrader 1.9.78.123): issue 2, acceptance point 8.

Our backtest and backtrader run the built-in ``sma_cross`` (fast 10, slow 30) on each of the
five 1-minute files of ``data/`` (one month, 43k bars each), risk off, fee 10 bps on both sides,
a fixed quantity per symbol, in both fill modes:

- ``next_open``: a market order fills at the next bar's open (backtrader's default);
- ``close``: it fills at the signal bar's close (backtrader's cheat-on-close, ``set_coc(True)``).

They must give the same round trips (count; quantity, entry and exit bar, entry and exit price,
in order; prices compared exactly, backtrader's float as ``Decimal(repr(price))``) and the same
final equity (cash + open position at the last close) to the cent. Our per-bar volume cap
(``max_volume_share``) is turned off: backtrader's broker fills a market order in full. The backtrader strategy is in
:mod:`tests.parity.bt_reference`.

Timestamps: a feather row's ``date`` is the bar's open time. backtrader stamps a ``next_open``
fill with the fill bar's date and a cheat-on-close fill with the signal bar's date. Ours stamps
a ``next_open`` fill with the fill bar's open time (the same) and a ``close`` fill with the signal
bar's close time (its open time + 1 minute). Both are mapped to bar indices and compared.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.parity.bt_reference import BtResult, run_backtrader

pytestmark = pytest.mark.slow

FAST, SLOW = 10, 30
FEE_BPS = Decimal(10)
#: fixed quantity per symbol: positions of a few thousand USDT, well inside 100,000 cash
QUANTITY = {"BTC": "0.1", "ETH": "1", "BNB": "5", "SOL": "20", "XRP": "2000"}
FILLS = ("next_open", "close")
CENT = Decimal("0.005")
MINUTE_NS = 60_000_000_000


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _run_ours(path: Path, fill: str, quantity: Decimal):
    from claire.config import DataSettings, RunConfig, StrategySettings
    from claire.execution import ExecutionConfig
    from claire.risk import RiskConfig
    from claire.runtime.backtest import run_backtest

    cfg = RunConfig(
        data=DataSettings(paths=[str(path)]), strategy=StrategySettings(name="sma_cross", params={"fast": FAST, "slow": SLOW}),
        risk=RiskConfig(enabled=False, quantity=quantity),
        # backtrader's broker fills a market order in full whatever the bar's volume; ours by
        # default fills at most 25 % of a bar's volume per bar (the rest on the next bars)
        execution=ExecutionConfig(fill=fill, taker_fee_bps=FEE_BPS, maker_fee_bps=FEE_BPS, max_volume_share=None),
    )
    return run_backtest(cfg)


def _expected_orders(closes: list[Decimal]) -> list[tuple[int, str]]:
    """The rule, written a second way (plain rolling windows), as a check of the reference."""
    out: list[tuple[int, str]] = []
    prev = None
    long = False
    for i in range(SLOW - 1, len(closes)):
        diff = sum(closes[i - FAST + 1:i + 1]) * SLOW - sum(closes[i - SLOW + 1:i + 1]) * FAST
        if prev is not None:
            if diff > 0 and prev <= 0 and not long:
                out.append((i, "buy"))
                long = True
            elif diff < 0 and prev >= 0 and long:
                out.append((i, "close"))
                long = False
        prev = diff
    return out


def _bar_of(times, ns: int | None, fill: str) -> int | None:
    """Index of the bar an engine's fill time refers to (see the module docstring)."""
    if ns is None:
        return None
    opened = ns - MINUTE_NS if fill == "close" else ns
    i = int(times.searchsorted(opened))
    if i >= len(times) or times[i] != opened:
        return -1  # not a bar's time: never equal to a backtrader bar index
    return i


def _context(frame, bars: list[int | None], around: int = 3) -> str:
    """The bars around the given ones, with the exact sign of fast - slow on each."""
    closes = [_d(c) for c in frame["close"].tolist()]
    lines = []
    for b in sorted({b for b in bars if b is not None and b >= 0}):
        lines.append(f"--- around bar {b}")
        for i in range(max(0, b - around), min(len(frame), b + around + 1)):
            sign = ""
            if i >= SLOW - 1:
                diff = sum(closes[i - FAST + 1:i + 1]) * SLOW - sum(closes[i - SLOW + 1:i + 1]) * FAST
                sign = "+" if diff > 0 else "-" if diff < 0 else "0 (tie)"
            row = frame.iloc[i]
            lines.append(f"{i:6d} {frame.index[i]} o={_d(row.open)} c={_d(row.close)} "
                         f"sign(fast-slow)={sign}")
    return "\n".join(lines)


def _compare(ours, bt: BtResult, fill: str, quantity: Decimal) -> None:
    frame = bt.frame
    times = frame.index.asi8
    mine = [(Decimal(rt.quantity), _bar_of(times, rt.entry_time, fill), rt.entry_price,
             _bar_of(times, rt.exit_time, fill), rt.exit_price) for rt in ours.round_trips]
    theirs = [(quantity, t.entry_bar, _d(t.entry_price), t.exit_bar,
               None if t.exit_price is None else _d(t.exit_price)) for t in bt.round_trips]
    if mine != theirs:
        n = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
                 min(len(mine), len(theirs)))
        a = mine[n] if n < len(mine) else None
        b = theirs[n] if n < len(theirs) else None
        bars = [x for t in (a, b) if t for x in (t[1], t[3])]
        fills = ""
        if n < len(ours.round_trips):  # our fills inside the differing round trip
            rt = ours.round_trips[n]
            end = rt.exit_time if rt.exit_time is not None else times[-1] + 2 * MINUTE_NS
            inside = [f for f in getattr(ours, "fills", []) if f.symbol == rt.symbol
                      and rt.entry_time <= f.ts_event <= end]
            fills = "".join(f"\n    bar {_bar_of(times, f.ts_event, fill)} {f.side} {f.quantity} @ {f.price}"
                            for f in inside)
            bars += [_bar_of(times, f.ts_event, fill) for f in inside]
        pytest.fail(
            f"round trips differ: ours {len(mine)}, backtrader {len(theirs)}; first difference at #{n}\n"
            f"  fields: (quantity, entry bar, entry price, exit bar, exit price)\n"
            f"  ours:       {a}\n  backtrader: {b}\n"
            f"  previous:   {mine[n - 1] if n else None}\n"
            f"  ours raw:   {ours.round_trips[n] if n < len(ours.round_trips) else None}\n"
            f"  our fills in it:{fills}\n"
            + _context(frame, bars)
        )
    bt_equity = _d(bt.final_value)
    # backtrader's value is cash + position at the last close; check that reading of it
    assert abs(bt_equity - _d(bt.cash + bt.position_size * bt.last_close)) < Decimal("1e-6")
    assert abs(Decimal(ours.final_equity) - bt_equity) <= CENT, (
        f"final equity: ours {ours.final_equity}, backtrader {bt_equity}")


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("symbol", list(QUANTITY))
def test_sma_cross_matches_backtrader(data_dir: Path, symbol: str, fill: str) -> None:
    path = data_dir / f"{symbol}_USDT-1m.feather"
    assert path.is_file(), f"missing data file {path}"
    quantity = Decimal(QUANTITY[symbol])
    bt = run_backtrader(path, fill=fill, quantity=float(quantity), fast=FAST, slow=SLOW,
                        fee=float(FEE_BPS / 10_000))
    assert len(bt.round_trips) > 500  # the comparison is not vacuous
    # the reference does what the rule says: orders on the right bars, filled on the right bars
    assert bt.signals == _expected_orders([_d(c) for c in bt.frame["close"].tolist()])
    lag = 1 if fill == "next_open" else 0
    assert [f.bar - lag for f in bt.fills] == [b for b, _ in bt.signals if b + lag < len(bt.frame)]
    ours = _run_ours(path, fill, quantity)
    _compare(ours, bt, fill, quantity)

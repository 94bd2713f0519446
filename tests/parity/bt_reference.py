"""Reference run of the ``sma_cross`` strategy on backtrader (an established, independent engine).

The strategy here re-implements, in backtrader's own ``next()``, exactly the rule of our built-in
``sma_cross`` (long only; SMA(fast) and SMA(slow) of close; first evaluated on the bar where both
exist, without a signal there; ``d = fast - slow`` compared exactly, a tie being neither above nor
below; buy the fixed quantity when ``d > 0`` after ``d <= 0``, close the whole long when ``d < 0``
after ``d >= 0``; buy only when flat, close only when long). ``bt.ind.CrossOver`` is not used: on
ties its semantics differ.

Exactness: closes are taken as ``Decimal(repr(close))`` (the shortest decimal of the float, which is
how our engine reads the feather files) and summed in Decimal, so the rolling sums are exact;
``fast_sma - slow_sma`` then has the sign of ``sum_fast * slow - sum_slow * fast``, an exact Decimal
product (no division, no rounding).

Fills: ``next_open`` is backtrader's default for a market order (the next bar's open);
``close`` is cheat-on-close (``broker.set_coc(True)``: the signal bar's close).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import backtrader as bt
import pandas as pd

START_CASH = 100_000.0


@dataclass
class BtFill:
    bar: int          # index (0-based) of the bar whose timestamp backtrader gives the execution
    time_ns: int      # that timestamp (bar open time of the feather file), UTC ns
    side: str         # "buy" | "sell"
    size: float
    price: float
    commission: float


@dataclass
class BtRoundTrip:
    entry_bar: int
    entry_time_ns: int
    entry_price: float
    exit_bar: int | None = None
    exit_time_ns: int | None = None
    exit_price: float | None = None


@dataclass
class BtResult:
    round_trips: list[BtRoundTrip]
    fills: list[BtFill]
    signals: list[tuple[int, str]]            # (bar index, "buy"|"close") where an order was sent
    final_value: float                        # broker.getvalue(): cash + position at last close
    cash: float
    position_size: float
    last_close: float
    frame: pd.DataFrame = field(repr=False)   # the bars fed to backtrader (for diagnostics)


class SmaCrossExact(bt.Strategy):
    params = (("fast", 10), ("slow", 30), ("quantity", 1.0))

    def __init__(self) -> None:
        self._fast_q: deque[Decimal] = deque()
        self._slow_q: deque[Decimal] = deque()
        self._sum_fast = Decimal(0)
        self._sum_slow = Decimal(0)
        self._prev_sign: int | None = None    # sign of d on the previous evaluated bar
        self.fills: list[BtFill] = []
        self.signals: list[tuple[int, str]] = []
        self._times = self.datas[0].p.frame.index.asi8   # bar timestamps, ns

    def next(self) -> None:
        close = Decimal(repr(float(self.data.close[0])))
        fast, slow = self.p.fast, self.p.slow
        self._fast_q.append(close)
        self._sum_fast += close
        if len(self._fast_q) > fast:
            self._sum_fast -= self._fast_q.popleft()
        self._slow_q.append(close)
        self._sum_slow += close
        if len(self._slow_q) > slow:
            self._sum_slow -= self._slow_q.popleft()
        if len(self._fast_q) < fast or len(self._slow_q) < slow:
            return
        # sign(sum_fast/fast - sum_slow/slow) == sign(sum_fast*slow - sum_slow*fast), exact
        diff = self._sum_fast * slow - self._sum_slow * fast
        sign = (diff > 0) - (diff < 0)
        prev = self._prev_sign
        self._prev_sign = sign
        if prev is None:
            return                              # first evaluated bar: no previous d, no signal
        bar = len(self.data) - 1
        if sign > 0 and prev <= 0 and not self.position:
            self.buy(size=self.p.quantity)
            self.signals.append((bar, "buy"))
        elif sign < 0 and prev >= 0 and self.position.size > 0:
            self.close()
            self.signals.append((bar, "close"))

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            # backtrader keeps times as float days: round to the nearest second, then it must be
            # exactly one of the bars' timestamps
            ns = round(pd.Timestamp(bt.num2date(order.executed.dt)).value / 1e9) * 1_000_000_000
            bar = int(self._times.searchsorted(ns))
            assert self._times[bar] == ns, (ns, bar)
            # the price of the (single) execution bit: ``order.executed.price`` is recomputed as
            # a size-weighted average, (0 * 0 + size * price) / size, which is not always the
            # fill price in floating point (e.g. 1.4268 * 2000 / 2000 == 1.4268000000000003)
            (bit,) = order.executed.exbits
            self.fills.append(BtFill(
                bar=bar, time_ns=ns, side="buy" if order.isbuy() else "sell",
                size=bit.size, price=bit.price, commission=order.executed.comm,
            ))
        elif order.status in (order.Canceled, order.Margin, order.Rejected):
            raise AssertionError(f"backtrader order not filled: {order.getstatusname()}")


class ArrayFeed(bt.feed.DataBase):
    """A plain backtrader feed over columns of python floats.

    Same bars as ``bt.feeds.PandasData`` but about three times faster to load (PandasData does a
    pandas ``iloc`` per field per bar, which is most of a run's time on 43k bars).
    """

    params = (("frame", None),)

    def start(self) -> None:
        super().start()
        f = self.p.frame
        self._dt = [bt.date2num(t) for t in f.index.to_pydatetime()]
        self._cols = [f[c].tolist() for c in ("open", "high", "low", "close", "volume")]
        self._i = 0

    def _load(self) -> bool:
        i = self._i
        if i >= len(self._dt):
            return False
        self._i = i + 1
        ln = self.lines
        ln.datetime[0] = self._dt[i]
        o, h, lo, c, v = self._cols
        ln.open[0], ln.high[0], ln.low[0], ln.close[0], ln.volume[0] = o[i], h[i], lo[i], c[i], v[i]
        ln.openinterest[0] = 0.0
        return True


def load_frame(path: Path) -> pd.DataFrame:
    """A freqtrade feather file as a naive-UTC, date-indexed frame for ``bt.feeds.PandasData``."""
    df = pd.read_feather(path)
    df = df.set_index(pd.DatetimeIndex(df["date"]).tz_convert("UTC").tz_localize(None))
    return df[["open", "high", "low", "close", "volume"]]


def run_backtrader(path: Path, *, fill: str, quantity: float, fast: int = 10, slow: int = 30,
                   fee: float = 0.001, cash: float = START_CASH) -> BtResult:
    if fill not in ("next_open", "close"):
        raise ValueError(fill)
    frame = load_frame(path)
    cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True)
    cerebro.adddata(ArrayFeed(dataname=str(path), frame=frame))
    cerebro.broker.setcash(cash)
    # percabs=True: ``fee`` is a fraction (0.001 = 10 bps). CommInfoBase's default percabs=False
    # would read 0.001 as 0.001 % (divide it by 100).
    cerebro.broker.addcommissioninfo(
        bt.CommInfoBase(commission=fee, commtype=bt.CommInfoBase.COMM_PERC, stocklike=True,
                        percabs=True))
    cerebro.broker.set_coc(fill == "close")
    cerebro.addstrategy(SmaCrossExact, fast=fast, slow=slow, quantity=quantity)
    (strat,) = cerebro.run()
    broker = cerebro.broker

    trips: list[BtRoundTrip] = []
    for f in strat.fills:
        if f.side == "buy":
            assert not trips or trips[-1].exit_price is not None, "buy while long"
            assert f.size == quantity, f
            trips.append(BtRoundTrip(f.bar, f.time_ns, f.price))
        else:
            assert trips and trips[-1].exit_price is None, "sell while flat"
            assert -f.size == quantity, f
            t = trips[-1]
            t.exit_bar, t.exit_time_ns, t.exit_price = f.bar, f.time_ns, f.price
    pos = broker.getposition(strat.data)
    return BtResult(
        round_trips=trips, fills=strat.fills, signals=strat.signals,
        final_value=broker.getvalue(), cash=broker.getcash(), position_size=pos.size,
        last_close=float(frame["close"].iloc[-1]), frame=frame,
    )

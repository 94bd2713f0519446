"""The portfolio state machine.

Input: fills (``OrderResult`` with a fill status) and market data (marks). Output:
``PortfolioSnapshot`` events after each fill and once per ``snapshot_interval_ns`` of event
time. No I/O, no wall clock: time comes from the events.

Accounting is exact in ``Decimal``. A position keeps its signed quantity and its signed cost
basis (sum of quantity times entry price). Reducing a position moves
``quantity * average entry`` out of the cost basis and books the difference to realized PnL, so
at every moment::

    equity = cash + sum(quantity * mark)
           = start_cash + realized_pnl - fees + unrealized_pnl

holds exactly (a test checks it at every snapshot). Realized PnL excludes fees; fees are kept
on their own.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

import msgspec

from claire.events import (
    Bar,
    IdFactory,
    OrderResult,
    PortfolioSnapshot,
    PositionSide,
    PositionState,
    QuoteTick,
    Side,
    TradeTick,
)
from claire.events.time import NS_PER_DAY, NS_PER_MIN

ZERO = Decimal(0)
TWO = Decimal(2)
_replace = msgspec.structs.replace
AVG_QUANTUM = Decimal("1e-12")
# enum members as module constants (reading one from its Enum class is slow on Python 3.11)
_BUY = Side.BUY
_LONG, _SHORT, _FLAT = PositionSide.LONG, PositionSide.SHORT, PositionSide.FLAT


class Position:
    """One symbol's position: signed quantity and cost basis, so a reduce books exactly the
    realised PnL of the closed part and the rest keeps its average entry (see the module)."""

    __slots__ = ("avg", "cost", "fees", "opened_ts", "qty", "realized", "side", "state", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.qty = ZERO  # signed
        self.cost = ZERO  # signed cost basis
        self.realized = ZERO
        self.fees = ZERO
        self.avg = ZERO  # average entry, kept up to date by apply()
        self.side = _FLAT  # likewise
        self.opened_ts: int | None = None
        self.state: PositionState | None = None  # last reported state (reused while nothing changed)

    @property
    def avg_price(self) -> Decimal:
        """The average entry price (cost basis / quantity, to 1e-12): what reports show."""
        return self.avg

    def apply(self, side: Side, qty: Decimal, price: Decimal, fee: Decimal, ts: int) -> Decimal:
        """Apply one fill; returns the realized PnL of this fill (before fees), which the
        portfolio adds to its own total so both stay in step."""
        realized = self._apply(side, qty, price, fee, ts)
        self._derive()
        self.state = None
        return realized

    def _derive(self) -> None:
        q = self.qty
        self.avg = (self.cost / q).quantize(AVG_QUANTUM) if q else ZERO
        self.side = _LONG if q > 0 else _SHORT if q < 0 else _FLAT

    def _apply(self, side: Side, qty: Decimal, price: Decimal, fee: Decimal, ts: int) -> Decimal:
        signed = qty if side is _BUY else -qty
        self.fees += fee
        cur = self.qty
        realized = ZERO
        if cur == 0 or (cur > 0) == (signed > 0):  # open or add
            if cur == 0:
                self.opened_ts = ts
            self.cost += signed * price
            self.qty = cur + signed
            return ZERO
        # reduce, close or flip
        closing = min(abs(signed), abs(cur))
        closing_signed = closing if cur > 0 else -closing
        avg = self.avg
        basis_out = closing_signed * avg
        realized = closing_signed * price - basis_out
        self.cost -= basis_out
        self.qty = cur - closing_signed
        self.realized += realized
        if self.qty == 0:
            # the rounding of avg may leave a residue in the cost basis: book it as realized
            if self.cost:
                realized -= self.cost
                self.realized -= self.cost
                self.cost = ZERO
            self.opened_ts = None
        rest = abs(signed) - closing
        if rest:  # flip to the other side
            rest_signed = rest if signed > 0 else -rest
            self.cost = rest_signed * price
            self.qty = rest_signed
            self.opened_ts = ts
        return realized


class Portfolio:
    """Holds cash and positions; emits snapshots. ``start_cash`` in the quote currency (USDT).

    The one owner of the account's state: fills change it, market data marks it, and everything
    else (the risk manager through ``PortfolioView``, reports through snapshots) only reads it."""

    def __init__(self, start_cash: Decimal = Decimal(100_000), ids: IdFactory | None = None,
                 snapshot_interval_ns: int = NS_PER_MIN) -> None:
        self.start_cash = Decimal(start_cash)
        self.ids = ids or IdFactory()
        self.interval = snapshot_interval_ns
        self.cash = self.start_cash
        self.realized = ZERO
        self.fees = ZERO
        self.positions: dict[str, Position] = {}
        self.open: dict[str, Position] = {}  # non-flat positions only
        self.marks: dict[str, Decimal] = {}
        self.hwm = self.start_cash
        self.max_drawdown = ZERO
        self.day = -1
        self.day_start_equity = self.start_cash
        # UTC day -> [start equity (the previous day's close), last equity (of its last snapshot)]
        self.daily: dict[int, list[Decimal]] = {}
        self._today: list[Decimal] = [self.start_cash, self.start_cash]
        self.next_snapshot = -1  # first boundary is set by the first event
        self.last_ts = 0
        self.seq = 0
        self.fill_count = 0
        self._key = self.ids.run_key
        # the template of snapshots (see snapshot()): never emitted
        z = self.start_cash
        self._snap_base = PortfolioSnapshot(
            id="", ts_event=0, ts_recv=0, start_cash=z, cash=z, equity=z, realized_pnl=ZERO, unrealized_pnl=ZERO,
            fees=ZERO, total_exposure=ZERO, total_exposure_pct=ZERO, high_water_mark=z, drawdown_pct=ZERO,
            day_start_equity=z, daily_pnl=ZERO, num_positions=0)

    # --- queries used by the risk manager -------------------------------------------------
    def equity(self) -> Decimal:
        """Cash plus the open positions marked to market: the base of every limit and of PnL."""
        eq = self.cash
        marks = self.marks
        for sym, pos in self.open.items():
            eq += pos.qty * marks[sym]
        return eq

    def equity_and_exposure(self) -> tuple[Decimal, Decimal]:
        """``(equity(), total_exposure())`` in one pass (the same sums, in the same order): the
        risk manager needs both for every signal, and one loop over the positions is cheaper."""
        eq = self.cash
        total = ZERO
        marks = self.marks
        for sym, pos in self.open.items():
            v = pos.qty * marks[sym]
            eq += v
            total += abs(v)
        return eq, total

    def position_qty(self, symbol: str) -> Decimal:
        """The signed quantity held of ``symbol``, 0 when flat: tells whether an order reduces it."""
        pos = self.open.get(symbol)
        return pos.qty if pos is not None else ZERO

    def exposure(self, symbol: str) -> Decimal:
        """One symbol's absolute position value at its mark (the per-symbol limit's measure)."""
        pos = self.open.get(symbol)
        return abs(pos.qty) * self.marks[symbol] if pos is not None else ZERO

    def total_exposure(self) -> Decimal:
        """The absolute value of all positions at their marks (the total-exposure limit's measure)."""
        marks = self.marks
        total = ZERO
        for sym, pos in self.open.items():
            total += abs(pos.qty * marks[sym])
        return total

    def unrealized(self) -> Decimal:
        """Open positions' PnL at their marks: equity minus cash minus the cost basis, for reports."""
        marks = self.marks
        total = ZERO
        for sym, pos in self.open.items():
            total += pos.qty * marks[sym] - pos.cost
        return total

    def drawdown(self, equity: Decimal | None = None) -> Decimal:
        """How far equity (``equity`` if given, saving a pass) is below the high-water mark, as a
        share of it: the circuit breaker's measure (R5)."""
        eq = self.equity() if equity is None else equity
        hwm = eq if eq > self.hwm else self.hwm
        return (hwm - eq) / hwm if hwm > 0 else ZERO

    def daily_loss_pct(self, equity: Decimal | None = None) -> Decimal:
        """Today's loss as a share of the day's start equity (``equity`` if given, saving a pass):
        the daily drawdown limit's measure (R3)."""
        eq = self.equity() if equity is None else equity
        start = self.day_start_equity
        return (start - eq) / start if start > 0 else ZERO

    # --- inputs ---------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> PortfolioSnapshot | None:
        """Mark the symbol to the bar's close; returns the periodic snapshot that came due before it
        (taken first, so it shows the state up to its boundary)."""
        ts = bar.ts_event
        if ts > self.next_snapshot:  # once per interval of event time
            snap = self._periodic(ts)
            self.marks[bar.symbol] = bar.close
            return snap
        self.marks[bar.symbol] = bar.close
        return None

    def on_trade(self, tick: TradeTick) -> PortfolioSnapshot | None:
        """Mark the symbol to the trade's price; returns the periodic snapshot due before it."""
        ts = tick.ts_event
        snap = self._periodic(ts) if ts > self.next_snapshot else None
        self.marks[tick.symbol] = tick.price
        return snap

    def on_quote(self, quote: QuoteTick) -> PortfolioSnapshot | None:
        """Mark the symbol to the quote's mid (neither side's price: a position is valued fairly);
        returns the periodic snapshot due before it."""
        ts = quote.ts_event
        snap = self._periodic(ts) if ts > self.next_snapshot else None
        self.marks[quote.symbol] = (quote.bid + quote.ask) / TWO
        return snap

    def on_market(self, ev: Bar | TradeTick | QuoteTick) -> PortfolioSnapshot | None:
        """Any market event: the one entry point of the tick path (bars come through ``on_bar``)."""
        if isinstance(ev, QuoteTick):
            return self.on_quote(ev)
        if isinstance(ev, TradeTick):
            return self.on_trade(ev)
        return self.on_bar(ev)

    def on_fill(self, fill: OrderResult) -> tuple[PortfolioSnapshot, ...]:
        """Apply a fill; returns the snapshots it causes (a due periodic one, then the fill's), so
        every change of the account is recorded the moment it happens."""
        if not fill.is_fill:
            return ()
        sym = fill.symbol
        pos = self.positions.get(sym)
        if pos is None:
            pos = self.positions[sym] = Position(sym)
        qty = fill.quantity
        price = fill.price
        if price is None:  # a fill status always carries its price: a broken event, not a fill
            raise ValueError(f"fill {fill.id} has no price")
        fee = fill.fee
        with localcontext() as ctx:
            ctx.prec = 50
            realized = pos.apply(fill.side, qty, price, fee, fill.ts_event)
            notional = qty * price
            self.cash += -notional - fee if fill.side is _BUY else notional - fee
        self.realized += realized
        self.fees += fee
        if pos.qty:
            self.open[sym] = pos
        else:
            self.open.pop(sym, None)
        if sym not in self.marks:
            self.marks[sym] = price
        self.fill_count += 1
        ts = fill.ts_event
        if ts > self.next_snapshot and self.next_snapshot >= 0:
            periodic = self._periodic(ts)
            if periodic is not None:
                return (periodic, self.snapshot(ts, "fill", fill.id))
        return (self.snapshot(ts, "fill", fill.id),)

    # --- snapshots ------------------------------------------------------------------------
    def _periodic(self, ts: int) -> PortfolioSnapshot | None:
        """Snapshot at the last interval boundary before ``ts`` (all events up to it applied)."""
        interval = self.interval
        boundary = ((ts - 1) // interval) * interval
        first = self.next_snapshot < 0
        self.next_snapshot = boundary + interval
        if first:
            if self.day < 0:  # no snapshot yet: the first day starts from the start cash
                self.day = boundary // NS_PER_DAY
                self._today = self.daily[self.day] = [self.day_start_equity, self.day_start_equity]
            return None
        return self.snapshot(boundary, "periodic")

    def snapshot(self, ts: int, reason: str, cause: str | None = None) -> PortfolioSnapshot:
        """The portfolio at ``ts`` as an event (``reason``: fill, periodic, final); also rolls the
        UTC day and the high-water mark, which move only at snapshots so every runtime agrees."""
        cash = self.cash
        equity = cash
        open_ = self.open
        if open_:
            marks = self.marks
            unreal = ZERO
            exposure = ZERO
            states: list[PositionState] = []
            append = states.append
            for sym, pos in open_.items():
                mark = marks[sym]
                st = pos.state
                if st is not None:
                    if st.mark_price == mark:  # nothing changed since the last one
                        equity += st.cost_basis + st.unrealized_pnl
                        unreal += st.unrealized_pnl
                        exposure += st.exposure
                        append(st)
                        continue
                    # the position is unchanged since its last state: only the mark moved
                    value = pos.qty * mark
                    u = value - pos.cost
                    a = value if pos.side is _LONG else abs(value)  # a long's value is its exposure
                    st = pos.state = _replace(st, mark_price=mark, unrealized_pnl=u, exposure=a)
                else:
                    value = pos.qty * mark
                    u = value - pos.cost
                    a = abs(value)
                    st = pos.state = PositionState(
                        symbol=sym, side=pos.side, quantity=pos.qty, avg_price=pos.avg, mark_price=mark,
                        cost_basis=pos.cost, unrealized_pnl=u, realized_pnl=pos.realized, fees=pos.fees,
                        exposure=a, opened_ts=pos.opened_ts)
                equity += value
                unreal += u
                exposure += a
                append(st)
            positions = tuple(states)
            exposure_pct = exposure / equity if equity > ZERO else ZERO
        else:
            unreal = exposure = exposure_pct = ZERO
            positions = ()
        day = ts // NS_PER_DAY
        if day > self.day:
            # a UTC day starts from the previous day's close (the equity of its last snapshot; the
            # start cash before the first one), so that the days add up to the run's PnL exactly.
            # Days only move forward: a fill stamped before the last periodic snapshot (a bar longer
            # than the snapshot interval fills at its open) counts in the current day.
            close = self._today[1]
            self.day = day
            self.day_start_equity = close
            self._today = self.daily[day] = [close, equity]
        else:
            self._today[1] = equity
        if equity >= self.hwm:
            self.hwm = hwm = equity
            dd = ZERO
        else:
            hwm = self.hwm
            dd = (hwm - equity) / hwm
            if dd > self.max_drawdown:
                self.max_drawdown = dd
        seq = self.seq = self.seq + 1
        self.last_ts = ts
        # Built by replacing fields of a base snapshot rather than by the constructor: on Python
        # 3.11 msgspec gets keyword arguments through a dict, which costs ~4x more past 14 of
        # them (the constructor needs 19). The base holds the fields that change only on fills
        # and at a new day; it is refreshed when any of them is not the current object.
        base = self._snap_base
        start_cash = self.start_cash
        realized = self.realized
        fees = self.fees
        day_start = self.day_start_equity
        if (base.cash is not cash or base.realized_pnl is not realized or base.fees is not fees
                or base.day_start_equity is not day_start or base.start_cash is not start_cash):
            base = self._snap_base = _replace(base, start_cash=start_cash, cash=cash, realized_pnl=realized,
                                              fees=fees, day_start_equity=day_start)
        return _replace(
            base,
            id=f"{self._key}:snap:{seq}",
            ts_event=ts,
            ts_recv=ts,
            causation_id=cause,
            equity=equity,
            unrealized_pnl=unreal,
            total_exposure=exposure,
            total_exposure_pct=exposure_pct,
            high_water_mark=hwm,
            drawdown_pct=dd,
            daily_pnl=equity - day_start,
            num_positions=len(positions),
            positions=positions,
            reason=reason,
        )

    # --- state for restart ----------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart exactly where it stopped (JSON values)."""
        return {
            "cash": str(self.cash), "realized": str(self.realized), "fees": str(self.fees),
            "positions": {
                s: [str(p.qty), str(p.cost), str(p.realized), str(p.fees), p.opened_ts]
                for s, p in self.positions.items()
            },
            "marks": {s: str(m) for s, m in self.marks.items()},
            "hwm": str(self.hwm), "max_drawdown": str(self.max_drawdown), "day": self.day,
            "day_start_equity": str(self.day_start_equity),
            "daily": {str(d): [str(a), str(b)] for d, (a, b) in self.daily.items()},
            "next_snapshot": self.next_snapshot, "last_ts": self.last_ts, "seq": self.seq,
            "fill_count": self.fill_count,
        }

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore ``get_state``'s output: the restarted portfolio emits what the old one would have."""
        D = Decimal
        self.cash, self.realized, self.fees = D(st["cash"]), D(st["realized"]), D(st["fees"])
        self.positions, self.open = {}, {}
        for s, (q, c, r, f, o) in st["positions"].items():
            p = self.positions[s] = Position(s)
            p.qty, p.cost, p.realized, p.fees, p.opened_ts = D(q), D(c), D(r), D(f), o
            p._derive()
            if p.qty:
                self.open[s] = p
        self.marks = {s: D(m) for s, m in st["marks"].items()}
        self.hwm, self.max_drawdown = D(st["hwm"]), D(st["max_drawdown"])
        self.day, self.day_start_equity = st["day"], D(st["day_start_equity"])
        self.daily = {int(d): [D(a), D(b)] for d, (a, b) in st["daily"].items()}
        self._today = self.daily.get(self.day, [self.day_start_equity, self.day_start_equity])
        self.next_snapshot, self.last_ts = st["next_snapshot"], st["last_ts"]
        self.seq, self.fill_count = st["seq"], st["fill_count"]

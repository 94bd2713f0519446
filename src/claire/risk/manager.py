"""The risk manager: a deterministic state machine between signals and orders.

Checks run in the seeds' order and stop at the first failure:

R1 data quality (stale or invalid market data: the signal is ignored), R2 position limit,
R3 daily drawdown (trading halted for the rest of the UTC day), R4 total exposure, R5 circuit
breaker (drawdown from the high-water mark; stopped until ``reset``), R6 expected slippage, R7
bid-ask spread (the signal waits up to ``spread_delay_sec`` for a narrower spread, then is
rejected).

R2-R5 guard new exposure: orders that reduce a position (closes, reduce-only, opposite signals)
always pass them, and still go through R1, R6 and R7. When R3 or R5 trips with the action
``flatten`` (``daily_drawdown_action``, ``circuit_breaker_action``), the manager also closes
every position at once: one reduce-only signal of its own per position (strategy
``risk_flatten``, caused by the trip's RiskEvent), decided on the spot.

R2, R4 and the cash count the *working* orders (approved, not yet filled: ``on_order_result``
keeps them) as well as the positions, so the exposure at approval never exceeds the limits
(only later price moves can carry a position past them); working reduce-only orders add none.
Without a fixed quantity, an opening order is sized to what R2, R4 and the cash allow (rounded
down to ``qty_step``); the fixed quantity of the config is the position size per symbol (an
opening order tops the position plus working entries up to it), and an order that would break
a limit is rejected, not shrunk. A close is sized to the position; with no position but a
working entry on the other side it is a reduce-only order of that entry's size (execution then
cancels the entry).

Shape: ``_decide`` builds one ``Decision`` (``risk/checks.py``) per signal, runs the sizing
(``_check_size``) and then ``_R1_TO_R7`` (one method per check, ``_check_data_quality`` ...
``_check_spread``), and stops at the first that returns a ``Fail`` (``None`` is a pass); no
exception is used for control flow. The portfolio is read through ``PortfolioView``
(``portfolio/view.py``), never written.

Every decision, pass or fail, is one ``RiskEvent`` with the deciding check, its value and
limit, every check evaluated, the portfolio state and the config. Changes of trading state are
``RiskEvent`` (check ``state``) plus an ``Alert``.

Time: "now" is the clock given to the manager; in every runtime that is the core's event-time
clock (``claire.engine.core.EventClock``), set to the exchange time (``ts_event``) of each
market event before it is handled. The feeds deliver market data of all symbols merged in event
time (the file merge; the live MEXC feed's reorder buffer), so "now" is the newest exchange time
across the whole feed, not the wall clock and not the signal's own symbol's time. R1 measures
the age of a signal's data as ``now`` minus the signal's ``market_ts`` (a strategy's signal
carries the exchange time of its symbol's event it was computed from; a delayed signal's retry,
the quote that retries it): a symbol whose data stops while others go on grows stale on the
exchange clock and its signals are ignored (a replay decides the same; tested in
``tests/core/test_exchange_rules.py``). The clock never reads the wall clock, so a feed that
stops altogether stops the clock too: that is the live feed's watchdog's to report.

Exchange trading rules (``rules``: symbol -> :class:`~claire.events.InstrumentRules`, optional):
for a symbol with rules, quantities are rounded down to its ``step`` (instead of ``qty_step``),
an order for a symbol that is not trading is refused (sizing), and after R1-R7 an order below
its ``min_qty`` or ``min_notional`` (at the signal's price) is refused (check ``sizing``, with
the value and the limit), so only orders the exchange would accept are sent. Symbols without
rules: ``qty_step`` and ``min_notional`` of the config only, exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any

import msgspec

from claire.events import (
    FILL_STATUSES,
    Alert,
    AlertLevel,
    Bar,
    CheckResult,
    Event,
    IdFactory,
    InstrumentRules,
    Order,
    OrderResult,
    OrderStatus,
    PortfolioSnapshot,
    QuoteTick,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    Signal,
    TradeTick,
    TradingState,
    decode,
    decode_as,
    encode,
)
from claire.events.ids import BoundedSet
from claire.events.time import NS_PER_DAY, NS_PER_SEC
from claire.portfolio.view import PortfolioView
from claire.risk.checks import WAIT, Decision, Fail
from claire.risk.config import RiskConfig

ZERO = Decimal(0)
ONE = Decimal(1)
TWO = Decimal(2)
BPS = Decimal(10_000)
Q6 = Decimal("0.000001")
_INF = Decimal("Infinity")
_EMPTY: tuple[Event, ...] = ()
_replace = msgspec.structs.replace

# Enum members used on every decision, as module constants: on Python 3.11 reading a member
# from its Enum class (``RiskCheck.ALL``) runs a Python-level descriptor, some 1,000 machine
# instructions each time; a module global is a dictionary hit.
_BUY, _SELL = Side.BUY, Side.SELL
_ACTIVE, _HALTED, _BROKEN = TradingState.ACTIVE, TradingState.HALTED, TradingState.CIRCUIT_BROKEN
_ALL, _SIZING, _DATA_QUALITY = RiskCheck.ALL, RiskCheck.SIZING, RiskCheck.DATA_QUALITY
_POSITION_LIMIT, _DAILY_DRAWDOWN = RiskCheck.POSITION_LIMIT, RiskCheck.DAILY_DRAWDOWN
_TOTAL_EXPOSURE, _CIRCUIT_BREAKER = RiskCheck.TOTAL_EXPOSURE, RiskCheck.CIRCUIT_BREAKER
_SLIPPAGE, _SPREAD = RiskCheck.SLIPPAGE, RiskCheck.SPREAD
_APPROVED, _RESIZED = RiskAction.APPROVED, RiskAction.RESIZED
_REJECTED, _DELAYED = RiskAction.REJECTED, RiskAction.DELAYED
_AGE0 = Decimal(0) / NS_PER_SEC  # R1: the age of market data from the signal's own event time
_STATE_VALUE = {s: s.value for s in TradingState}
# check results that never vary (immutable, so one instance serves every decision)
_R2_REDUCES = CheckResult(check=_POSITION_LIMIT, passed=True, note="reduces the position")
_R4_REDUCES = CheckResult(check=_TOTAL_EXPOSURE, passed=True, note="reduces exposure")
_R7_NO_QUOTE = CheckResult(check=_SPREAD, passed=True, note="no quote: spread unknown (bar data)")
_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
FLATTEN_STRATEGY = "risk_flatten"  # the strategy name of the signals that flatten at a trip


class _Working:
    """An order this manager approved that is not done yet (``leaves`` still to fill)."""

    __slots__ = ("leaves", "reduce_only", "ref", "side", "symbol")

    def __init__(self, symbol: str, side: Side, leaves: Decimal, ref: Decimal, reduce_only: bool) -> None:
        self.symbol, self.side, self.leaves, self.ref, self.reduce_only = symbol, side, leaves, ref, reduce_only


def _r(x: Decimal) -> Decimal:
    return x.quantize(Q6) if x.is_finite() else x


class RiskManager:
    """The gate between signals and orders (P3): R1-R7 in the seeds' order on every signal, the
    trading state (active / halted / circuit broken) from the portfolio's snapshots, and the
    working orders it approved. A deterministic state machine on event time, so a replay decides
    exactly as the live run did; every decision is recorded as a ``RiskEvent`` (see the module)."""

    def __init__(self, config: RiskConfig, portfolio: PortfolioView, ids: IdFactory | None = None,
                 clock: Callable[[], int] | None = None,
                 rules: Mapping[str, InstrumentRules] | None = None) -> None:
        self.config = config
        #: symbol -> the exchange's trading rules (step, minimums, status); absent: the config's only
        self.rules: dict[str, InstrumentRules] = dict(rules or {})
        self.portfolio = portfolio
        self.ids = ids or IdFactory()
        self.clock = clock
        self.state = _ACTIVE
        self.halted_day: int | None = None
        self.last: dict[str, Bar | QuoteTick | TradeTick] = {}
        self.delayed: dict[str, list[tuple[Signal, int]]] = {}  # symbol -> [(signal, deadline ns)]
        self.seen = BoundedSet()
        self.cb_peak: Decimal | None = None  # equity at the last circuit-breaker reset
        # working orders (approved, not done), and their aggregates for the decision path:
        self.working: dict[str, _Working] = {}  # order id -> what is left of it
        self._open_leaves: dict[str, list[Decimal]] = {}  # symbol -> [buy, sell] leaves of opening orders
        self._open_notional = ZERO  # opening orders' leaves x reference price, all symbols
        self._open_buy_notional = ZERO  # the same, buys only (the cash they will take)
        self._pf_cache: dict[str, Any] | None = None
        self._config_dict = config.as_dict()
        self._event_base = RiskEvent(id="", ts_event=0, ts_recv=0, signal_id=None, symbol=None, check=_ALL,
                                     action=_APPROVED, passed=True, reason="", config=self._config_dict)
        self._stale_ns = int(config.data_stale_timeout_sec * NS_PER_SEC)
        self._delay_ns = int(config.spread_delay_sec * NS_PER_SEC)
        self._fee = config.fee_bps / BPS
        self._model_slippage = config.expected_slippage_bps / BPS  # R6: the execution model's slippage
        self._cash_factor = ONE + config.expected_slippage_bps / BPS + Decimal("0.01")
        #: a trip may close positions: orders can come out of on_snapshot (the portfolio's feedback)
        self.flattens = config.enabled and "flatten" in (config.circuit_breaker_action, config.daily_drawdown_action)
        self._n = 0

    # --- market data ----------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> tuple[Event, ...]:
        """Remember the bar: R1 (staleness) and R6 (drift from the last price) read it."""
        self.last[bar.symbol] = bar
        return _EMPTY

    def on_trade(self, tick: TradeTick) -> tuple[Event, ...]:
        """Remember the trade: R1 and R6 read the last market event of the symbol."""
        self.last[tick.symbol] = tick
        return _EMPTY

    def on_quote(self, quote: QuoteTick) -> tuple[Event, ...] | list[Event]:
        """Remember the quote (R1, R6, R7) and retry the symbol's signals waiting for a narrower
        spread: a new quote is the only thing that can narrow it."""
        sym = quote.symbol
        self.last[sym] = quote
        if sym in self.delayed:
            return self._retry_delayed(sym, quote.ts_event)
        return _EMPTY

    def on_market(self, ev: Bar | TradeTick | QuoteTick) -> tuple[Event, ...] | list[Event]:
        """Any market event: the one entry point of the tick path."""
        if type(ev) is QuoteTick:
            return self.on_quote(ev)
        self.last[ev.symbol] = ev
        return _EMPTY

    # --- order results: working orders ------------------------------------------------------
    def on_order_result(self, result: OrderResult) -> tuple[Event, ...] | list[Event]:
        """An order result (fill, partial fill, cancel, reject) of an order this manager approved:
        a fill lowers its leaves, a final status ends it."""
        w = self.working.get(result.order_id)
        if w is None:
            return _EMPTY
        status = result.status
        if status in _TERMINAL:
            done = w.leaves
            del self.working[result.order_id]
        elif status in FILL_STATUSES:
            done = min(result.quantity, w.leaves)
            w.leaves -= done
        else:
            return _EMPTY
        if not w.reduce_only and done:
            self._add_open(w, -done)
        if not self.working:  # nothing works: the aggregates are exactly zero
            self._open_leaves.clear()
            self._open_notional = self._open_buy_notional = ZERO
        return _EMPTY

    def _add_open(self, w: _Working, qty: Decimal) -> None:
        """Add ``qty`` (negative: remove) of an opening order to the aggregates."""
        sym = w.symbol
        lv = self._open_leaves.get(sym)
        if lv is None:
            lv = self._open_leaves[sym] = [ZERO, ZERO]
        notional = qty * w.ref
        self._open_notional += notional
        if w.side is _BUY:
            lv[0] += qty
            self._open_buy_notional += notional
        else:
            lv[1] += qty
        if not lv[0] and not lv[1]:
            del self._open_leaves[sym]

    # --- portfolio feedback: trading state transitions ------------------------------------
    def on_snapshot(self, snap: PortfolioSnapshot) -> list[Event]:
        """The portfolio's feedback: trip R5 or R3 (or lift a halt on a new UTC day) as soon as a
        snapshot shows it, not only at the next signal, so a flatten happens at the trip."""
        state = self.state
        if state is _BROKEN or not self.config.enabled or (
                state is _ACTIVE and not snap.drawdown_pct and snap.equity >= snap.day_start_equity):
            return []  # the common cases: nothing to check (a circuit break waits for an explicit reset)
        out: list[Event] = []
        ts = snap.ts_event
        if self.state is _HALTED and ts // NS_PER_DAY != self.halted_day:
            out += self._transition(_ACTIVE, ts, _DAILY_DRAWDOWN,
                                    "new UTC day: daily drawdown halt lifted", None, None)
        if self.state is not _BROKEN:
            dd = snap.drawdown_pct if self.cb_peak is None else self._cb_drawdown(snap.equity)
            if dd >= self.config.circuit_breaker_threshold_pct:
                out += self._transition(_BROKEN, ts, _CIRCUIT_BREAKER,
                                        "drawdown from the high-water mark reached the circuit breaker",
                                        dd, self.config.circuit_breaker_threshold_pct)
            elif self.state is _ACTIVE and snap.equity < snap.day_start_equity:
                loss = (snap.day_start_equity - snap.equity) / snap.day_start_equity
                if loss >= self.config.max_daily_drawdown_pct:
                    out += self._transition(_HALTED, ts, _DAILY_DRAWDOWN,
                                            "daily loss reached the limit: trading halted for the rest of the UTC day",
                                            loss, self.config.max_daily_drawdown_pct)
        return out

    def reset(self, ts: int, reason: str = "manual reset") -> list[Event]:
        """Lift a circuit break (or a halt) explicitly. The breaker then measures the drawdown from
        the equity at the reset (raised by new highs), so trading can resume while still below the
        old high-water mark."""
        if self.state is _ACTIVE:
            return []
        self.cb_peak = self.portfolio.equity()
        return self._transition(_ACTIVE, ts, _CIRCUIT_BREAKER, reason, None, None)

    def _cb_drawdown(self, equity: Decimal) -> Decimal:
        dd = self.portfolio.drawdown(equity)
        peak = self.cb_peak
        if peak is None:
            return dd
        if equity > peak:
            self.cb_peak = peak = equity
        return min(dd, (peak - equity) / peak if peak > 0 else ZERO)

    def _transition(self, new: TradingState, ts: int, check: RiskCheck, reason: str,
                    value: Decimal | None, limit: Decimal | None) -> list[Event]:
        old = self.state
        self.state = new
        self._pf_cache = None
        self.halted_day = ts // NS_PER_DAY if new is _HALTED else None
        self._n += 1
        action = {_HALTED: RiskAction.HALTED, _BROKEN: RiskAction.CIRCUIT_BROKEN,
                  _ACTIVE: RiskAction.RESUMED}[new]
        ev = RiskEvent(
            id=self.ids("risk-state", ts, self._n), ts_event=ts, ts_recv=ts,
            signal_id=None, symbol=None, check=RiskCheck.STATE, action=action,
            passed=new is _ACTIVE,
            value=_r(value) if value is not None else None, limit=limit, reason=reason,
            trading_state=new, checks=(CheckResult(check=check, passed=new is _ACTIVE,
                                                   value=value, limit=limit, note=reason),),
            portfolio=self._portfolio_dict(), config=self._config_dict,
        )
        level = AlertLevel.INFO if new is _ACTIVE else AlertLevel.CRITICAL
        alert = Alert(
            id=self.ids("alert", ev.id), ts_event=ts, ts_recv=ts, causation_id=ev.id,
            level=level, source="risk", code=f"trading_{new.value}",
            message=f"trading state {old.value} -> {new.value}: {reason}",
            details={"value": str(value) if value is not None else None,
                     "limit": str(limit) if limit is not None else None},
        )
        cfg = self.config
        if new is not _ACTIVE and cfg.enabled and (
                cfg.circuit_breaker_action if new is _BROKEN else cfg.daily_drawdown_action) == "flatten":
            return [ev, alert, *self._flatten(ev, ts)]
        return [ev, alert]

    def _flatten(self, cause: RiskEvent, ts: int) -> list[Event]:
        """Close every position (and every working entry without one) at a trip: a reduce-only
        signal of the risk manager per position, decided at once, so its order goes out with the
        trip. The signal id is marked seen: handed back to ``on_signal`` it is a no-op."""
        pf = self.portfolio
        out: list[Event] = []
        todo: list[tuple[str, Side]] = []
        for sym in sorted(set(pf.open) | set(self._open_leaves)):
            qty = pf.position_qty(sym)
            if qty:
                todo.append((sym, _SELL if qty > 0 else _BUY))
            elif sym in self._open_leaves:  # no position, entries working: a close of each side cancels them
                lv = self._open_leaves[sym]
                todo += [(sym, side) for side, n in ((_SELL, lv[0]), (_BUY, lv[1])) if n]
        for sym, side in todo:
            last = self.last.get(sym)
            if last is not None:
                price, market_ts = last.price, last.ts_event
            else:  # no market data seen here (hand-fed): the portfolio's mark, else the entry's price
                price = pf.marks.get(sym) or next(w.ref for w in self.working.values() if w.symbol == sym)
                market_ts = ts
            sid = self.ids("risk-flatten", cause.id, sym, side.value)
            sig = Signal(id=sid, ts_event=ts, ts_recv=ts, correlation_id=sid, causation_id=cause.id, symbol=sym,
                         side=side, price=price, confidence=ONE, strategy=FLATTEN_STRATEGY, reduce_only=True,
                         market_ts=market_ts, metadata={"reason": f"flatten at the trip: {cause.reason}"})
            self.seen.add(sid)
            out.append(sig)
            out += self._decide(sig, ts, market_ts, first=True)
        return out

    # --- signals --------------------------------------------------------------------------
    def on_signal(self, sig: Signal) -> list[Event]:
        """Decide a strategy's signal: its ``RiskEvent`` (and the ``Order`` if approved). A
        redelivered signal (same id) is a no-op, so a restart or a bus retry never doubles an order."""
        if not self.seen.add_new(sig.id):
            return []  # redelivered
        clock = self.clock
        now = clock() if clock is not None else sig.ts_event
        return self._decide(sig, now, sig.market_ts, first=True)

    def _retry_delayed(self, sym: str, now: int) -> list[Event]:
        waiting = self.delayed.pop(sym)
        out: list[Event] = []
        for sig, deadline in waiting:
            res = self._decide(sig, now, now, first=False, deadline=deadline)
            out += res
        return out

    def flush_delayed(self, now: int, reason: str = "end of data") -> list[Event]:
        """Decide every signal still waiting for a narrower spread: rejected (e.g. at the end of a replay)."""
        self._pf_cache = None
        out: list[Event] = []
        for sym in sorted(self.delayed):
            for sig, _ in self.delayed.pop(sym):
                out.append(self._risk_event(sig, now, _SPREAD, _REJECTED, False, None,
                                            self.config.max_spread_pct, f"spread never narrowed before {reason}",
                                            [], sig.quantity or self.config.quantity, None, None))
        return out

    def _decide(self, sig: Signal, now: int, market_ts: int, first: bool, deadline: int | None = None) -> list[Event]:
        """Size the order, run R1-R7 in order and stop at the first ``Fail``: one ``RiskEvent``
        (plus the ``Order`` if approved), after any trading-state events the checks caused."""
        self._pf_cache = None  # the portfolio dict is computed at most once per decision
        cfg = self.config
        pf = self.portfolio
        d = Decision(sig, now, market_ts, first, deadline, pf.equity_and_exposure(), pf.position_qty(sig.symbol),
                     sig.quantity if sig.quantity is not None else cfg.quantity)
        rules = d.rules = self.rules.get(sig.symbol) if self.rules else None
        fail = self._check_size(d) if rules is None else self._check_size_rules(d, rules)
        if fail is None:
            if not cfg.enabled:
                if d.qty > 0:
                    fail = self._check_rules(d) if rules is not None else None
                    if fail is None:
                        return self._approve(d, "risk checks off")
                else:
                    fail = Fail(_SIZING, "order size is zero")
            else:
                for check in _R1_TO_R7:
                    fail = check(self, d)
                    if fail is not None:
                        break
                else:
                    fail = self._check_rules(d) if rules is not None else None
                    if fail is None:
                        return self._approve(d, "all checks passed")
        if fail is WAIT:
            return d.out  # a delayed signal keeps waiting: decided later
        d.out.append(self._risk_event(sig, now, fail.check, fail.action, False, fail.value, fail.limit,
                                      fail.reason, d.checks, d.requested, None, None, d.pf_values))
        return d.out

    # --- the checks, in the order _decide runs them: sizing, then R1-R7 ----------------------
    def _check_size(self, d: Decision) -> Fail | None:
        """Sizing: the order's quantity before the limits (``d.qty``), whether it reduces a
        position (``d.reducing``), the leaves of working opening orders on its side
        (``d.working``) and the fixed quantity still to buy (``d.requested``)."""
        cfg = self.config
        sig = d.sig
        sym, side, pos_qty, requested = sig.symbol, sig.side, d.pos_qty, d.requested
        rules = d.rules
        reducing = (pos_qty > 0 and side is _SELL) or (pos_qty < 0 and side is _BUY)
        open_lv = self._open_leaves.get(sym)  # leaves of working opening orders: [buy, sell]
        working = ZERO if open_lv is None else open_lv[0 if side is _BUY else 1]
        if reducing:
            qty = abs(pos_qty) if (sig.reduce_only or requested is None) else min(requested, abs(pos_qty))
        elif sig.reduce_only:  # no position to close: a working entry on the other side is cancelled
            qty = ZERO if pos_qty or open_lv is None else open_lv[1 if side is _BUY else 0]
            if not qty:
                return Fail(_SIZING, f"nothing to close: no {sym} position on the other side of a {side.value}")
            reducing = True
        elif side is _SELL and not cfg.allow_short:
            return Fail(_SIZING, f"no {sym} position to sell and short selling is disabled (spot)")
        elif sig.quantity is not None:
            qty = sig.quantity
        elif requested is not None:  # the fixed quantity is the position size: top up to it
            qty = requested = requested - abs(pos_qty) - working
            if qty <= 0:
                return Fail(_SIZING, f"{sym} already holds/works the fixed quantity {cfg.quantity} "
                            f"(position {abs(pos_qty)}, working {working})")
        else:
            qty = self._floor(d.equity * cfg.max_position_pct / sig.price, rules)
        if not reducing and side is _BUY:
            cash_cap = self._cash_cap(sig.price, rules)
            if qty > cash_cap:
                if requested is not None and cfg.enabled:
                    return Fail(_SIZING, "not enough cash for the order", qty * sig.price, self.portfolio.cash)
                qty = cash_cap
        d.qty, d.requested, d.reducing, d.working = qty, requested, reducing, working
        return None

    def _check_size_rules(self, d: Decision, rules: InstrumentRules) -> Fail | None:
        """Sizing for a symbol with exchange rules: refused when it is not trading; else the
        sizing above, the quantity in whole steps of the symbol (fixed and closing ones too)."""
        if not rules.trading:
            return Fail(_SIZING, f"{d.sig.symbol} is not trading on the exchange (status {rules.status}): "
                        "signal ignored")
        fail = self._check_size(d)
        if fail is None:
            d.qty = rules.floor_qty(d.qty)
        return fail

    def _cash_cap(self, price: Decimal, rules: InstrumentRules | None = None) -> Decimal:
        """The largest buy at ``price`` the cash pays for, after what the working buys will take."""
        cash = self.portfolio.cash
        if self._open_buy_notional:
            cash -= self._open_buy_notional * self._cash_factor
        return self._floor(cash / (price * self._cash_factor), rules)

    def _check_rules(self, d: Decision) -> Fail | None:
        """The exchange's minimums for the symbol (after R2/R4 may have sized the order down): a
        quantity below ``min_qty`` or a notional (at the signal's price) below ``min_notional``
        is refused, as the exchange would refuse it."""
        rules = d.rules
        if rules is None:
            return None
        sym, qty, price = d.sig.symbol, d.qty, d.sig.price
        if qty < rules.min_qty or not qty:
            d.checks.append(CheckResult(check=_SIZING, passed=False, value=qty, limit=rules.min_qty,
                                        note="exchange minimum quantity"))
            return Fail(_SIZING, f"quantity {qty} (in steps of {rules.step}) is below the {sym} minimum "
                        f"quantity {rules.min_qty}: order not sent", qty, rules.min_qty)
        notional = qty * price
        ok = notional >= rules.min_notional
        d.checks.append(CheckResult(check=_SIZING, passed=ok, value=_r(notional), limit=rules.min_notional,
                                    note="exchange minimum notional"))
        if ok:
            return None
        return Fail(_SIZING, f"notional {_r(notional)} is below the {sym} minimum notional {rules.min_notional}: "
                    "order not sent", _r(notional), rules.min_notional)

    def _check_data_quality(self, d: Decision) -> Fail | None:
        """R1: market data older than ``data_stale_timeout_sec`` (``now``, the exchange clock, minus
        the signal's market time: the time of its symbol's data it was computed from) or a crossed
        quote: the signal is ignored."""
        now, market_ts = d.now, d.market_ts
        age = _AGE0 if now == market_ts else Decimal(now - market_ts) / NS_PER_SEC
        limit = self.config.data_stale_timeout_sec
        last = d.last = self.last.get(d.sig.symbol)
        if age > limit:
            d.checks.append(CheckResult(check=_DATA_QUALITY, passed=False, value=age, limit=limit))
            return Fail(_DATA_QUALITY, f"market data is stale ({age}s old): signal ignored", age, limit)
        if type(last) is QuoteTick and last.bid >= last.ask:
            d.checks.append(CheckResult(check=_DATA_QUALITY, passed=False, note="crossed quote"))
            return Fail(_DATA_QUALITY, f"invalid market data: crossed quote bid {last.bid} >= ask {last.ask}")
        d.checks.append(CheckResult(check=_DATA_QUALITY, passed=True, value=age, limit=limit))
        return None

    def _check_position_limit(self, d: Decision) -> Fail | None:
        """R2: the symbol's position plus its working entries plus the order within
        ``max_position_pct`` of equity (after the order's fee); a reducing order always passes."""
        if d.reducing:
            d.checks.append(_R2_REDUCES)
            return None
        return self._share_limit(d, _POSITION_LIMIT, (abs(d.pos_qty) + d.working) * d.sig.price,
                                 self.config.max_position_pct,
                                 "position would be {pct}% of equity, limit {limit}%", "position limit")

    def _check_daily_drawdown(self, d: Decision) -> Fail | None:
        """R3: today's loss at the limit halts trading for the rest of the UTC day (a new day lifts
        the halt first); while halted only reducing orders pass."""
        cfg = self.config
        pf = self.portfolio
        now = d.now
        limit = cfg.max_daily_drawdown_pct
        # a signal at 00:00 UTC belongs to the new day, whose start the portfolio has not recorded
        # yet: no loss today so far
        loss = pf.daily_loss_pct(d.equity) if now // NS_PER_DAY == pf.day else ZERO
        if self.state is _HALTED and now // NS_PER_DAY != self.halted_day:
            d.out += self._transition(_ACTIVE, now, _DAILY_DRAWDOWN,
                                      "new UTC day: daily drawdown halt lifted", None, None)
        if self.state is _ACTIVE and loss >= limit:
            d.out += self._transition(_HALTED, now, _DAILY_DRAWDOWN,
                                      "daily loss reached the limit: trading halted for the rest of the UTC day",
                                      loss, limit)
        halted = self.state is _HALTED
        ok = not halted or d.reducing
        value = _r(loss)
        d.checks.append(CheckResult(check=_DAILY_DRAWDOWN, passed=ok, value=value, limit=limit,
                                    note="halted, order reduces the position" if halted and ok else ""))
        if ok:
            return None
        return Fail(_DAILY_DRAWDOWN, f"trading halted for the day: daily loss {_r(loss * 100)}% >= {limit * 100}%",
                    value, limit)

    def _check_total_exposure(self, d: Decision) -> Fail | None:
        """R4: all positions plus all working entries plus the order within
        ``max_total_exposure_pct`` of equity; a reducing order always passes."""
        if d.reducing:
            d.checks.append(_R4_REDUCES)
            return None
        return self._share_limit(d, _TOTAL_EXPOSURE, d.exposure + self._open_notional,
                                 self.config.max_total_exposure_pct,
                                 "total exposure would be {pct}% of equity, limit {limit}%: new orders blocked",
                                 "total exposure limit")

    def _check_circuit_breaker(self, d: Decision) -> Fail | None:
        """R5: the drawdown from the high-water mark (or from the equity at the last reset) at the
        threshold breaks the circuit until ``reset``; while broken only reducing orders pass."""
        limit = self.config.circuit_breaker_threshold_pct
        dd = self._cb_drawdown(d.equity)
        if self.state is not _BROKEN and dd >= limit:
            d.out += self._transition(_BROKEN, d.now, _CIRCUIT_BREAKER,
                                      "drawdown from the high-water mark reached the circuit breaker", dd, limit)
        broken = self.state is _BROKEN
        ok = not broken or d.reducing
        value = _r(dd)
        d.checks.append(CheckResult(check=_CIRCUIT_BREAKER, passed=ok, value=value, limit=limit,
                                    note="circuit broken, order reduces the position" if broken and ok else ""))
        if ok:
            return None
        return Fail(_CIRCUIT_BREAKER, f"circuit breaker tripped (drawdown {_r(dd * 100)}%): trading stopped until reset",
                    value, limit)

    def _check_slippage(self, d: Decision) -> Fail | None:
        """R6: the expected slippage (the execution model's, plus the distance from the signal's
        price to the touch or the last price) above ``max_slippage_pct`` rejects the order.
        Records the quote's spread for R7."""
        sig = d.sig
        price = sig.price
        last = d.last
        limit = self.config.max_slippage_pct
        expected = self._model_slippage
        if type(last) is QuoteTick:
            mid = (last.bid + last.ask) / TWO
            d.spread = (last.ask - last.bid) / mid
            touch = last.ask if sig.side is _BUY else last.bid
            expected += abs(touch - price) / price
        elif last is not None:
            expected += abs(last.price - price) / price
        ok = expected <= limit
        value = _r(expected)
        d.checks.append(CheckResult(check=_SLIPPAGE, passed=ok, value=value, limit=limit))
        if ok:
            return None
        return Fail(_SLIPPAGE, f"expected slippage {_r(expected * 100)}% > {limit * 100}%: order rejected", value, limit)

    def _check_spread(self, d: Decision) -> Fail | None:
        """R7: a spread wider than ``max_spread_pct`` delays the signal up to ``spread_delay_sec``
        (retried on each quote; ``WAIT`` while it still waits), then rejects it. Bar data has no
        spread: passes."""
        spread = d.spread
        if spread is None:
            d.checks.append(_R7_NO_QUOTE)
            return None
        cfg = self.config
        limit = cfg.max_spread_pct
        now, deadline = d.now, d.deadline
        value = _r(spread)
        if deadline is not None and now >= deadline:
            d.checks.append(CheckResult(check=_SPREAD, passed=False, value=value, limit=limit))
            return Fail(_SPREAD, f"spread stayed wider than {limit * 10000} bps after waiting "
                        f"{cfg.spread_delay_sec}s: order rejected", value, limit)
        ok = spread <= limit
        d.checks.append(CheckResult(check=_SPREAD, passed=ok, value=value, limit=limit))
        if ok:
            return None
        dl = deadline if deadline is not None else now + self._delay_ns
        if now < dl and self._delay_ns > 0:
            self.delayed.setdefault(d.sig.symbol, []).append((d.sig, dl))
            if not d.first:
                return WAIT
            return Fail(_SPREAD, f"spread {_r(spread * 10000)} bps > {limit * 10000} bps: "
                        f"order delayed up to {cfg.spread_delay_sec}s for a narrower spread", value, limit, _DELAYED)
        return Fail(_SPREAD, f"spread {_r(spread * 10000)} bps > {limit * 10000} bps"
                    + (" after waiting: order rejected" if not d.first else ": order rejected"), value, limit)

    def _share_limit(self, d: Decision, check: RiskCheck, current: Decimal, limit: Decimal, too_big: str,
                     name: str) -> Fail | None:
        """R2/R4: ``current`` plus the order, as a share of equity after the order's fee, within
        ``limit``. A sized order is shrunk to fit (``d.binding`` names the check); a fixed one is not."""
        fee = self._fee
        price, equity, qty = d.sig.price, d.equity, d.qty
        if d.requested is None:  # sized: shrink to the room left
            cap = equity * limit
            room = self._floor((cap - current) / (price * (ONE + limit * fee)), d.rules) if cap > current else ZERO
            if room < qty:
                d.qty = qty = room
                d.binding = check
        post = equity - qty * price * fee
        value = (current + qty * price) / post if post > ZERO else _INF
        notional = qty * price
        ok = value <= limit and notional >= self.config.min_notional
        rv = _r(value)
        d.checks.append(CheckResult(check=check, passed=ok, value=rv, limit=limit))
        if ok:
            return None
        reason = (too_big.format(pct=_r(value * 100), limit=limit * 100) if value > limit else
                  f"{name} leaves no room for an order of at least {self.config.min_notional} USDT")
        return Fail(check, reason, rv, limit)

    def _approve(self, d: Decision, reason: str) -> list[Event]:
        """The order of a decision that passed, with its ``RiskEvent`` (``resized`` when a limit
        sized it down); the order counts as working from here on."""
        cfg = self.config
        sig, qty, now, reduce_only, requested, binding = d.sig, d.qty, d.now, d.reducing, d.requested, d.binding
        oid = self.ids("order", sig.id)
        order = Order(
            id=oid, ts_event=now, ts_recv=now,
            correlation_id=sig.correlation_id or sig.id, causation_id=sig.id,
            symbol=sig.symbol, side=sig.side, quantity=qty, order_type=cfg.order_type,
            time_in_force=cfg.time_in_force, signal_id=sig.id, reference_price=sig.price,
            reduce_only=reduce_only, strategy=sig.strategy,
        )
        w = _Working(sig.symbol, sig.side, qty, sig.price, reduce_only)
        self.working[oid] = w
        if not reduce_only:
            self._add_open(w, qty)
        resized = requested is None and binding is not _ALL
        action = _RESIZED if resized else _APPROVED
        if resized:
            reason = f"approved, sized down by the {binding.value.replace('_', ' ')}"
        out = d.out
        out.append(self._risk_event(sig, now, binding, action, True, None, None, reason, d.checks,
                                    requested, qty, oid, d.pf_values))
        out.append(order)
        return out

    def _floor(self, q: Decimal, rules: InstrumentRules | None = None) -> Decimal:
        """``q`` rounded down to the symbol's step (``rules``), else to the config's ``qty_step``."""
        if q <= 0:
            return ZERO
        if rules is not None:
            return rules.floor_qty(q)
        return q.quantize(self.config.qty_step, rounding=ROUND_DOWN)

    def _portfolio_dict(self, values: tuple[Decimal, Decimal] | None = None) -> dict[str, Any]:
        """The portfolio as the risk manager saw it for this decision (cached per decision).
        ``values``: equity and total exposure when the caller has them already."""
        cached = self._pf_cache
        if cached is not None:
            return cached
        pf = self.portfolio
        if values is None:
            eq, total = pf.equity_and_exposure()
        else:
            eq, total = values
        d = self._pf_cache = {
            "equity": str(eq), "cash": str(pf.cash), "total_exposure": str(total),
            "daily_loss_pct": str(_r(pf.daily_loss_pct(eq))), "drawdown_pct": str(_r(pf.drawdown(eq))),
            "positions": {s: str(p.qty) for s, p in pf.open.items()}, "trading_state": _STATE_VALUE[self.state],
            "working_exposure": str(self._open_notional),  # opening orders approved, not yet filled
        }
        return d

    def _risk_event(self, sig: Signal, now: int, check: RiskCheck, action: RiskAction, passed: bool,
                    value: Decimal | None, limit: Decimal | None, reason: str, checks: list[CheckResult],
                    requested: Decimal | None, approved: Decimal | None, order_id: str | None,
                    pf_values: tuple[Decimal, Decimal] | None = None) -> RiskEvent:
        n = self._n = self._n + 1
        sid = sig.id
        # Two replaces of a template (which holds the config) instead of the constructor's 20
        # keyword arguments: msgspec on Python 3.11 takes keyword arguments through a dict, and
        # past 14 of them that costs several times more than two calls of ten.
        ev = _replace(self._event_base, id=self.ids.of(f"risk:{sid}:{n}"), ts_event=now, ts_recv=now,
                      correlation_id=sig.correlation_id or sid, causation_id=sid,
                      signal_id=sid, symbol=sig.symbol, check=check, action=action, passed=passed)
        return _replace(ev, value=value, limit=limit, reason=reason, trading_state=self.state, order_id=order_id,
                        requested_quantity=requested, approved_quantity=approved, checks=tuple(checks),
                        portfolio=self._portfolio_dict(pf_values))

    # --- state for restart ----------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart exactly where it stopped (JSON values)."""
        return {
            "state": self.state.value, "halted_day": self.halted_day, "n": self._n,
            "seen": self.seen.to_list(), "cb_peak": str(self.cb_peak) if self.cb_peak is not None else None,
            "delayed": [[encode(s).decode(), dl] for lst in self.delayed.values() for s, dl in lst],
            "last": [encode(e).decode() for e in self.last.values()],
            "working": [[oid, w.symbol, w.side.value, str(w.leaves), str(w.ref), w.reduce_only]
                        for oid, w in self.working.items()],
        }

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore ``get_state``'s output (the working-order aggregates are rebuilt from the orders)."""
        self.state = TradingState(st["state"])
        self.halted_day = st["halted_day"]
        self._n = st["n"]
        self.seen = BoundedSet(st["seen"])
        self.cb_peak = Decimal(st["cb_peak"]) if st.get("cb_peak") is not None else None
        self.delayed = {}
        for enc, dl in st["delayed"]:
            s = decode_as(enc, Signal)
            self.delayed.setdefault(s.symbol, []).append((s, dl))
        self.last = {}
        for enc in st["last"]:
            e = decode(enc)
            if not isinstance(e, (Bar, QuoteTick, TradeTick)):
                raise ValueError(f"risk checkpoint: a {type(e).__name__} among the last market events")
            self.last[e.symbol] = e
        self.working, self._open_leaves = {}, {}
        self._open_notional = self._open_buy_notional = ZERO
        for oid, sym, side, leaves, ref, ro in st.get("working", ()):  # absent in older checkpoints
            w = self.working[oid] = _Working(sym, Side(side), Decimal(leaves), Decimal(ref), ro)
            if not ro:
                self._add_open(w, w.leaves)


#: R1-R7 in the seeds' order: ``_decide`` runs them after sizing and stops at the first ``Fail``
_R1_TO_R7: tuple[Callable[[RiskManager, Decision], Fail | None], ...] = (
    RiskManager._check_data_quality,
    RiskManager._check_position_limit,
    RiskManager._check_daily_drawdown,
    RiskManager._check_total_exposure,
    RiskManager._check_circuit_breaker,
    RiskManager._check_slippage,
    RiskManager._check_spread,
)

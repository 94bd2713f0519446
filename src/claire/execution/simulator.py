"""The paper exchange: a deterministic state machine.

Input: orders and market data. Output: ``OrderResult`` events (fills, partial fills,
rejections, cancellations). No I/O; time comes from the events.

Fill conventions
- Bars, ``next_open`` (default): an order is filled at the open of the symbol's next bar
  (stamped at that bar's open time). ``close``: filled at the close of the bar the signal was
  computed on (the symbol's latest bar), at once.
- Ticks: a market order takes the opposite side of the current quote (buy at the ask, sell at
  the bid); with no quote yet, the last trade price.
- Limit orders fill when the market reaches the limit: on bars at the open if it is already
  through the limit, else at the limit if the bar's range touches it (a fill stamped at the
  bar's close: only then is its range known); on ticks when the quote crosses it. A limit order
  that rests before it fills pays the maker fee.
- Fixed slippage ``slippage_bps`` against the taker (buy higher, sell lower).
- Partial fills: at most ``max_volume_share`` of a bar's volume, or ``max_quote_share`` of the
  quoted size, per market event. The rest waits for later events (GTC), is cancelled at once
  (IOC), at the end of the UTC day (DAY), or the whole order is cancelled when it cannot be
  filled at once in full (FOK).
- No fill uses information from after its time. At the open of bar t the volume cap is
  ``max_volume_share`` x the volume of the symbol's *previous* bar (the last volume already
  seen; with no previous bar nothing fills yet and the order waits): what fills at an open
  never depends on that bar's own volume. A fill at a bar's close (fill mode ``close``, or a
  limit touched inside the bar) may use that bar's volume. One bar's share is shared by
  everything it caps: the fills at its close (and inside it) and those at the next bar's open,
  in that order.
- One intent per symbol: an order cancels every working order of its symbol on the opposite
  side first (``cancelled: superseded by a ...``, emitted before anything of the new order), so
  the unfilled rest of an entry never fills after a close or a reversal.
- Reduce-only orders: the exchange keeps the net position its own fills made per symbol; a
  reduce-only order never fills more than brings it to zero, and its rest is cancelled
  (``reduce only: no position left to reduce``) once there is nothing left to reduce.
Every fill records its slippage in bps against the order's reference (decision) price and its
latency (fill time minus order time, event time).

Book depth (:class:`~claire.events.BookDepth`, e.g. MEXC's top-5 limit depth), when a symbol has
one: orders fill against the levels, best first, one fill per level taken (each with its own
price, slippage and latency), at most ``max_quote_share`` of each level's size; what the levels
do not hold waits for the next quote or book (GTC), or is cancelled (IOC, FOK as above). The
levels are those of the newest picture: the quote's touch followed by the book's levels beyond
it when the quote is as new as the book (a book's levels at or better than a newer touch are
gone), the book's own levels when it is newer. A limit order takes only levels at or better
than its limit. A book-path fill is stamped at the picture's exchange time (never before its
order: ``latency_ns`` >= 0, event time) and its ``ts_recv`` is the picture's receive time, so
``ts_recv - ts_event`` of a fill is how late the data it filled on arrived. Without books
nothing changes (the quote's touch only, as above).

Trading rules (:class:`~claire.events.InstrumentRules`, per symbol, optional): an order the
exchange would refuse is rejected (symbol not trading, quantity not a whole number of steps or
below the minimum quantity, notional at the reference price below the minimum, a limit price
off the tick); fill quantities are whole steps (a volume or size cap is rounded down to the
step); a price the simulator computes (slippage) is put on the tick, up for a buy and down for
a sell. Symbols without rules fill exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from claire.events import (
    Bar,
    BookDepth,
    IdFactory,
    InstrumentRules,
    Liquidity,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    QuoteTick,
    Side,
    TimeInForce,
    TradeTick,
    decode_as,
    encode,
)
from claire.events.ids import BoundedSet
from claire.events.time import NS_PER_DAY
from claire.execution.config import ExecutionConfig, FillMode

ZERO = Decimal(0)
BPS = Decimal(10_000)
_EMPTY: tuple[OrderResult, ...] = ()
# Enum members of the matching path as module constants (reading one from its Enum class runs
# a Python-level descriptor on Python 3.11)
_BUY = Side.BUY
_NOTHING_TO_REDUCE = "reduce only: no position left to reduce"
_MARKET, _LIMIT = OrderType.MARKET, OrderType.LIMIT
_TAKER, _MAKER = Liquidity.TAKER, Liquidity.MAKER
_FOK, _IOC, _DAY = TimeInForce.FOK, TimeInForce.IOC, TimeInForce.DAY
_FILLED, _PARTIALLY_FILLED, _CANCELLED = OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELLED


def _later(lst: list[tuple[_Working, Decimal]] | None, w: _Working, limit: Decimal) -> list[tuple[_Working, Decimal]]:
    """Append (w, limit) to the limits to fill inside the bar (the list made on the first)."""
    if lst is None:
        lst = []
    lst.append((w, limit))
    return lst


_AT_OPEN, _INSIDE, _NOT_REACHED = 0, 1, 2


def _refusal(o: Order, r: InstrumentRules) -> str | None:
    """Why the exchange would refuse order ``o`` under the symbol's rules ``r`` (None: it takes it)."""
    sym, qty = o.symbol, o.quantity
    if not r.trading:
        return f"{sym} is not trading on the exchange (status {r.status}): order refused"
    if not r.on_step(qty):
        return f"quantity {qty} is not a multiple of the {sym} quantity step {r.step}: order refused"
    if qty < r.min_qty:
        return f"quantity {qty} is below the {sym} minimum quantity {r.min_qty}: order refused"
    if o.price is not None and not r.on_tick(o.price):
        return f"limit price {o.price} is not a multiple of the {sym} price tick {r.tick}: order refused"
    notional = qty * (o.price if o.price is not None else o.reference_price)
    if notional < r.min_notional:
        return f"notional {notional} is below the {sym} minimum notional {r.min_notional}: order refused"
    return None


def _limit_on_bar(buy: bool, limit: Decimal, bar: Bar) -> int:
    """Where a limit order meets a bar: at its open (the open is already through the limit),
    inside its range (it touches the limit), or not at all."""
    if buy:
        return _AT_OPEN if bar.open <= limit else (_INSIDE if bar.low <= limit else _NOT_REACHED)
    return _AT_OPEN if bar.open >= limit else (_INSIDE if bar.high >= limit else _NOT_REACHED)


class _Working:
    """An order the exchange holds, with what is done of it."""

    __slots__ = ("cum", "leaves", "n", "notional", "order", "rested")

    def __init__(self, order: Order) -> None:
        self.order = order
        self.cum = ZERO
        self.leaves = order.quantity
        self.notional = ZERO
        self.n = 0
        self.rested = False


class ExchangeSimulator:
    """The paper exchange (see the module doc): deterministic, so a replay and a restart fill
    exactly as the first run did. Implements the component contract (:class:`claire.events.ExchangeRole`)."""

    def __init__(self, config: ExecutionConfig | None = None, ids: IdFactory | None = None,
                 clock: Callable[[], int] | None = None,
                 rules: Mapping[str, InstrumentRules] | None = None) -> None:
        self.config = config or ExecutionConfig()
        #: symbol -> the exchange's trading rules (tick, step, minimums); symbols absent: no rules
        self.rules: dict[str, InstrumentRules] = dict(rules or {})
        #: symbol -> the latest book depth (fills beyond the best level)
        self.last_book: dict[str, BookDepth] = {}
        self.ids = ids or IdFactory()
        self.clock = clock
        self.working: dict[str, list[_Working]] = {}  # symbol -> orders waiting, in arrival order
        self.seen = BoundedSet()  # order ids already taken (idempotency)
        self.last_bar: dict[str, Bar] = {}
        self.last_quote: dict[str, QuoteTick] = {}
        self.last_trade: dict[str, Decimal] = {}
        #: symbol -> net quantity filled by this exchange (signed: > 0 long), for reduce-only orders
        self.position: dict[str, Decimal] = {}
        #: symbol -> (id of the bar whose volume share is being used, quantity already taken of it)
        self.volume_used: dict[str, tuple[str, Decimal]] = {}
        c = self.config
        self._slip = c.slippage_bps / BPS
        self._taker = c.taker_fee_bps / BPS
        self._maker = c.maker_fee_bps / BPS
        self._vol_share = c.max_volume_share
        self._quote_share = c.max_quote_share
        self._next_open = c.fill is FillMode.NEXT_OPEN

    # --- market data ----------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> Sequence[OrderResult]:
        """A bar: working orders of its symbol fill at its open or inside its range."""
        sym = bar.symbol
        last = self.last_bar
        if sym not in self.working:
            last[sym] = bar
            return _EMPTY
        prev = last.get(sym)  # the last volume seen before this bar: caps the fills at its open
        last[sym] = bar
        return self._match_bar(sym, bar, prev)

    def on_quote(self, quote: QuoteTick) -> Sequence[OrderResult]:
        """A quote: working orders of its symbol fill against the touch (and the book beyond it)."""
        sym = quote.symbol
        self.last_quote[sym] = quote
        if sym not in self.working:
            return _EMPTY
        return self._match_quote(sym, quote)

    def on_book(self, book: BookDepth) -> Sequence[OrderResult]:
        """Book depth: working orders of its symbol fill against its levels (see the module doc)."""
        sym = book.symbol
        self.last_book[sym] = book
        if sym not in self.working:
            return _EMPTY
        return self._match_book(sym, book.ts_event)

    def on_trade(self, tick: TradeTick) -> Sequence[OrderResult]:
        """A trade: with no quote (or book) yet, working orders fill at its price."""
        sym = tick.symbol
        self.last_trade[sym] = tick.price
        if sym not in self.working or sym in self.last_quote or sym in self.last_book:
            return _EMPTY
        return self._match_price(sym, tick.price, tick.price, None, tick.ts_event)

    def on_market(self, ev: Bar | TradeTick | QuoteTick | BookDepth) -> Sequence[OrderResult]:
        """Any market event: the order results it causes."""
        if isinstance(ev, Bar):
            return self.on_bar(ev)
        if isinstance(ev, QuoteTick):
            return self.on_quote(ev)
        if isinstance(ev, BookDepth):
            return self.on_book(ev)
        return self.on_trade(ev)

    # --- orders ---------------------------------------------------------------------------
    def on_order(self, order: Order) -> list[OrderResult]:
        """Take an order (once per id): the opposite side's working orders are cancelled, then it
        fills at once where the fill mode says so, or waits."""
        if order.id in self.seen:
            return []  # a redelivered order: already taken
        self.seen.add(order.id)
        sym = order.symbol
        out: list[OrderResult] = []
        lst = self.working.get(sym)
        if lst:  # one intent per symbol: the opposite side's working orders are cancelled first
            side = order.side
            for old in [x for x in lst if x.order.side is not side]:
                self._remove(sym, old)
                out.append(self._final(old, _CANCELLED, order.ts_event,
                                       f"cancelled: superseded by a {side.value} order {order.id}"))
        w = _Working(order)
        bar = self.last_bar.get(sym)
        quote = self.last_quote.get(sym)
        book = self.last_book.get(sym)
        if bar is None and quote is None and book is None and sym not in self.last_trade:
            out.append(self._final(w, OrderStatus.REJECTED, order.ts_event, f"no market data for {sym}"))
            return out
        if self.rules and (refused := self._refused(order)) is not None:
            out.append(self._final(w, OrderStatus.REJECTED, order.ts_event, refused))
            return out
        if order.reduce_only and self._room(order) <= 0:
            out.append(self._final(w, _CANCELLED, order.ts_event, _NOTHING_TO_REDUCE))
            return out
        self.working.setdefault(sym, []).append(w)
        if quote is not None:
            out += self._match_quote(sym, quote, only=w)
        elif book is not None:
            out += self._match_book(sym, order.ts_event, only=w)
        elif bar is not None:
            if not self._next_open:
                out += self._match_close(sym, bar, w)
            # else: waits for the next bar's open
        else:
            p = self.last_trade[sym]
            out += self._match_price(sym, p, p, None, order.ts_event, only=w)
        if w.leaves and w in self.working.get(sym, ()):
            w.rested = True
        return out

    def _refused(self, order: Order) -> str | None:
        """Why the exchange would refuse ``order`` under its symbol's rules (None: taken, or no rules)."""
        rules = self.rules.get(order.symbol)
        return _refusal(order, rules) if rules is not None else None

    def cancel_all(self, ts: int, reason: str) -> list[OrderResult]:
        """Cancel every working order (e.g. at the end of a replay)."""
        out: list[OrderResult] = []
        for sym in list(self.working):
            for w in self.working.pop(sym):
                out.append(self._final(w, _CANCELLED, ts, reason))
        return out

    # --- matching -------------------------------------------------------------------------
    def _pool(self, sym: str, b: Bar | None) -> Decimal | None:
        """What is left of bar ``b``'s volume share (None: no volume limit; no bar: nothing)."""
        share = self._vol_share
        if share is None:
            return None
        if b is None:
            return ZERO
        avail = b.volume * share
        used = self.volume_used.get(sym)
        if used is not None and used[0] == b.id:
            avail -= used[1]
        return avail if avail > 0 else ZERO

    def _use(self, sym: str, b: Bar | None, taken: Decimal) -> None:
        if taken and b is not None and self._vol_share is not None:
            used = self.volume_used.get(sym)
            if used is not None and used[0] == b.id:
                taken += used[1]
            self.volume_used[sym] = (b.id, taken)

    def _match_bar(self, sym: str, bar: Bar, prev: Bar | None) -> list[OrderResult]:
        """Working orders against a new bar: at its open (capped by ``prev``'s volume), then the
        limits its range touches, at its close (capped by its own volume)."""
        avail = self._pool(sym, prev)
        taken = ZERO
        out: list[OrderResult] = []
        inside: list[tuple[_Working, Decimal]] | None = None
        ts, close_ts = bar.ts_open, bar.ts_event
        for w in list(self.working[sym]):
            o = w.order
            if self._day_expired(w, sym, ts, out):
                continue
            if o.order_type is _MARKET:
                base = bar.open
                price = base * (1 + self._slip) if o.side is _BUY else base * (1 - self._slip)
                if self.rules:
                    price = self._tick(sym, price, o.side is _BUY)
                liq = _TAKER
            else:
                limit = o.price
                if limit is None:  # Order checks it on construction
                    raise ValueError(f"limit order {o.id} has no price")
                where = _limit_on_bar(o.side is _BUY, limit, bar)
                if where == _AT_OPEN:
                    price, liq = bar.open, (_MAKER if w.rested else _TAKER)
                elif where == _INSIDE:
                    inside = _later(inside, w, limit)
                    continue
                else:
                    self._expire(w, sym, close_ts, out)
                    continue
            qty = self._take(w, sym, avail, price, liq, ts, close_ts, out, "volume")
            if qty is not None and avail is not None:
                avail -= qty
                taken += qty
        self._use(sym, prev, taken)
        if inside:  # touched inside the bar: filled at the limit, at the bar's close
            avail = self._pool(sym, bar)
            taken = ZERO
            for w, limit in inside:
                qty = self._take(w, sym, avail, limit, _MAKER, close_ts, close_ts, out, "volume")
                if qty is not None and avail is not None:
                    avail -= qty
                    taken += qty
            self._use(sym, bar, taken)
        return out

    def _match_close(self, sym: str, bar: Bar, w: _Working) -> list[OrderResult]:
        """A new order at the close of the symbol's latest bar (fill mode ``close``)."""
        out: list[OrderResult] = []
        ts = bar.ts_event
        o = w.order
        if self._day_expired(w, sym, ts, out):
            return out
        ref = bar.close
        lim = o.price
        if o.order_type is _MARKET or lim is None:
            price = ref * (1 + self._slip) if o.side is _BUY else ref * (1 - self._slip)
            if self.rules:
                price = self._tick(sym, price, o.side is _BUY)
        elif (o.side is _BUY and ref <= lim) or (o.side is not _BUY and ref >= lim):
            price = ref
        else:
            self._expire(w, sym, ts, out)
            return out
        avail = self._pool(sym, bar)
        qty = self._take(w, sym, avail, price, _TAKER, ts, ts, out, "volume")
        if qty is not None and avail is not None:
            self._use(sym, bar, qty)
        return out

    def _match_quote(self, sym: str, q: QuoteTick, only: _Working | None = None) -> list[OrderResult]:
        if sym in self.last_book:  # the touch plus the book's levels beyond it
            return self._match_book(sym, q.ts_event, only)
        return self._match_price(sym, q.ask, q.bid, q, q.ts_event, only)

    def _match_book(self, sym: str, ts: int, only: _Working | None = None) -> list[OrderResult]:
        """Working orders (or ``only``) against the newest picture of the book: the quote's touch
        and the book's levels beyond it, or the book alone when it is newer (module doc). ``ts``
        is the time of the event that triggered the match (the order's, or the market event's)."""
        book = self.last_book[sym]
        q = self.last_quote.get(sym)
        if q is None or book.ts_event > q.ts_event:
            asks, bids, pic_ts, pic_recv = book.asks, book.bids, book.ts_event, book.ts_recv
        else:
            ask, bid = q.ask, q.bid
            asks = ((ask, q.ask_size), *(lv for lv in book.asks if lv[0] > ask))
            bids = ((bid, q.bid_size), *(lv for lv in book.bids if lv[0] < bid))
            pic_ts, pic_recv = q.ts_event, q.ts_recv
        share = self._quote_share
        # what is left of each level in this match (orders take it in arrival order); None: no cap
        left_ask: list[Decimal | None] = [size * share if share is not None else None for _, size in asks]
        left_bid: list[Decimal | None] = [size * share if share is not None else None for _, size in bids]
        out: list[OrderResult] = []
        for w in list(self.working[sym]) if only is None else [only]:
            o = w.order
            t = max(pic_ts, ts, o.ts_event)  # a fill is never stamped before its order
            if self._day_expired(w, sym, t, out):
                continue
            buy = o.side is _BUY
            levels, left = (asks, left_ask) if buy else (bids, left_bid)
            lim = o.price
            if o.order_type is _LIMIT and lim is not None:
                n = 0  # the levels at or better than the limit: a prefix (best first)
                for p, _ in levels:
                    if (buy and p > lim) or (not buy and p < lim):
                        break
                    n += 1
                if not n:
                    self._expire(w, sym, t, out)
                    continue
                self._take_levels(w, sym, levels[:n], left, False, _MAKER if w.rested else _TAKER, t, pic_recv, out)
            else:
                self._take_levels(w, sym, levels, left, True, _TAKER, t, pic_recv, out)
        return out

    def _take_levels(self, w: _Working, sym: str, levels: Sequence[tuple[Decimal, Decimal]],
                     left: list[Decimal | None], market: bool, liq: Liquidity, ts: int, ts_recv: int,
                     out: list[OrderResult]) -> None:
        """Walk ``levels`` (best first) for ``w``: one fill per level taken, each at the level's
        price (market orders: plus the fixed slippage, on the tick), then what the rest does
        (waits, or is cancelled: IOC, FOK, reduce only with nothing left)."""
        o = w.order
        want = self._wanted(w, sym, ts, out)
        if want is None:
            return
        rules = self.rules.get(sym) if self.rules else None
        takes: list[tuple[int, Decimal]] = []
        rest = want
        for i in range(len(levels)):
            if not rest:
                break
            avail = left[i]
            qty = rest if avail is None or avail >= rest else avail
            if rules is not None and qty < rest:
                qty = rules.floor_qty(qty)
            if qty > 0:
                takes.append((i, qty))
                rest -= qty
        total = want - rest
        if o.time_in_force is _FOK and total < w.leaves:
            self._remove(sym, w)
            out.append(self._final(w, _CANCELLED, ts, "fill or kill: not enough size in the book to fill at once"))
            return
        buy = o.side is _BUY
        slip = self._slip
        for i, qty in takes:
            price = levels[i][0]
            if market and slip:
                price = price * (1 + slip) if buy else price * (1 - slip)
                if rules is not None:
                    price = rules.round_price(price, buy)
            avail = left[i]
            if avail is not None:
                left[i] = avail - qty
            out.append(self._fill(w, qty, price, liq, ts, ts_recv))
        self._after_match(w, sym, ts, ts, out, total)

    def _wanted(self, w: _Working, sym: str, ts: int, out: list[OrderResult]) -> Decimal | None:
        """How much of ``w`` may fill now: its leaves, for a reduce-only order no more than its room
        to flat (None: nothing left to reduce, the order is cancelled)."""
        o = w.order
        want = w.leaves
        if o.reduce_only:
            room = self._room(o)
            if room <= 0:
                self._remove(sym, w)
                out.append(self._final(w, _CANCELLED, ts, _NOTHING_TO_REDUCE))
                return None
            if want > room:
                want = room
        return want

    def _tick(self, sym: str, price: Decimal, up: bool) -> Decimal:
        """A price the simulator computed, on the symbol's tick (up for a buy), when it has rules."""
        r = self.rules.get(sym)
        return r.round_price(price, up) if r is not None else price

    def _match_price(self, sym: str, ask: Decimal, bid: Decimal, q: QuoteTick | None, ts: int,
                     only: _Working | None = None) -> list[OrderResult]:
        share = self._quote_share
        avail_ask = q.ask_size * share if (q is not None and share is not None) else None
        avail_bid = q.bid_size * share if (q is not None and share is not None) else None
        out: list[OrderResult] = []
        for w in list(self.working[sym]) if only is None else [only]:
            o = w.order
            if self._day_expired(w, sym, ts, out):
                continue
            buy = o.side is _BUY
            touch = ask if buy else bid
            lim = o.price
            if o.order_type is _LIMIT and lim is not None:  # a limit order has a price (Order checks it)
                if (buy and touch > lim) or (not buy and touch < lim):
                    self._expire(w, sym, ts, out)
                    continue
                price = touch
                liq = _MAKER if w.rested else _TAKER
            else:
                price = touch * (1 + self._slip) if buy else touch * (1 - self._slip)
                if self.rules:
                    price = self._tick(sym, price, buy)
                liq = _TAKER
            avail = avail_ask if buy else avail_bid
            qty = self._take(w, sym, avail, price, liq, ts, ts, out, "size at the touch")
            if qty is not None and avail is not None:
                if buy:
                    avail_ask = avail - qty
                else:
                    avail_bid = avail - qty
        return out

    def _take(self, w: _Working, sym: str, avail: Decimal | None, price: Decimal, liq: Liquidity, ts: int,
              now: int, out: list[OrderResult], what: str) -> Decimal | None:
        """Fill what ``avail`` allows (all of it without a limit; a reduce-only order no more than
        its room to flat); returns the quantity taken, or None when the order was cancelled
        instead (fill or kill, or reduce only with nothing left to reduce)."""
        qty = w.leaves if avail is None else min(w.leaves, avail)
        if self.rules and qty < w.leaves:  # whole steps only
            r = self.rules.get(sym)
            if r is not None:
                qty = r.floor_qty(qty)
        if w.order.reduce_only:
            room = self._room(w.order)
            if room <= 0:
                self._remove(sym, w)
                out.append(self._final(w, _CANCELLED, ts, _NOTHING_TO_REDUCE))
                return None
            if qty > room:
                qty = room
        if w.order.time_in_force is _FOK and qty < w.leaves:
            self._remove(sym, w)
            out.append(self._final(w, _CANCELLED, ts, f"fill or kill: not enough {what} to fill at once"))
            return None
        if qty > 0:
            out.append(self._fill(w, qty, price, liq, ts))
        self._after_match(w, sym, ts, now, out, qty)
        return qty

    def _after_match(self, w: _Working, sym: str, ts: int, now: int, out: list[OrderResult], qty: Decimal) -> None:
        if not w.leaves:
            self._remove(sym, w)
            return
        if w.order.reduce_only and self._room(w.order) <= 0:
            self._remove(sym, w)
            out.append(self._final(w, _CANCELLED, ts, _NOTHING_TO_REDUCE))
            return
        tif = w.order.time_in_force
        if tif is _IOC:
            self._remove(sym, w)
            reason = "immediate or cancel: rest cancelled" if qty > 0 else "immediate or cancel: no volume"
            out.append(self._final(w, _CANCELLED, ts, reason))
        else:
            self._expire(w, sym, now, out)

    def _room(self, o: Order) -> Decimal:
        """How much a reduce-only order may still fill: the position on the other side of it."""
        pos = self.position.get(o.symbol, ZERO)
        return -pos if o.side is _BUY else pos

    def _day_expired(self, w: _Working, sym: str, ts: int, out: list[OrderResult]) -> bool:
        o = w.order
        if o.time_in_force is _DAY and ts // NS_PER_DAY > o.ts_event // NS_PER_DAY:
            self._remove(sym, w)
            out.append(self._final(w, _CANCELLED, ts, "day order expired at the end of the UTC day"))
            return True
        return False

    def _expire(self, w: _Working, sym: str, now: int, out: list[OrderResult]) -> None:
        o = w.order
        if o.time_in_force is _DAY and now // NS_PER_DAY > o.ts_event // NS_PER_DAY:
            self._remove(sym, w)
            out.append(self._final(w, _CANCELLED, now, "day order expired at the end of the UTC day"))
        elif o.time_in_force in (_IOC, _FOK):
            self._remove(sym, w)
            out.append(self._final(w, _CANCELLED, now, f"{o.time_in_force.value}: limit not reached"))

    def _remove(self, sym: str, w: _Working) -> None:
        lst = self.working.get(sym)
        if lst is not None:
            try:
                lst.remove(w)
            except ValueError:
                return
            if not lst:
                del self.working[sym]

    def _fill(self, w: _Working, qty: Decimal, price: Decimal, liq: Liquidity, ts: int,
              ts_recv: int | None = None) -> OrderResult:
        o = w.order
        w.n += 1
        w.cum += qty
        w.leaves -= qty
        notional = qty * price
        w.notional += notional
        pos = self.position
        pos[o.symbol] = pos.get(o.symbol, ZERO) + (qty if o.side is _BUY else -qty)
        fee = notional * (self._maker if liq is _MAKER else self._taker)
        ref = o.reference_price
        slip = (price - ref) / ref * BPS if o.side is _BUY else (ref - price) / ref * BPS
        rid = self.ids("fill", o.id, w.n)
        return OrderResult(
            id=rid,
            ts_event=ts,
            ts_recv=ts if ts_recv is None else ts_recv,
            correlation_id=o.correlation_id,
            causation_id=o.id,
            order_id=o.id,
            signal_id=o.signal_id,
            symbol=o.symbol,
            side=o.side,
            status=_FILLED if not w.leaves else _PARTIALLY_FILLED,
            order_type=o.order_type,
            quantity=qty,
            price=price,
            order_quantity=o.quantity,
            cum_quantity=w.cum,
            leaves_quantity=w.leaves,
            fee=fee,
            liquidity=liq,
            reference_price=ref,
            slippage_bps=slip.quantize(Decimal("0.0001")),
            latency_ns=ts - o.ts_event,
        )

    def _final(self, w: _Working, status: OrderStatus, ts: int, reason: str) -> OrderResult:
        o = w.order
        w.n += 1
        return OrderResult(
            id=self.ids("result", o.id, w.n),
            ts_event=ts,
            ts_recv=ts,
            correlation_id=o.correlation_id,
            causation_id=o.id,
            order_id=o.id,
            signal_id=o.signal_id,
            symbol=o.symbol,
            side=o.side,
            status=status,
            order_type=o.order_type,
            order_quantity=o.quantity,
            cum_quantity=w.cum,
            leaves_quantity=w.leaves,
            reference_price=o.reference_price,
            latency_ns=ts - o.ts_event,
            reason=reason,
        )

    # --- state for restart ----------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Working orders (with what is done of them), the ids taken, the last market data, the
        net position of its own fills and the volume used: plain data (events as JSON text)."""
        return {
            "working": [
                [encode(w.order).decode(), str(w.cum), str(w.leaves), str(w.notional), w.n, w.rested]
                for lst in self.working.values() for w in lst
            ],
            "seen": self.seen.to_list(),
            "last_bar": [encode(b).decode() for b in self.last_bar.values()],
            "last_quote": [encode(q).decode() for q in self.last_quote.values()],
            "last_book": [encode(b).decode() for b in self.last_book.values()],
            "last_trade": {s: str(p) for s, p in self.last_trade.items()},
            "position": {s: str(q) for s, q in self.position.items()},
            "volume_used": {s: [bid, str(q)] for s, (bid, q) in self.volume_used.items()},
        }

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned (after a JSON round trip)."""
        self.working = {}
        for enc, cum, leaves, notional, n, rested in st["working"]:
            o = decode_as(enc, Order)
            w = _Working(o)
            w.cum, w.leaves, w.notional, w.n, w.rested = Decimal(cum), Decimal(leaves), Decimal(notional), n, rested
            self.working.setdefault(o.symbol, []).append(w)
        self.seen = BoundedSet(st["seen"])
        self.last_bar = {b.symbol: b for b in (decode_as(x, Bar) for x in st["last_bar"])}
        self.last_quote = {q.symbol: q for q in (decode_as(x, QuoteTick) for x in st["last_quote"])}
        self.last_trade = {s: Decimal(p) for s, p in st["last_trade"].items()}
        self.last_book = {b.symbol: b for b in (decode_as(x, BookDepth) for x in st.get("last_book", ()))}
        # checkpoints from before these existed: no position from own fills, no volume taken yet
        self.position = {s: Decimal(q) for s, q in st.get("position", {}).items()}
        self.volume_used = {s: (bid, Decimal(q)) for s, (bid, q) in st.get("volume_used", {}).items()}

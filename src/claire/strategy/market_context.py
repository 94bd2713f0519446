"""The market around each signal (A3) and the price after each fill (A1), per symbol.

:class:`MarketContext` is fed by the signal engine with the same market events the strategy sees
(bars, trades, quotes; books when the core routes them), and :meth:`MarketContext.figures` gives
what the signal engine stamps into a signal's ``metadata["market"]``, so every runtime (one
process or the distributed signal service) stores the same ``market_conditions`` row. Figures
(see docs/database.md, "Analytics columns"):

- ``volume_24h``: the sum of the volumes of the symbol's bars that closed within the 24 hours up
  to the signal (exact, a Decimal as text); ``volume_window_h``, only when less than 24, says how
  many hours of bars that covers (at the start of the data);
- ``volatility_1h``: the sample standard deviation of the last :data:`RETURNS` bar log returns
  (60 one-minute returns = one hour), not annualised; ``volatility_returns``, only when fewer, how many;
- ``trend_direction`` / ``trend_strength``: Kaufman's efficiency ratio over the same returns,
  ``|sum r| / sum |r|`` in [0, 1] (1 = a straight line); direction ``up``/``down`` by the sign
  of the net move, ``sideways`` when the ratio is below :data:`SIDEWAYS_BELOW`;
- ``spread_bps``: ``(ask - bid) / mid * 10_000`` of the latest quote; ``order_book_depth``: the
  quote-currency value of the latest book's levels (both sides), else of the quote's top level.

A figure the source cannot give stays out and ``unavailable`` names why (e.g. bar-only data
has no quotes). Symbols without bars (tick data) get one-minute bars made from their trades
(volume, last price) and quotes (mid), so the figures mean the same.

Cheap on the hot path: a bar is only appended to its symbol's list; the rolling windows are
brought up to date when a signal asks for figures (or every :data:`CATCH_UP_EVERY` bars).
Pure: no I/O, time from the events.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from decimal import Decimal
from itertools import accumulate
from operator import attrgetter, mul, sub
from typing import Any

from claire.events import Bar, BookDepth, QuoteTick, TradeTick

ZERO = Decimal(0)
BPS = Decimal(10_000)
Q4 = Decimal("0.0001")
Q8 = Decimal("0.00000001")
NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
NS_PER_H = 3600 * NS_PER_S
VOLUME_WINDOW_NS = 24 * NS_PER_H
#: bar log returns behind volatility and trend (60 one-minute bars = one hour)
RETURNS = 60
#: efficiency ratio below which the trend is ``sideways``
SIDEWAYS_BELOW = 0.2
#: unprocessed bars a symbol may hold before they are processed without a signal asking
CATCH_UP_EVERY = 4096
#: processed bars a symbol keeps before those older than 24 hours are dropped
TRIM_AT = 8192
#: pending bars processed in one plain loop (more: C-level loops)
SMALL_BATCH = 40

_NO_QUOTES_BARS = "bars carry no quotes"
_NO_BOOK_BARS = "bars carry no order book"
_VOLUME, _TS, _CLOSE = attrgetter("volume"), attrgetter("ts_event"), attrgetter("close")
#: why spread and depth are missing for a symbol with bars only (shared: never changed)
_BARS_ONLY = {"spread_bps": _NO_QUOTES_BARS, "order_book_depth": _NO_BOOK_BARS}


def _text(d: Decimal) -> str:
    """A Decimal as plain text without trailing zeros: the same whatever exponent the sums it
    came from had (a restored window sums fewer bars), so restored figures are identical."""
    t = str(d)
    if "E" in t or "e" in t:  # (rare: very small or large) the slower exact form
        return format(d.normalize(), "f") if d else "0"
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return t if t not in ("", "-0") else "0"


class SymbolMarket:
    """One symbol's windows (see the module doc). Volume: cumulative sums per bar (``cum[i]``:
    the volume of bars ``0..i`` since the last trim) next to the bars' close times, so a signal's
    24 hours are one bisection and one subtraction (exact: Decimals)."""

    __slots__ = ("book", "cum", "has_bars", "last_log", "pending", "quote", "returns", "start_ts",
                 "tick_bar", "trim_at", "tss", "vols")

    def __init__(self) -> None:
        self.pending: list[Bar] = []  # bars not yet in the windows
        self.tss: list[int] = []  # close times of the bars processed (at least the last 24 hours)
        self.cum: list[Decimal] = []  # cumulative volume up to and including each of them
        self.vols: list[Decimal] = []  # their volumes (the checkpoint's form)
        self.trim_at = TRIM_AT
        self.returns: deque[float] = deque(maxlen=RETURNS)
        self.last_log: float | None = None
        self.start_ts: int | None = None  # the open of the first bar
        self.has_bars = False
        self.quote: QuoteTick | None = None
        self.book: BookDepth | None = None
        self.tick_bar: list[Any] | None = None  # [minute, close, volume] of the bar made from ticks

    def catch_up(self) -> None:
        """Bring the windows up to date with the pending bars."""
        pending = self.pending
        if not pending:
            return
        if self.start_ts is None:
            self.start_ts = pending[0].ts_open
        if len(pending) <= SMALL_BATCH:
            self._add_few(pending)
        else:
            self._add_many(pending)
        pending.clear()
        if len(self.cum) >= self.trim_at:
            self._trim()

    def _add_few(self, pending: list[Bar]) -> None:
        """A few bars (those between two signals, the common case): one plain loop."""
        cum, vols, rets = self.cum, self.vols, self.returns
        c = cum[-1] if cum else ZERO
        last = self.last_log
        log = math.log
        for bar in pending:
            v = bar.volume
            vols.append(v)
            c += v
            cum.append(c)
            lc = log(float(bar.close))
            if last is not None:
                rets.append(lc - last)
            last = lc
        self.tss.extend(map(_TS, pending))
        self.last_log = last

    def _add_many(self, pending: list[Bar]) -> None:
        """Many bars: C-level loops (map, accumulate); only the last RETURNS + 1 closes can still
        be in the returns window."""
        cum = self.cum
        first = len(self.vols)
        self.vols.extend(map(_VOLUME, pending))
        sums = accumulate(self.vols[first:], initial=cum[-1] if cum else ZERO)
        next(sums)
        cum.extend(sums)
        self.tss.extend(map(_TS, pending))
        logs = list(map(math.log, map(float, map(_CLOSE, pending[-(RETURNS + 1):]))))
        if len(pending) <= RETURNS and self.last_log is not None:
            logs.insert(0, self.last_log)
        self.returns.extend(map(sub, logs[1:], logs))
        self.last_log = logs[-1]

    def _trim(self) -> None:
        """Drop the bars older than 24 hours (and rebase the sums on what is left)."""
        tss, cum = self.tss, self.cum
        j = bisect_right(tss, tss[-1] - VOLUME_WINDOW_NS)
        if j:
            dropped = cum[j - 1]
            self.tss = tss[j:]
            self.vols = self.vols[j:]
            self.cum = [x - dropped for x in cum[j:]]
        self.trim_at = max(TRIM_AT, 2 * len(self.cum))

    def volume_since(self, cutoff: int) -> Decimal:
        """The volume of the bars that closed after ``cutoff``."""
        cum = self.cum
        j = bisect_right(self.tss, cutoff)
        return cum[-1] - cum[j - 1] if j else cum[-1]

    # --- ticks: one-minute bars made from trades and quotes (symbols without bars) -----------
    def tick(self, symbol: str, ts: int, price: Decimal, size: Decimal) -> None:
        minute = ts // NS_PER_MIN
        tb = self.tick_bar
        if tb is not None and minute != tb[0]:
            close_ts = (tb[0] + 1) * NS_PER_MIN
            self.pending.append(Bar(id="", ts_event=close_ts, ts_recv=close_ts, symbol=symbol, interval_s=60,
                                    open=tb[1], high=tb[1], low=tb[1], close=tb[1], volume=tb[2]))
            tb = None
        if tb is None:
            self.tick_bar = [minute, price, size]
        else:
            tb[1] = price
            tb[2] += size

    # --- the figures ------------------------------------------------------------------------
    def figures(self, now: int) -> dict[str, Any]:
        """What the market looked like at ``now`` (the event time of the signal's market event)."""
        self.catch_up()
        out: dict[str, Any] = {}
        unavailable: dict[str, str] = {}
        if self.cum:
            cutoff = now - VOLUME_WINDOW_NS
            out["volume_24h"] = _text(self.volume_since(cutoff))
            start = self.start_ts if self.start_ts is not None else self.tss[0]
            if start > cutoff:  # the data began less than 24 hours ago: say how much it covers
                out["volume_window_h"] = round((now - start) / NS_PER_H, 4)
        else:
            unavailable["volume_24h"] = "no bars or trades seen yet"
        self._volatility_trend(out, unavailable)
        if self.quote is None and self.book is None and self.has_bars:
            if not unavailable:  # the common case of bar data: one shared reason
                out["unavailable"] = _BARS_ONLY
                return out
            unavailable.update(_BARS_ONLY)
        else:
            self._book_figures(now, out, unavailable)
        if unavailable:
            out["unavailable"] = unavailable
        return out

    def _volatility_trend(self, out: dict[str, Any], unavailable: dict[str, str]) -> None:
        rets = self.returns
        n = len(rets)
        s1 = sum(rets)
        if n >= 2:
            var = (sum(map(mul, rets, rets)) - s1 * s1 / n) / (n - 1)
            out["volatility_1h"] = math.sqrt(var) if var > 0 else 0.0
            if n < RETURNS:
                out["volatility_returns"] = n
        else:
            unavailable["volatility_1h"] = f"{n} bar return(s) seen, 2 needed"
        if n >= 1:
            net = s1
            path = sum(map(abs, rets))
            strength = min(1.0, abs(net) / path) if path > 0 else 0.0
            out["trend_strength"] = strength
            if strength < SIDEWAYS_BELOW or net == 0:
                out["trend_direction"] = "sideways"
            else:
                out["trend_direction"] = "up" if net > 0 else "down"
        else:
            unavailable["trend_direction"] = "no bar return seen yet"

    def _book_figures(self, now: int, out: dict[str, Any], unavailable: dict[str, str]) -> None:
        q = self.quote
        if q is not None:
            mid = (q.bid + q.ask) / 2
            out["spread_bps"] = str(((q.ask - q.bid) / mid * BPS).quantize(Q4))
            out["quote_age_ms"] = max(0, now - q.ts_event) // 1_000_000
        else:
            unavailable["spread_bps"] = _NO_QUOTES_BARS if self.has_bars else "no quote seen yet"
        b = self.book
        if b is not None and (b.bids or b.asks):
            depth = sum((p * s for p, s in b.bids), ZERO) + sum((p * s for p, s in b.asks), ZERO)
            out["order_book_depth"] = str(depth.quantize(Q8))
            out["depth_source"] = f"book ({len(b.bids)} bid, {len(b.asks)} ask levels)"
            out["book_age_ms"] = max(0, now - b.ts_event) // 1_000_000
        elif q is not None:
            out["order_book_depth"] = str((q.bid * q.bid_size + q.ask * q.ask_size).quantize(Q8))
            out["depth_source"] = "quote (top of book)"
        else:
            unavailable["order_book_depth"] = _NO_BOOK_BARS if self.has_bars else "no quote or book seen yet"

    # --- restart ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Plain data: the last 24 hours of bars (close time, volume), the returns, the latest
        quote and book."""
        self.catch_up()
        tss = self.tss
        j = bisect_right(tss, tss[-1] - VOLUME_WINDOW_NS) if tss else 0
        vols = list(map(str, self.vols[j:]))
        q, b, tb = self.quote, self.book, self.tick_bar
        return {
            "ts": tss[j:],
            "volumes": vols,
            "returns": list(self.returns),
            "last_log": self.last_log,
            "start_ts": self.start_ts,
            "has_bars": self.has_bars,
            "quote": None if q is None else [q.id, q.ts_event, q.ts_recv, str(q.bid), str(q.bid_size), str(q.ask),
                                             str(q.ask_size)],
            "book": None if b is None else [b.id, b.ts_event, b.ts_recv, [[str(p), str(s)] for p, s in b.bids],
                                            [[str(p), str(s)] for p, s in b.asks]],
            "tick_bar": None if tb is None else [tb[0], str(tb[1]), str(tb[2])],
        }

    @classmethod
    def from_state(cls, symbol: str, st: dict[str, Any]) -> SymbolMarket:
        m = cls()
        m.tss = [int(t) for t in st["ts"]]
        m.vols = [Decimal(v) for v in st["volumes"]]
        m.cum = list(accumulate(m.vols))
        m.returns = deque((float(r) for r in st["returns"]), maxlen=RETURNS)
        m.last_log = st["last_log"]
        m.start_ts = st["start_ts"]
        m.has_bars = bool(st["has_bars"])
        q = st.get("quote")
        if q:
            m.quote = QuoteTick(id=q[0], ts_event=q[1], ts_recv=q[2], symbol=symbol, bid=Decimal(q[3]),
                                bid_size=Decimal(q[4]), ask=Decimal(q[5]), ask_size=Decimal(q[6]))
        b = st.get("book")
        if b:
            m.book = BookDepth(id=b[0], ts_event=b[1], ts_recv=b[2], symbol=symbol,
                               bids=tuple((Decimal(p), Decimal(s)) for p, s in b[3]),
                               asks=tuple((Decimal(p), Decimal(s)) for p, s in b[4]))
        tb = st.get("tick_bar")
        if tb:
            m.tick_bar = [int(tb[0]), Decimal(tb[1]), Decimal(tb[2])]
        return m


class MarketContext:
    """Every symbol's :class:`SymbolMarket`, fed in event order (see the module doc)."""

    def __init__(self) -> None:
        self.symbols: dict[str, SymbolMarket] = {}

    def symbol(self, symbol: str) -> SymbolMarket:
        m = self.symbols.get(symbol)
        if m is None:
            m = self.symbols[symbol] = SymbolMarket()
        return m

    def on_bar(self, bar: Bar) -> None:
        """The hot path: the bar is appended, processed later (see the module doc)."""
        m = self.symbols.get(bar.symbol)
        if m is None:
            m = self.symbol(bar.symbol)
            m.has_bars = True
        pending = m.pending
        pending.append(bar)
        if len(pending) >= CATCH_UP_EVERY:
            m.catch_up()

    def on_trade(self, tick: TradeTick) -> None:
        m = self.symbol(tick.symbol)
        if not m.has_bars:
            m.tick(tick.symbol, tick.ts_event, tick.price, tick.size)

    def on_quote(self, quote: QuoteTick) -> None:
        m = self.symbol(quote.symbol)
        m.quote = quote
        if not m.has_bars:
            m.tick(quote.symbol, quote.ts_event, quote.price, ZERO)

    def on_book(self, book: BookDepth) -> None:
        self.symbol(book.symbol).book = book

    def figures(self, symbol: str, now: int) -> dict[str, Any]:
        """The figures stamped into a signal of ``symbol`` at event time ``now``."""
        m = self.symbols.get(symbol) or self.symbol(symbol)
        tb = m.tick_bar
        if tb is None:
            return m.figures(now)
        # ticks: the minute in progress counts up to now; the windows go on without it
        m.catch_up()
        saved = (list(m.tss), list(m.cum), list(m.vols), deque(m.returns, maxlen=RETURNS), m.last_log, m.start_ts,
                 m.trim_at)
        m.pending.append(Bar(id="", ts_event=max(now, tb[0] * NS_PER_MIN + 1), ts_recv=now, symbol=symbol,
                             interval_s=60, open=tb[1], high=tb[1], low=tb[1], close=tb[1], volume=tb[2]))
        out = m.figures(now)
        m.tss, m.cum, m.vols, m.returns, m.last_log, m.start_ts, m.trim_at = saved
        return out

    def get_state(self) -> dict[str, Any]:
        return {sym: m.get_state() for sym, m in self.symbols.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.symbols = {sym: SymbolMarket.from_state(sym, st) for sym, st in state.items()}


class PriceAfter:
    """Fills waiting for the next price of their symbol (``execution_analysis.price_after``): the
    close of the symbol's next bar, the mid of its next quote or the price of its next trade with
    an event time after the fill's. Fed in event order; :meth:`take` hands over the resolved ones
    as ``(fill id, price as text, event time of the price)``."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[tuple[str, int]]] = {}
        self.resolved: list[tuple[str, str, int]] = []

    def on_fill(self, fill_id: str, symbol: str, ts: int) -> None:
        self.waiting.setdefault(symbol, []).append((fill_id, ts))

    def on_price(self, symbol: str, ts: int, price: Decimal) -> None:
        """A price of ``symbol`` at ``ts`` (call it only when ``symbol in self.waiting``)."""
        fills = self.waiting[symbol]
        keep = [f for f in fills if f[1] >= ts]
        if len(keep) == len(fills):
            return
        text = str(price)
        self.resolved.extend((fid, text, ts) for fid, fts in fills if fts < ts)
        if keep:
            self.waiting[symbol] = keep
        else:
            del self.waiting[symbol]

    def take(self) -> list[tuple[str, str, int]]:
        out, self.resolved = self.resolved, []
        return out

    def get_state(self) -> dict[str, Any]:
        return {"waiting": {s: [list(f) for f in fs] for s, fs in self.waiting.items()},
                "resolved": [list(r) for r in self.resolved]}

    def set_state(self, st: dict[str, Any]) -> None:
        self.waiting = {s: [(str(i), int(t)) for i, t in fs] for s, fs in st.get("waiting", {}).items()}
        self.resolved = [(str(i), str(p), int(t)) for i, p, t in st.get("resolved", [])]

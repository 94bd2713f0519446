"""MEXC wire frames -> claire events (pure functions, no I/O).

- aggregated deals (``publicAggreDeals``, also the older ``publicDeals``) -> :class:`TradeTick`
  (``ts_event`` = the deal time, aggressor from ``tradeType``: 1 buy, 2 sell);
- aggregated bookTicker (``publicAggreBookTicker``, also ``publicBookTicker`` and the batch)
  -> :class:`QuoteTick` (``ts_event`` = the push's ``sendTime``);
- limit depth (``publicLimitDepths``) -> :class:`BookTop`, a top-N book snapshot;
- kline (``publicSpotKline``) -> :class:`KlineUpdate`, the candle in progress (MEXC sends no
  "closed" flag: :mod:`claire.adapters.mexc.feed` decides when a candle is final);
- REST kline rows -> :class:`~claire.events.Bar` (:func:`bar_from_rest`).

Prices and quantities go from the wire's decimal strings straight to ``Decimal``. Ids are
derived from the content only (a replay of a recording gives the same ids):
bars ``bar:SYM:60:<close ns>`` (as the feather reader names them), trades ``trade:SYM:<tradeId>``
when MEXC sends one, else ``trade:SYM:<time ms>-<side>-<qty>-<price>`` (``#k`` appended for the
k-th repeat inside one frame), quotes ``quote:SYM:<sendTime ms>`` (``:<version>`` when sent),
books ``book:SYM:<sendTime ms>:<version>``. ``ts_recv`` is always the local receive time passed in.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from claire.adapters.mexc import mexc_pb2 as pb
from claire.adapters.mexc.models import SymbolRules
from claire.events import Bar, BookDepth, InstrumentRules, QuoteTick, Side, TradeTick
from claire.events.time import NS_PER_SEC

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000

# WebSocket kline intervals (MEXC's spelling) and their REST spelling (note 60m, 1W)
WS_INTERVAL_S = {"Min1": 60, "Min5": 300, "Min15": 900, "Min30": 1800, "Min60": 3600, "Hour4": 14_400,
                 "Hour8": 28_800, "Day1": 86_400, "Week1": 604_800}
WS_INTERVAL = {s: name for name, s in WS_INTERVAL_S.items()}
REST_INTERVAL = {60: "1m", 300: "5m", 900: "15m", 1800: "30m", 3600: "60m", 14_400: "4h", 86_400: "1d",
                 604_800: "1W"}
REST_INTERVAL_S = {name: s for s, name in REST_INTERVAL.items()}

_BUY, _SELL = Side.BUY, Side.SELL
# the sides' texts for trade ids, read once (``Side.BUY.value`` goes through the enum's descriptor, slow per deal)
_BUY_TEXT, _SELL_TEXT = _BUY.value, _SELL.value

#: at most this many price strings -> Decimal kept per codec (emptied when full: bounded, no LRU upkeep)
PRICE_CACHE_SIZE = 4096


# --- topics ------------------------------------------------------------------------------


def kline_topic(symbol: str, interval: str = "Min1") -> str:
    return f"spot@public.kline.v3.api.pb@{symbol}@{interval}"


def deals_topic(symbol: str, rate: str = "100ms") -> str:
    return f"spot@public.aggre.deals.v3.api.pb@{rate}@{symbol}"


def book_ticker_topic(symbol: str, rate: str = "100ms") -> str:
    return f"spot@public.aggre.bookTicker.v3.api.pb@{rate}@{symbol}"


def depth_topic(symbol: str, levels: int = 5) -> str:
    return f"spot@public.limit.depth.v3.api.pb@{symbol}@{levels}"


CHANNELS = ("kline", "deals", "book", "depth")


def topics_for(symbol: str, channels: tuple[str, ...] | list[str] = CHANNELS) -> list[str]:
    """The topics of one symbol, in a fixed order (kline first)."""
    make = {"kline": kline_topic, "deals": deals_topic, "book": book_ticker_topic, "depth": depth_topic}
    unknown = [c for c in channels if c not in make]
    if unknown:
        raise ValueError(f"unknown MEXC channel(s) {unknown}; known: {', '.join(make)}")
    return [make[c](symbol) for c in channels]


def symbol_of_channel(channel: str) -> str | None:
    """The symbol named by a push channel/topic (``None`` when it names none)."""
    parts = channel.split("@")
    if len(parts) < 3:
        return None
    # kline and limit depth: ...@SYM@Min1 / ...@SYM@5; aggregated streams: ...@100ms@SYM
    if parts[1].startswith(("public.kline.", "public.limit.depth.")):
        return parts[2]
    return parts[-1]


# --- decoded structures ------------------------------------------------------------------


class KlineUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One kline push: the candle of ``[window_start, window_end)`` as it stands (ms)."""

    symbol: str
    interval_s: int
    window_start: int  # ms
    window_end: int  # ms
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal  # base quantity
    amount: Decimal  # quote quantity
    ts_event: int  # ns: the push's exchange time
    ts_recv: int

    def to_bar(self, ts_recv: int | None = None) -> Bar:
        """The candle as a :class:`Bar` (``ts_event`` its close time), named like the file bars."""
        close_ns = self.window_start * NS_PER_MS + self.interval_s * NS_PER_SEC
        return Bar(id=f"bar:{self.symbol}:{self.interval_s}:{close_ns}", ts_event=close_ns,
                   ts_recv=self.ts_recv if ts_recv is None else ts_recv, symbol=self.symbol,
                   interval_s=self.interval_s, open=self.open, high=self.high, low=self.low, close=self.close,
                   volume=self.volume)


Level = tuple[Decimal, Decimal]  # (price, quantity)


class BookTop(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A top-N order book snapshot (limit depth push or REST depth): best level first."""

    id: str
    symbol: str
    ts_event: int
    ts_recv: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    version: str = ""

    @property
    def best_bid(self) -> Level | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> Level | None:
        return self.asks[0] if self.asks else None


Decoded = TradeTick | QuoteTick | BookTop | KlineUpdate


# --- frames ------------------------------------------------------------------------------


def parse_frame(data: bytes) -> pb.PushDataWrapper:
    """The protobuf envelope of one binary push (unknown fields skipped)."""
    return pb.PushDataWrapper.FromString(data)


def _push_ms(msg: Any) -> int:  # a pb.PushDataWrapper
    """The push's send time when sent (even 0), else its create time (0 when absent too), ms."""
    push_ms: int = msg.send_time  # read once, HasField only for a 0
    if not push_ms and not msg.HasField("send_time"):
        push_ms = msg.create_time
    return push_ms


def _levels(items: Any) -> tuple[Level, ...]:
    return tuple((Decimal(i.price), Decimal(i.quantity)) for i in items)


class MexcCodec:
    """Decodes binary pushes into events; counts what it had to skip in ``skipped``.

    Prices repeat from push to push (a market trades and quotes at the same few ticks for a
    while), so the codec keeps the ``Decimal`` of each recent price string (``_prices``, at most
    :data:`PRICE_CACHE_SIZE`, emptied when full). ``Decimal(text)`` is exact and a ``Decimal`` is
    immutable, so a cached one is the very value a fresh parse gives. Quantities vary far more
    and are parsed every time.
    """

    __slots__ = ("_prices", "frames", "skipped")

    def __init__(self) -> None:
        self.frames = 0
        self.skipped: Counter[str] = Counter()
        self._prices: dict[str, Decimal] = {}

    def _price(self, text: str) -> Decimal:
        """``Decimal(text)``, from the cache of recent prices when it is there (raises as ``Decimal`` does)."""
        price = self._prices.get(text)
        if price is None:
            price = Decimal(text)
            if len(self._prices) >= PRICE_CACHE_SIZE:
                self._prices.clear()
            self._prices[text] = price
        return price

    def decode(self, data: bytes, ts_recv: int) -> list[Decoded]:
        """The events of one binary frame received at ``ts_recv`` (ns)."""
        self.frames += 1
        try:
            msg = pb.PushDataWrapper.FromString(data)
        except Exception as exc:  # protobuf's DecodeError: a broken frame
            self.skipped["undecodable frame"] += 1
            log.warning("MEXC: cannot decode a binary frame (%d bytes): %s", len(data), exc)
            return []
        return self.decode_message(msg, ts_recv)

    def decode_message(self, msg: pb.PushDataWrapper, ts_recv: int) -> list[Decoded]:
        body = msg.WhichOneof("body")
        # each read of a field of a upb message builds a new Python object: read the common case
        # (a symbol, a send time) once and ask HasField only when the value is the default
        symbol = msg.symbol
        if not symbol and not msg.HasField("symbol"):
            symbol = symbol_of_channel(msg.channel)
        if not symbol:
            self.skipped["no symbol"] += 1
            return []
        if body == "public_aggre_deals" or body == "public_deals":  # deals carry their own times
            # deals[:] is a list of the deals: iterating the container itself ends on an IndexError
            # whose message upb formats, once per frame
            return self._deals(symbol, getattr(msg, body).deals[:], ts_recv)
        push_ms = _push_ms(msg)
        try:
            if body == "public_aggre_book_ticker":
                q = msg.public_aggre_book_ticker
                return self._quote(symbol, q, q.version, push_ms, ts_recv)
            if body == "public_book_ticker":
                return self._quote(symbol, msg.public_book_ticker, "", push_ms, ts_recv)
            if body == "public_spot_kline":
                return self._kline(symbol, msg.public_spot_kline, push_ms, ts_recv)
            if body == "public_limit_depths":
                d = msg.public_limit_depths
                ts = push_ms * NS_PER_MS if push_ms else ts_recv
                return [BookTop(id=f"book:{symbol}:{push_ms}:{d.version}", symbol=symbol, ts_event=ts,
                                ts_recv=ts_recv, bids=_levels(d.bids), asks=_levels(d.asks), version=d.version)]
            if body == "public_book_ticker_batch":
                out: list[Decoded] = []
                for item in msg.public_book_ticker_batch.items:
                    out.extend(self._quote(symbol, item, "", push_ms, ts_recv))
                return out
        except (InvalidOperation, ValueError) as exc:
            self.skipped[f"invalid {body}"] += 1
            log.warning("MEXC: skipped an invalid %s push of %s: %s", body, symbol, exc)
            return []
        self.skipped[f"body {body}"] += 1
        return []

    def _deals(self, symbol: str, deals: list[Any], ts_recv: int) -> list[Decoded]:
        # the hot path of the live feed: every field of a deal is read once (each read builds a
        # new Python object), prices come from the cache, the id prefix is built once per frame
        out: list[Decoded] = []
        append = out.append
        prefix = f"trade:{symbol}:"
        prices = self._prices
        seen: dict[str, int] | None = None
        for d in deals:
            tt = d.trade_type
            if tt == 1:
                side, side_text = _BUY, _BUY_TEXT
            elif tt == 2:
                side, side_text = _SELL, _SELL_TEXT
            else:
                self.skipped["deal without side"] += 1
                continue
            price_text = d.price
            qty_text = d.quantity
            time_ms = d.time
            key = d.trade_id
            if not key:  # no trade id: one from the content, "#k" on its k-th repeat inside the frame
                key = f"{time_ms}-{side_text}-{qty_text}-{price_text}"
                if seen is None:
                    seen = {key: 1}
                elif key in seen:
                    k = seen[key]
                    seen[key] = k + 1
                    key = f"{key}#{k}"
                else:
                    seen[key] = 1
            try:
                price = prices[price_text] if price_text in prices else self._price(price_text)
                append(TradeTick(id=prefix + key, ts_event=time_ms * NS_PER_MS, ts_recv=ts_recv, symbol=symbol,
                                 price=price, size=Decimal(qty_text), aggressor=side, trade_id=key))
            except (InvalidOperation, ValueError):
                self.skipped["invalid deal"] += 1
        return out

    def _quote(self, symbol: str, q: Any, version: str, push_ms: int, ts_recv: int) -> list[Decoded]:
        qid = f"quote:{symbol}:{push_ms}:{version}" if version else f"quote:{symbol}:{push_ms}"
        prices = self._prices
        try:
            bid_text = q.bid_price
            bid = prices[bid_text] if bid_text in prices else self._price(bid_text)
            bid_size = Decimal(q.bid_quantity)
            ask_text = q.ask_price
            ask = prices[ask_text] if ask_text in prices else self._price(ask_text)
            return [QuoteTick(id=qid, ts_event=push_ms * NS_PER_MS if push_ms else ts_recv, ts_recv=ts_recv,
                              symbol=symbol, bid=bid, bid_size=bid_size, ask=ask, ask_size=Decimal(q.ask_quantity))]
        except (InvalidOperation, ValueError):  # an empty side ("" or 0): no quote
            self.skipped["invalid quote"] += 1
            return []

    def _kline(self, symbol: str, k: Any, push_ms: int, ts_recv: int) -> list[Decoded]:
        interval_s = WS_INTERVAL_S.get(k.interval)
        if interval_s is None:
            self.skipped[f"kline interval {k.interval}"] += 1
            return []
        start_ms = k.window_start * 1000
        return [KlineUpdate(symbol=symbol, interval_s=interval_s, window_start=start_ms,
                            window_end=k.window_end * 1000 if k.window_end else start_ms + interval_s * 1000,
                            open=Decimal(k.opening_price), high=Decimal(k.highest_price),
                            low=Decimal(k.lowest_price), close=Decimal(k.closing_price),
                            volume=Decimal(k.volume or "0"), amount=Decimal(k.amount or "0"),
                            ts_event=push_ms * NS_PER_MS if push_ms else ts_recv, ts_recv=ts_recv)]


_default = MexcCodec()


def decode_frame(data: bytes, ts_recv: int) -> list[Decoded]:
    """Decode one binary push with a module-wide codec (see :class:`MexcCodec`)."""
    return _default.decode(data, ts_recv)


# --- REST shapes -------------------------------------------------------------------------


def _dec(x: Any) -> Decimal:
    if isinstance(x, Decimal):
        return x
    if isinstance(x, str):
        return Decimal(x)
    if isinstance(x, int):
        return Decimal(x)
    raise ValueError(f"expected a decimal string, got {x!r}")


def bar_from_rest(symbol: str, row: list[Any], interval_s: int, ts_recv: int) -> Bar:
    """One REST kline row ``[open ms, o, h, l, c, volume, close ms, quote volume]`` as a Bar."""
    open_ms = int(row[0])
    close_ns = open_ms * NS_PER_MS + interval_s * NS_PER_SEC
    return Bar(id=f"bar:{symbol}:{interval_s}:{close_ns}", ts_event=close_ns, ts_recv=ts_recv, symbol=symbol,
               interval_s=interval_s, open=_dec(row[1]), high=_dec(row[2]), low=_dec(row[3]), close=_dec(row[4]),
               volume=_dec(row[5]))


def book_from_rest(symbol: str, body: dict[str, Any], ts_recv: int) -> BookTop:
    """A REST depth snapshot (``lastUpdateId`` int or str; ``timestamp`` optional)."""
    version = str(body.get("lastUpdateId", ""))
    ts = body.get("timestamp")
    ts_event = int(ts) * NS_PER_MS if ts is not None else ts_recv
    return BookTop(id=f"book:{symbol}:rest:{version}", symbol=symbol, ts_event=ts_event, ts_recv=ts_recv,
                   bids=tuple((_dec(p), _dec(q)) for p, q, *_ in body.get("bids", [])),
                   asks=tuple((_dec(p), _dec(q)) for p, q, *_ in body.get("asks", [])), version=version)


# --- into the core (plain data: the core never imports this package) ----------------------


def _side(levels: tuple[Level, ...], best_high: bool, depth: int) -> tuple[Level, ...]:
    """Levels best first, empty ones dropped, one per price (sizes of a repeated price added)."""
    merged: dict[Decimal, Decimal] = {}
    for price, size in levels:
        if price > 0 and size > 0:
            merged[price] = merged.get(price, Decimal(0)) + size
    return tuple(sorted(merged.items(), reverse=best_high)[:depth])


def book_depth(book: BookTop, depth: int = 5) -> BookDepth:
    """The feed's :class:`BookTop` as the core's :class:`~claire.events.BookDepth` (the top
    ``depth`` levels per side; same id, ``ts_event`` and ``ts_recv``), for the paper exchange's
    fills beyond the best level: ``core.on_book(book_depth(b))`` (in event-time order with the
    other market events)."""
    return BookDepth(id=book.id, ts_event=book.ts_event, ts_recv=book.ts_recv, symbol=book.symbol,
                     bids=_side(book.bids, True, depth), asks=_side(book.asks, False, depth))


def instrument_rules(rules: SymbolRules) -> InstrumentRules:
    """One symbol's exchangeInfo rules as the core's :class:`~claire.events.InstrumentRules`."""
    return InstrumentRules(tick=rules.tick_size, step=rules.step_size, min_qty=rules.min_qty,
                           min_notional=rules.min_notional, trading=rules.trading, status=rules.status_text)


def instrument_rules_of(rules: Mapping[str, SymbolRules]) -> dict[str, InstrumentRules]:
    """The feed's ``rules`` (symbol -> :class:`SymbolRules`) for ``RunConfig(rules=...)``."""
    return {sym: instrument_rules(r) for sym, r in rules.items()}


# --- benchmark ---------------------------------------------------------------------------


def sample_frames(n_deals: int = 3, price_ticks: int = 0) -> dict[str, bytes]:
    """Realistic deals and bookTicker pushes built with the generated classes (for the benchmark).

    The deals frame: ``n_deals`` deals of BTCUSDT (alternately buy and sell, no trade id) at
    93220.00 + ``price_ticks`` cents, one cent apart."""
    deals = pb.PushDataWrapper(channel=deals_topic("BTCUSDT"), symbol="BTCUSDT", send_time=1736409765052)
    body = deals.public_aggre_deals
    body.event_type = "spot@public.aggre.deals.v3.api.pb@100ms"
    for i in range(n_deals):
        cents = 9_322_000 + price_ticks + i
        body.deals.add(price=f"{cents // 100}.{cents % 100:02d}", quantity="0.04438243", trade_type=1 + i % 2,
                       time=1736409765051 + i)
    book = pb.PushDataWrapper(channel=book_ticker_topic("BTCUSDT"), symbol="BTCUSDT", send_time=1736412092433)
    book.public_aggre_book_ticker.CopyFrom(pb.AggreBookTicker(bid_price="93387.28", bid_quantity="3.73485",
                                                              ask_price="93387.29", ask_quantity="7.669875"))
    return {"deals": deals.SerializeToString(), "bookTicker": book.SerializeToString()}


def bench_decode(frames: int = 100_000, n_deals: int = 3) -> dict[str, Any]:
    """Frames decoded per second into events, for deals (``n_deals`` per frame) and bookTicker."""
    codec = MexcCodec()
    out: dict[str, Any] = {"frames": frames, "deals_per_frame": n_deals}
    for name, data in sample_frames(n_deals).items():
        decode = codec.decode
        t0 = time.perf_counter()
        for i in range(frames):
            decode(data, i)
        dt = time.perf_counter() - t0
        out[f"{name}_frames_per_s"] = round(frames / dt)
    return out


if __name__ == "__main__":  # python -m claire.adapters.mexc.codec
    import json

    print(json.dumps(bench_decode()))

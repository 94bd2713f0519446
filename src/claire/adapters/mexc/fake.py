"""``claire mexc-fake``: a local stand-in for MEXC's public spot API (REST and WebSocket).

It serves bundled 1m bar files (read with :func:`claire.marketdata.open_market_data`) in MEXC's
wire formats: REST JSON shaped like the real responses, binary protobuf pushes built with the
same generated classes the client decodes, JSON acks and PONG, and the "Blocked" reply for a
topic that is not a ``.pb`` one (or is configured as blocked).

Time: the first ``history`` bars are the past (served by REST klines only); from there the
exchange clock runs at ``speed`` bars per wall-clock second, with the files' own timestamps
(``/api/v3/time`` tells it). Each bar is served in ``steps`` sub-steps; each sub-step pushes, for
every symbol with a bar: a kline update (the candle so far: open, then the extreme prices, the
last one the final bar), an aggregated deals push (two deals at the step's price), a bookTicker
and a top-5 limit depth, all deterministic functions of the bar.

Fault injection: ``disconnect_every_bars`` (the server closes every socket each N bars),
``skip_kline_bars`` (bar numbers, counted from the first streamed bar, whose kline pushes are not
sent), ``blocked_topics`` ("Blocked" reply), ``rest_429_every`` (every Nth REST request gets 429
with ``Retry-After: retry_after``), ``silent_at_bar`` (the sockets open then stay open and go
silent), ``paused_symbols`` (exchangeInfo status "2").

Run it with ``python -m claire.adapters.mexc.fake --data data/BTC_USDT-1m.feather`` (the CLI
command ``claire mexc-fake`` will call :func:`main`); it prints its URLs as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from claire.adapters.mexc import mexc_pb2 as pb
from claire.adapters.mexc.codec import (
    REST_INTERVAL_S,
    book_ticker_topic,
    deals_topic,
    depth_topic,
    kline_topic,
)
from claire.events import Bar
from claire.marketdata import open_market_data

log = logging.getLogger(__name__)

STEP_MS = 60_000
Q8 = Decimal("0.00000001")
BLOCKED = "Not Subscribed successfully! [{}].  Reason： Blocked! "
_BAD_SYMBOL = ({"code": -1121, "msg": "Invalid symbol."}, 400)
# the market data paths that need a symbol
_MARKET_PATHS = ("/api/v3/klines", "/api/v3/depth", "/api/v3/ticker/24hr", "/api/v3/ticker/bookTicker",
                 "/api/v3/ticker/price", "/api/v3/avgPrice")


def _f(d: Decimal) -> str:
    """Plain decimal text (no exponent), as MEXC sends it."""
    return format(d, "f")


def _places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


@dataclass(slots=True)
class _Sym:
    symbol: str
    bars: dict[int, Bar]  # open ms -> bar
    price_dp: int
    qty_dp: int

    @property
    def tick(self) -> Decimal:
        return Decimal(1).scaleb(-self.price_dp)


@dataclass(slots=True)
class _Conn:
    ws: Any
    topics: set[str] = field(default_factory=set)
    silent: bool = False
    opened: float = field(default_factory=time.monotonic)


class FakeMexc:
    """The fake exchange; ``await start()`` then use ``rest_url``/``ws_url``; ``await stop()``."""

    def __init__(self, paths: Iterable[str | Path] | None = None, *, bars: dict[str, list[Bar]] | None = None,
                 speed: float = 10.0, history: int = 100, steps: int = 4, disconnect_every_bars: int | None = None,
                 skip_kline_bars: Iterable[int] = (), blocked_topics: Iterable[str] = (),
                 rest_429_every: int | None = None, retry_after: float = 1.0, silent_at_bar: int | None = None,
                 paused_symbols: Iterable[str] = (), idle_close_s: float = 30.0) -> None:
        if bars is None:
            if paths is None:
                raise ValueError("give bar files (paths) or bars")
            bars = {}
            for ev in open_market_data(list(paths)):
                if not isinstance(ev, Bar):
                    raise ValueError(f"the fake serves 1m bar files (.feather), got a {type(ev).__name__}")
                bars.setdefault(ev.symbol, []).append(ev)
        if speed <= 0:
            raise ValueError("speed must be > 0 (bars per second)")
        if steps < 1:
            raise ValueError("steps must be >= 1")
        self.syms: dict[str, _Sym] = {}
        for sym, blist in bars.items():
            if any(b.interval_s != 60 for b in blist):
                raise ValueError(f"{sym}: the fake serves 1m bars only")
            sample = blist[:2000]
            pdp = max((_places(x) for b in sample for x in (b.open, b.high, b.low, b.close)), default=2)
            qdp = max((_places(b.volume) for b in sample), default=6)
            self.syms[sym] = _Sym(sym, {b.ts_open // 1_000_000: b for b in blist}, min(pdp, 8), min(max(qdp, 2), 8))
        self.timeline = sorted({o for s in self.syms.values() for o in s.bars})
        if len(self.timeline) <= history:
            raise ValueError(f"{len(self.timeline)} bars are not more than history={history}")
        self.history = history
        self.start_ms = self.timeline[history]
        self.speed = speed
        self.steps = steps
        self.step_ms = STEP_MS / steps
        self.disconnect_every_bars = disconnect_every_bars
        self.skip_kline_bars = set(skip_kline_bars)
        self.blocked_topics = set(blocked_topics)
        self.rest_429_every = rest_429_every
        self.retry_after = retry_after
        self.silent_at_bar = silent_at_bar
        self.paused_symbols = {s.upper() for s in paused_symbols}
        self.idle_close_s = idle_close_s
        self.conns: list[_Conn] = []
        # counters and logs the tests look at
        self.rest_requests = 0
        self.rest_log: list[tuple[float, str, dict[str, str], int]] = []  # (monotonic, path, query, status)
        self.ws_connections = 0
        self.disconnects = 0
        self.client_messages = 0
        self.pings = 0
        self.pushes = 0
        self._t0: float | None = None
        self._runner: Any = None
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0  # global sub-step counter from start_ms
        self._silenced = False
        self._valid: set[str] | None = None
        self.rest_url = ""
        self.ws_url = ""

    # --- clock ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The exchange's current time (ms)."""
        if self._t0 is None:
            return self.start_ms
        return self.start_ms + int((time.monotonic() - self._t0) * self.speed * STEP_MS)

    def bar_number(self, open_ms: int) -> int:
        """The position of a bar counted from the first streamed one (0)."""
        return bisect.bisect_left(self.timeline, open_ms) - self.history

    # --- the bar's path ------------------------------------------------------------------

    def _path(self, b: Bar) -> list[Decimal]:
        x, y = (b.low, b.high) if b.close >= b.open else (b.high, b.low)
        return [b.open, x, y, b.close]

    def _state(self, s: _Sym, b: Bar, j: int) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(price, high, low, close, volume) of bar ``b`` after sub-step ``j``."""
        path = self._path(b)
        if j >= self.steps - 1:
            return b.close, b.high, b.low, b.close, b.volume
        k = (j * 3) // max(1, self.steps - 1)
        seen = path[:k + 1]
        p = path[k]
        vol = (b.volume * (j + 1) / self.steps).quantize(Decimal(1).scaleb(-s.qty_dp))
        return p, max(seen), min(seen), p, vol

    def _kline_msg(self, s: _Sym, b: Bar, j: int, t: int) -> bytes:
        o = b.ts_open // 1_000_000
        _p, h, lo, c, v = self._state(s, b, j)
        m = pb.PushDataWrapper(channel=kline_topic(s.symbol), symbol=s.symbol, create_time=t)
        k = m.public_spot_kline
        k.interval = "Min1"
        k.window_start = o // 1000
        k.window_end = (o + STEP_MS) // 1000
        k.opening_price, k.closing_price, k.highest_price, k.lowest_price = _f(b.open), _f(c), _f(h), _f(lo)
        k.volume = _f(v)
        k.amount = _f((v * c).quantize(Decimal("0.01")))
        return m.SerializeToString()

    def _deal_qty(self, s: _Sym, b: Bar) -> Decimal:
        q = (b.volume / (2 * self.steps)).quantize(Decimal(1).scaleb(-s.qty_dp))
        return q if q > 0 else Decimal(1).scaleb(-s.qty_dp)

    def _deals_msg(self, s: _Sym, b: Bar, j: int, t: int) -> bytes:
        p = self._state(s, b, j)[0]
        prev = self._state(s, b, j - 1)[0] if j > 0 else b.open
        side = 1 if p >= prev else 2
        q = self._deal_qty(s, b)
        m = pb.PushDataWrapper(channel=deals_topic(s.symbol), symbol=s.symbol, send_time=t + 2)
        body = m.public_aggre_deals
        body.event_type = "spot@public.aggre.deals.v3.api.pb@100ms"
        body.deals.add(price=_f(p), quantity=_f(q), trade_type=side, time=t)
        body.deals.add(price=_f(p), quantity=_f(q), trade_type=3 - side, time=t + 1)
        return m.SerializeToString()

    def _book(self, s: _Sym, b: Bar, j: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        p = self._state(s, b, j)[0]
        tick = s.tick
        bids = [(_f(p - k * tick), f"{k + 1}.{j}") for k in range(5) if p - k * tick > 0]
        asks = [(_f(p + (k + 1) * tick), f"{k + 2}.{j}") for k in range(5)]
        return bids, asks

    def _book_msg(self, s: _Sym, b: Bar, j: int, t: int) -> bytes:
        bids, asks = self._book(s, b, j)
        m = pb.PushDataWrapper(channel=book_ticker_topic(s.symbol), symbol=s.symbol, send_time=t)
        bt = m.public_aggre_book_ticker
        bt.bid_price, bt.bid_quantity = bids[0]
        bt.ask_price, bt.ask_quantity = asks[0]
        return m.SerializeToString()

    def _depth_msg(self, s: _Sym, b: Bar, j: int, t: int, version: int) -> bytes:
        bids, asks = self._book(s, b, j)
        m = pb.PushDataWrapper(channel=depth_topic(s.symbol), symbol=s.symbol, send_time=t)
        d = m.public_limit_depths
        d.event_type = "spot@public.limit.depth.v3.api.pb"
        d.version = str(version)
        for p, q in bids:
            d.bids.add(price=p, quantity=q)
        for p, q in asks:
            d.asks.add(price=p, quantity=q)
        return m.SerializeToString()

    # --- pushing -------------------------------------------------------------------------

    def _step_time(self, g: int) -> tuple[int, int, int]:
        """(bar open ms, sub-step j, base time ms) of global sub-step ``g``."""
        i, j = divmod(g, self.steps)
        idx = self.history + i
        if idx >= len(self.timeline):
            return -1, j, -1
        o = self.timeline[idx]
        return o, j, o + int(j * self.step_ms)

    async def _pusher(self) -> None:
        tick = max(0.001, min(0.01, 1.0 / (self.speed * self.steps * 4)))
        while True:
            now = self.now_ms()
            while True:
                o, j, base = self._step_time(self._cursor)
                if base < 0 or base + 10 > now:
                    break
                await self._emit_step(o, j, base)
                self._cursor += 1
            await asyncio.sleep(tick)

    async def _emit_step(self, o: int, j: int, base: int) -> None:
        n = self.bar_number(o)
        if j == 0:
            await self._bar_faults(n)
        # idle sockets without a subscription are closed, as MEXC does after 30 s
        mono = time.monotonic()
        for c in list(self.conns):
            if not c.topics and mono - c.opened > self.idle_close_s:
                await self._close(c, 1000, b"no subscription")
        await self._push(self._frames(o, j, base, n))

    async def _bar_faults(self, n: int) -> None:
        """The faults due at the start of bar ``n``: a silent exchange, a periodic disconnect."""
        if self.silent_at_bar is not None and n == self.silent_at_bar and not self._silenced:
            self._silenced = True
            for c in self.conns:
                c.silent = True
        if self.disconnect_every_bars and n > 0 and n % self.disconnect_every_bars == 0:
            for c in list(self.conns):
                if not c.silent:
                    self.disconnects += 1
                    await self._close(c, 1001, b"fake: periodic disconnect")

    def _frames(self, o: int, j: int, base: int, n: int) -> list[tuple[str, bytes]]:
        """(topic, push frame) of every symbol for step ``j`` of the bar opening at ``o``."""
        frames: list[tuple[str, bytes]] = []
        for s in self.syms.values():
            b = s.bars.get(o)
            if b is None:
                continue
            if n not in self.skip_kline_bars:
                frames.append((kline_topic(s.symbol), self._kline_msg(s, b, j, base + 1)))
            frames.append((deals_topic(s.symbol), self._deals_msg(s, b, j, base + 3)))
            frames.append((book_ticker_topic(s.symbol), self._book_msg(s, b, j, base + 7)))
            frames.append((depth_topic(s.symbol, 5), self._depth_msg(s, b, j, base + 9, self._cursor)))
        return frames

    async def _push(self, frames: list[tuple[str, bytes]]) -> None:
        for c in list(self.conns):
            if c.silent or c.ws.closed:
                continue
            for topic, data in frames:
                if topic in c.topics:
                    try:
                        await c.ws.send_bytes(data)
                        self.pushes += 1
                    except (ConnectionError, RuntimeError):
                        break

    # --- WebSocket -----------------------------------------------------------------------

    async def _close(self, c: _Conn, code: int, message: bytes) -> None:
        if c in self.conns:
            self.conns.remove(c)
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(c.ws.close(code=code, message=message), 1.0)

    def _topic_ok(self, topic: str) -> bool:
        if topic in self.blocked_topics or ".pb@" not in topic:
            return False
        if self._valid is None:
            valid: set[str] = set()
            for s in self.syms:
                valid.update((kline_topic(s), deals_topic(s), book_ticker_topic(s), depth_topic(s, 5),
                              deals_topic(s, "10ms"), book_ticker_topic(s, "10ms"), depth_topic(s, 10),
                              depth_topic(s, 20)))
            self._valid = valid
        return topic in self._valid

    async def _ws_handler(self, request: Any) -> Any:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(ws)
        self.conns.append(conn)
        self.ws_connections += 1
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                self.client_messages += 1
                if conn.silent:
                    continue
                try:
                    req = json.loads(msg.data)
                    method = str(req.get("method", ""))
                except (ValueError, AttributeError):
                    await ws.send_str(json.dumps({"id": 0, "code": 0, "msg": "Invalid JSON"}))
                    continue
                if method.upper() == "PING":
                    self.pings += 1
                    await ws.send_str('{"id":0,"code":0,"msg":"PONG"}')
                elif method in ("SUBSCRIPTION", "UNSUBSCRIPTION"):
                    topics = [str(t) for t in req.get("params") or []]
                    ok = [t for t in topics if self._topic_ok(t)]
                    bad = [t for t in topics if t not in ok]
                    if method == "SUBSCRIPTION":
                        conn.topics.update(ok)
                    else:
                        conn.topics.difference_update(ok)
                    if bad:
                        await ws.send_str(json.dumps({"id": 0, "code": 0, "msg": BLOCKED.format(",".join(bad))},
                                                     ensure_ascii=False))
                    if ok:
                        await ws.send_str(json.dumps({"id": 0, "code": 0, "msg": ",".join(ok)}))
                else:
                    await ws.send_str(json.dumps({"id": 0, "code": 0, "msg": f"unknown method {method!r}"}))
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
        return ws

    # --- REST ----------------------------------------------------------------------------

    def _visible(self, s: _Sym, now: int) -> list[int]:
        hi = bisect.bisect_right(self.timeline, now)
        return [o for o in self.timeline[:hi] if o in s.bars]

    def _row(self, s: _Sym, o: int, now: int) -> list[Any]:
        b = s.bars[o]
        if o + STEP_MS <= now:
            h, lo, c, v = b.high, b.low, b.close, b.volume
        else:  # the candle in progress
            j = min(self.steps - 1, int((now - o) // self.step_ms))
            _, h, lo, c, v = self._state(s, b, j)
        return [o, _f(b.open), _f(h), _f(lo), _f(c), _f(v), o + STEP_MS, _f((v * c).quantize(Decimal("0.01")))]

    def _current(self, s: _Sym, now: int) -> tuple[Bar | None, int]:
        i = bisect.bisect_right(self.timeline, now) - 1
        if i < 0:
            return None, 0
        o = self.timeline[i]
        b = s.bars.get(o)
        j = min(self.steps - 1, int((now - o) // self.step_ms))
        return b, j

    def _info(self, s: _Sym) -> dict[str, Any]:
        base = s.symbol[:-4] if s.symbol.endswith(("USDT", "USDC")) else s.symbol[:-3]
        quote = s.symbol[len(base):]
        return {"symbol": s.symbol, "status": "2" if s.symbol in self.paused_symbols else "1",
                "baseAsset": base, "baseAssetPrecision": s.qty_dp, "quoteAsset": quote,
                "quotePrecision": s.price_dp, "quoteAssetPrecision": s.price_dp,
                "baseCommissionPrecision": s.qty_dp, "quoteCommissionPrecision": s.price_dp,
                "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"], "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False, "quoteAmountPrecision": "1.000000000000000000000000000000",
                "baseSizePrecision": _f(Decimal(1).scaleb(-s.qty_dp)), "permissions": ["SPOT"], "filters": [],
                "maxQuoteAmount": "2000000.000000000000000000000000000000", "makerCommission": "0",
                "takerCommission": "0.0002", "quoteAmountPrecisionMarket": "1.000000000000000000000000000000",
                "maxQuoteAmountMarket": "200000.000000000000000000000000000000", "fullName": base,
                "tradeSideType": "1"}

    async def _rest_handler(self, request: Any) -> Any:
        path = request.path
        q = {k: v for k, v in request.query.items()}
        self.rest_requests += 1

        def reply(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
            self.rest_log.append((time.monotonic(), path, q, status))
            return web.json_response(obj, status=status, headers=headers)

        if self.rest_429_every and self.rest_requests % self.rest_429_every == 0:
            return reply({"code": 429, "msg": "Too Many Requests"}, 429,
                         {"Retry-After": f"{self.retry_after:g}"})
        now = self.now_ms()
        sym = q.get("symbol", "").upper() if "symbol" in q else None
        if path == "/api/v3/ping":
            return reply({})
        if path == "/api/v3/time":
            return reply({"serverTime": now})
        if path == "/api/v3/exchangeInfo":
            names = [sym] if sym else ([x.strip().upper() for x in q["symbols"].split(",")] if "symbols" in q
                                       else list(self.syms))
            if any(n not in self.syms for n in names):
                return reply(*_BAD_SYMBOL)
            return reply({"timezone": "CST", "serverTime": now, "rateLimits": [], "exchangeFilters": [],
                          "symbols": [self._info(self.syms[n]) for n in names]})
        if path not in _MARKET_PATHS:
            return reply({"code": -1, "msg": f"not served by the fake: {path}"}, 404)
        s = self.syms.get(sym) if sym else None
        if s is None:
            return reply(*_BAD_SYMBOL)
        if path == "/api/v3/klines":
            return reply(*self._klines(s, q, now))
        return reply(*self._market(path, s, q, now))

    def _klines(self, s: _Sym, q: dict[str, str], now: int) -> tuple[Any, int]:
        """(body, status) of GET /api/v3/klines."""
        interval = q.get("interval", "")
        if interval not in REST_INTERVAL_S:
            return {"code": -1121, "msg": "Invalid interval."}, 400
        if interval != "1m":
            return {"code": -1, "msg": "the fake serves 1m klines only"}, 400
        try:
            limit = min(1000, int(q.get("limit", 500)))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return {"code": -1100, "msg": "Illegal characters found in parameter."}, 400
        opens = self._visible(s, now)
        if start is not None:
            opens = [o for o in opens if o >= start]
        if end is not None:
            opens = [o for o in opens if o <= end]
        opens = opens[:limit] if start is not None else opens[-limit:]
        return [self._row(s, o, now) for o in opens], 200

    def _market(self, path: str, s: _Sym, q: dict[str, str], now: int) -> tuple[Any, int]:
        """(body, status) of the book and ticker requests."""
        b, j = self._current(s, now)
        if b is None:
            return {"code": -1, "msg": "no data yet"}, 400
        if path == "/api/v3/depth":
            bids, asks = self._book(s, b, j)
            limit = int(q.get("limit", 100))
            return {"lastUpdateId": str(self._cursor), "bids": [list(x) for x in bids[:limit]],
                    "asks": [list(x) for x in asks[:limit]], "timestamp": str(now)}, 200
        if path == "/api/v3/ticker/bookTicker":
            bids, asks = self._book(s, b, j)
            return {"symbol": s.symbol, "bidPrice": bids[0][0], "bidQty": bids[0][1],
                    "askPrice": asks[0][0], "askQty": asks[0][1]}, 200
        price = self._state(s, b, j)[0]
        if path == "/api/v3/ticker/price":
            return {"symbol": s.symbol, "price": _f(price)}, 200
        if path == "/api/v3/avgPrice":
            return {"mins": 5, "price": _f(price)}, 200
        return self._ticker_24h(s, b, j, price, now), 200

    def _ticker_24h(self, s: _Sym, b: Bar, j: int, price: Decimal, now: int) -> dict[str, Any]:
        """The 24h ticker over the last 1440 visible bars."""
        opens = self._visible(s, now)[-1440:]
        first = s.bars[opens[0]]
        rows = [self._row(s, o, now) for o in opens]
        bids, asks = self._book(s, b, j)
        change = price - first.open
        return {"symbol": s.symbol, "priceChange": _f(change),
                "priceChangePercent": _f((change / first.open).quantize(Decimal("0.0001"))),
                "prevClosePrice": _f(first.open), "lastPrice": _f(price), "bidPrice": bids[0][0],
                "bidQty": bids[0][1], "askPrice": asks[0][0], "askQty": asks[0][1],
                "openPrice": _f(first.open), "highPrice": max((r[2] for r in rows), key=Decimal),
                "lowPrice": min((r[3] for r in rows), key=Decimal),
                "volume": _f(sum((Decimal(r[5]) for r in rows), Decimal(0))),
                "quoteVolume": _f(sum((Decimal(r[7]) for r in rows), Decimal(0))),
                "openTime": str(opens[0]), "closeTime": str(now), "count": None}

    # --- lifecycle -----------------------------------------------------------------------

    def app(self) -> Any:
        app = web.Application()
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/api/v3/{tail:.*}", self._rest_handler)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> dict[str, str]:
        """Serve on ``host:port`` (0: a free port); the exchange clock starts now. Returns the URLs."""
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        bound = sockets[0].getsockname()[1]
        self.rest_url = f"http://{host}:{bound}"
        self.ws_url = f"ws://{host}:{bound}/ws"
        self._t0 = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._pusher(), name="mexc-fake-pusher")
        return {"rest_url": self.rest_url, "ws_url": self.ws_url}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for c in list(self.conns):
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(c.ws.close(code=1001, message=b"fake: shutting down"), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeMexc:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_fake(paths: Sequence[str | Path], *, host: str = "127.0.0.1", port: int = 0,
                   out: Any = None, ready: asyncio.Event | None = None, **options: Any) -> None:
    """Serve until cancelled; prints ``{"rest_url": ..., "ws_url": ...}`` as one JSON line first."""
    fake = FakeMexc(paths, **options)
    urls = await fake.start(host, port)
    stream = out or sys.stdout
    stream.write(json.dumps({**urls, "symbols": list(fake.syms), "speed": fake.speed,
                             "history": fake.history}) + "\n")
    stream.flush()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="claire mexc-fake", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="1m bar file (.feather); repeat for symbols")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--speed", type=float, default=1.0, help="bars per second")
    ap.add_argument("--history", type=int, default=100, help="bars in the past (REST only)")
    ap.add_argument("--steps", type=int, default=4, help="kline pushes per bar")
    ap.add_argument("--disconnect-every-bars", type=int, default=None)
    ap.add_argument("--skip-kline", type=_ints, default=[], help="bar numbers without kline pushes, e.g. 5,9")
    ap.add_argument("--blocked-topic", action="append", default=[])
    ap.add_argument("--rest-429-every", type=int, default=None)
    ap.add_argument("--retry-after", type=float, default=1.0)
    ap.add_argument("--silent-at-bar", type=int, default=None)
    ap.add_argument("--paused-symbol", action="append", default=[])
    a = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_fake(a.data, host=a.host, port=a.port, speed=a.speed, history=a.history, steps=a.steps,
                             disconnect_every_bars=a.disconnect_every_bars, skip_kline_bars=a.skip_kline,
                             blocked_topics=a.blocked_topic, rest_429_every=a.rest_429_every,
                             retry_after=a.retry_after, silent_at_bar=a.silent_at_bar,
                             paused_symbols=a.paused_symbol))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

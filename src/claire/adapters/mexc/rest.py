"""MEXC spot V3 REST client for public market data (aiohttp). Market data only: no keys, no trading.

Endpoints: ``/api/v3/time``, ``/api/v3/exchangeInfo`` (-> :class:`SymbolRules`),
``/api/v3/klines`` (closed bars -> :class:`~claire.events.Bar`; REST interval spelling ``1m``,
``60m``, ``1W``), ``/api/v3/depth`` (-> :class:`BookTop`), ``/api/v3/ticker/24hr``
(-> :class:`Ticker24h`), ``/api/v3/ticker/bookTicker`` (-> :class:`~claire.events.QuoteTick`).

Limits: MEXC gives each endpoint a budget of 500 weight per 10 s; every endpoint here has its own
token bucket of ``budget`` weight per 10 s (200 by default, well under). A 429 or 418 answer
pauses every request of the client for its ``Retry-After`` seconds, then the request is retried
(``max_retries`` times; a pause longer than ``max_wait_s`` raises :class:`RateLimitError` at
once). Base URL: ``MEXC_REST_URL`` (default ``https://api.mexc.com``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from claire.adapters.mexc.capture import CaptureWriter
from claire.adapters.mexc.codec import REST_INTERVAL, REST_INTERVAL_S, BookTop, bar_from_rest, book_from_rest
from claire.adapters.mexc.models import (
    MexcApiError,
    RateLimitError,
    RestResponse,
    SymbolNotTradingError,
    SymbolRules,
    Ticker24h,
    TransportError,
    UnknownSymbolError,
)
from claire.events import Bar, QuoteTick

log = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://api.mexc.com"
NS_PER_MS = 1_000_000

# documented weights of the endpoints used (docs "Market Data Endpoints")
WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 10, "/api/v3/depth": 1,
           "/api/v3/klines": 1, "/api/v3/ticker/24hr": 1, "/api/v3/ticker/bookTicker": 1}
UNKNOWN_SYMBOL_CODES = frozenset({-1121, 10007, 30014, 30021})
NOT_TRADING_CODES = frozenset({30016})
KLINES_PAGE = 500  # docs say 1000, "in practice 500" (ccxt)

_json = msgspec.json.Decoder(float_hook=Decimal)  # a number the server sends unquoted stays exact


def rest_url() -> str:
    return os.environ.get("MEXC_REST_URL") or DEFAULT_REST_URL


class Transport(Protocol):
    async def get(self, path: str, params: dict[str, Any] | None = None) -> RestResponse: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """GET requests with aiohttp; the session is made on first use unless one is given."""

    def __init__(self, base_url: str | None = None, *, session: Any = None, timeout_s: float = 10.0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.base_url = (base_url or rest_url()).rstrip("/")
        self._session = session
        self._own_session = session is None
        self.timeout_s = timeout_s
        self.clock = clock

    async def _get_session(self):
        import aiohttp  # start-up time: aiohttp (~0.2 s) only once a request goes out; replay does without

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                                  headers={"User-Agent": "claire-de-binare"})
        return self._session

    async def get(self, path: str, params: dict[str, Any] | None = None) -> RestResponse:
        import aiohttp  # start-up time: aiohttp (~0.2 s) only once a request goes out

        session = await self._get_session()
        query = {k: str(v) for k, v in (params or {}).items()}
        try:
            async with session.get(self.base_url + path, params=query) as resp:
                body = await resp.read()
                ra = resp.headers.get("Retry-After")
                retry_after: float | None
                try:
                    retry_after = float(ra) if ra is not None else None
                except ValueError:
                    retry_after = None
                return RestResponse(resp.status, body, retry_after, self.clock())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"GET {path}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None


class TokenBucket:
    """``capacity`` weight, refilled at ``capacity / period_s`` per second."""

    def __init__(self, capacity: float, period_s: float = 10.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / period_s
        self.tokens = float(capacity)
        self.clock = clock
        self.sleep = sleep
        self._t = clock()
        self.waited_s = 0.0

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._t) * self.rate)
        self._t = now

    async def acquire(self, weight: float = 1.0) -> None:
        weight = min(weight, self.capacity)
        while True:
            self._refill()
            if self.tokens >= weight:
                self.tokens -= weight
                return
            wait = (weight - self.tokens) / self.rate
            self.waited_s += wait
            await self.sleep(wait)


def _api_error(path: str, params: dict[str, Any], status: int, code: int | None, msg: str) -> MexcApiError:
    """The error of a failed request: unknown symbol, symbol not trading, or the API's own."""
    symbol = params.get("symbol") or params.get("symbols") or ""
    if code in UNKNOWN_SYMBOL_CODES:
        return UnknownSymbolError(f"MEXC does not know the symbol {symbol!r} ({code}: {msg})",
                                  status=status, code=code, path=path)
    if code in NOT_TRADING_CODES:
        return SymbolNotTradingError(f"MEXC symbol {symbol!r} is not trading ({code}: {msg})",
                                     status=status, code=code, path=path)
    return MexcApiError(f"GET {path} -> HTTP {status}" + (f" code {code}" if code is not None else "")
                        + f": {msg}", status=status, code=code, path=path)


def _parse_error(body: bytes) -> tuple[int | None, str]:
    try:
        obj = _json.decode(body)
    except msgspec.DecodeError:
        return None, body[:200].decode("utf-8", "replace")
    if isinstance(obj, dict):
        code = obj.get("code")
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError):
            code = None
        return code, str(obj.get("msg", ""))
    return None, str(obj)[:200]


def _opt_dec(x: Any) -> Decimal | None:
    if x is None or x == "":
        return None
    return x if isinstance(x, Decimal) else Decimal(str(x))


def _opt_int(x: Any) -> int | None:
    if x is None or x == "":
        return None
    return int(x)


def _pow10(places: Any, default: int) -> Decimal:
    try:
        n = int(places)
    except (TypeError, ValueError):
        n = default
    return Decimal(1).scaleb(-n)


def rules_from_info(s: dict[str, Any]) -> SymbolRules:
    """One ``symbols`` entry of exchangeInfo as :class:`SymbolRules`."""
    quote_places = s.get("quotePrecision", s.get("quoteAssetPrecision"))
    return SymbolRules(
        symbol=s["symbol"], status=str(s.get("status", "")), base_asset=s.get("baseAsset", ""),
        quote_asset=s.get("quoteAsset", ""), tick_size=_pow10(quote_places, 8),
        step_size=_pow10(s.get("baseAssetPrecision"), 8),
        min_qty=_opt_dec(s.get("baseSizePrecision")) or Decimal(0),
        min_notional=_opt_dec(s.get("quoteAmountPrecision")) or Decimal(0),
        max_notional=_opt_dec(s.get("maxQuoteAmount")), maker_fee=_opt_dec(s.get("makerCommission")),
        taker_fee=_opt_dec(s.get("takerCommission")), spot_allowed=bool(s.get("isSpotTradingAllowed", True)),
        order_types=tuple(s.get("orderTypes") or ()), side_type=str(s.get("tradeSideType", "1")),
    )


class MexcRestClient:
    """Async REST client of MEXC's public market data; every response can be recorded.

    ``transport`` replaces HTTP (a replay uses :class:`~claire.adapters.mexc.capture.ReplayTransport`);
    ``capture`` records every response; ``sleep`` is what waiting uses (a replay passes a no-op).
    """

    def __init__(self, base_url: str | None = None, *, transport: Transport | None = None, session: Any = None,
                 capture: CaptureWriter | None = None, budget: float = 200.0, max_retries: int = 4,
                 max_wait_s: float = 600.0, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rate_limit: bool = True) -> None:
        if not 0 < budget < 500:
            raise ValueError(f"budget must be within (0, 500) weight per 10 s, got {budget}")
        self.transport: Transport = transport or AiohttpTransport(base_url, session=session)
        self.capture = capture
        self.budget = budget
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.rate_limit = rate_limit
        self._buckets: dict[str, TokenBucket] = {}
        self._paused_until = 0.0  # monotonic: set by Retry-After, for every endpoint
        self.requests = 0
        self.rate_limited = 0  # 429/418 answers seen
        self.retry_after_waited_s = 0.0

    @property
    def base_url(self) -> str:
        return getattr(self.transport, "base_url", "")

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> MexcRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _bucket(self, path: str) -> TokenBucket:
        b = self._buckets.get(path)
        if b is None:
            b = self._buckets[path] = TokenBucket(self.budget, 10.0, sleep=self.sleep)
        return b

    async def request(self, path: str, params: dict[str, Any] | None = None, *, weight: int | None = None
                      ) -> tuple[Any, int]:
        """GET ``path``; the decoded JSON body and the receive time (ns). Raises :class:`MexcApiError`."""
        if not path.startswith("/api/v3/") or path not in WEIGHTS:
            raise ValueError(f"not a public market-data endpoint of this client: {path}")
        params = {k: v for k, v in (params or {}).items() if v is not None}
        w = weight if weight is not None else WEIGHTS[path]
        attempt = 0
        while True:
            if self.rate_limit:
                await self._wait_turn(path, w)
            self.requests += 1
            try:
                resp = await self.transport.get(path, params)
            except TransportError as exc:
                if self.capture is not None:
                    self.capture.rest(time.time_ns(), path, params, error=str(exc))
                if attempt >= self.max_retries:
                    raise
                attempt += 1
                await self.sleep(min(8.0, 0.25 * 2 ** attempt))
                continue
            if self.capture is not None:
                self.capture.rest(resp.ts_recv, path, params, status=resp.status, body=resp.body,
                                  retry_after=resp.retry_after)
            if resp.status == 200:
                try:
                    return _json.decode(resp.body), resp.ts_recv
                except msgspec.DecodeError as exc:
                    raise MexcApiError(f"GET {path}: the answer is not JSON: {resp.body[:120]!r}",
                                       status=resp.status, path=path) from exc
            code, msg = _parse_error(resp.body)
            if resp.status in (429, 418):
                self._rate_limited(path, resp, code, msg, attempt)
                attempt += 1
                continue
            if resp.status >= 500 and attempt < self.max_retries:
                attempt += 1
                await self.sleep(min(8.0, 0.25 * 2 ** attempt))
                continue
            raise _api_error(path, params, resp.status, code, msg)

    async def _wait_turn(self, path: str, weight: int) -> None:
        """Wait out a Retry-After pause, then for ``weight`` from the path's bucket."""
        pause = self._paused_until - time.monotonic()
        if pause > 0:
            await self.sleep(pause)
        await self._bucket(path).acquire(weight)

    def _rate_limited(self, path: str, resp: RestResponse, code: int | None, msg: str, attempt: int) -> None:
        """A 429 or 418: pause every request for the Retry-After, or raise when too long or too often."""
        self.rate_limited += 1
        wait = resp.retry_after if resp.retry_after is not None else (60.0 if resp.status == 429 else 120.0)
        what = "rate limited (429)" if resp.status == 429 else "IP banned (418)"
        if wait > self.max_wait_s or attempt >= self.max_retries:
            raise RateLimitError(f"GET {path}: {what}, Retry-After {wait:g} s: {msg}", status=resp.status,
                                 code=code, path=path)
        log.warning("MEXC REST %s: %s; waiting %.3g s as told (Retry-After)", path, what, wait)
        self._paused_until = max(self._paused_until, time.monotonic() + wait)
        self.retry_after_waited_s += wait

    # --- endpoints ---------------------------------------------------------------------

    async def ping(self) -> None:
        await self.request("/api/v3/ping")

    async def server_time(self) -> int:
        """The exchange's time in ms."""
        body, _ = await self.request("/api/v3/time")
        return int(body["serverTime"])

    async def exchange_info(self, symbols: list[str] | tuple[str, ...]) -> dict[str, SymbolRules]:
        """The rules of ``symbols``; :class:`UnknownSymbolError` when one is unknown."""
        syms = [s.upper() for s in symbols]
        params = {"symbol": syms[0]} if len(syms) == 1 else {"symbols": ",".join(syms)}
        body, _ = await self.request("/api/v3/exchangeInfo", params)
        rules = {r.symbol: r for r in (rules_from_info(s) for s in body.get("symbols") or ())}
        missing = [s for s in syms if s not in rules]
        if missing:
            raise UnknownSymbolError(f"MEXC does not know the symbol(s) {', '.join(missing)}",
                                     path="/api/v3/exchangeInfo")
        return {s: rules[s] for s in syms}

    async def symbol_rules(self, symbols: list[str] | tuple[str, ...], *, require_trading: bool = True
                           ) -> dict[str, SymbolRules]:
        """As :meth:`exchange_info`; also :class:`SymbolNotTradingError` for a paused/offline symbol."""
        rules = await self.exchange_info(symbols)
        if require_trading:
            halted = [r for r in rules.values() if not r.trading]
            if halted:
                raise SymbolNotTradingError(
                    "MEXC symbol(s) not trading: " + ", ".join(
                        f"{r.symbol} (status {r.status} {r.status_text}"
                        + ("" if r.spot_allowed else ", spot trading not allowed") + ")" for r in halted),
                    path="/api/v3/exchangeInfo")
        return rules

    async def klines(self, symbol: str, interval: str = "1m", *, start_ms: int | None = None,
                     end_ms: int | None = None, limit: int = KLINES_PAGE) -> tuple[list[list[Any]], int]:
        """Raw kline rows (open time filter ``[start_ms, end_ms]``, ms) and the receive time."""
        if interval not in REST_INTERVAL_S:
            raise ValueError(f"unknown REST kline interval {interval!r}; MEXC knows "
                             f"{', '.join(REST_INTERVAL_S)} (60m, not 1h)")
        body, ts_recv = await self.request("/api/v3/klines", {
            "symbol": symbol, "interval": interval, "startTime": start_ms, "endTime": end_ms, "limit": limit})
        if not isinstance(body, list):
            raise MexcApiError(f"/api/v3/klines: expected an array, got {type(body).__name__}", path="/api/v3/klines")
        return body, ts_recv

    async def closed_bars(self, symbol: str, start_ms: int, end_ms: int, *, interval_s: int = 60) -> list[Bar]:
        """The bars opened in ``[start_ms, end_ms)`` (ms), in order, paging as needed.

        The caller makes sure they are closed (``end_ms`` at most the current window's start).
        """
        interval = REST_INTERVAL.get(interval_s)
        if interval is None:
            raise ValueError(f"no REST kline interval of {interval_s} s")
        step = interval_s * 1000
        bars: list[Bar] = []
        start = start_ms
        while start < end_ms:
            rows, ts_recv = await self.klines(symbol, interval, start_ms=start, end_ms=end_ms - 1, limit=KLINES_PAGE)
            last = None
            for row in rows:
                t = int(row[0])
                if start <= t < end_ms and (last is None or t > last):
                    bars.append(bar_from_rest(symbol, row, interval_s, ts_recv))
                    last = t
            if last is None or len(rows) < KLINES_PAGE:
                break
            start = last + step
        return bars

    async def latest_closed_bars(self, symbol: str, n: int, now_ms: int, *, interval_s: int = 60) -> list[Bar]:
        """The last ``n`` bars closed at ``now_ms`` (exchange time)."""
        step = interval_s * 1000
        current = now_ms - now_ms % step
        return (await self.closed_bars(symbol, current - n * step, current, interval_s=interval_s))[-n:] if n else []

    async def depth(self, symbol: str, limit: int = 5) -> BookTop:
        body, ts_recv = await self.request("/api/v3/depth", {"symbol": symbol, "limit": limit})
        return book_from_rest(symbol, body, ts_recv)

    async def ticker_24hr(self, symbol: str) -> Ticker24h:
        t, ts_recv = await self.request("/api/v3/ticker/24hr", {"symbol": symbol})
        if isinstance(t, list):  # some deployments answer with a one-element array
            t = next((x for x in t if x.get("symbol") == symbol), {})
        return Ticker24h(
            symbol=t.get("symbol", symbol), last=_opt_dec(t.get("lastPrice")), open=_opt_dec(t.get("openPrice")),
            high=_opt_dec(t.get("highPrice")), low=_opt_dec(t.get("lowPrice")), volume=_opt_dec(t.get("volume")),
            quote_volume=_opt_dec(t.get("quoteVolume")), bid=_opt_dec(t.get("bidPrice")),
            bid_qty=_opt_dec(t.get("bidQty")), ask=_opt_dec(t.get("askPrice")), ask_qty=_opt_dec(t.get("askQty")),
            price_change=_opt_dec(t.get("priceChange")), price_change_pct=_opt_dec(t.get("priceChangePercent")),
            open_time=_opt_int(t.get("openTime")), close_time=_opt_int(t.get("closeTime")), ts_recv=ts_recv)

    async def book_ticker(self, symbol: str) -> QuoteTick:
        """Best bid/ask now (REST carries no exchange time: ``ts_event`` is the receive time)."""
        t, ts_recv = await self.request("/api/v3/ticker/bookTicker", {"symbol": symbol})
        if isinstance(t, list):
            t = next((x for x in t if x.get("symbol") == symbol), {})
        return QuoteTick(id=f"quote:{symbol}:rest:{ts_recv}", ts_event=ts_recv, ts_recv=ts_recv, symbol=symbol,
                         bid=Decimal(str(t["bidPrice"])), bid_size=Decimal(str(t["bidQty"])),
                         ask=Decimal(str(t["askPrice"])), ask_size=Decimal(str(t["askQty"])))

"""MEXC spot V3 WebSocket market streams (aiohttp): connections, subscriptions, pings, watchdog.

- URL ``MEXC_WS_URL`` (default ``wss://wbs-api.mexc.com/ws``); symbols are spread over
  connections of at most ``max_topics`` (30) topics, all topics of a symbol on one connection.
- One topic per ``SUBSCRIPTION`` message; every ack is checked: an ack whose ``msg`` is not the
  topic (MEXC answers a refused topic with ``code: 0`` and "Not Subscribed successfully! [...]
  Reason： Blocked!") is a :class:`SubscriptionError`, raised by :meth:`MexcStream.start` (or,
  after a reconnect, by :meth:`MexcStream.next_item`).
- ``{"method":"PING"}`` every ``ping_interval_s`` (20 s); WebSocket-level pings are answered by
  aiohttp. Client messages are paced by a token bucket per connection (50/s, MEXC allows 100/s).
- A connection is replaced before MEXC's 24 h limit (``max_age_s``, 23.5 h); a dropped one is
  reconnected with exponential backoff and jitter.
- Watchdog: a symbol without any push for ``stale_s`` (``MEXC_STALE_SEC``, 30 s) while subscribed
  makes its connection reconnect; the ``disconnected`` item says ``reason="stale"`` and which symbols.
- Backpressure: at most ``max_pending`` received frames wait for the consumer
  (``CLAIRE_MEXC_MAX_PENDING``, 100,000); then the reader pauses until half have been taken, so a
  consumer that falls behind (e.g. the REST repair waiting on the rate limit) cannot grow the
  process without bound. ``backpressure_waits`` / ``backpressure_seconds`` count the pauses.

The stream hands out :class:`Frame` (binary pushes, undecoded) and :class:`ConnEvent` items in
arrival order; a connection's ``connected`` item comes before any of its frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from claire.adapters.mexc.capture import CaptureWriter
from claire.adapters.mexc.codec import CHANNELS, symbol_of_channel, topics_for
from claire.adapters.mexc.models import ConnEvent, Frame, MexcError, StreamItem, SubscriptionError
from claire.adapters.mexc.rest import TokenBucket

log = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://wbs-api.mexc.com/ws"
MAX_TOPICS = 30
END = object()  # returned by next_item when the stream is closed

_json = msgspec.json.Decoder()


def ws_url() -> str:
    return os.environ.get("MEXC_WS_URL") or DEFAULT_WS_URL


def stale_seconds() -> float:
    return float(os.environ.get("MEXC_STALE_SEC") or 30)


def max_pending_frames() -> int:
    """How many received frames may wait for the consumer (``CLAIRE_MEXC_MAX_PENDING``, default
    100,000: about 100 s of a busy 20-symbol feed, ~40 MB) before the reader pauses."""
    raw = os.environ.get("CLAIRE_MEXC_MAX_PENDING", "100000")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"CLAIRE_MEXC_MAX_PENDING must be an integer >= 2, got {raw!r}") from None
    if value < 2:
        raise ValueError(f"CLAIRE_MEXC_MAX_PENDING must be an integer >= 2, got {raw!r}")
    return value


def channel_of(data: bytes) -> bytes | None:
    """The channel (field 1) of a push, read from the first bytes without decoding the rest."""
    if len(data) < 2 or data[0] != 0x0A:
        return None
    n = data[1]
    i = 2
    if n & 0x80:
        if len(data) < 3:
            return None
        n = (n & 0x7F) | (data[2] << 7)
        i = 3
    return data[i:i + n]


class _Connection:
    def __init__(self, stream: MexcStream, index: int, symbols: tuple[str, ...]) -> None:
        self.stream = stream
        self.index = index
        self.symbols = symbols
        self.topics = [t for s in symbols for t in topics_for(s, stream.channels)]
        self.symbol_of: dict[bytes, str] = {}
        for s in symbols:
            for t in topics_for(s, stream.channels):
                self.symbol_of[t.encode()] = s
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.connected = False
        self.connected_at = 0.0
        self.limiter = TokenBucket(10, 0.2)  # 50 messages/s, bursts of 10
        self.last_data: dict[str, float] = {}
        self.last_ping = 0.0

    async def send(self, obj: dict[str, Any]) -> None:
        await self.limiter.acquire(1)
        self.stream.messages_sent += 1
        await self.ws.send_str(msgspec.json.encode(obj).decode())

    async def connect(self) -> list[Frame]:
        """Open the socket and subscribe every topic; the frames that came meanwhile."""
        st = self.stream
        session = await st._get_session()
        self.ws = await session.ws_connect(st.url, autoping=True, heartbeat=None, max_msg_size=0,
                                           timeout=st._ws_timeout())
        st.connects += 1
        early: list[Frame] = []
        pending = set(self.topics)
        for topic in self.topics:
            await self.send({"method": "SUBSCRIPTION", "params": [topic]})
        deadline = time.monotonic() + st.ack_timeout_s
        import aiohttp  # start-up time: aiohttp (~0.2 s) only once we connect; replay does without

        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SubscriptionError(f"MEXC did not acknowledge {len(pending)} subscription(s) within "
                                        f"{st.ack_timeout_s:g} s: {', '.join(sorted(pending))}", topic=min(pending))
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                early.append(Frame(self.index, msg.data, st.clock()))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                if st.capture is not None:
                    st.capture.text(self.index, msg.data, st.clock())
                self._check_ack(msg.data, pending)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR):
                raise ConnectionError(f"MEXC closed the connection while subscribing ({msg.type.name})")
        now = time.monotonic()
        self.connected_at = now
        self.last_data = dict.fromkeys(self.symbols, now)
        self.connected = True
        return early

    def _check_ack(self, text: str, pending: set[str]) -> None:
        try:
            ack = _json.decode(text)
        except msgspec.DecodeError:
            raise SubscriptionError(f"MEXC answered a subscription with non-JSON text: {text[:200]!r}",
                                    reply=text) from None
        if not isinstance(ack, dict):
            raise SubscriptionError(f"unexpected subscription answer: {text[:200]!r}", reply=text)
        reply = str(ack.get("msg", ""))
        if reply == "PONG":
            return
        if ack.get("code", 0) == 0 and reply in pending:
            pending.discard(reply)
            return
        topic = next((t for t in pending if t in reply), "")
        raise SubscriptionError(
            f"MEXC refused the subscription {topic or '(unknown topic)'}: {reply!r} (code {ack.get('code')})",
            topic=topic, reply=reply)

    async def pump(self) -> tuple[str, tuple[str, ...]]:
        """Read until the connection ends; why it ended, and the stale symbols."""
        import aiohttp  # start-up time: aiohttp (~0.2 s) only once a connection is up

        st = self.stream
        ws = self.ws
        put = st._queue.put_nowait
        clock = st.clock
        symbol_of = self.symbol_of
        last_data = self.last_data
        self.last_ping = time.monotonic()
        check = min(1.0, st.stale_s / 4, st.ping_interval_s)
        next_check = time.monotonic() + check
        while True:
            now = time.monotonic()
            if now >= next_check:
                next_check = now + check
                ended = await self._check(now)
                if ended is not None:
                    return ended
            try:
                msg = await ws.receive(timeout=max(0.001, next_check - time.monotonic()))
            except TimeoutError:
                continue
            t = msg.type
            if t == aiohttp.WSMsgType.BINARY:
                data = msg.data
                ts = clock()
                ch = channel_of(data)
                sym = symbol_of.get(ch) if ch is not None else None
                if sym is None and ch is not None:
                    sym = symbol_of_channel(ch.decode("utf-8", "replace"))
                if sym in last_data:
                    last_data[sym] = time.monotonic()
                put(Frame(self.index, data, ts))
                if st._queue.qsize() >= st.max_pending:
                    await self._hold_back()
            elif t == aiohttp.WSMsgType.TEXT:
                self._on_text(msg.data)
            elif t in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return "closed", ()
            elif t == aiohttp.WSMsgType.ERROR:
                return "error", ()

    async def _hold_back(self) -> None:
        """Backpressure: the consumer is ``max_pending`` frames behind, so stop reading the socket
        until it has caught up to half of that. Memory stays bounded; the exchange's frames wait in
        the socket (if MEXC drops a reader this slow, the reconnect and the feed's REST repair of the
        kline gap follow, as after any disconnect). Not reading is not staleness: the data watchdog's
        clocks restart when reading resumes."""
        st = self.stream
        st.backpressure_waits += 1
        st._drained.clear()
        t0 = time.monotonic()
        while not st._drained.is_set() and not st._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st._drained.wait(), 1.0)
        now = time.monotonic()
        st.backpressure_seconds += now - t0
        for sym in self.last_data:
            self.last_data[sym] = max(self.last_data[sym], now)

    async def _check(self, now: float) -> tuple[str, tuple[str, ...]] | None:
        """The periodic check of :meth:`pump`: why to reconnect (stale symbols, the 24 h limit), or
        None; sends the keep-alive PING when due."""
        st = self.stream
        stale = tuple(s for s in self.symbols if now - self.last_data[s] > st.stale_s)
        if stale:
            log.warning("MEXC stream %d: no data for %.3g s from %s; reconnecting", self.index,
                        st.stale_s, ", ".join(stale))
            return "stale", stale
        if now - self.connected_at > st.max_age_s:
            log.info("MEXC stream %d: reconnecting before the 24 h limit", self.index)
            return "proactive", ()
        if now - self.last_ping >= st.ping_interval_s:
            self.last_ping = now
            await self.send({"method": "PING"})
        return None

    def _on_text(self, data: str) -> None:
        """A text message: recorded, and logged unless it is a PONG."""
        st = self.stream
        if st.capture is not None:
            st.capture.text(self.index, data, st.clock())
        try:
            obj = _json.decode(data)
        except msgspec.DecodeError:
            obj = None
        if not (isinstance(obj, dict) and obj.get("msg") == "PONG"):
            log.info("MEXC stream %d: %s", self.index, data[:200])

    async def close_ws(self) -> None:
        ws, self.ws = self.ws, None
        self.connected = False
        if ws is not None and not ws.closed:
            with contextlib.suppress(TimeoutError, OSError, RuntimeError):
                await asyncio.wait_for(ws.close(), 2.0)

    def event(self, kind: str, reason: str = "", stale: tuple[str, ...] = ()) -> ConnEvent:
        return ConnEvent(conn=self.index, kind=kind, symbols=self.symbols, reason=reason,
                         ts_recv=self.stream.clock(), stale=stale)

    def emit_connected(self, early: list[Frame]) -> None:
        put = self.stream._queue.put_nowait
        put(self.event("connected"))
        for f in early:
            put(f)

    async def run(self) -> None:
        """Pump, and reconnect whenever the connection ends, until the stream closes."""
        st = self.stream
        attempt = 0
        while not st._closing:
            if self.ws is None:
                try:
                    early = await self.connect()
                except SubscriptionError as exc:
                    await self.close_ws()
                    st._queue.put_nowait(exc)
                    return
                except (OSError, TimeoutError, ConnectionError, MexcError) as exc:
                    await self.close_ws()
                    delay = st.backoff(attempt)
                    attempt += 1
                    log.warning("MEXC stream %d: connect failed (%s); retrying in %.2g s", self.index, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                except Exception as exc:  # aiohttp's ClientError and friends
                    if not _is_client_error(exc):
                        raise
                    await self.close_ws()
                    delay = st.backoff(attempt)
                    attempt += 1
                    log.warning("MEXC stream %d: connect failed (%s); retrying in %.2g s", self.index, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                self.emit_connected(early)
            try:
                reason, stale = await self.pump()
            except (OSError, ConnectionError) as exc:
                reason, stale = "error", ()
                log.warning("MEXC stream %d: %s", self.index, exc)
            uptime = time.monotonic() - self.connected_at
            await self.close_ws()
            if st._closing:
                return
            st.reconnects += 1
            if reason == "stale":
                st.stale_reconnects += 1
            st._queue.put_nowait(self.event("disconnected", reason, stale))
            if uptime >= st.stable_after_s or reason == "proactive":
                attempt = 0
            delay = 0.0 if reason == "proactive" else st.backoff(attempt)
            attempt += 1
            if delay:
                await asyncio.sleep(delay)


def _is_client_error(exc: BaseException) -> bool:
    import aiohttp  # start-up time: aiohttp (~0.2 s) only once we connect

    return isinstance(exc, aiohttp.ClientError | aiohttp.WSServerHandshakeError)


class MexcStream:
    """Live MEXC pushes of ``symbols`` (topics per ``channels``: kline, deals, book, depth).

    ``await start()`` connects and subscribes everything (raising :class:`SubscriptionError` on a
    refused topic); then ``await next_item(timeout)`` gives :class:`Frame`/:class:`ConnEvent`
    items (``None`` on timeout, :data:`END` once closed); ``await close()`` ends it.
    """

    def __init__(self, symbols: Sequence[str], *, channels: Sequence[str] = CHANNELS, url: str | None = None,
                 session: Any = None, capture: CaptureWriter | None = None, stale_s: float | None = None,
                 ping_interval_s: float = 20.0, max_age_s: float = 23.5 * 3600, max_topics: int = MAX_TOPICS,
                 backoff_base_s: float = 0.5, backoff_max_s: float = 30.0, stable_after_s: float = 10.0,
                 ack_timeout_s: float = 10.0, max_pending: int | None = None,
                 seed: int | None = None, clock: Callable[[], int] = time.time_ns) -> None:
        if not symbols:
            raise ValueError("no symbols to stream")
        self.symbols = tuple(dict.fromkeys(s.upper() for s in symbols))
        self.channels = tuple(channels)
        per_symbol = len(self.channels)
        if not 0 < max_topics <= MAX_TOPICS:
            raise ValueError(f"max_topics must be within 1..{MAX_TOPICS}")
        if per_symbol == 0 or per_symbol > max_topics:
            raise ValueError(f"{per_symbol} channels per symbol do not fit {max_topics} topics per connection")
        self.url = url or ws_url()
        self._session = session
        self._own_session = session is None
        self.capture = capture
        self.stale_s = stale_s if stale_s is not None else stale_seconds()
        self.ping_interval_s = ping_interval_s
        self.max_age_s = max_age_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s  # a connection up this long resets the backoff
        self.ack_timeout_s = ack_timeout_s
        self.clock = clock
        self._rng = random.Random(seed)  # noqa: S311 - reconnect jitter, not security
        per_conn = max_topics // per_symbol
        groups = [self.symbols[i:i + per_conn] for i in range(0, len(self.symbols), per_conn)]
        self.connections = [_Connection(self, i, g) for i, g in enumerate(groups)]
        # frames received and not yet taken by the consumer: at most max_pending (then backpressure)
        self.max_pending = max_pending if max_pending is not None else max_pending_frames()
        if self.max_pending < 2:
            raise ValueError("max_pending must be >= 2")
        self._queue: asyncio.Queue[Any] = asyncio.Queue()  # bounded by _hold_back for frames; control items always fit
        self._drained = asyncio.Event()
        self._closing = False
        self._started = False
        # counters
        self.connects = 0
        self.reconnects = 0
        self.stale_reconnects = 0
        self.messages_sent = 0
        self.backpressure_waits = 0  # times the reader paused because the consumer was max_pending behind
        self.backpressure_seconds = 0.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2**attempt (capped), times 0.5..1.5."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempt, 20)) * (0.5 + self._rng.random())

    def _ws_timeout(self) -> Any:
        import aiohttp  # start-up time: aiohttp (~0.2 s) only once we connect

        return aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)

    async def _get_session(self) -> Any:
        import aiohttp  # start-up time: aiohttp (~0.2 s) only once we connect; replay does without

        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "claire-de-binare"})
        return self._session

    async def start(self) -> None:
        """Connect and subscribe all connections (concurrently); raises on a refused subscription."""
        if self._started:
            return
        self._started = True
        try:
            results = await asyncio.gather(*(c.connect() for c in self.connections), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                sub = [e for e in errors if isinstance(e, SubscriptionError)]
                raise (sub[0] if sub else errors[0])
        except BaseException:
            await self.close()
            raise
        for c, early in zip(self.connections, results, strict=True):
            c.emit_connected(early)  # type: ignore[arg-type]
            c.task = asyncio.get_running_loop().create_task(c.run(), name=f"mexc-ws-{c.index}")

    async def next_item(self, timeout: float | None = None) -> StreamItem | object | None:
        """The next item; ``None`` after ``timeout`` s without one; :data:`END` once closed."""
        if self._closing and self._queue.empty():
            return END
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout) if timeout is not None \
                else await self._queue.get()
        except TimeoutError:
            return None
        if not self._drained.is_set() and self._queue.qsize() <= self.max_pending // 2:
            self._drained.set()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        self._closing = True
        tasks = [c.task for c in self.connections if c.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for c in self.connections:
            await c.close_ws()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
        self._queue.put_nowait(END)

    @property
    def connected(self) -> int:
        return sum(1 for c in self.connections if c.connected)

"""The REST client against the fake exchange (real HTTP on 127.0.0.1) and against stub transports."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from pathlib import Path

import pytest

from claire.adapters.mexc.models import RateLimitError, SymbolNotTradingError, UnknownSymbolError
from claire.adapters.mexc.rest import (
    DEFAULT_REST_URL,
    MexcRestClient,
    RestResponse,
    TokenBucket,
    rest_url,
)
from claire.events import Bar, QuoteTick

from .conftest import HISTORY, make_fake

SRC = Path(__file__).resolve().parents[2] / "src" / "claire"


def with_fake(fake_bars, coro_fn, **fake_kw):
    async def main():
        fake = make_fake(fake_bars, **fake_kw)
        await fake.start()
        try:
            async with MexcRestClient(fake.rest_url) as client:
                return await coro_fn(fake, client)
        finally:
            await fake.stop()

    return asyncio.run(main())


def test_no_private_or_order_endpoints_anywhere_in_claire():
    """Market data only: nothing in the package can reach account or order endpoints or sign requests."""
    pattern = re.compile(r"/api/v3/(order|account|myTrades|openOrders|allOrders|userDataStream|capital|sub-account)"
                         r"|X-MEXC-APIKEY|apiKey|api_secret|secretKey|(?<![A-Za-z_])signature(?![A-Za-z_])",
                         re.IGNORECASE)
    hits = []
    for path in SRC.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".proto", ".toml", ".yaml", ".yml", ".json", ".txt", ".md"):
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert hits == []


def test_base_url_from_environment(monkeypatch):
    monkeypatch.delenv("MEXC_REST_URL", raising=False)
    assert rest_url() == DEFAULT_REST_URL == "https://api.mexc.com"
    monkeypatch.setenv("MEXC_REST_URL", "http://127.0.0.1:9")
    assert MexcRestClient().base_url == "http://127.0.0.1:9"


def test_only_public_market_data_paths():
    client = MexcRestClient("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="not a public market-data endpoint"):
        asyncio.run(client.request("/api/v3/capitalX"))
    asyncio.run(client.close())


def test_exchange_info_rules_and_symbol_errors(fake_bars):
    async def go(fake, client):
        rules = await client.symbol_rules(["BTCUSDT", "ETHUSDT"])
        with pytest.raises(UnknownSymbolError, match="NOPEUSDT"):
            await client.exchange_info(["NOPEUSDT"])
        with pytest.raises(SymbolNotTradingError, match=r"ETHUSDT.*paused"):
            fake.paused_symbols = {"ETHUSDT"}
            await client.symbol_rules(["ETHUSDT"])
        with pytest.raises(UnknownSymbolError, match="-1121"):
            await client.klines("NOPEUSDT")
        return rules

    rules = with_fake(fake_bars, go)
    btc = rules["BTCUSDT"]
    assert btc.trading and btc.status == "1" and btc.base_asset == "BTC" and btc.quote_asset == "USDT"
    assert btc.tick_size == Decimal("0.01") and btc.min_notional == Decimal("1") and btc.taker_fee == Decimal("0.0002")
    assert btc.step_size == btc.min_qty and btc.step_size > 0


def test_klines_time_depth_tickers(fake_bars, file_bars):
    async def go(fake, client):
        now = await client.server_time()
        rows, _ = await client.klines("BTCUSDT", "1m", limit=5)
        start = fake.timeline[HISTORY - 30]
        bars = await client.closed_bars("BTCUSDT", start, fake.timeline[HISTORY - 5])
        paged = await client.closed_bars("ETHUSDT", fake.timeline[0], fake.timeline[HISTORY])
        with pytest.raises(ValueError, match="60m, not 1h"):
            await client.klines("BTCUSDT", "1h")
        book = await client.depth("BTCUSDT", 5)
        t24 = await client.ticker_24hr("BTCUSDT")
        bt = await client.book_ticker("ETHUSDT")
        return now, rows, bars, paged, book, t24, bt

    now, rows, bars, paged, book, t24, bt = with_fake(fake_bars, go)
    assert now >= fake_bars["BTCUSDT"][HISTORY].ts_open // 1_000_000
    assert len(rows) == 5 and all(len(r) == 8 and isinstance(r[1], str) and r[6] - r[0] == 60_000 for r in rows)
    assert len(bars) == 25 and all(isinstance(b, Bar) for b in bars)
    for b in bars:  # REST gives the file's bars exactly
        f = file_bars[b.id]
        assert (b.ts_event, b.open, b.high, b.low, b.close, b.volume) == (f.ts_event, f.open, f.high, f.low, f.close,
                                                                          f.volume)
    assert len(paged) == HISTORY
    assert len(book.bids) == len(book.asks) == 5 and book.best_bid[0] < book.best_ask[0]
    assert t24.symbol == "BTCUSDT" and t24.last is not None and t24.high >= t24.low
    assert isinstance(bt, QuoteTick) and bt.bid < bt.ask


def test_429_retry_after_is_honoured(fake_bars):
    async def go(fake, client):
        for _ in range(5):
            await client.server_time()
        return list(fake.rest_log), client.rate_limited

    log, limited = with_fake(fake_bars, go, rest_429_every=2, retry_after=0.3)
    statuses = [s for _, _, _, s in log]
    assert statuses == [200, 429, 200, 429, 200, 429, 200, 429, 200] and limited == 4
    for i, (t, _, _, status) in enumerate(log):
        if status == 429:  # the next request waited the Retry-After
            assert log[i + 1][0] - t >= 0.29


class StubTransport:
    def __init__(self, responses):
        self.responses = list(responses)
        self.calls = 0
        self.base_url = "stub"

    async def get(self, path, params=None):
        self.calls += 1
        return self.responses.pop(0)

    async def close(self):
        return None


def test_418_ban_waits_and_long_bans_raise():
    async def go():
        sleeps = []

        async def sleep(s):
            sleeps.append(s)

        ok = RestResponse(200, b'{"serverTime": 5}', None, 1)
        banned = RestResponse(418, b'{"code": 418, "msg": "banned"}', 0.05, 1)
        client = MexcRestClient(transport=StubTransport([banned, ok]))
        assert await client.server_time() == 5
        long_ban = MexcRestClient(transport=StubTransport([RestResponse(418, b"{}", 3 * 86400.0, 1)]), sleep=sleep)
        with pytest.raises(RateLimitError, match="418"):
            await long_ban.server_time()
        return client

    client = asyncio.run(go())
    assert client.rate_limited == 1 and client.retry_after_waited_s == pytest.approx(0.05)


def test_token_bucket_paces_an_endpoint():
    now = [0.0]
    sleeps = []

    async def sleep(s):
        sleeps.append(s)
        now[0] += s

    async def go():
        b = TokenBucket(20, 10.0, clock=lambda: now[0], sleep=sleep)
        for _ in range(30):
            await b.acquire(1)

    asyncio.run(go())
    assert now[0] == pytest.approx(10 * 0.5)  # 10 beyond the burst, at 2 per second
    with pytest.raises(ValueError, match="budget"):
        MexcRestClient("http://127.0.0.1:9", budget=500)

"""The WebSocket client against the fake: acks, Blocked, PING/PONG, topic limits, watchdog, backoff."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from claire.adapters.mexc.codec import deals_topic
from claire.adapters.mexc.models import ConnEvent, Frame, SubscriptionError
from claire.adapters.mexc.stream import DEFAULT_WS_URL, MexcStream, channel_of, ws_url

from .conftest import FAST_STREAM, make_fake


def with_fake(fake_bars, coro_fn, **fake_kw):
    async def main():
        fake = make_fake(fake_bars, **fake_kw)
        await fake.start()
        try:
            return await coro_fn(fake)
        finally:
            await fake.stop()

    return asyncio.run(main())


async def collect(stream: MexcStream, seconds: float) -> list:
    items = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        item = await stream.next_item(0.05)
        if item is not None:
            items.append(item)
    return items


def test_url_from_environment(monkeypatch):
    monkeypatch.delenv("MEXC_WS_URL", raising=False)
    assert ws_url() == DEFAULT_WS_URL == "wss://wbs-api.mexc.com/ws"
    monkeypatch.setenv("MEXC_WS_URL", "ws://127.0.0.1:9/ws")
    assert MexcStream(["BTCUSDT"]).url == "ws://127.0.0.1:9/ws"


def test_at_most_30_topics_per_connection():
    syms = [f"S{i}USDT" for i in range(16)]
    s = MexcStream(syms, url="ws://127.0.0.1:9/ws")
    assert [len(c.symbols) for c in s.connections] == [7, 7, 2]
    assert all(len(c.topics) <= 30 for c in s.connections)
    assert sorted(sym for c in s.connections for sym in c.symbols) == sorted(syms)
    assert len(MexcStream(syms, url="x", channels=["deals"]).connections) == 1


def test_subscribe_all_topics_and_receive_frames(fake_bars):
    async def go(fake):
        stream = MexcStream(["BTCUSDT", "ETHUSDT"], url=fake.ws_url, ping_interval_s=0.1, **FAST_STREAM)
        await stream.start()
        items = await collect(stream, 0.6)
        await stream.close()
        return items, fake.pings, fake.client_messages

    items, pings, sent = with_fake(fake_bars, go)
    assert isinstance(items[0], ConnEvent) and items[0].kind == "connected"
    assert set(items[0].symbols) == {"BTCUSDT", "ETHUSDT"}
    frames = [i for i in items if isinstance(i, Frame)]
    channels = {channel_of(f.data).decode() for f in frames}
    assert len(channels) == 8  # every topic of both symbols pushes
    assert pings >= 3  # {"method":"PING"} every ping_interval_s
    assert sent == 8 + pings  # one SUBSCRIPTION per topic


def test_blocked_subscription_is_an_error_at_start(fake_bars):
    async def go(fake):
        stream = MexcStream(["BTCUSDT"], url=fake.ws_url, **FAST_STREAM)
        with pytest.raises(SubscriptionError, match="Blocked") as err:
            await stream.start()
        return err.value

    err = with_fake(fake_bars, go, blocked_topics=[deals_topic("BTCUSDT")])
    assert err.topic == deals_topic("BTCUSDT") and "Not Subscribed successfully" in err.reply


def test_fake_speaks_the_control_protocol(fake_bars):
    """JSON acks echo the topic, PONG, and a non-.pb (old JSON) topic is answered "Blocked"."""

    async def go(fake):
        async with aiohttp.ClientSession() as session, session.ws_connect(fake.ws_url) as ws:
            replies = []
            for req in ({"method": "PING"}, {"method": "SUBSCRIPTION", "params": ["spot@public.deals.v3.api@BTCUSDT"]},
                        {"method": "SUBSCRIPTION", "params": [deals_topic("BTCUSDT")]}):
                await ws.send_str(json.dumps(req))
                replies.append(json.loads((await ws.receive(timeout=2)).data))
            first_push = await ws.receive(timeout=2)
            return replies, first_push

    replies, push = with_fake(fake_bars, go)
    assert replies[0] == {"id": 0, "code": 0, "msg": "PONG"}
    assert replies[1]["code"] == 0 and "Blocked" in replies[1]["msg"] and "[spot@public.deals.v3.api@BTCUSDT]" in \
        replies[1]["msg"]
    assert replies[2] == {"id": 0, "code": 0, "msg": deals_topic("BTCUSDT")}
    assert push.type == aiohttp.WSMsgType.BINARY and channel_of(push.data) == deals_topic("BTCUSDT").encode()


def test_silent_socket_makes_the_watchdog_reconnect(fake_bars):
    async def go(fake):
        stream = MexcStream(["BTCUSDT", "ETHUSDT"], url=fake.ws_url, stale_s=0.25, **FAST_STREAM)
        await stream.start()
        items = await collect(stream, 1.2)
        await stream.close()
        return items, stream

    items, stream = with_fake(fake_bars, go, silent_at_bar=3)
    events = [i for i in items if isinstance(i, ConnEvent)]
    assert [(e.kind, e.reason) for e in events[:3]] == [("connected", ""), ("disconnected", "stale"), ("connected", "")]
    assert set(events[1].stale) == {"BTCUSDT", "ETHUSDT"}
    assert stream.stale_reconnects >= 1
    after = items.index(events[2])
    assert any(isinstance(i, Frame) for i in items[after:])  # data flows again


def test_server_disconnects_are_reconnected(fake_bars):
    async def go(fake):
        stream = MexcStream(["BTCUSDT"], url=fake.ws_url, **FAST_STREAM)
        await stream.start()
        items = await collect(stream, 1.0)
        await stream.close()
        return items, fake.disconnects

    items, disconnects = with_fake(fake_bars, go, disconnect_every_bars=5)
    kinds = [(i.kind, i.reason) for i in items if isinstance(i, ConnEvent)]
    assert disconnects >= 2
    assert kinds.count(("disconnected", "closed")) >= 2
    assert kinds[-1][0] == "connected" or kinds[-1] == ("disconnected", "closed")


def test_backoff_grows_with_jitter_and_is_capped():
    s = MexcStream(["BTCUSDT"], url="x", backoff_base_s=0.5, backoff_max_s=30, seed=1)
    delays = [s.backoff(a) for a in range(12)]
    for a, d in enumerate(delays):
        nominal = min(30, 0.5 * 2 ** a)
        assert 0.5 * nominal <= d <= 1.5 * nominal
    assert len(set(delays)) == len(delays)  # jittered


def test_a_slow_consumer_gets_backpressure_not_an_unbounded_backlog(fake_bars):
    """The reader stops at max_pending frames waiting for the consumer (memory stays bounded) and
    goes on, without a reconnect, once the consumer has caught up."""

    async def go(fake):
        stream = MexcStream(["BTCUSDT", "ETHUSDT"], url=fake.ws_url, max_pending=20, **FAST_STREAM)
        await stream.start()
        await asyncio.sleep(0.8)  # the consumer is busy: ~500 frames pushed meanwhile
        backlog = stream._queue.qsize()
        waits_while_busy = stream.backpressure_waits
        items = await collect(stream, 0.8)
        await stream.close()
        return backlog, waits_while_busy, items, stream

    backlog, waits, items, stream = with_fake(fake_bars, go, speed=20.0)
    assert 20 <= backlog <= 21  # the frames up to the bound, plus the "connected" event
    assert waits >= 1
    frames = [i for i in items if isinstance(i, Frame)]
    assert len(frames) > 60  # it reads on after the consumer caught up
    assert stream.reconnects == 0 and stream.backpressure_seconds > 0.5


def test_max_pending_from_the_environment(monkeypatch):
    monkeypatch.setenv("CLAIRE_MEXC_MAX_PENDING", "5000")
    assert MexcStream(["BTCUSDT"], url="ws://127.0.0.1:9/ws").max_pending == 5000
    monkeypatch.setenv("CLAIRE_MEXC_MAX_PENDING", "lots")
    with pytest.raises(ValueError, match="CLAIRE_MEXC_MAX_PENDING must be an integer >= 2, got 'lots'"):
        MexcStream(["BTCUSDT"], url="ws://127.0.0.1:9/ws")

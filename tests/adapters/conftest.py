"""Fixtures of the MEXC adapter tests: small bar files cut from the bundled data, a fake exchange."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.feather as pf
import pytest

from claire.adapters.mexc.fake import FakeMexc
from claire.adapters.mexc.feed import open_feed
from claire.events import Bar
from claire.marketdata import open_market_data

ROWS = 600
HISTORY = 40


@pytest.fixture(scope="session")
def bar_paths(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> list[Path]:
    """BTC and ETH 1m bars, the first ROWS rows of the bundled files (same names, so same symbols)."""
    out = tmp_path_factory.mktemp("mexc-bars")
    paths = []
    for name in ("BTC_USDT-1m.feather", "ETH_USDT-1m.feather"):
        table = pf.read_table(data_dir / name).slice(0, ROWS)
        pf.write_feather(table, out / name)
        paths.append(out / name)
    return paths


@pytest.fixture(scope="session")
def file_bars(bar_paths: list[Path]) -> dict[str, Bar]:
    """id -> bar, as the file reader makes them."""
    return {ev.id: ev for ev in open_market_data(bar_paths) if isinstance(ev, Bar)}


@pytest.fixture(scope="session")
def fake_bars(bar_paths: list[Path]) -> dict[str, list[Bar]]:
    bars: dict[str, list[Bar]] = {}
    for ev in open_market_data(bar_paths):
        bars.setdefault(ev.symbol, []).append(ev)
    return bars


def make_fake(fake_bars: dict[str, list[Bar]], **kw: Any) -> FakeMexc:
    kw.setdefault("speed", 20.0)
    kw.setdefault("history", HISTORY)
    return FakeMexc(bars=fake_bars, **kw)


FAST_STREAM = {"backoff_base_s": 0.02, "backoff_max_s": 0.2, "stable_after_s": 0.05, "ack_timeout_s": 5.0}


async def run_live(fake: FakeMexc, symbols: list[str], *, until: Callable[[list[Any]], bool], timeout: float = 15.0,
                   warmup: int = 5, capture_dir: Path | None = None, stream_options: dict[str, Any] | None = None,
                   **feed_options: Any) -> tuple[list[Any], Any]:
    """Run a live feed against a started fake until ``until(events)``; (events, feed)."""
    so = {**FAST_STREAM, **(stream_options or {})}
    feed = open_feed(symbols, warmup=warmup, rest_url=fake.rest_url, ws_url=fake.ws_url, capture_dir=capture_dir,
                     stream_options=so, **feed_options)
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    async for ev in feed.events():
        events.append(ev)
        if not feed._stop and (until(events) or time.monotonic() > deadline):
            feed.request_stop()
    return events, feed


def live(fake_bars: dict[str, list[Bar]], symbols: list[str], *, fake_options: dict[str, Any] | None = None,
         **kw: Any) -> tuple[list[Any], Any, FakeMexc]:
    async def main():
        fake = make_fake(fake_bars, **(fake_options or {}))
        await fake.start()
        try:
            events, feed = await run_live(fake, symbols, **kw)
        finally:
            await fake.stop()
        return events, feed, fake

    return asyncio.run(main())


def bars_of(events: list[Any], symbol: str | None = None) -> list[Bar]:
    return [e for e in events if isinstance(e, Bar) and (symbol is None or e.symbol == symbol)]


def n_bars_each(n: int, symbols: list[str]) -> Callable[[list[Any]], bool]:
    def done(events: list[Any]) -> bool:
        counts = dict.fromkeys(symbols, 0)
        for e in events:
            if isinstance(e, Bar):
                counts[e.symbol] += 1
        return all(c >= n for c in counts.values())

    return done

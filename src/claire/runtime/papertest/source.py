"""The papertest's market data: the live MEXC source, resumed where the checkpoint stopped.

A paper run that died (a crash, ``kill -9``, a reboot) restarts from its database checkpoint:
the core's state comes back exactly, and the market data must go on from the bar after the last
one the core processed, with nothing twice and no hole. :class:`ResumePoint` reads that place
from the checkpoint (the paper exchange's last bar per symbol, the core's clock);
:class:`ResumingFeed` starts the MEXC feed there: instead of the warm-up it fetches every bar
closed since then by REST (the exchange's own values; a ``gap_repaired`` data-quality record with
cause ``resume`` says how many), then goes on live. :func:`bounded` drops anything not after the
resume point and ends the stream when the run's clock reaches its end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claire.adapters.mexc import (
    DataQualityRecord,
    MexcFeed,
    MexcMarketData,
)
from claire.adapters.mexc.feed import open_feed
from claire.events import Bar
from claire.runtime.sources import MexcSource, _Market

log = logging.getLogger("claire.papertest")

NS_PER_MS = 1_000_000


@dataclass
class ResumePoint:
    """Where a resumed run goes on: ``bars`` symbol -> close (ns) of the last bar processed,
    ``now_ns`` the core's clock (the last market event's time)."""

    bars: dict[str, int] = field(default_factory=dict)
    now_ns: int = 0

    def next_open_ms(self, symbol: str, step_ms: int) -> int | None:
        """The open (ms) of the next bar of ``symbol`` (None: the core saw no bar of it)."""
        close = self.bars.get(symbol)
        if close is not None:
            return close // NS_PER_MS
        if self.now_ns:
            now_ms = self.now_ns // NS_PER_MS
            return now_ms - now_ms % step_ms
        return None


def resume_point(state: bytes | None) -> ResumePoint | None:
    """The resume point of a paper checkpoint (:func:`claire.runtime.paper.checkpoint_bytes`);
    None without one or for a finished run."""
    if not state:
        return None
    data = json.loads(state)
    if data.get("completed") or "core" not in data:
        return None
    core = data["core"]
    bars: dict[str, int] = {}
    for raw in (core.get("execution") or {}).get("last_bar") or []:
        bar = json.loads(raw) if isinstance(raw, str) else raw
        sym, ts = bar.get("symbol"), bar.get("ts_event")
        if sym and isinstance(ts, int):
            bars[sym] = max(ts, bars.get(sym, 0))
    return ResumePoint(bars=bars, now_ns=int(core.get("now") or 0))


class ResumingFeed(MexcFeed):
    """A :class:`MexcFeed` that starts at a resume point: the bars closed since then come by
    REST, as live bars (they trade), then the live stream goes on; no warm-up (the strategy's
    state is in the checkpoint)."""

    resume: ResumePoint | None = None

    async def _warmup(self) -> list[Any]:
        if self.resume is None:
            return list(await super()._warmup())
        now_ms = await self.rest.server_time()
        step = self.step_ms
        current = now_ms - now_ms % step
        starts = {s: self.resume.next_open_ms(s, step) for s in self.symbols}
        todo = [s for s in self.symbols if starts[s] is not None and starts[s] < current]  # type: ignore[operator]
        results = await asyncio.gather(*(self.rest.closed_bars(s, starts[s], current, interval_s=self.interval_s)  # type: ignore[arg-type]
                                         for s in todo))
        out: list[Bar] = []
        ts_recv = time.time_ns()
        for sym, bars in zip(todo, results, strict=True):
            out.extend(bars)
            start = starts[sym] or current
            self._record(DataQualityRecord(symbol=sym, kind="gap_repaired", cause="resume",
                                           from_ts=start * NS_PER_MS, to_ts=current * NS_PER_MS,
                                           bars_repaired=len(bars), ts_recv=ts_recv,
                                           details={"windows": (current - start) // step}))
        for s in self.symbols:
            self._state[s].next_open = current
        out.sort(key=lambda b: (b.ts_event, self._state[b.symbol].index))
        self.stats["bars"] += len(out)
        self._window = current
        known = [v for v in starts.values() if v is not None]
        self.live_from_ms = min(known) if known else current
        log.info("resumed at %s: %d bar(s) repaired by REST up to %d", starts, len(out), current)
        return list(out)


def open_resuming_feed(symbols: Sequence[str], resume: ResumePoint | None, **options: Any) -> ResumingFeed:
    """:func:`claire.adapters.mexc.feed.open_feed` making a :class:`ResumingFeed` that starts at ``resume``."""
    feed = open_feed(symbols, feed_class=ResumingFeed, **options)
    assert isinstance(feed, ResumingFeed)  # noqa: S101 - open_feed made it of feed_class
    feed.resume = resume
    return feed


class _ResumeData(MexcMarketData):
    resume: ResumePoint | None = None

    def _events(self) -> Any:
        self.feed = open_resuming_feed(self.symbols, self.resume, warmup=self.warmup,
                                       capture_dir=self.capture_dir, **self.options)
        return self.feed.events()


class _ResumeMarket(_Market, _ResumeData):
    """The source's market (data-quality records, books and the warm-up's end in the stream)
    over a :class:`ResumingFeed`."""


class PaperTestSource(MexcSource):
    """:class:`MexcSource` (live) that resumes at ``resume`` (None: a fresh start with warm-up)."""

    def __init__(self, symbols: list[str], *, resume: ResumePoint | None, warmup: int = 0,
                 capture_dir: str | Path | None = None, **options: Any) -> None:
        super().__init__(symbols, warmup=warmup, capture_dir=capture_dir, **options)
        market = _ResumeMarket(symbols, warmup=warmup, capture_dir=capture_dir, **options)
        market.books = self.market.books
        market.resume = resume
        self.market = market


class Bounded:
    """The events of ``source`` after ``resume`` (bars after each symbol's last one, other events
    after the core's clock), until ``reached(ts_event_ns)`` says the run's time is up: then the
    stream ends there (``on_end`` is called once) and the run finishes. Bound to the core like
    the source it wraps."""

    def __init__(self, source: Any, resume: ResumePoint | None, reached: Callable[[int], bool],
                 on_end: Callable[[], None] | None = None) -> None:
        self.source = source
        self.resume = resume
        self.reached = reached
        self.on_end = on_end
        self.ended = False
        self.last_ts = 0

    def bind(self, core: Any) -> None:
        self.source.bind(core)

    def __iter__(self) -> Iterator[Any]:
        bars = dict(self.resume.bars) if self.resume else {}
        now = self.resume.now_ns if self.resume else 0
        reached = self.reached
        for ev in self.source:
            ts = ev.ts_event
            if type(ev) is Bar:
                if ts <= bars.get(ev.symbol, -1):
                    continue
                bars[ev.symbol] = ts
            elif ts <= now:
                continue
            if reached(ts):
                self.ended = True
                if self.on_end is not None:
                    self.on_end()
                return
            self.last_ts = ts
            yield ev

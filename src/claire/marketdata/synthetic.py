"""Deterministic synthetic bars: a random walk per symbol, for tests and a demo without data."""

from __future__ import annotations

import random
from collections.abc import Iterable
from decimal import Decimal

from claire.events import Bar
from claire.events.time import NS_PER_SEC
from claire.marketdata.symbols import normalize_symbol


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def synthetic_bars(symbols: str | Iterable[str], n: int, start_ns: int, interval_s: int = 60,
                   seed: int = 0, *, volatility: float = 0.002) -> list[Bar]:
    """``n`` bars per symbol, merged in event-time order (ties in the order of ``symbols``).

    ``start_ns`` is the open time of the first bar, so the first ``ts_event`` (close time) is
    ``start_ns + interval_s`` seconds. Prices have 2 decimals and stay >= 0.01, volumes are
    positive with 4 decimals, high/low enclose open/close. The same arguments give the same
    bars on every run and platform (each symbol has its own seeded generator).
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    syms = [normalize_symbol(s) for s in symbols]
    if not syms:
        raise ValueError("synthetic_bars needs at least one symbol")
    if len(set(syms)) != len(syms):
        raise ValueError(f"symbols repeat: {syms}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    step = interval_s * NS_PER_SEC
    per_symbol: list[list[Bar]] = []
    for sym in syms:
        rng = random.Random(f"claire-synthetic:{seed}:{sym}")  # noqa: S311 - reproducible synthetic prices, not security
        price = rng.randint(2_000, 200_000)  # in cents: 20.00 .. 2000.00
        bars: list[Bar] = []
        prefix = f"bar:{sym}:{interval_s}:"
        for i in range(n):
            o = price
            c = max(1, round(o * (1.0 + rng.gauss(0.0, volatility))))
            wick = max(1, round(o * volatility))
            h = max(o, c) + rng.randint(0, wick)
            lo = max(1, min(o, c) - rng.randint(0, wick))
            vol = Decimal(rng.randint(1, 1_000_000)).scaleb(-4)
            ts = start_ns + (i + 1) * step
            bars.append(Bar(id=prefix + str(ts), ts_event=ts, ts_recv=ts, symbol=sym, interval_s=interval_s,
                            open=_cents(o), high=_cents(h), low=_cents(lo), close=_cents(c), volume=vol))
            price = c
        per_symbol.append(bars)
    if len(per_symbol) == 1:
        return per_symbol[0]
    # same timestamps for every symbol: interleave bar by bar, in the order of `symbols`
    return [bar for group in zip(*per_symbol, strict=True) for bar in group]

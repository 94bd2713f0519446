"""The run options of the command line, as typed (text, not yet checked), with their defaults.

``claire backtest``, ``paper``, ``up`` and ``spec`` (and the benchmarks, which measure what the
command runs) share these options: one declaration, so every command has the same defaults.
A light module (no core import), so that the command line can read the defaults at start-up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The run options as typed on the command line (text, not yet checked).

    One declaration of every shared option and its default, so that every command agrees;
    :func:`make_config` turns it into a :class:`RunConfig`."""

    source: str = "files"  # files (--data / --synthetic) or mexc (live: --symbols)
    symbols: str | None = None  # --source mexc: comma-separated, e.g. BTCUSDT,ETHUSDT
    data: list[Path] = dataclasses.field(default_factory=list)
    synthetic: int = 0
    symbol: str | None = None
    strategy: str = "momentum"  # the seeds' strategy
    param: list[str] = dataclasses.field(default_factory=list)
    quantity: str | None = None
    fee_bps: str = "10"
    maker_fee_bps: str | None = None  # default: --fee-bps
    slippage_bps: str = "0"
    fill: str = "next_open"
    risk: str = "default"
    start_cash: str = "100000"
    max_volume_share: str = "0.25"
    out: Path | None = None
    db: str | None = None
    redis: str | None = None
    speed: str = "max"
    signal_replicas: int = 1
    topology: str = "seeds"
    run_id: str | None = None

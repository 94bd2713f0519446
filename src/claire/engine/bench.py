"""Replay benchmark: engine time of the full core on pre-loaded bars."""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from claire.engine.backtest import BacktestConfig, build_core, run_events
from claire.reporting import Recorder

DEFAULT_FILES = ["BTC_USDT-1m.feather", "ETH_USDT-1m.feather", "BNB_USDT-1m.feather",
                 "SOL_USDT-1m.feather", "XRP_USDT-1m.feather"]


def default_data_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in [Path.cwd(), *here.parents]:
        if (parent / "data" / DEFAULT_FILES[0]).exists():
            return parent / "data"
    raise FileNotFoundError("bundled data/ folder not found: pass --data")


def bench_replay(files: list[Path] | None = None, strategy: str = "sma_cross", repeat: int = 3) -> dict[str, Any]:
    from claire.marketdata import open_market_data

    paths = files or [default_data_dir() / f for f in DEFAULT_FILES]
    t0 = time.perf_counter()
    bars = list(open_market_data(paths))
    load_s = time.perf_counter() - t0
    best = None
    result = None
    for _ in range(max(1, repeat)):
        rec = Recorder()
        core = build_core(BacktestConfig(data=paths, strategy=strategy), rec)
        gc.collect()
        gc.disable()
        try:
            t = time.perf_counter()
            run_events(core, bars)
            core.finish()
            dt = time.perf_counter() - t
        finally:
            gc.enable()
        if best is None or dt < best:
            best, result = dt, (core, rec)
    assert best is not None and result is not None
    core, rec = result
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "bench": "replay",
        "bars": len(bars),
        "seconds": round(best, 4),
        "bars_per_sec": round(len(bars) / best),
        "load_seconds": round(load_s, 3),
        "strategy": strategy,
        "signals": len(rec.signals),
        "orders": len(rec.orders),
        "fills": len(rec.fills),
        "snapshots": len(rec.snapshots),
        "final_equity": str(core.portfolio.equity().quantize(__import__("decimal").Decimal("0.01"))),
        "max_rss_mb": round(rss_mb, 1),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "command": "claire bench replay --json",
    }

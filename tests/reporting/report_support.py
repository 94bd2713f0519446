"""Shared by the report tests: a real backtest's run files (and database) on the bundled bars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"
CLAIRE = str(Path(sys.executable).parent / "claire")


def first_bars(dest: Path, symbol: str, n: int) -> Path:
    """The first ``n`` bars of a bundled file, as a file of the same name in ``dest``."""
    import pyarrow.feather as feather

    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{symbol}_USDT-1m.feather"
    feather.write_feather(feather.read_table(DATA / path.name).slice(0, n), str(path))
    return path


def run_backtest_files(out: Path, db: str | None = None, symbols: tuple[str, ...] = ("BTC", "ETH"),
                       strategy: str = "momentum", extra: tuple[str, ...] = (), bars: int | None = None) -> Path:
    """``claire backtest`` (30 days of 1m bars, or the first ``bars``) into ``out``; with ``db`` its events too."""
    cmd = [CLAIRE, "backtest", "--strategy", strategy, "--out", str(out), "--json"]
    for s in symbols:
        path = DATA / f"{s}_USDT-1m.feather" if bars is None else first_bars(out.parent / "bars", s, bars)
        cmd += ["--data", str(path)]
    cmd += list(extra)
    if db:
        cmd += ["--db", db]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return out

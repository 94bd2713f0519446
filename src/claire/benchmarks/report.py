"""``claire bench report``: ``claire report --db`` on a big synthetic run in PostgreSQL.

The run (1,000,000 portfolio snapshots, 10,000 round trips = 20,000 signals, orders, fills,
execution analyses, market conditions and risk decisions) is bulk-loaded with COPY into a fresh
database (dropped after); then ``claire report --db URL --run bench-report`` runs as its own
process ``repeat`` times: wall time and peak RSS (``wait4``), the median reported."""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from claire.storage.database import Database

RUN_ID = "bench-report"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
SNAPSHOT_STEP_S = 10
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _create_database() -> tuple[str, str]:
    """A fresh database: (its psycopg URL, its name)."""
    admin = os.environ.get("CLAIRE_BENCH_PG_URL", ADMIN_URL)
    name = f"claire_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{admin.rsplit('/', 1)[0]}/{name}", name


def _drop_database(name: str) -> None:
    admin = os.environ.get("CLAIRE_BENCH_PG_URL", ADMIN_URL)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _iso(t: datetime) -> str:
    return t.isoformat()


def _snapshot_lines(n: int, chunk: int = 100_000) -> Iterator[str]:
    """Text-format COPY rows of ``n`` snapshots: a random walk of equity, every 10 s."""
    rng = np.random.default_rng(12)
    equity = 100_000 * np.cumprod(1 + rng.normal(0.000002, 0.0003, n))
    hwm = np.maximum.accumulate(np.maximum(equity, 100_000))
    dd = 1 - equity / hwm
    for start in range(0, n, chunk):
        out = []
        for i in range(start, min(n, start + chunk)):
            ts = _iso(T0 + timedelta(seconds=i * SNAPSHOT_STEP_S))
            eq = f"{equity[i]:.2f}"
            out.append(f"s{i}\t{RUN_ID}\t{ts}\t{ts}\tperiodic\t100000\t{eq}\t{eq}\t0\t0\t0\t0\t0.05\t"
                       f"{hwm[i]:.2f}\t{dd[i]:.8f}\t{eq}\t0\t0\t[]\n")
        yield "".join(out)


def _trade_rows(trades: int, span_s: int) -> dict[str, list[str]]:
    """Signals, orders, fills (two per round trip), execution analyses, market conditions, risk decisions."""
    rng = np.random.default_rng(13)
    rows: dict[str, list[str]] = {k: [] for k in ("signals", "orders", "trades", "execution_analysis",
                                                  "market_conditions", "risk_events")}
    step = max(2, span_s // (trades * 2))
    for k in range(trades * 2):
        sym = SYMBOLS[(k // 2) % len(SYMBOLS)]
        side = "buy" if k % 2 == 0 else "sell"
        ts = _iso(T0 + timedelta(seconds=k * step))
        price = 100 * (1 + 0.01 * float(rng.normal()))
        fill = price * (1 + 0.0001 * float(rng.normal()))
        sid, oid, tid = f"sig{k}", f"ord{k}", f"fill{k}"
        rows["signals"].append(f"{sid}\t{RUN_ID}\t{ts}\t{ts}\t{sym}\t{side}\t{price:.4f}\t0.5\tbench\t1\n")
        rows["orders"].append(f"{oid}\t{RUN_ID}\t{sid}\t{ts}\t{ts}\t{sym}\t{side}\tmarket\tgtc\t1\t{price:.4f}\t"
                              f"filled\t1\t{fill:.4f}\n")
        rows["trades"].append(f"{tid}\t{RUN_ID}\t{oid}\t{sid}\t{ts}\t{ts}\t{sym}\t{side}\tmarket\tfilled\t1\t"
                              f"{fill:.4f}\t{fill:.4f}\t0.1\t{price:.4f}\t{(fill / price - 1) * 1e4:.4f}\t1.5\n")
        rows["execution_analysis"].append(
            f"{tid}\t{RUN_ID}\t{oid}\t{sid}\t{sym}\t{side}\t{ts}\t{price:.4f}\t{fill:.4f}\t"
            f"{(fill / price - 1) * 1e4:.4f}\t1.5\t0.9\n")
        rows["market_conditions"].append(f"{sid}\t{RUN_ID}\t{sym}\t{ts}\t{price:.4f}\t55.5\t0.3\n")
        rows["risk_events"].append(f"r{k}\t{RUN_ID}\t{ts}\t{ts}\t{sid}\tall\tapproved\ttrue\tall checks passed\t"
                                   "active\t{}\n")
    return rows


COLUMNS = {
    "signals": "id, run_id, ts, recv_ts, symbol, side, price, confidence, strategy, strategy_version",
    "orders": "id, run_id, signal_id, ts, recv_ts, symbol, side, order_type, time_in_force, quantity, "
              "reference_price, status, filled_quantity, avg_fill_price",
    "trades": "id, run_id, order_id, signal_id, ts, recv_ts, symbol, side, order_type, status, quantity, price, "
              "notional, fee, reference_price, slippage_bps, latency_ms",
    "execution_analysis": "trade_id, run_id, order_id, signal_id, symbol, side, execution_ts, expected_price, "
                          "execution_price, slippage_bps, total_latency_ms, execution_quality_score",
    "market_conditions": "signal_id, run_id, symbol, ts, price, rsi_14, bb_position",
    "risk_events": "id, run_id, ts, recv_ts, signal_id, check_type, action, passed, reason, trading_state, details",
}
SNAPSHOT_COLUMNS = ("id, run_id, ts, recv_ts, reason, start_cash, cash, equity, realized_pnl, unrealized_pnl, fees, "
                    "total_exposure, total_exposure_pct, high_water_mark, drawdown_pct, day_start_equity, daily_pnl, "
                    "num_positions, positions")


def populate(url: str, snapshots: int, trades: int) -> float:
    """The synthetic run, COPYed in; returns the seconds it took."""
    t0 = time.perf_counter()
    db = Database(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        db.upgrade()
    finally:
        db.dispose()
    with psycopg.connect(url) as c:
        c.execute("INSERT INTO runs (id, mode, config) VALUES (%s, 'paper', %s)",
                  (RUN_ID, json.dumps({"strategy": "bench"})))
        with c.cursor().copy(f"COPY portfolio_snapshots ({SNAPSHOT_COLUMNS}) FROM STDIN") as cp:
            for part in _snapshot_lines(snapshots):
                cp.write(part)
        for table, lines in _trade_rows(trades, snapshots * SNAPSHOT_STEP_S).items():
            with c.cursor().copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as cp:
                buf = io.StringIO("".join(lines))
                cp.write(buf.getvalue())
        c.execute("ANALYZE")
    return time.perf_counter() - t0


def _one_report(url: str, out: Path) -> tuple[float, float, float]:
    """``claire report --db`` as its own process: (wall seconds, peak RSS MiB, CPU seconds)."""
    claire = str(Path(sys.executable).with_name("claire"))
    t0 = time.perf_counter()
    p = subprocess.Popen([claire, "report", "--db", url, "--run", RUN_ID, "--out", str(out), "--json"],  # noqa: S603
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - t0
    stdout = p.stdout.read() if p.stdout else b""
    stderr = p.stderr.read() if p.stderr else b""
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"claire report failed: {stderr.decode()[-500:]}")
    json.loads(stdout)
    return took, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def bench_report(snapshots: int = 1_000_000, trades: int = 10_000, repeat: int = 3) -> dict[str, Any]:
    url, name = _create_database()
    try:
        load_s = populate(url, snapshots, trades)
        runs = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(repeat):
                runs.append(_one_report(url, Path(tmp) / f"r{i}"))
            html_bytes = (Path(tmp) / "r0" / "report.html").stat().st_size
    finally:
        _drop_database(name)
    times = [r[0] for r in runs]
    rss = [r[1] for r in runs]
    return {"bench": "report", "snapshots": snapshots, "round_trips": trades, "fills": trades * 2,
            "populate_seconds": round(load_s, 1), "repeat": repeat,
            "report_seconds_median": round(statistics.median(times), 2), "report_seconds": [round(t, 2) for t in times],
            "peak_rss_mib_median": round(statistics.median(rss), 1), "html_bytes": html_bytes,
            "cpu_seconds_median": round(statistics.median(r[2] for r in runs), 2),
            "load_average_1m": round(os.getloadavg()[0], 1),
            "command": f"claire bench report --snapshots {snapshots} --trades {trades} --repeat {repeat}"}


def format_report(res: dict[str, Any]) -> str:
    return (f"claire report --db (PostgreSQL): {res['snapshots']:,} snapshots, {res['round_trips']:,} round trips "
            f"({res['fills']:,} fills), loaded in {res['populate_seconds']} s\n"
            f"  time: median {res['report_seconds_median']} s of {res['report_seconds']} "
            f"(CPU {res['cpu_seconds_median']} s; load average {res['load_average_1m']})\n"
            f"  peak RSS: median {res['peak_rss_mib_median']} MiB; report.html {res['html_bytes']:,} bytes\n"
            f"  command: {res['command']}")

"""Storage benchmarks (functions returning dicts; ``claire bench`` prints them).

- :func:`writer_throughput`: sustained EventWriter throughput in events/s for a realistic mix
  (signals with indicators, risk decisions, market and limit orders, fills, snapshots after
  each fill and periodic ones, a few alerts).
- :func:`query_latency`: the three seed-002 queries (latest 100 signals of a symbol; open
  position exposure; JSONB containment on risk events) on ``rows`` rows each, p50/p95/p99 ms.

Both need PostgreSQL (a URL of a database they may fill; :func:`query_latency` adds its rows
under its own run ids and removes them unless ``keep=True``).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import text

from claire.events import (
    Alert,
    AlertLevel,
    CheckResult,
    Liquidity,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    PortfolioSnapshot,
    PositionSide,
    PositionState,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    Signal,
)
from claire.storage.database import Database
from claire.storage.writer import EventWriter

T0 = 1_735_689_600_000_000_000
SEC = 1_000_000_000
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
BASE = {
    "BTCUSDT": Decimal("65000"),
    "ETHUSDT": Decimal("3400"),
    "SOLUSDT": Decimal("150"),
    "BNBUSDT": Decimal("580"),
    "XRPUSDT": Decimal("0.52"),
}


def make_events(n: int, seed: int = 7) -> list[Any]:
    """About ``n`` events of a realistic mix, in pipeline order."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible bench data, not security
    out: list[Any] = []
    i = 0
    qty = {s: Decimal(0) for s in SYMBOLS}
    equity = Decimal("100000")
    while len(out) < n:
        i += 1
        ts = T0 + i * SEC
        sym = SYMBOLS[i % len(SYMBOLS)]
        px = (BASE[sym] * Decimal(1 + rnd.uniform(-0.01, 0.01))).quantize(Decimal("0.0001"))
        sid = str(uuid.uuid4())
        side = Side.BUY if rnd.random() < 0.5 else Side.SELL
        sig = Signal(
            id=sid,
            ts_event=ts,
            ts_recv=ts,
            correlation_id=sid,
            symbol=sym,
            side=side,
            price=px,
            confidence=Decimal(str(round(rnd.uniform(0.5, 1), 3))),
            strategy="momentum",
            strategy_version="1",
            market_ts=ts,
            metadata={
                "rsi": rnd.uniform(20, 80),
                "macd": rnd.uniform(-5, 5),
                "macd_signal": rnd.uniform(-5, 5),
                "macd_hist": rnd.uniform(-1, 1),
                "bb_upper": float(px) * 1.02,
                "bb_lower": float(px) * 0.98,
                "bb_position": rnd.uniform(0, 1),
                "reason": "bench",
            },
        )
        out.append(sig)
        approved = rnd.random() < 0.7
        checks = tuple(
            CheckResult(check=c, passed=True)
            for c in (RiskCheck.DATA_QUALITY, RiskCheck.POSITION_LIMIT, RiskCheck.DAILY_DRAWDOWN)
        )
        checks += (
            CheckResult(
                check=RiskCheck.TOTAL_EXPOSURE, passed=approved, value=Decimal("0.25"), limit=Decimal("0.30")
            ),
        )
        out.append(
            RiskEvent(
                id=str(uuid.uuid4()),
                ts_event=ts + 1000,
                ts_recv=ts + 1000,
                signal_id=sid,
                symbol=sym,
                check=RiskCheck.ALL if approved else RiskCheck.TOTAL_EXPOSURE,
                action=RiskAction.APPROVED if approved else RiskAction.REJECTED,
                passed=approved,
                value=Decimal("0.25"),
                limit=Decimal("0.30"),
                reason="ok" if approved else "exposure",
                checks=checks,
                portfolio={"equity": equity, "current_exposure": rnd.randint(0, 30000)},
                config={"MAX_TOTAL_EXPOSURE_PCT": Decimal("0.30")},
            )
        )
        if not approved:
            continue
        q = (Decimal(1000) / px).quantize(Decimal("0.000001"))
        limit = rnd.random() < 0.3
        oid = str(uuid.uuid4())
        order = Order(
            id=oid,
            ts_event=ts + 2000,
            ts_recv=ts + 2000,
            correlation_id=sid,
            causation_id=sid,
            symbol=sym,
            side=side,
            quantity=q,
            order_type=OrderType.LIMIT if limit else OrderType.MARKET,
            price=px if limit else None,
            signal_id=sid,
            reference_price=px,
            strategy="momentum",
        )
        out.append(order)
        parts = 2 if rnd.random() < 0.2 else 1
        cum = Decimal(0)
        for k in range(parts):
            fq = q if parts == 1 else (q / 2 if k == 0 else q - cum)
            cum += fq
            fpx = (px * Decimal(1 + rnd.uniform(0, 0.0005))).quantize(Decimal("0.0001"))
            fts = ts + 5000 + k
            out.append(
                OrderResult(
                    id=str(uuid.uuid4()),
                    ts_event=fts,
                    ts_recv=fts,
                    correlation_id=sid,
                    causation_id=oid,
                    order_id=oid,
                    signal_id=sid,
                    symbol=sym,
                    side=side,
                    status=OrderStatus.FILLED if cum == q else OrderStatus.PARTIALLY_FILLED,
                    order_type=order.order_type,
                    quantity=fq,
                    price=fpx,
                    order_quantity=q,
                    cum_quantity=cum,
                    leaves_quantity=q - cum,
                    fee=(fq * fpx * Decimal("0.001")).quantize(Decimal("0.00000001")),
                    liquidity=Liquidity.TAKER,
                    reference_price=px,
                    latency_ns=3_000_000,
                )
            )
            qty[sym] += fq if side is Side.BUY else -fq
            out.append(_snapshot(fts + 1, qty, equity, "fill"))
        if i % 10 == 0:
            out.append(_snapshot(ts + 9000, qty, equity, "periodic"))
        if i % 200 == 0:
            out.append(
                Alert(
                    id=str(uuid.uuid4()),
                    ts_event=ts,
                    ts_recv=ts,
                    level=AlertLevel.INFO,
                    source="bench",
                    code="HEARTBEAT",
                    message="bench",
                )
            )
    return out[:n]


def _snapshot(ts: int, qty: dict[str, Decimal], equity: Decimal, reason: str) -> PortfolioSnapshot:
    states = []
    exposure = Decimal(0)
    for sym, q in qty.items():
        if q == 0:
            continue
        px = BASE[sym]
        states.append(
            PositionState(
                symbol=sym,
                side=PositionSide.LONG if q > 0 else PositionSide.SHORT,
                quantity=q,
                avg_price=px,
                mark_price=px,
                cost_basis=q * px,
                unrealized_pnl=Decimal(0),
                realized_pnl=Decimal(0),
                fees=Decimal(0),
                exposure=abs(q) * px,
                opened_ts=ts,
            )
        )
        exposure += abs(q) * px
    return PortfolioSnapshot(
        id=str(uuid.uuid4()),
        ts_event=ts,
        ts_recv=ts,
        start_cash=Decimal("100000"),
        cash=equity - exposure,
        equity=equity,
        realized_pnl=Decimal(0),
        unrealized_pnl=Decimal(0),
        fees=Decimal(0),
        total_exposure=exposure,
        total_exposure_pct=exposure / equity,
        high_water_mark=equity,
        drawdown_pct=Decimal(0),
        day_start_equity=equity,
        daily_pnl=Decimal(0),
        num_positions=len(states),
        positions=tuple(states),
        reason=reason,
    )


def writer_throughput(
    url: str, events: int = 100_000, batch_size: int = 2000, run_id: str | None = None
) -> dict[str, Any]:
    """Sustained writer throughput into the database at ``url`` (events/s, wall clock,
    including commit of the last batch)."""
    evs = make_events(events)
    mix: dict[str, int] = {}
    for ev in evs:
        mix[type(ev).__name__] = mix.get(type(ev).__name__, 0) + 1
    db = Database(url)
    try:
        db.upgrade()
        run_id = run_id or f"bench-{uuid.uuid4()}"
        w = EventWriter(db, run_id, batch_size=batch_size, flush_interval=None, mode="test")
        server_before = _server_cpu(db)
        cpu = time.process_time()
        t = time.perf_counter()
        w.write_many(evs)
        w.flush()
        secs = time.perf_counter() - t
        client_cpu = time.process_time() - cpu
        server_after = _server_cpu(db)
        server_cpu = (
            server_after - server_before if server_before is not None and server_after is not None else None
        )
        w.close()
        rows = sum(
            v
            for k, v in w.stats.items()
            if k
            in (
                "signals",
                "orders",
                "trades",
                "execution_analysis",
                "market_conditions",
                "portfolio_snapshots",
                "positions",
                "risk_events",
                "alerts",
                "strategy_versions",
            )
        )
        return {
            "backend": db.backend,
            "events": len(evs),
            "batch_size": batch_size,
            "seconds": round(secs, 3),
            "events_per_sec": round(len(evs) / secs),
            "rows_written": rows,
            "rows_per_sec": round(rows / secs),
            "mix": mix,
            "dead_letters": w.stats["dead_letters"],
            "run_id": run_id,
            # CPU seconds of this process and of the server backends of this database (None when
            # the server's processes are not visible): events / max(...) is the rate with one
            # core each, whatever else runs on the machine
            "client_cpu_s": round(client_cpu, 3),
            "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
            "cpu_bound_events_per_sec": round(len(evs) / max(client_cpu, server_cpu or 0))
            if client_cpu
            else None,
            "client_cpu_us_per_event": round(client_cpu / len(evs) * 1e6, 1),
            "server_cpu_us_per_event": round(server_cpu / len(evs) * 1e6, 1) if server_cpu is not None else None,
            "flushes": w.stats["flushes"],
            "machine_load_1m": os.getloadavg()[0],
        }
    finally:
        db.dispose()


def _server_cpu(db: Database) -> float | None:
    """utime + stime (s) of every server backend connected to this database (local server)."""
    if not db.is_postgres:
        return None
    try:
        with db.connect() as conn:
            pids = [
                r[0]
                for r in conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                )
            ]
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total
    except (OSError, ValueError, IndexError):
        return None


# --- the seed-002 queries -------------------------------------------------------------------

QUERIES = {
    "latest_100_signals": "SELECT * FROM signals WHERE symbol = 'BTCUSDT' ORDER BY ts DESC LIMIT 100",
    "open_positions_exposure": "SELECT symbol, sum(exposure) AS exposure FROM open_positions GROUP BY symbol",
    "open_positions_exposure_of_run": (
        "SELECT symbol, sum(exposure) AS exposure FROM open_positions WHERE run_id = :run GROUP BY symbol"
    ),
    "risk_events_jsonb_containment": (
        'SELECT * FROM risk_events WHERE details @> \'{"portfolio": {"current_exposure": 4850}}\''
    ),
}


def _populate(db: Database, rows: int, tag: str) -> dict[str, Any]:
    """Fill signals, positions and risk_events with ``rows`` rows each (server-side)."""
    n_runs = max(rows // 100, 1)  # positions: 100 symbols per run, 0.1 % of the runs still open
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, mode) SELECT :tag || '-' || g, 'test' FROM generate_series(0, :n - 1) g"
            ),
            {"tag": tag, "n": n_runs},
        )
        conn.execute(
            text("""
            INSERT INTO signals (id, run_id, ts, recv_ts, symbol, side, price, confidence, strategy,
                                 strategy_version, metadata)
            SELECT :tag || '-s-' || g, :tag || '-' || (g % :runs),
                   timestamptz '2025-01-01' + g * interval '1 second', timestamptz '2025-01-01' + g * interval '1 second',
                   (ARRAY['BTCUSDT','ETHUSDT','SOLUSDT','BNBUSDT','XRPUSDT'])[1 + g % 5],
                   CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, 100 + (g % 1000) / 10.0, 0.75, 'momentum', '1',
                   jsonb_build_object('rsi', 30 + g % 40, 'macd', (g % 7) - 3)
            FROM generate_series(0, :n - 1) g"""),
            {"tag": tag, "n": rows, "runs": n_runs},
        )
        conn.execute(
            text("""
            INSERT INTO positions (run_id, symbol, side, quantity, avg_price, mark_price, cost_basis, unrealized_pnl,
                                   realized_pnl, fees, exposure, exposure_pct, updated_at, snapshot_id)
            SELECT :tag || '-' || (g / 100), 'SYM' || (g % 100),
                   CASE WHEN (g / 100) % 1000 = 0 THEN 'long' ELSE 'flat' END,
                   CASE WHEN (g / 100) % 1000 = 0 THEN 1.5 ELSE 0 END, 100, 101, 150, 1.5, 0, 0.1,
                   CASE WHEN (g / 100) % 1000 = 0 THEN 151.5 ELSE 0 END,
                   CASE WHEN (g / 100) % 1000 = 0 THEN 0.0015 ELSE 0 END, now(), 'bench'
            FROM generate_series(0, :n - 1) g"""),
            {"tag": tag, "n": n_runs * 100},
        )
        conn.execute(
            text("""
            INSERT INTO risk_events (id, run_id, ts, recv_ts, signal_id, symbol, check_type, action, passed, check_value,
                                     check_limit, reason, trading_state, details)
            SELECT :tag || '-r-' || g, :tag || '-' || (g % :runs),
                   timestamptz '2025-01-01' + g * interval '1 second', timestamptz '2025-01-01' + g * interval '1 second',
                   :tag || '-s-' || g, 'BTCUSDT', 'total_exposure',
                   CASE WHEN g % 3 = 0 THEN 'rejected' ELSE 'approved' END, g % 3 <> 0, 0.25, 0.30, 'bench', 'active',
                   jsonb_build_object(
                     'checks', jsonb_build_array(jsonb_build_object('check', 'total_exposure', 'passed', g % 3 <> 0)),
                     'portfolio', jsonb_build_object('current_exposure', g % 100000, 'equity', 100000),
                     'config', jsonb_build_object('MAX_TOTAL_EXPOSURE_PCT', 0.30))
            FROM generate_series(0, :n - 1) g"""),
            {"tag": tag, "n": rows, "runs": n_runs},
        )
    with db.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for t in ("signals", "positions", "risk_events", "runs"):
            conn.execute(text(f"VACUUM ANALYZE {t}"))
    return {"runs": n_runs, "open_run": f"{tag}-0"}


def _cleanup(db: Database, tag: str) -> None:
    with db.begin() as conn:
        for t in ("risk_events", "positions", "signals"):
            conn.execute(text(f"DELETE FROM {t} WHERE run_id LIKE :p"), {"p": tag + "-%"})  # noqa: S608 - fixed table names, the value is bound
        conn.execute(text("DELETE FROM runs WHERE id LIKE :p"), {"p": tag + "-%"})


def _pct(times: list[float], q: float) -> float:
    times = sorted(times)
    return round(times[min(len(times) - 1, int(q * (len(times) - 1) + 0.5))], 3)


def query_latency(url: str, rows: int = 1_000_000, repeats: int = 300, keep: bool = False) -> dict[str, Any]:
    """Latency of the seed-002 queries with ``rows`` rows in each of signals, positions and
    risk_events (positions: 0.1 % of the runs still have open positions, 100 symbols each).

    Per query: ``client_*``: round trip through psycopg on one connection, all rows fetched
    (what a dashboard pays; no ORM); ``server_*``: the executor's own time from EXPLAIN ANALYZE;
    p50/p95/p99 in ms, and the index the plan uses."""
    db = Database(url)
    tag = f"qb{uuid.uuid4().hex[:8]}"
    try:
        db.upgrade()
        t = time.perf_counter()
        info = _populate(db, rows, tag)
        setup = time.perf_counter() - t
        out: dict[str, Any] = {
            "rows_per_table": rows,
            "repeats": repeats,
            "populate_seconds": round(setup, 1),
            "machine_load_1m": os.getloadavg()[0],
            "queries": {},
        }
        dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            for name, sql in QUERIES.items():
                q = sql.replace(":run", "%(run)s")
                params = {"run": info["open_run"]}
                n = len(conn.execute(q, params).fetchall())  # warm
                client, server = [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    conn.execute(q, params).fetchall()
                    client.append((time.perf_counter() - t) * 1000)
                for _ in range(max(repeats // 3, 10)):
                    plan = conn.execute("EXPLAIN (ANALYZE, TIMING OFF) " + q, params).fetchall()
                    line = next(r[0] for r in plan if r[0].startswith("Execution Time"))
                    server.append(float(line.split(":")[1].split()[0]))
                text_plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + q, params).fetchall())
                out["queries"][name] = {
                    "rows_returned": n,
                    "client_p50_ms": _pct(client, 0.5),
                    "client_p95_ms": _pct(client, 0.95),
                    "client_p99_ms": _pct(client, 0.99),
                    "server_p50_ms": _pct(server, 0.5),
                    "server_p95_ms": _pct(server, 0.95),
                    "index": next((w for w in text_plan.split() if w.startswith("ix_")), None),
                }
        return out
    finally:
        if not keep:
            _cleanup(db, tag)
        db.dispose()

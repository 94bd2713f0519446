"""``claire report``: the final report of a run, from its run files or from the database.

Joins the two layers that may not import each other: the database's rows
(``claire.storage.report_queries``) become a :class:`RunData`, which
``claire.reporting.report`` turns into report.html and the PNG charts."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from claire.reporting.report import Rendered, RunData, load_run_files, render_report
from claire.reporting.report.load import entry_signal_ids
from claire.reporting.report.model import Execution, Fill, RiskCount, trips_from_fills
from claire.reporting.verdict import Verdict, VerdictThresholds
from claire.risk.config import RiskConfig

NS_PER_US = 1_000
NS_PER_SEC = 1_000_000_000


@dataclass(frozen=True)
class ReportResult:
    html: Path
    pngs: list[Path]
    verdict: Verdict
    run_id: str
    seconds: float


def _f(x: Any) -> float | None:
    return None if x is None or x == "" else float(x)


def _risk_limits(cfg: dict[str, Any]) -> dict[str, float]:
    d = RiskConfig()
    return {"max_daily_drawdown_pct": float(cfg.get("max_daily_drawdown_pct", d.max_daily_drawdown_pct)),
            "circuit_breaker_threshold_pct": float(cfg.get("circuit_breaker_threshold_pct",
                                                           d.circuit_breaker_threshold_pct))}


def _risk(rows: list[dict[str, Any]]) -> list[RiskCount]:
    by: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r in rows:
        by[(r["check"], r["action"])][r["reason"]] += r["count"]
    out = [RiskCount(check=k[0], action=k[1], count=sum(c.values()), reason=c.most_common(1)[0][0])
           for k, c in by.items()]
    return sorted(out, key=lambda r: -r.count)


def _system(sysf: dict[str, Any], running: bool) -> dict[str, Any]:
    alerts = sysf["alerts"]
    by_code = Counter({a["code"]: a["occurrences"] for a in alerts})
    up = None
    if sysf["started_at"] and sysf["heartbeat_at"]:
        up = (sysf["heartbeat_at"] - sysf["started_at"]) / NS_PER_SEC
    return {"events_processed": sysf["events_processed"], "uptime_s": up,
            "uptime_note": "first service start to last heartbeat" if up is not None else "",
            "restarts": sysf["restarts"], "data_gaps": by_code.get("data_gap", 0),
            "data_repairs": by_code.get("data_gap_repaired", 0),
            "alerts": sum(a["occurrences"] for a in alerts),
            "critical_alerts": sum(a["occurrences"] for a in alerts if a["level"] == "critical"),
            "dead_letters": sysf["dead_letters"],
            "note": ("no service heartbeats recorded (a backtest): events, uptime and restarts unknown"
                     if not sysf["services"] else "") + (" The run is still going." if running else "")}


def load_run_db(db: Any, run_id: str) -> RunData:
    """A run's data from the database (any run, also while it runs)."""
    from claire.storage import report_queries as Q  # start-up time: SQLAlchemy only for --db

    info = Q.run_info(db, run_id)
    if info is None:
        known = [r for r in (Q.latest_run_id(db),) if r]
        raise ValueError(f"--run {run_id}: no such run in the database"
                         + (f" (the latest is {known[0]})" if known else " (it holds no runs)"))
    eq = Q.equity_points(db, run_id)
    fills = [Fill(time=r["time"] or 0, symbol=r["symbol"], side=r["side"], quantity=float(r["quantity"]),
                  price=float(r["price"]), fee=float(r["fee"]), signal_id=r["signal_id"],
                  reference_price=_f(r["reference_price"]), slippage_bps=_f(r["slippage_bps"]),
                  latency_ms=_f(r["latency_ms"])) for r in Q.fills(db, run_id)]
    trips = trips_from_fills(fills)
    analysis = Q.execution_analysis(db, run_id)
    if analysis:
        execution = [Execution(time=r["time"] or 0, symbol=r["symbol"], side=r["side"],
                               expected_price=_f(r["expected_price"]), fill_price=float(r["fill_price"]),
                               slippage_bps=_f(r["slippage_bps"]), latency_ms=_f(r["latency_ms"]),
                               quality_score=_f(r["quality_score"]), reason=r["reason"]) for r in analysis]
        source = "execution_analysis (expected price, signal -> fill latency, quality score)"
    else:
        execution = [Execution(time=f.time, symbol=f.symbol, side=f.side, expected_price=f.reference_price,
                               fill_price=f.price, slippage_bps=f.slippage_bps, latency_ms=f.latency_ms)
                     for f in fills]
        source = "the fills (no execution_analysis rows for this run)"
    prices: dict[str, list[tuple[int, float]]] = {}
    for us, sym, price in Q.signal_prices(db, run_id):
        prices.setdefault(sym, []).append((us * NS_PER_US, price))
    for f in fills:
        prices.setdefault(f.symbol, []).append((f.time, f.price))
    market = [{**{k: (_f(v) if k not in ("symbol", "signal_id", "trend_direction", "time") else v)
                  for k, v in r.items()}} for r in Q.market_conditions(db, run_id, entry_signal_ids(trips, fills))]
    sysf = Q.system_figures(db, run_id)
    running = info["ended_at"] is None
    cfg = info["config"]
    start = _f(eq["start_cash"]) or 100_000.0
    symbols = sorted({f.symbol for f in fills} | set(prices))
    return RunData(
        run_id=run_id, source=f"database {db.safe_url}", mode=info["mode"], running=running, start_cash=start,
        symbols=symbols, settings={k: cfg[k] for k in ("strategy", "params", "risk", "fill") if k in cfg},
        risk_limits=_risk_limits(Q.risk_config(db, run_id)),
        equity_ts=np.asarray(eq["ts_us"], dtype=np.int64) * NS_PER_US, equity=np.asarray(eq["equity"], dtype=float),
        exposure=np.asarray(eq["exposure"], dtype=float), trips=trips, fills=fills,
        counts={"signals": sysf["signals"], "orders": sysf["orders"], "fills": len(fills)},
        risk=_risk(Q.risk_decisions(db, run_id)),
        state_changes=[(r["time"] or 0, r["action"], r["reason"]) for r in Q.state_changes(db, run_id)],
        execution=execution, execution_source=source, market_at_entries=market,
        market_note="market_conditions (the database); a NULL column is one the data source cannot know",
        open_positions=[{**p, "quantity": abs(float(p["quantity"])), "avg_price": _f(p["avg_price"]),
                         "unrealized_pnl": _f(p["unrealized_pnl"])} for p in Q.open_positions(db, run_id)],
        prices=prices, prices_note="prices observed at the run's signals and fills",
        system=_system(sysf, running), alerts=Q.recent_alerts(db, run_id),
    )


def resolve_run(db: Any, run_id: str | None) -> str:
    from claire.storage import report_queries as Q  # start-up time: SQLAlchemy only for --db

    if not Q.has_tables(db):
        raise ValueError(f"--db {db.safe_url}: no claire tables (not a claire database, or not migrated: "
                         "`claire db upgrade`)")
    if run_id:
        return run_id
    latest = Q.latest_run_id(db)
    if latest is None:
        raise ValueError("--db: the database holds no runs")
    return latest


def write_report(out_dir: Path | None = None, *, run_dir: Path | None = None, db_url: str | None = None,
                 run_id: str | None = None, thresholds: VerdictThresholds | None = None) -> ReportResult:
    """report.html and the PNGs (``out_dir/report/``) of a run: from ``run_dir``'s run files, or
    from the database at ``db_url`` (``run_id``, default the latest run). ``out_dir`` defaults to
    ``run_dir``, or ``runs/<run_id>`` for a database."""
    t0 = time.perf_counter()
    if (run_dir is None) == (db_url is None):
        raise ValueError("give either a run directory or --db (not both)")
    if run_dir is not None:
        data = load_run_files(Path(run_dir))
        out = Path(out_dir) if out_dir is not None else Path(run_dir)
    else:
        from claire.storage.database import Database  # start-up time: SQLAlchemy only for --db

        db = Database(str(db_url))
        try:
            rid = resolve_run(db, run_id)
            data = load_run_db(db, rid)
        finally:
            db.dispose()
        out = Path(out_dir) if out_dir is not None else Path("runs") / rid
    rendered: Rendered = render_report(data, out, thresholds)
    return ReportResult(html=rendered.html, pngs=rendered.pngs, verdict=rendered.verdict, run_id=data.run_id,
                        seconds=time.perf_counter() - t0)

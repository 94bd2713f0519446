"""``claire papertest status``: one screen of a papertest from its state file and the database.

:func:`collect` gathers plain data (``status --json`` prints it as is); :func:`render` makes the
screen: progress on the run's clock, equity and PnL, drawdown against the alert threshold and the
risk limits, the trading state, open positions, data freshness per symbol, the components
(state file and their ``service_status`` heartbeats), restarts, recent alerts, and the last
prune and backup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from claire.runtime.papertest.plan import Plan, format_duration, pid_alive

#: alerts shown
RECENT_ALERTS = 8
#: a heartbeat older than this (s) is shown as late
HEARTBEAT_LATE_S = 30.0


def _iso(v: Any) -> str | None:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat(timespec="seconds")
    return None if v is None else str(v)


def _num(v: Any) -> Any:
    return str(v) if isinstance(v, Decimal) else v


def _aware(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=UTC)


def progress(plan: Plan, event_ms: int | None, now: datetime | None = None) -> dict[str, Any]:
    """Elapsed and total on the run's clock (exchange time for a replay, else the wall clock)."""
    now = now or datetime.now(UTC)
    if plan.clock == "exchange":
        start = plan.start_event_ms
        elapsed = (event_ms - start) / 1000 if event_ms is not None and start is not None else 0.0
    else:
        elapsed = (now - datetime.fromisoformat(plan.started_at)).total_seconds() if plan.started_at else 0.0
    if plan.status == "finished":
        elapsed = max(elapsed, float(plan.duration_s)) if plan.clock == "wall" else elapsed
    elapsed = max(0.0, min(elapsed, float(plan.duration_s)))
    return {"clock": plan.clock, "elapsed_s": round(elapsed, 1), "duration_s": plan.duration_s,
            "pct": round(100 * elapsed / plan.duration_s, 1) if plan.duration_s else 0.0,
            "elapsed": format_duration(elapsed), "duration": format_duration(plan.duration_s)}


def _limits(plan: Plan) -> dict[str, str]:
    """The drawdown alert threshold and the risk limits the run trades under (env applied)."""
    from claire.config import ConfigError, make_config
    from claire.config.options import RunOptions

    try:
        cfg = make_config(RunOptions(source="mexc", symbols=",".join(plan.symbols), strategy=plan.strategy))
    except (ConfigError, ValueError) as exc:  # limits are information: the screen goes on without them
        return {"error": str(exc)}
    return {"drawdown_alert_pct": str(cfg.alerts.drawdown_pct),
            "daily_drawdown_halt_pct": str(cfg.risk.max_daily_drawdown_pct),
            "circuit_breaker_pct": str(cfg.risk.circuit_breaker_threshold_pct)}


def collect(plan: Plan, now: datetime | None = None) -> dict[str, Any]:
    """Everything the status screen shows, as plain data."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {
        "run_id": plan.run_id, "status": plan.status, "reason": plan.reason, "run_dir": plan.run_dir,
        "symbols": plan.symbols, "strategy": plan.strategy, "runtime": "distributed" if plan.distributed else "paper",
        "started_at": plan.started_at, "ends": plan.ends_at or None, "end_event_ms": plan.end_event_ms,
        "supervisor": {"pid": plan.supervisor_pid, "alive": plan.active()},
        "components": {n: {"pid": p, "alive": pid_alive(p)} for n, p in plan.components.items()},
        "restarts": dict(plan.restarts), "resumed": plan.resumed, "maintenance": plan.last_maintenance or None,
        "report": plan.report or None, "verdict": plan.verdict or None, "limits": _limits(plan),
        "web": plan.web_url or None,
    }
    db_part: dict[str, Any] = {}
    try:
        db_part = _from_database(plan, now)
    except Exception as exc:  # the database may be away: the screen says so
        db_part = {"database_error": " ".join(str(exc).split())[:200]}
    out.update(db_part)
    event_ms = db_part.get("last_event_ms")
    out["progress"] = progress(plan, event_ms, now)
    return out


def _event_time(plan: Plan, newest: bool) -> datetime | None:
    from sqlalchemy import func, select

    from claire.storage import Database
    from claire.storage.models import metadata

    snaps = metadata.tables["portfolio_snapshots"]
    db = Database(plan.database_url())
    try:
        with db.engine.connect() as c:
            agg = func.max(snaps.c.ts) if newest else func.min(snaps.c.ts)
            ts = c.execute(select(agg).where(snaps.c.run_id == plan.run_id)).scalar_one()
    finally:
        db.dispose()
    return _aware(ts) if isinstance(ts, datetime) else None


def last_event_time(plan: Plan) -> datetime | None:
    """The event time of the run's newest portfolio snapshot (the run's clock in the database)."""
    return _event_time(plan, True)


def first_event_time(plan: Plan) -> datetime | None:
    """The event time of the run's first portfolio snapshot."""
    return _event_time(plan, False)


def _from_database(plan: Plan, now: datetime) -> dict[str, Any]:
    from sqlalchemy import desc, select

    from claire.storage import Database
    from claire.storage.models import metadata

    t = metadata.tables
    db = Database(plan.database_url())
    try:
        with db.engine.connect() as c:
            snaps = t["portfolio_snapshots"]
            snap = c.execute(select(snaps).where(snaps.c.run_id == plan.run_id)
                             .order_by(desc(snaps.c.ts)).limit(1)).mappings().first()
            pos = t["positions"]
            positions = c.execute(select(pos).where(pos.c.run_id == plan.run_id, pos.c.side != "flat")
                                  .order_by(pos.c.symbol)).mappings().all()
            risk = t["risk_events"]
            state = c.execute(select(risk.c.trading_state, risk.c.ts, risk.c.reason)
                              .where(risk.c.run_id == plan.run_id, risk.c.check_type == "state")
                              .order_by(desc(risk.c.ts)).limit(1)).mappings().first()
            al = t["alerts"]
            alerts = c.execute(select(al).where(al.c.run_id == plan.run_id)
                               .order_by(desc(al.c.ts)).limit(RECENT_ALERTS)).mappings().all()
            svc = t["service_status"]
            services = c.execute(select(svc).where(svc.c.run_id == plan.run_id)
                                 .order_by(svc.c.service, svc.c.replica)).mappings().all()
            trades = t["trades"]
            from sqlalchemy import func

            n_trades = c.execute(select(func.count()).select_from(trades)
                                 .where(trades.c.run_id == plan.run_id)).scalar_one()
    finally:
        db.dispose()
    res: dict[str, Any] = {"trades": n_trades}
    last_ms = None
    if snap is not None:
        ts = _aware(snap["ts"])
        last_ms = int(ts.timestamp() * 1000)
        start_cash = Decimal(snap["start_cash"])
        equity = Decimal(snap["equity"])
        res["portfolio"] = {
            "ts": _iso(ts), "equity": str(equity), "cash": str(snap["cash"]), "start_cash": str(start_cash),
            "pnl": str(equity - start_cash), "return_pct": float((equity / start_cash - 1) * 100) if start_cash else None,
            "realized_pnl": str(snap["realized_pnl"]), "unrealized_pnl": str(snap["unrealized_pnl"]),
            "fees": str(snap["fees"]), "drawdown_pct": float(snap["drawdown_pct"]),
            "high_water_mark": str(snap["high_water_mark"]), "daily_pnl": _num(snap["daily_pnl"]),
            "exposure_pct": float(snap["total_exposure_pct"]), "positions": snap["num_positions"]}
    res["last_event_ms"] = last_ms
    res["trading_state"] = dict(state) | {"ts": _iso(state["ts"])} if state is not None else {"trading_state": "active"}
    res["positions"] = [{"symbol": p["symbol"], "side": p["side"], "quantity": str(p["quantity"]),
                         "avg_price": _num(p["avg_price"]), "mark_price": _num(p["mark_price"]),
                         "unrealized_pnl": _num(p["unrealized_pnl"]), "exposure_pct": float(p["exposure_pct"] or 0)}
                        for p in positions]
    res["alerts"] = [{"ts": _iso(a["ts"]), "level": a["level"], "code": a["code"], "message": a["message"],
                      "acknowledged": a.get("acknowledged")} for a in alerts]
    res["services"] = [_service_row(s, now) for s in services]
    res["freshness"] = _freshness(plan, res["services"], last_ms, now)
    return res


def _service_row(s: Any, now: datetime) -> dict[str, Any]:
    beat = _aware(s["heartbeat_at"]) if s["heartbeat_at"] is not None else None
    age = max(0.0, (now - beat).total_seconds()) if beat is not None else None
    return {"service": s["service"], "replica": s["replica"], "status": s["status"], "ready": bool(s["ready"]),
            "pid": s["pid"], "heartbeat_age_s": round(age, 1) if age is not None else None,
            "late": age is not None and age > HEARTBEAT_LATE_S, "events": s["events_processed"],
            "last_event": _iso(s["last_event_ts"]), "lag_ms": _num(s["lag_ms"]), "restarts": s["restarts"],
            "details": s["details"] or {}}


def _freshness(plan: Plan, services: list[dict[str, Any]], last_ms: int | None,
               now: datetime) -> dict[str, Any]:
    """Per symbol: the wall seconds since its last market event and that event's time, from the
    market-data component's /metrics (the paper component, or the market data service); when it
    does not answer (the run is stopped), the newest snapshot's time for every symbol."""
    port = plan.port if not plan.distributed else (plan.port or 8000)  # market data: the first port
    per: dict[str, Any] = {}
    if port and plan.status in ("running", "stopping"):
        per = scrape_freshness(port)
    for sym in plan.symbols:
        per.setdefault(sym, {"last_event_ms": last_ms, "age_s": None})
    return per


def scrape_freshness(port: int, timeout: float = 1.0) -> dict[str, Any]:
    """``claire_marketdata_last_event_{age_seconds,timestamp_seconds}`` per symbol from /metrics."""
    import math
    import re

    from claire.runtime.supervision import local_get

    code, raw = local_get(port, "/metrics", timeout)
    if code != 200:
        return {}
    text = raw.decode(errors="replace")
    out: dict[str, Any] = {}
    pat = re.compile(r'^claire_marketdata_last_event_(age_seconds|timestamp_seconds)\{[^}]*symbol="([^"]+)"[^}]*\} (\S+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if not m:
            continue
        kind, sym, raw = m.groups()
        v = float(raw)
        row = out.setdefault(sym, {"last_event_ms": None, "age_s": None})
        if math.isnan(v):
            continue
        if kind == "age_seconds":
            row["age_s"] = round(v, 1)
        else:
            row["last_event_ms"] = int(v * 1000)
    return out


def render(data: dict[str, Any]) -> Any:
    """The status screen (a rich renderable)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    p = data["progress"]
    head = Text.assemble((f"papertest {data['run_id']}", "bold"), f"  {data['status']}",
                         f"  ({data['runtime']}, {', '.join(data['symbols'])}, {data['strategy']})")
    parts.append(head)
    if data.get("reason"):
        parts.append(Text(f"reason: {data['reason']}"))
    if data.get("web"):
        parts.append(Text(f"live view: {data['web']}"))
    parts.append(Text(f"progress: {p['elapsed']} of {p['duration']} ({p['pct']:.1f} %, {p['clock']} clock)"))
    pf = data.get("portfolio")
    lim = data.get("limits") or {}
    if pf:
        dd = pf["drawdown_pct"]
        parts.append(Text(f"equity {pf['equity']} USDT  PnL {pf['pnl']} ({pf['return_pct']:.3f} %)  "
                          f"realized {pf['realized_pnl']}  unrealized {pf['unrealized_pnl']}  fees {pf['fees']}  "
                          f"trades {data.get('trades', 0)}"))
        parts.append(Text(f"drawdown {dd:.3%} (alert at {_pct(lim.get('drawdown_alert_pct'))}, daily halt at "
                          f"{_pct(lim.get('daily_drawdown_halt_pct'))}, circuit breaker at "
                          f"{_pct(lim.get('circuit_breaker_pct'))})  exposure {pf['exposure_pct']:.2%}  "
                          f"as of {pf['ts']}"))
    elif data.get("database_error"):
        parts.append(Text(f"database: {data['database_error']}", style="red"))
    else:
        parts.append(Text("no portfolio snapshot yet"))
    ts = data.get("trading_state") or {}
    parts.append(Text(f"trading state: {ts.get('trading_state', '-')}" + (f" ({ts.get('reason')})" if ts.get("reason") else "")))
    parts.extend(_tables(data, Table))
    m = data.get("maintenance") or {}
    parts.append(Text(f"last prune/backup: {m.get('at', '-')} backup {m.get('backup') or '-'}"
                      + (f" errors: {'; '.join(m['errors'])}" if m.get("errors") else "")))
    if data.get("report"):
        parts.append(Text(f"report: {data['report']}  verdict: {data.get('verdict')}", style="bold"))
    return Group(*parts)


def _pct(v: Any) -> str:
    try:
        return f"{float(v):.1%}"
    except (TypeError, ValueError):
        return "-"


def _tables(data: dict[str, Any], table: Any) -> list[Any]:
    out = []
    if data.get("positions"):
        t = table(title="positions")
        for col in ("symbol", "side", "quantity", "avg price", "mark", "unrealized", "exposure"):
            t.add_column(col)
        for r in data["positions"]:
            t.add_row(r["symbol"], r["side"], r["quantity"], str(r["avg_price"]), str(r["mark_price"]),
                      str(r["unrealized_pnl"]), f"{r['exposure_pct']:.2%}")
        out.append(t)
    fr = table(title="data freshness")
    for col in ("symbol", "last event (event time, UTC)", "received"):
        fr.add_column(col)
    for sym, v in (data.get("freshness") or {}).items():
        ms, age = v.get("last_event_ms"), v.get("age_s")
        fr.add_row(sym, datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else "-",
                   "-" if age is None else (f"[red]{age:.0f} s ago[/]" if age > 60 else f"{age:.1f} s ago"))
    out.append(fr)
    sv = table(title="components")
    for col in ("component", "pid", "alive", "restarts", "heartbeat", "status", "events"):
        sv.add_column(col)
    beats = {(s["service"] if not s["replica"] else f"{s['service']}-{s['replica']}"): s for s in data.get("services") or []}
    names = list(dict.fromkeys([*data["components"], *beats]))
    sup = data["supervisor"]
    sv.add_row("supervisor", str(sup["pid"] or "-"), _yes(sup["alive"]), "-", "-", data["status"], "-")
    for n in names:
        c = data["components"].get(n, {})
        b = beats.get(n, {})
        age = b.get("heartbeat_age_s")
        sv.add_row(n, str(c.get("pid", b.get("pid", "-"))), _yes(c.get("alive")) if c else "-",
                   str(data["restarts"].get(n, b.get("restarts", 0))),
                   "-" if age is None else (f"[red]{age:.0f} s ago[/]" if b.get("late") else f"{age:.0f} s ago"),
                   str(b.get("status", "-")), str(b.get("events", "-")))
    out.append(sv)
    if data.get("alerts"):
        al = table(title="recent alerts")
        for col in ("time", "level", "code", "message"):
            al.add_column(col)
        for a in data["alerts"]:
            al.add_row(str(a["ts"]), a["level"], a["code"], a["message"])
        out.append(al)
    return out


def _yes(b: Any) -> str:
    return "[green]yes[/]" if b else "[red]no[/]"


def report_path(plan: Plan) -> Path | None:
    return Path(plan.report) if plan.report else None

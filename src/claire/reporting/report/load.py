"""A run's data from the run files a backtest or paper run writes (see ``claire.reporting.runfiles``)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from claire.config.env import risk_config_from_env
from claire.reporting.report.model import Execution, Fill, RiskCount, RunData, Trip

RUN_FILES = ("equity.csv", "summary.json")
NS_PER_US = 1_000
#: data_quality.csv kinds that are a gap not (yet) repaired; "gap_repaired" counts as a repair
GAP_KINDS = ("gap_unrepaired", "repair_pending")


class NotARunDir(ValueError):
    """The directory holds no run files."""


def ns_of(text: str | None) -> int | None:
    """ISO 8601 UTC text (as the run files write it) -> int ns; empty -> None."""
    if not text:
        return None
    dt = datetime.fromisoformat(text)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * NS_PER_US


def _float(text: str | None) -> float | None:
    return float(text) if text else None


def _rows(path: Path) -> Iterator[dict[str, str]]:
    if not path.exists():
        return
    with path.open(newline="") as fh:
        yield from csv.DictReader(fh)


def check_run_dir(run_dir: Path) -> None:
    """Refuse a missing directory or one without run files (one clear line)."""
    if not run_dir.exists():
        raise NotARunDir(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise NotARunDir(f"{run_dir}: not a directory")
    missing = [n for n in RUN_FILES if not (run_dir / n).is_file()]
    if missing and (run_dir / "papertest.json").is_file():
        raise NotARunDir(f"{run_dir}: a papertest's directory: its report is {run_dir / 'report.html'} "
                         f"(`claire papertest report --run-dir {run_dir}` writes it again from the database)")
    if missing:
        raise NotARunDir(f"{run_dir}: not a run directory (no {', '.join(missing)}; "
                         "`claire backtest --out DIR` or `claire paper --out DIR` write one)")


def _equity(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pyarrow as pa  # start-up time: pyarrow only for a report from run files
    import pyarrow.csv as pacsv

    types = {"time": pa.timestamp("ns", "UTC"), "equity": pa.float64(), "total_exposure_pct": pa.float64()}
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        include_columns=list(types), column_types=types))
    ts = table.column("time").to_numpy().astype("datetime64[ns]").astype(np.int64)
    return ts, table.column("equity").to_numpy(), table.column("total_exposure_pct").to_numpy()


def _trips(path: Path) -> list[Trip]:
    return [Trip(symbol=r["symbol"], side=r["side"], quantity=float(r["quantity"]),
                 entry_time=ns_of(r["entry_time"]) or 0, entry_price=float(r["entry_price"]),
                 exit_time=ns_of(r["exit_time"]), exit_price=_float(r["exit_price"]),
                 fees=float(r["fees"]), pnl=float(r["pnl"])) for r in _rows(path)]


def _fills(path: Path) -> list[Fill]:
    return [Fill(time=ns_of(r["time"]) or 0, symbol=r["symbol"], side=r["side"], quantity=float(r["quantity"]),
                 price=float(r["price"]), fee=float(r["fee"]), signal_id=r["signal_id"] or None,
                 reference_price=_float(r["reference_price"]), slippage_bps=_float(r["slippage_bps"]),
                 latency_ms=_float(r["latency_ms"]))
            for r in _rows(path) if r["status"] in ("filled", "partially_filled") and r["price"]]


def risk_summary(rows: Iterator[dict[str, Any]]) -> tuple[list[RiskCount], list[tuple[int, str, str]]]:
    """Risk decisions counted by check and action (with the most frequent reason), and the
    changes of trading state, from rows with check, action, reason, time (ns) and signal_id."""
    counts: Counter[tuple[str, str]] = Counter()
    reasons: dict[tuple[str, str], Counter[str]] = {}
    states: list[tuple[int, str, str]] = []
    for r in rows:
        key = (r["check"], r["action"])
        if r["check"] == "state" or not r.get("signal_id"):
            states.append((r["time"], r["action"], r["reason"]))
            continue
        counts[key] += 1
        reasons.setdefault(key, Counter())[r["reason"]] += 1
    out = [RiskCount(check=k[0], action=k[1], count=n, reason=reasons[k].most_common(1)[0][0])
           for k, n in counts.most_common()]
    return out, states


def _risk_rows(path: Path) -> Iterator[dict[str, Any]]:
    for r in _rows(path):
        yield {"check": r["check"], "action": r["action"], "reason": r["reason"], "time": ns_of(r["time"]) or 0,
               "signal_id": r["signal_id"]}


def _signals(path: Path, entry_ids: set[str]) -> tuple[dict[str, list[tuple[int, float]]], list[dict[str, Any]]]:
    prices: dict[str, list[tuple[int, float]]] = {}
    market: list[dict[str, Any]] = []
    for r in _rows(path):
        ts = ns_of(r["time"]) or 0
        prices.setdefault(r["symbol"], []).append((ts, float(r["price"])))
        if r["signal_id"] in entry_ids:
            meta = json.loads(r["metadata"]) if r["metadata"] else {}
            market.append({"time": ts, "symbol": r["symbol"], "side": r["side"], "price": float(r["price"]),
                           "rsi_14": meta.get("rsi"), "macd_hist": meta.get("macd_hist"),
                           "bb_position": meta.get("bb_position")})
    return prices, market


def entry_signal_ids(trips: list[Trip], fills: list[Fill]) -> set[str]:
    """The signals whose fills opened a round trip."""
    first = {(t.symbol, t.entry_time) for t in trips}
    return {f.signal_id for f in fills if f.signal_id and (f.symbol, f.time) in first}


def _data_quality(path: Path) -> Counter[str]:
    return Counter(r["kind"] for r in _rows(path))


def load_run_files(run_dir: Path | str) -> RunData:
    """A run's data from its run files (equity.csv, trades.csv, fills.csv, risk_events.csv,
    signals.csv, summary.json; data_quality.csv when present)."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    ts, eq, exp = _equity(run_dir / "equity.csv")
    trips = _trips(run_dir / "trades.csv")
    fills = _fills(run_dir / "fills.csv")
    risk, states = risk_summary(_risk_rows(run_dir / "risk_events.csv"))
    prices, market = _signals(run_dir / "signals.csv", entry_signal_ids(trips, fills))
    for f in fills:
        prices.setdefault(f.symbol, []).append((f.time, f.price))
    limits = risk_config_from_env()
    quality = _data_quality(run_dir / "data_quality.csv")
    start = float(summary.get("start_equity") or (eq[0] if len(eq) else 100_000))
    open_pos = [{"symbol": t.symbol, "side": t.side, "quantity": t.quantity, "avg_price": t.entry_price,
                 "since": t.entry_time, "unrealized_pnl": None} for t in trips if t.exit_time is None]
    seconds = summary.get("engine_seconds")
    return RunData(
        run_id=summary.get("run_id") or run_dir.name, source=f"run files {run_dir}", mode=summary.get("mode", "backtest"),
        start_cash=start, symbols=list(summary.get("symbols") or sorted({f.symbol for f in fills})),
        settings={k: summary[k] for k in ("strategy", "params", "risk", "fill", "fee_bps") if k in summary},
        risk_limits={"max_daily_drawdown_pct": float(limits.max_daily_drawdown_pct),
                     "circuit_breaker_threshold_pct": float(limits.circuit_breaker_threshold_pct)},
        equity_ts=ts, equity=eq, exposure=exp, trips=trips, fills=fills,
        counts={"signals": int(summary.get("signals") or 0), "orders": int(summary.get("orders") or 0),
                "fills": len(fills)},
        risk=risk, state_changes=states,
        execution=[Execution(time=f.time, symbol=f.symbol, side=f.side, expected_price=f.reference_price,
                             fill_price=f.price, slippage_bps=f.slippage_bps, latency_ms=f.latency_ms) for f in fills],
        execution_source="fills.csv (reference price = expected; no quality score in the run files)",
        market_at_entries=market,
        market_note="signals.csv metadata (the strategy's indicators); volume, volatility, trend and spread "
                    "are in the database's market_conditions only",
        open_positions=open_pos,
        prices=prices, prices_note="prices observed at the run's signals and fills",
        system={"events_processed": summary.get("events"), "uptime_s": seconds,
                "uptime_note": "engine time of the replay" if seconds is not None else "",
                "restarts": None, "data_gaps": sum(quality[k] for k in GAP_KINDS),
                "data_repairs": quality["gap_repaired"],
                "alerts": None, "critical_alerts": None, "dead_letters": None,
                "note": "Run files hold no alerts, restarts or dead letters: report from the database for those."},
    )

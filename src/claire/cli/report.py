"""``claire report``: the final report of a run (verdict, confidence, charts) as one HTML file.

Registered on the app by :func:`register` (see :mod:`claire.cli.main`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from claire.cli.errors import fail as _fail


def _check_db(url: str) -> None:
    """A malformed URL or a SQLite file that does not exist: one line (a report never creates a database)."""
    from sqlalchemy.engine import make_url  # start-up time: SQLAlchemy only for --db
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError:
        _fail(f"--db {url!r}: not a database URL (e.g. sqlite:///runs/demo/claire.db or postgresql://host/db)")
        return
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" and not Path(u.database).exists():
        _fail(f"--db: {u.database}: no such database file")


def report(
    run_dir: Annotated[Path | None, typer.Argument(help="A run directory (the run files of `claire backtest/paper --out`).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Report from this database instead of run files.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="The run (with --db; default: the latest).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where report.html and report/ go (default: RUN_DIR, or runs/<run id> with --db).")] = None,
    min_return_pct: Annotated[float | None, typer.Option(help="Verdict: return after fees (%) must be above this.")] = None,
    max_drawdown_share: Annotated[float | None, typer.Option(help="Verdict: max drawdown below this share of CIRCUIT_BREAKER_THRESHOLD_PCT.")] = None,
    max_daily_drawdown_share: Annotated[float | None, typer.Option(help="Verdict: worst day below this share of MAX_DAILY_DRAWDOWN_PCT.")] = None,
    max_risk_breaches: Annotated[int | None, typer.Option(help="Verdict: at most this many R3/R5 trips.")] = None,
    min_days: Annotated[int | None, typer.Option(help="Verdict: at least this many daily returns.")] = None,
    min_trades: Annotated[int | None, typer.Option(help="Verdict: at least this many closed trades.")] = None,
    min_psr: Annotated[float | None, typer.Option(help="Verdict: probabilistic Sharpe ratio at least this.")] = None,
    require_sharpe_ci_above_zero: Annotated[bool | None, typer.Option("--require-sharpe-ci-above-zero/--no-require-sharpe-ci-above-zero", help="Verdict: the Sharpe's 95% CI must lie above 0.")] = None,
    max_mean_slippage_bps: Annotated[float | None, typer.Option(help="Verdict: mean |slippage| at most this (bps).")] = None,
    min_quality_score: Annotated[float | None, typer.Option(help="Verdict: mean execution quality score at least this.")] = None,
    max_data_gaps: Annotated[int | None, typer.Option(help="Verdict: at most this many data gaps.")] = None,
    max_restarts: Annotated[int | None, typer.Option(help="Verdict: at most this many restarts.")] = None,
    max_critical_alerts: Annotated[int | None, typer.Option(help="Verdict: at most this many critical alerts.")] = None,
    max_dead_letters: Annotated[int | None, typer.Option(help="Verdict: at most this many dead letters.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line: verdict, criteria, files.")] = False,
) -> None:
    """The final report of a run: RUN_DIR/report.html (self-contained) + PNG charts, with a go / no-go /
    inconclusive verdict and how far the figures can be trusted. Thresholds: flags, CLAIRE_VERDICT_*."""
    params: dict[str, Any] = dict(locals())
    from claire.reporting.verdict import FIELDS, thresholds_from  # start-up time: only for `claire report`

    if (run_dir is None) == (db is None):
        _fail("give a run directory or --db URL (one of them)")
    if run is not None and db is None:
        _fail("--run needs --db")
    if db is not None:
        _check_db(db)
    thresholds = thresholds_from(**{k: params[k] for k in FIELDS})
    from claire.runtime.report import write_report  # start-up time: matplotlib only for `claire report`

    res = write_report(out, run_dir=run_dir, db_url=db, run_id=run, thresholds=thresholds)
    v = res.verdict
    if json_out:
        print(json.dumps({"run_id": res.run_id, "verdict": v.decision, "reason": v.reason, "html": str(res.html),
                          "pngs": [str(p) for p in res.pngs], "seconds": round(res.seconds, 3),
                          "criteria": [{"name": c.name, "value": c.value, "threshold": c.threshold,
                                        "status": c.status} for c in v.criteria]}, default=str))
        return
    typer.echo(f"verdict: {v.decision} ({v.reason})")
    typer.echo(f"report: {res.html} (charts in {res.html.parent / 'report'}) in {res.seconds:.1f} s")


def bench_report_cmd(
    snapshots: Annotated[int, typer.Option(help="Portfolio snapshots of the synthetic run.")] = 1_000_000,
    trades: Annotated[int, typer.Option(help="Round trips (two fills each) of the synthetic run.")] = 10_000,
    repeat: Annotated[int, typer.Option(help="Runs of `claire report`; the median is reported.")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line.")] = False,
) -> None:
    """`claire report --db` on a synthetic PostgreSQL run (1M snapshots, 10k trades): time and peak memory."""
    from claire.benchmarks.report import bench_report, format_report  # start-up time: only for `claire bench`

    if snapshots < 10 or trades < 1 or repeat < 1:
        _fail("--snapshots must be >= 10, --trades and --repeat >= 1")
    res = bench_report(snapshots, trades, repeat)
    print(json.dumps(res)) if json_out else print(format_report(res))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("report")(report)
    bench_app.command("report")(bench_report_cmd)

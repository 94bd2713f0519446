"""`claire report`: one self-contained HTML file with every section and chart, from the run
files, from SQLite and from PostgreSQL; opened in Debian's chromium."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from claire.cli.main import app
from claire.reporting.report import SECTIONS, load_run_files
from claire.reporting.report.figures import downsample
from claire.runtime.report import write_report

from .report_support import run_backtest_files

runner = CliRunner()
PNGS = {"equity_drawdown.png", "daily_returns.png", "trade_pnl.png", "execution.png"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def files_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo-like run (BTC + ETH, 30 days of 1m bars, momentum, default risk): trips the circuit breaker."""
    return run_backtest_files(tmp_path_factory.mktemp("files") / "run")


def _assert_report(html_path: Path, trades: int) -> str:
    html = html_path.read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
    assert {p.name for p in (html_path.parent / "report").glob("*.png")} >= PNGS
    assert html.count('src="data:image/png;base64,') == 4  # every PNG inlined
    assert "uPlot" in html and "new uPlot(" in html  # the library itself, inline
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched at view time
    assert re.search(r'id="verdict-decision">(GO|NO-GO|INCONCLUSIVE)<', html)
    assert f"{trades:,} closed round trips" in html
    assert html.index('id="verdict"') < html.index('id="confidence"') < html.index('id="equity"')
    return html


def test_report_from_run_files(files_run: Path) -> None:
    res = runner.invoke(app, ["report", str(files_run), "--json"])
    assert res.exit_code == 0, res.output
    data = load_run_files(files_run)
    html = _assert_report(files_run / "report.html", len(data.closed_trips))
    # the circuit breaker tripped: a hard failure, and it is named
    assert '"verdict": "no-go"' in res.stdout and "risk-limit trips" in res.stdout
    assert "circuit_broken" in html and "drawdown from the high-water mark" in html
    # the benchmark line and the risk table by check
    assert "buy and hold of BTCUSDT, ETHUSDT" in html
    assert "<td class=\"l\">circuit_breaker</td><td class=\"l\">rejected</td>" in html


def test_report_thresholds_flip_the_verdict_from_the_command_line(files_run: Path, tmp_path: Path) -> None:
    """Thresholds loose enough for every hard criterion: what is left is the confidence -> not no-go."""
    res = runner.invoke(app, ["report", str(files_run), "--out", str(tmp_path), "--json", "--min-return-pct", "-50",
                              "--max-drawdown-share", "2", "--max-risk-breaches", "5"])
    assert res.exit_code == 0, res.output
    assert '"verdict": "inconclusive"' in res.stdout
    assert (tmp_path / "report.html").exists() and tmp_path.resolve() != files_run.resolve()  # --out honoured


def test_downsample_keeps_the_extremes_and_the_end() -> None:
    ts = np.arange(100_000, dtype=np.int64)
    y = np.sin(ts / 5000.0)
    y[31_337] = -5.0
    t2, y2 = downsample(ts, y, max_points=2000)
    assert len(t2) <= 2001 and t2[-1] == ts[-1] and y2.min() == -5.0 and y2.max() == y.max()


def _db_report(url: str, tmp_path: Path) -> None:
    # the demo's strategy and risk gate on the first 9,000 bars: the circuit breaker trips (an alert)
    run_dir = run_backtest_files(tmp_path / "run", db=url, bars=9000)
    out = tmp_path / "from-db"
    res = runner.invoke(app, ["report", "--db", url, "--out", str(out), "--json"])  # the latest run
    assert res.exit_code == 0, res.output
    files = load_run_files(run_dir)
    html = _assert_report(out / "report.html", len(files.closed_trips))
    assert "execution_analysis" in html and "market_conditions" in html
    # from the database only: the alerts (the trip is critical) and the verdict's health rows
    assert "<h3>Alerts</h3>" in html and "circuit breaker" in html.lower()
    assert '"name": "critical alerts", "value": 1' in res.stdout
    # the same figures from the database as from the run files
    from claire.reporting.report import build
    from claire.runtime.report import load_run_db
    from claire.storage import Database

    with Database(url) as db:
        rid = files.run_id if files.run_id.startswith("run-") else None
        from claire.runtime.report import resolve_run

        db_data = load_run_db(db, rid or resolve_run(db, None))
    a, b = build(db_data), build(files)
    assert a.metrics["sharpe"] == pytest.approx(b.metrics["sharpe"], rel=1e-9)
    assert a.trade_stats == pytest.approx(b.trade_stats, rel=1e-9)
    assert a.verdict.decision == b.verdict.decision


def test_report_from_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'claire.db'}"
    _db_report(url, tmp_path)
    # a run that is still going (no end yet): reported as far as it got, and said so
    from sqlalchemy import text

    from claire.storage import Database

    with Database(url) as db, db.begin() as conn:
        conn.execute(text("UPDATE runs SET ended_at = NULL"))
    res = write_report(tmp_path / "running", db_url=url)
    assert "(running: a snapshot of the run so far)" in res.html.read_text()


@pytest.mark.postgres
def test_report_from_postgres(pg_database: str, tmp_path: Path) -> None:
    _db_report(pg_database, tmp_path)


def test_report_opens_in_chromium(files_run: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    res = write_report(tmp_path, run_dir=files_run)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(res.html.as_uri())
            page.wait_for_selector("#uplot-equity canvas")
            for sid in SECTIONS:
                assert page.locator(f"section#{sid} h2").count() == 1, sid
            drawn = page.evaluate("""() => [...document.querySelectorAll('#uplot-equity canvas, #uplot-drawdown canvas')]
                .map(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })""")
            assert len(drawn) == 2 and all(n > 1000 for n in drawn), drawn
            assert page.evaluate("document.querySelectorAll('img[src^=\"data:image/png\"]').length") == 4
            assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            assert page.inner_text("#verdict-decision") in ("GO", "NO-GO", "INCONCLUSIVE")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert not errors, errors
            assert all(u.startswith(("file:", "data:")) for u in requests), requests
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_seven_days_of_five_symbols_render_in_under_ten_seconds(tmp_path: Path) -> None:
    """A week of 1m snapshots for 5 symbols (a paper-test's size): the report in < 10 s."""
    from claire.reporting.report import render_report
    from claire.reporting.report.model import Fill, RunData, trips_from_fills

    rng = np.random.default_rng(7)
    n = 7 * 1440 * 5  # a snapshot per symbol bar
    ts = 1_774_224_000_000_000_000 + np.arange(n, dtype=np.int64) * 12_000_000_000
    eq = 100_000 * np.cumprod(1 + rng.normal(0, 0.0004, n))
    syms = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT"]
    fills = []
    for i in range(0, 2000, 2):
        s = syms[i % 5]
        t = int(ts[i * 20])
        p = 100 + float(rng.normal())
        fills += [Fill(t, s, "buy", 1.0, p, 0.1, reference_price=p, slippage_bps=1.0, latency_ms=2.0),
                  Fill(t + 60_000_000_000, s, "sell", 1.0, p * 1.001, 0.1, reference_price=p, slippage_bps=-1.0,
                       latency_ms=3.0)]
    data = RunData(run_id="week", source="synthetic", start_cash=100_000, symbols=syms, equity_ts=ts, equity=eq,
                   exposure=np.zeros(n), fills=fills, trips=trips_from_fills(fills),
                   prices={s: [(int(ts[0]), 100.0), (int(ts[-1]), 101.0)] for s in syms},
                   risk_limits={"max_daily_drawdown_pct": 0.05, "circuit_breaker_threshold_pct": 0.1})
    t0 = time.perf_counter()
    r = render_report(data, tmp_path)
    took = time.perf_counter() - t0
    assert took < 10, took
    assert len(r.report.chart["t"]) <= 2001 and r.report.confidence.days == 7
    assert "7 days: too few for an annualised Sharpe" in r.html.read_text()


def test_a_papertest_directory_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "papertest.json").write_text("{}")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert f"a papertest's directory: its report is {tmp_path / 'report.html'}" in " ".join(res.output.split())

"""The live view's benchmark (issue 12): page load and update latency next to a running paper run.

Set-up: ``claire paper --synthetic BARS --speed S`` (two symbols, 1m bars; ``S = rate * 30`` makes
``rate`` market events per second) writes into a fresh database (an SQLite file in a temporary
directory, or ``--db``), and ``claire web`` serves it from its own process, as a user runs them.
Debian's chromium (Playwright, never a downloaded browser) opens the page.

- **page load**: ``loads`` fresh pages one after the other while the run goes; from the browser's
  navigation timing: ``loadEventEnd`` (HTML, CSS, uPlot, app.js) and the time the first data
  arrived and was drawn (``init`` of the stream handled: chart, feed and panels), medians.
- **update latency**: ``updates`` fills inserted into the ``trades`` table at random moments
  (a copy of the run's latest fill, new id, its time = the newest fill's, so it sorts in with the
  run's own), each from its commit (wall clock) to the moment the page has put its row in the feed
  (``Date.now()`` in the page's handler of the push); median, p95, max. The stream pushes about every
  second, so the expected median is about half a second plus the queries.
- **push cost**: the server's time to compute one delta for the page (``StreamCursor.delta``: the
  queries of one push) on the same database while the run goes, median of 20.

    claire bench web --json
    python -m claire.benchmarks.web --rate 1000 --seconds 90
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from claire.runtime.web import data as view_data
from claire.runtime.web.app import StreamCursor, ViewState
from claire.storage import Database
from claire.storage.models import metadata

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
T = metadata.tables

_LOAD_TIMING = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  return {load_ms: n.loadEventEnd, dom_ms: n.domContentLoadedEventEnd, data_ms: window.claire.firstData};
}"""


def _claire(*args: str) -> list[str]:
    return [sys.executable, "-m", "claire.cli.main", *args]


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {timeout:g} s")


def _latest_run(db: Database) -> str | None:
    runs = T["runs"]
    with db.connect() as conn:
        return conn.execute(select(runs.c.id).order_by(runs.c.started_at.desc()).limit(1)).scalar()


def _trades(db: Database, run_id: str) -> int:
    return view_data.trade_count(db, run_id)


def insert_fill(db: Database, run_id: str) -> tuple[str, float]:
    """A copy of the run's latest fill with a new id at the newest fill's time; (id, commit time)."""
    t = T["trades"]
    with db.begin(write=True) as conn:  # SQLite: the write lock at BEGIN (read, then insert)
        last = conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.ts.desc()).limit(1)).mappings().one()
        row = {k: v for k, v in last.items() if k != "created_at"}
        row["id"] = f"bench-{uuid.uuid4()}"
        conn.execute(t.insert().values(**row))
    return str(row["id"]), time.time()


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def _page_loads(browser: Any, url: str, loads: int) -> list[dict[str, float]]:
    out = []
    for _ in range(loads):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="load")
        page.wait_for_function("window.claire && window.claire.inits > 0", timeout=30_000)
        out.append(page.evaluate(_LOAD_TIMING))
        page.close()
    return out


def _update_latencies(browser: Any, url: str, db: Database, run_id: str, updates: int) -> list[float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_function("window.claire && window.claire.inits > 0", timeout=30_000)
    rng = random.Random(12)  # noqa: S311 - moments of the inserts, not a secret
    latencies = []
    for _ in range(updates):
        time.sleep(rng.uniform(0.2, 1.2))
        trade_id, committed = insert_fill(db, run_id)
        shown = page.wait_for_function(f"window.claire.arrived['{trade_id}']", timeout=15_000).json_value()
        latencies.append(shown / 1000 - committed)
    page.close()
    return latencies


def _push_cost(db: Database, run_id: str, n: int = 20) -> list[float]:
    state = ViewState(db, run_id, None)
    cursor = StreamCursor(state, state.initial())
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        cursor.delta()
        out.append(time.perf_counter() - t0)
        time.sleep(0.05)
    return out


def bench_web(rate: float = 1000.0, seconds: float = 90.0, loads: int = 5, updates: int = 10,
              db_url: str | None = None, log: Any = None) -> dict[str, Any]:
    """See the module doc. ``db_url``: a database for the run (default: a temporary SQLite file)."""
    from playwright.sync_api import (
        sync_playwright,  # start-up time: the browser driver only for this benchmark
    )

    say = log or (lambda _text: None)
    tmp = tempfile.TemporaryDirectory(prefix="claire-bench-web-")
    url = db_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    speed = rate * 30  # two symbols of 1m bars: 2 events per 60 s of event time
    bars = int(rate * seconds / 2)
    paper = subprocess.Popen(_claire("paper", "--synthetic", str(bars), "--speed", f"{speed:g}", "--db", url,  # noqa: S603
                                     "--port", "0", "--no-resume"), cwd=tmp.name, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    web = None
    db = Database(url)
    try:
        run_id = _wait(lambda: _has_run(db), 60, "the paper run did not start")
        _wait(lambda: _trades(db, run_id) > 5, 60, "no fills in the paper run")
        web = subprocess.Popen(_claire("web", "--db", url, "--run", run_id, "--port", "0"), cwd=tmp.name,  # noqa: S603
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = web.stdout.readline() if web.stdout else ""
        if " on http" not in line:
            raise RuntimeError(f"claire web did not start: {line!r}")
        view = line.split(" on ", 1)[1].split()[0]
        say(f"paper run {run_id} at {rate:g} events/s; live view on {view}")
        t_start = time.monotonic()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                timing = _page_loads(browser, view, loads)
                lat = _update_latencies(browser, view, db, run_id, updates)
            finally:
                browser.close()
        push = _push_cost(db, run_id)
        running = paper.poll() is None
        ps = T["portfolio_snapshots"]
        with db.connect() as conn:
            snapshots = conn.execute(select(func.count()).select_from(ps).where(ps.c.run_id == run_id)).scalar_one()
        status = view_data.services(db, run_id)
        measured_rate = None
        if status and status[0].get("started_at"):
            beat = status[0]
            span = datetime.fromisoformat(beat["heartbeat_at"]) - datetime.fromisoformat(beat["started_at"])
            measured_rate = beat["events_processed"] / max(span.total_seconds(), 1e-9)
    finally:
        for proc in (web, paper):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        db.dispose()
        tmp.cleanup()
    return {
        "bench": "web", "backend": url.split(":", 1)[0], "rate_target": rate,
        "rate_measured": None if measured_rate is None else round(measured_rate, 1),
        "run_still_going_at_end": running, "measured_for_s": round(time.monotonic() - t_start, 1),
        "snapshots_at_end": snapshots,
        "page_load_ms": round(statistics.median(t["load_ms"] for t in timing), 1),
        "page_dom_ms": round(statistics.median(t["dom_ms"] for t in timing), 1),
        "page_first_data_ms": round(statistics.median(t["data_ms"] for t in timing), 1),
        "loads": loads,
        "update_latency_ms": {"median": round(1000 * statistics.median(lat), 1),
                              "p95": round(1000 * _percentile(lat, 0.95), 1), "max": round(1000 * max(lat), 1),
                              "n": len(lat)},
        "push_cost_ms": {"median": round(1000 * statistics.median(push), 2), "max": round(1000 * max(push), 2)},
        "command": f"claire bench web --rate {rate:g} --seconds {seconds:g} --loads {loads} --updates {updates}"
                   + (" --db URL" if db_url else "") + " --json",
    }


def _has_run(db: Database) -> str | None:
    try:
        return _latest_run(db)
    except Exception:  # the run's database is being created
        return None


def format_report(res: dict[str, Any]) -> str:
    u = res["update_latency_ms"]
    return "\n".join([
        f"live view next to a paper run at {res['rate_target']:g} events/s (measured {res['rate_measured']}), "
        f"{res['backend']}, {res['snapshots_at_end']:,} snapshots at the end",
        f"page load (median of {res['loads']}): load event {res['page_load_ms']} ms, "
        f"first data drawn {res['page_first_data_ms']} ms",
        f"update latency (insert -> visible, n={u['n']}): median {u['median']} ms, p95 {u['p95']} ms, max {u['max']} ms",
        f"server cost of one push: median {res['push_cost_ms']['median']} ms, max {res['push_cost_ms']['max']} ms",
    ])


def main() -> None:  # pragma: no cover - the command line of the module
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--db", default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = bench_web(a.rate, a.seconds, a.loads, a.updates, a.db, log=lambda t: print(t, file=sys.stderr))
    print(json.dumps(res) if a.json else format_report(res))


if __name__ == "__main__":  # pragma: no cover
    main()

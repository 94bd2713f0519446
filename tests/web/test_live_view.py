"""Issue 12, the live view as a person uses it: `claire web` (a real process on a free port) on a
finished run and on a running `claire paper` run, driven in Debian's chromium (Playwright): the
equity chart has drawn, the trade feed shows the run's fills, new ones appear without a reload,
the status panel shows the services; off loopback a token is required. Screenshots go to the
test's tmp_path."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from claire.storage import Database
from claire.storage.service_status import record_status
from tests.web.support import (
    CANVAS_PIXELS,
    CLAIRE,
    WebProcess,
    count,
    env,
    insert_trade,
    latest_run,
    launch,
    make_run,
)

#: set before anything happens; still there afterwards = the page was never reloaded
MARK = "() => { window.__mark = 'no-reload'; return performance.timeOrigin; }"
STILL = "() => [window.__mark, performance.timeOrigin, performance.getEntriesByType('navigation').length]"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'finished.db'}"
    make_run(url, bars=400)
    return url


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(url)
    page.wait_for_function("window.claire && window.claire.inits > 0", timeout=15_000)
    return page


def _fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_finished_run_chart_feed_and_a_new_fill_without_reload(finished_db: str, browser: Any, tmp_path: Path) -> None:
    run_id = latest_run(finished_db)
    fills, snapshots = count(finished_db, "trades", run_id), count(finished_db, "portfolio_snapshots", run_id)
    assert 0 < fills <= 500
    web = WebProcess("--db", finished_db)
    try:
        assert web.run_id == run_id
        page = _open(browser, web.url)
        # the equity chart has drawn: every snapshot (fewer than 2,000) and pixels on its canvas
        assert page.evaluate("window.claire.ts.length") == snapshots
        assert page.evaluate(CANVAS_PIXELS) > 2000
        # the trade feed shows the run's fills, all of them
        assert page.inner_text("#trade-count").replace(",", "") == str(fills)
        assert page.locator("#trades tbody tr").count() == fills
        origin = page.evaluate(MARK)
        # a fill stored now appears without a reload
        new_id = insert_trade(finished_db, run_id)
        page.wait_for_selector(f'#trades tbody tr[data-id="{new_id}"]', timeout=5_000)
        assert page.inner_text("#trade-count").replace(",", "") == str(fills + 1)
        assert page.locator("#trades tbody tr").first.get_attribute("data-id") == new_id
        # a heartbeat stored now shows in the status panel, also without a reload
        db = Database(finished_db)
        try:
            record_status(db, run_id, "writer", 0, status="running", ready=True, events_processed=1234,
                          last_event_ts=None, lag_ms=12.5)
        finally:
            db.dispose()
        row = page.wait_for_selector('#services tr[data-service="writer"]', timeout=5_000)
        assert "running" in row.inner_text() and "1,234" in row.inner_text()
        assert page.evaluate(STILL) == ["no-reload", origin, 1]
        assert page.errors == []
        page.screenshot(path=str(tmp_path / "finished-run.png"), full_page=True)
        page.close()
    finally:
        web.stop()
    assert (tmp_path / "finished-run.png").stat().st_size > 10_000


def test_running_paper_run_updates_live(browser: Any, tmp_path: Path) -> None:
    """`claire paper --web` (the in-process view) and `claire web` beside it, on the same run."""
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    paper = subprocess.Popen([CLAIRE, "paper", "--synthetic", "1200", "--speed", "4000", "--db", db_url, "--port", "0",
                              "--web", "--web-port", "0"], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    web = None
    try:
        line = paper.stdout.readline() if paper.stdout else ""
        assert line.startswith("live view on http"), line
        in_process = line.split(" on ", 1)[1].strip()
        run_id = latest_run(db_url)
        status, summary = _fetch(in_process + "api/summary")
        assert status == 200 and summary["run"]["id"] == run_id and summary["run"]["ended_at"] is None
        web = WebProcess("--db", db_url)
        assert web.run_id == run_id
        page = _open(browser, web.url)
        origin = page.evaluate(MARK)
        first = page.evaluate("[window.claire.tradeCount, window.claire.ts.length]")
        # new fills and new equity points arrive by the stream while the run goes on
        page.wait_for_function(f"window.claire.tradeCount > {first[0]} && window.claire.ts.length > {first[1]}",
                               timeout=15_000)
        assert page.locator("#trades tbody tr.new").count() >= 1
        row = page.wait_for_selector('#services tr[data-service="paper"]', timeout=5_000)
        assert "running" in row.inner_text()
        assert page.evaluate("window.claire.services[0].events_processed") > 0
        page.screenshot(path=str(tmp_path / "running-run.png"), full_page=True)
        # the run ends: the feed holds every fill of the database, the service says stopped
        assert paper.wait(timeout=60) == 0
        fills = count(db_url, "trades", run_id)
        page.wait_for_function(f"window.claire.tradeCount === {fills}", timeout=5_000)
        page.wait_for_function("window.claire.services.length && window.claire.services[0].status === 'stopped'",
                               timeout=5_000)
        shown = page.locator("#trades tbody tr").count()
        assert shown == min(fills, 500)
        assert page.evaluate(STILL) == ["no-reload", origin, 1]
        assert page.errors == []
        page.screenshot(path=str(tmp_path / "finished-live-run.png"), full_page=True)
        page.close()
    finally:
        if paper.poll() is None:
            paper.kill()
            paper.wait()
        if web is not None:
            web.stop()


def test_token_required_off_loopback(finished_db: str, browser: Any) -> None:
    refused = subprocess.run([CLAIRE, "web", "--db", finished_db, "--host", "0.0.0.0", "--port", "0"],
                             env=env(), capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "token" in lines[0], refused.stderr
    token = "s3cret-" + str(time.time_ns())
    web = WebProcess("--db", finished_db, "--host", "0.0.0.0", extra_env={"CLAIRE_WEB_TOKEN": token})
    try:
        base = web.url.replace("0.0.0.0", "127.0.0.1")
        assert _fetch(base + "api/summary")[0] == 401
        assert _fetch(base + "api/summary?token=wrong-token")[0] == 401
        assert _fetch(base + "api/summary", {"Authorization": "Bearer nope-nope"})[0] == 401
        assert _fetch(base + "api/summary?token=" + token)[0] == 200
        status, body = _fetch(base + "api/trades", {"Authorization": f"Bearer {token}"})
        assert status == 200 and body["count"] > 0
        with urllib.request.urlopen(base + "assets/app.js?token=" + token, timeout=10) as r:
            assert r.status == 200
        page = _open(browser, base + "?token=" + token)  # the page, its assets and its stream
        assert page.evaluate("window.claire.tradeCount") == body["count"]
        page.close()
    finally:
        output = web.stop()
    assert token not in output and token not in web.first_line

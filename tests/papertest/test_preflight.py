"""The pre-flight of a papertest (issue 13, point 1): each check passes, and fails (or is
skipped) for the right reason, against real servers: PostgreSQL, Redis, `claire mexc-fake`, a
tiny exchange clock of the test's own, apprise's json:// target, sockets."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from rich.console import Console

from claire.runtime.papertest.preflight import (
    CheckResult,
    PreflightPlan,
    all_passed,
    check_clock,
    check_database,
    check_disk,
    check_exchange,
    check_notify,
    check_ports,
    check_redis,
    check_settings,
    estimate_bytes,
    render_checks,
    run_preflight,
)
from tests.conftest import DATA


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Exchange(BaseHTTPRequestHandler):
    """/api/v3/time with a clock ``offset_s`` off the wall clock; any POST is accepted (a
    notification receiver)."""

    offset_s = 0.0
    received: ClassVar[list[bytes]] = []

    def do_GET(self):
        body = json.dumps({"serverTime": int((time.time() + self.offset_s) * 1000)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def local_server():
    """A local HTTP server: set ``handler.offset_s``; ``url`` is its base."""
    handler = type("H", (_Exchange,), {"offset_s": 0.0, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    server.handler = handler  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def mexc_fake(tmp_path_factory):
    """`claire mexc-fake` replaying BTC and ETH bars of the past (its clock: theirs), ETH paused."""
    import pyarrow.feather as feather

    tmp = tmp_path_factory.mktemp("fake")
    files = []
    for name in ("BTC_USDT-1m.feather", "ETH_USDT-1m.feather"):
        feather.write_feather(feather.read_table(DATA / name).slice(0, 300), tmp / name)
        files += ["--data", str(tmp / name)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "claire.cli.main", "mexc-fake", *files, "--paused-symbol", "ETHUSDT"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield json.loads(line)["rest_url"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_settings_pass_and_fail_naming_the_setting():
    ok = check_settings(PreflightPlan(strategy="sma_cross", params=["fast=5", "slow=20"], env={},
                                      symbols=["BTCUSDT"]))
    assert ok.ok and "sma_cross" in ok.detail, ok
    bad = check_settings(PreflightPlan(strategy="sma_cross", params=["fast=50", "slow=20"],
                                       env={"CLAIRE_ALERT_DRAWDOWN_PCT": "lots", "MAX_POSITION_PCT": "7"},
                                       symbols=["BTCUSDT", "btc-usdt"], config={"risk": {"quantity": "-1"}}))
    assert not bad.ok
    for word in ("fast", "CLAIRE_ALERT_DRAWDOWN_PCT", "MAX_POSITION_PCT", "btc-usdt", "configuration"):
        assert word in bad.detail, (word, bad.detail)
    unknown = check_settings(PreflightPlan(strategy="no_such_strategy", env={}))
    assert not unknown.ok and "no_such_strategy" in unknown.detail


def test_database_reachable_migratable_writable_or_not(pg_database, tmp_path):
    from sqlalchemy import create_engine, inspect

    fresh = check_database(PreflightPlan(db_url=pg_database))
    assert fresh.ok and "empty, migrated to schema" in fresh.detail and "writable" in fresh.detail, fresh
    from claire.storage.database import Database

    db = Database(pg_database)
    db.upgrade()
    db.dispose()
    newest = check_database(PreflightPlan(db_url=pg_database))
    assert newest.ok and "(newest)" in newest.detail, newest
    eng = create_engine(pg_database)
    assert "claire_preflight_probe" not in inspect(eng).get_table_names()  # rolled back
    eng.dispose()
    sqlite = check_database(PreflightPlan(db_url=f"sqlite:///{tmp_path}/x.db"))
    assert sqlite.ok, sqlite
    down = check_database(PreflightPlan(db_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/x",
                                        timeout_s=2))
    assert not down.ok and "unreachable" in down.detail, down
    missing_dir = check_database(PreflightPlan(db_url=f"sqlite:///{tmp_path}/no/such/dir/x.db"))
    assert not missing_dir.ok


def test_redis_when_distributed(redis_url):
    assert check_redis(PreflightPlan(redis_url=redis_url)).ok
    skipped = check_redis(PreflightPlan(redis_url=redis_url, distributed=False))
    assert skipped.skipped and "not used" in skipped.detail
    down = check_redis(PreflightPlan(redis_url=f"redis://127.0.0.1:{closed_port()}/0", timeout_s=2))
    assert not down.ok and "refused" in down.detail.lower(), down
    none = check_redis(PreflightPlan(distributed=True))
    assert not none.ok and "CLAIRE_REDIS_URL" in none.detail


def test_disk_estimate_against_free_space(tmp_path):
    plan = PreflightPlan(run_dir=tmp_path / "runs" / "pt-1", symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"],
                         duration_s=7 * 86_400, env={})
    est = estimate_bytes(plan)
    assert est["database"] == 3 * 2_000_000 * 7  # the seeds' 2.0 MB per day, per symbol
    assert est["backups"] == 3 * 2_000_000 * sum(range(1, 8))  # a backup a day, each the size of its day
    assert est["total"] == est["database"] + est["backups"] + est["logs"]
    ok = check_disk(plan)
    assert ok.ok and "estimate" in ok.detail and "free at" in ok.detail, ok
    huge = PreflightPlan(run_dir=tmp_path, symbols=["BTCUSDT"], duration_s=30 * 86_400,
                         bytes_per_symbol_day=10**15, env={})
    res = check_disk(huge)
    assert not res.ok and res.detail.startswith("not enough") and str(tmp_path) in res.detail, res


def test_clock_skew_replay_skipped_and_off_by_5s_fails(mexc_fake, local_server):
    replay = check_clock(PreflightPlan(rest_url=mexc_fake))
    assert replay.skipped and replay.detail.startswith("replay") and "behind" in replay.detail, replay
    local_server.handler.offset_s = 5.0
    off = check_clock(PreflightPlan(rest_url=local_server.url))
    assert not off.ok and not off.skipped and "synchronise" in off.detail, off
    assert 4.8 < float(re.search(r"skew ([+-][0-9.]+) s", off.detail).group(1)) < 5.2, off
    local_server.handler.offset_s = 0.0
    fine = check_clock(PreflightPlan(rest_url=local_server.url))
    assert fine.ok and "skew" in fine.detail, fine


def test_exchange_reachable_and_symbols_trading(mexc_fake):
    assert check_exchange(PreflightPlan(rest_url=mexc_fake, symbols=["BTCUSDT"])).ok
    paused = check_exchange(PreflightPlan(rest_url=mexc_fake, symbols=["BTCUSDT", "ETHUSDT"]))
    assert not paused.ok and "not trading: ETHUSDT" in paused.detail, paused
    unknown = check_exchange(PreflightPlan(rest_url=mexc_fake, symbols=["BTCUSDT", "XYZUSDT"]))
    assert not unknown.ok and "unknown symbol(s): XYZUSDT" in unknown.detail, unknown
    down = run_preflight(PreflightPlan(rest_url=f"http://127.0.0.1:{closed_port()}", symbols=["BTCUSDT"],
                                       db_url="sqlite://", env={}))
    rows = {r.name: r for r in down}
    assert not rows["exchange"].ok and "refused" in rows["exchange"].detail.lower(), rows["exchange"]
    assert not rows["clock"].ok


def test_notify_targets_take_a_test_message_or_fail(local_server):
    port = local_server.server_address[1]
    closed = closed_port()
    rows = check_notify(PreflightPlan(notify_urls=[f"json://127.0.0.1:{port}/hook", f"json://127.0.0.1:{closed}/"],
                                      timeout_s=2))
    assert [r.ok for r in rows] == [True, False], rows
    assert rows[0].name == f"notify json://127.0.0.1:{port}" and len(local_server.handler.received) == 1
    assert rows[1].name == f"notify json://127.0.0.1:{closed}" and "refused" in rows[1].detail
    none = check_notify(PreflightPlan(env={}))
    assert none[0].skipped


def test_ports_free_or_taken():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        free = closed_port()
        res = check_ports(PreflightPlan(ports={"paper": free, "web": taken}))
        assert not res.ok and f"{taken} (web)" in res.detail and "in use" in res.detail, res
        assert str(free) not in res.detail
    ok = check_ports(PreflightPlan(ports=[closed_port()]))
    assert ok.ok and ok.detail.startswith("free")
    assert check_ports(PreflightPlan(ports=[0])).skipped


def test_the_whole_table(tmp_path, local_server):
    plan = PreflightPlan(db_url=f"sqlite:///{tmp_path}/c.db", run_dir=tmp_path, symbols=["BTCUSDT"],
                         duration_s=86_400, strategy="momentum", env={}, ports=[closed_port()])
    results = run_preflight(plan)
    assert [r.name for r in results] == ["settings", "database", "redis", "disk", "clock", "exchange",
                                         "notify", "ports"]
    assert all_passed(results), results
    assert not all_passed([*results, CheckResult("x", False, "broken")])
    console = Console(width=160, record=True)
    console.print(render_checks(results))
    text = console.export_text()
    assert "pre-flight" in text and "pass" in text and "skipped" in text and "FAIL" not in text

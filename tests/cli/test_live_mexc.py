"""`claire paper --source mexc` against the fake MEXC, `claire backtest` of its capture, `claire mexc-fake`.

The fake runs in this process (its own thread and event loop); `claire paper` runs as a real
subprocess (SIGTERM is part of the test). The fake's clock is held until the paper run has
subscribed and loaded its warm-up, so the streamed window is known: the bars after ``HISTORY``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as pf
import pytest
from typer.testing import CliRunner

from claire.adapters.mexc.fake import FakeMexc
from claire.cli.main import app
from claire.strategy.builtin import Momentum, SmaCross

CLAIRE = str(Path(sys.executable).with_name("claire"))
HISTORY = 120  # > momentum's warm-up (113 bars)
STREAMED = 100  # bars streamed after the history (their REST checks fit the client's burst budget)
SPEED = 20.0  # bars per second
SYMBOLS = ("BTC_USDT-1m.feather", "ETH_USDT-1m.feather")
runner = CliRunner()


@pytest.fixture(scope="module")
def bar_files(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> list[Path]:
    """The first HISTORY + STREAMED bars of BTC and ETH (same file names: same symbols)."""
    out = tmp_path_factory.mktemp("live-bars")
    paths = []
    for name in SYMBOLS:
        pf.write_feather(pf.read_table(data_dir / name).slice(0, HISTORY + STREAMED), out / name)
        paths.append(out / name)
    return paths


@contextmanager
def fake_exchange(paths: list[Path], *, hold: bool = True, **options: Any) -> Iterator[FakeMexc]:
    """A started FakeMexc in a thread; with ``hold`` its clock stands still until :func:`release`."""
    fake = FakeMexc(paths, speed=SPEED, history=HISTORY, **options)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        if hold:
            fake._t0 = None  # the clock stays at the first streamed bar (now_ms: start_ms)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-mexc", daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def release(fake: FakeMexc, symbols: int, timeout: float = 30.0) -> None:
    """Start the fake's clock once the client subscribed every topic and fetched its warm-up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        klines = {q.get("symbol") for _, path, q, st in list(fake.rest_log) if path == "/api/v3/klines" and st == 200}
        subscribed = sum(len(c.topics) for c in list(fake.conns))
        if len(klines) >= symbols and subscribed >= 4 * symbols:
            fake._t0 = time.monotonic()
            return
        time.sleep(0.02)
    raise AssertionError(f"the paper run did not subscribe and warm up in {timeout} s")


def wait_closed(fake: FakeMexc, symbols: int, timeout: float = 60.0) -> None:
    """Until the client closed the last bar it can (the one before the last: nothing comes after
    the last): its REST check of that window was answered, for every symbol."""
    last = fake.timeline[-2]
    deadline = time.monotonic() + timeout
    while True:
        done = {q.get("symbol") for _, path, q, st in list(fake.rest_log)
                if path == "/api/v3/klines" and st == 200 and int(q.get("endTime", 0)) >= last}
        if len(done) >= symbols:
            return
        assert time.monotonic() < deadline, "the live run did not close the streamed bars in time"
        time.sleep(0.05)


def fake_env(fake: FakeMexc) -> dict[str, str]:
    return {**os.environ, "MEXC_REST_URL": fake.rest_url, "MEXC_WS_URL": fake.ws_url, "NO_COLOR": "1",
            "COLUMNS": "200"}


def start_paper(fake: FakeMexc, out: Path, *extra: str) -> subprocess.Popen[str]:
    args = [CLAIRE, "paper", "--source", "mexc", "--symbols", "BTCUSDT,ETHUSDT", "--strategy", "momentum",
            "--out", str(out), "--db", f"sqlite:///{out.parent / (out.name + '.db')}", "--port", "0", *extra]
    return subprocess.Popen(args, env=fake_env(fake), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


BAR_MARKET = ("volume_24h", "volume_window_h", "volatility_1h", "trend_direction", "trend_strength")


def signal_view(rs: list[dict[str, str]]) -> list[tuple[str, ...]]:
    """What a signal says (its id depends on the run's name): the strategy's figures, and of the
    market at the signal what bars tell (the live feed also has quotes: spread and depth, which a
    bar file cannot know)."""
    out = []
    for r in rs:
        meta = json.loads(r["metadata"])
        market = meta.pop("market", {})
        bar_market = json.dumps({k: market.get(k) for k in BAR_MARKET}, sort_keys=True)
        out.append((r["time"], r["symbol"], r["side"], r["price"], r["confidence"], r["reduce_only"],
                    json.dumps(meta, sort_keys=True), bar_market))
    return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_window(paths: list[Path], first_ms: int, dest: Path) -> list[Path]:
    """The bars of ``paths`` opened at or after ``first_ms``, same file names."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    first = datetime.fromtimestamp(first_ms / 1000, tz=UTC)
    for p in paths:
        table = pf.read_table(p)
        table = table.filter(pc.greater_equal(table["date"], pa.scalar(first, type=table["date"].type)))
        pf.write_feather(table, dest / p.name)
        out.append(dest / p.name)
    return out


LIVE_CASES = {
    "clean": {},
    # disconnects at streamed bars 70 and 140, kline pushes missing for bars 30, 31 and 100
    "faults": {"disconnect_every_bars": 70, "skip_kline_bars": [30, 31, 100]},
}


@pytest.fixture(scope="module")
def live_runs(bar_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Both live runs at once (two fakes, two `claire paper` processes), each stopped by SIGTERM
    once its fake has streamed every bar."""
    base = tmp_path_factory.mktemp("live-runs")
    runs: dict[str, dict[str, Any]] = {}
    with fake_exchange(bar_files, **LIVE_CASES["clean"]) as f1, fake_exchange(bar_files, **LIVE_CASES["faults"]) as f2:
        fakes = {"clean": f1, "faults": f2}
        procs = {name: start_paper(fake, base / name) for name, fake in fakes.items()}
        try:
            for fake in fakes.values():
                release(fake, 2)
            for fake in fakes.values():
                wait_closed(fake, 2)
            time.sleep(0.5)  # SIGTERM mid-run: the feed is still connected, waiting for more
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for name, p in procs.items():
                stdout, stderr = p.communicate(timeout=60)
                runs[name] = {"out": base / name, "rc": p.returncode, "stdout": stdout, "stderr": stderr,
                              "fake": fakes[name]}
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
    return runs


@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_sigterm_ends_the_live_run_cleanly(live_runs: dict[str, dict[str, Any]], case: str) -> None:
    run = live_runs[case]
    assert run["rc"] == 0, run["stderr"]
    out = run["out"]
    for name in ("signals.csv", "fills.csv", "trades.csv", "equity.csv", "risk_events.csv", "summary.json",
                 "data_quality.csv"):
        assert (out / name).is_file(), name
    assert list((out / "capture").glob("mexc-*.jsonl.gz"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by_signal"] is True and summary["source"] == "mexc"
    assert summary["live_from"] == iso(run["fake"].start_ms)
    quality = rows(out / "data_quality.csv")
    if case == "faults":
        kinds = {(r["kind"], r["cause"]) for r in quality}
        assert ("gap_repaired", "skipped_window") in kinds, kinds
        assert any(k == "disconnect" for k, _ in kinds), kinds
        assert summary["data_quality_records"] == len(quality)
    else:
        assert not [r for r in quality if r["kind"].startswith("gap")]


@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_live_signals_are_the_backtest_signals_of_the_file(live_runs: dict[str, dict[str, Any]], bar_files: list[Path],
                                                           tmp_path: Path, case: str) -> None:
    run = live_runs[case]
    assert run["rc"] == 0, run["stderr"]
    fake = run["fake"]
    live_from = fake.start_ms
    warmup = Momentum.warmup_bars({})
    window = file_window(bar_files, live_from - warmup * 60_000, tmp_path / "window")
    res = runner.invoke(app, ["backtest", *[x for p in window for x in ("--data", str(p))], "--strategy", "momentum",
                              "--out", str(tmp_path / "bt"), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    last_close = iso(fake.timeline[-1] + 60_000)  # the last bar never closes live (no later window)
    expected = [s for s in signal_view(rows(tmp_path / "bt" / "signals.csv")) if iso(live_from) < s[0] < last_close]
    got = signal_view(rows(run["out"] / "signals.csv"))
    assert expected, "no signal in the streamed window: the comparison would prove nothing"
    assert got == expected


@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_backtest_of_the_capture_reproduces_the_live_run(live_runs: dict[str, dict[str, Any]], tmp_path: Path,
                                                         case: str) -> None:
    run = live_runs[case]
    assert run["rc"] == 0, run["stderr"]
    out = run["out"]
    res = runner.invoke(app, ["backtest", "--data", str(out / "capture"), "--strategy", "momentum",
                              "--out", str(tmp_path / "replay"), "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    for name in ("signals.csv", "fills.csv", "trades.csv", "risk_events.csv", "equity.csv", "data_quality.csv"):
        assert (tmp_path / "replay" / name).read_bytes() == (out / name).read_bytes(), name
    assert rows(out / "fills.csv"), "no fill: the comparison would prove nothing"


def test_unknown_symbol_paused_symbol_and_blocked_topic_exit_2(bar_files: list[Path], tmp_path: Path) -> None:
    cases = [({}, "NOPEUSDT", "does not know the symbol"),
             ({"paused_symbols": ["ETHUSDT"]}, "ETHUSDT", "not trading"),
             ({"blocked_topics": ["spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"]}, "BTCUSDT", "Blocked")]
    for options, symbol, text in cases:
        with fake_exchange(bar_files, hold=False, **options) as fake:
            env = {"MEXC_REST_URL": fake.rest_url, "MEXC_WS_URL": fake.ws_url}
            res = runner.invoke(app, ["paper", "--source", "mexc", "--symbols", symbol, "--out", str(tmp_path / symbol),
                                      "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0"], env=env)
        assert res.exit_code == 2, res.output
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: MEXC") and text in lines[0], res.stderr
        assert not (tmp_path / symbol / "summary.json").exists()


def test_source_options_are_checked(tmp_path: Path) -> None:
    for args, text in [(["--source", "mexc"], "needs --symbols"),
                       (["--source", "binance", "--symbols", "BTCUSDT"], "--source must be one of"),
                       (["--source", "mexc", "--symbols", "BTC-USDT"], "not a MEXC symbol"),
                       (["--synthetic", "10", "--symbols", "BTCUSDT"], "--symbols goes with --source mexc")]:
        res = runner.invoke(app, ["paper", *args, "--out", str(tmp_path / "o"), "--port", "0"])
        assert res.exit_code == 2 and text in res.stderr, (args, res.output)


def test_mexc_fake_command_prints_its_urls_and_stops_on_sigterm(bar_files: list[Path]) -> None:
    import urllib.request

    p = subprocess.Popen([CLAIRE, "mexc-fake", "--data", str(bar_files[0]), "--speed", "100", "--history", "50",
                          "--port", "0", "--disconnect-every-bars", "10", "--skip-kline", "3,4"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = json.loads(p.stdout.readline())
        assert line["symbols"] == ["BTCUSDT"] and line["ws_url"].startswith("ws://127.0.0.1:")
        with urllib.request.urlopen(line["rest_url"] + "/api/v3/exchangeInfo?symbol=BTCUSDT", timeout=5) as r:
            assert json.load(r)["symbols"][0]["status"] == "1"
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_strategies_state_their_warmup() -> None:
    assert SmaCross.warmup_bars({"fast": 5, "slow": 42}) == 42
    assert Momentum.warmup_bars({}) == 35 + 3 * 26
    assert Momentum.warmup_bars({"macd_slow": 50, "macd_fast": 12}) == 50 + 9 - 1 + 1 + 150

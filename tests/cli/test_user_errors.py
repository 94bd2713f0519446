"""Issue 9: no user error ends in a traceback. Each case gives one line on stderr naming the
problem (``error: ...``) and exit code 2; checks that need a server use the real ones (a port
where nothing listens is a free port found here, never a fixed one)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claire.cli.main import app
from tests.support.ports import free_port

runner = CliRunner()
CLAIRE = str(Path(sys.executable).with_name("claire"))
ROOT = Path(__file__).resolve().parents[2]




def one_line_error(stderr: str, *needles: str) -> str:
    """The stderr of a refused command: exactly one line, ``error: ...``, naming the problem."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def refused(args: list[str], *needles: str, env: dict[str, str] | None = None) -> str:
    """Run ``claire ARGS`` in-process (typer's CliRunner): exit 2, one line naming the problem."""
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 2, (args, res.output, res.exception)
    assert isinstance(res.exception, SystemExit), res.exception  # not an escaped exception
    assert "Traceback" not in res.output
    return one_line_error(res.stderr, *needles)


def run_claire(args: list[str], cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real entry point, in a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([CLAIRE, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written into the repository (claire.db, .claire/)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAIRE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CLAIRE_REDIS_URL", raising=False)


@pytest.fixture()
def btc(data_dir: Path) -> str:
    return str(data_dir / "BTC_USDT-1m.feather")


# --- strategy parameters: refused by the strategy's declaration --------------------------------

PARAM_CASES = [
    (["--strategy", "sma_cross", "--param", "fast=-5"], ["sma_cross", "`fast` must be an int >= 1", "-5"]),
    (["--strategy", "sma_cross", "--param", "fast=40"], ["sma_cross", "`fast` must be < `slow`", "fast=40, slow=30"]),
    (["--strategy", "sma_cross", "--param", "fast=30", "--param", "slow=30"], ["`fast` must be < `slow`"]),
    (["--strategy", "momentum", "--param", "rsi_period=0"], ["momentum", "`rsi_period` must be an int >= 1"]),
    (["--strategy", "momentum", "--param", "rsi_overbought=101"], ["`rsi_overbought` must be a float in [0, 100]"]),
    (["--strategy", "momentum", "--param", "rsi_oversold=80"], ["`rsi_oversold` must be < `rsi_overbought`"]),
    (["--strategy", "momentum", "--param", "bb_std=-1"], ["`bb_std` must be a float >= 0"]),
    (["--strategy", "momentum", "--param", "bb_std=nan"], ["`bb_std` must be a finite float"]),
    (["--strategy", "sma_cross", "--param", "fast=x"], ["parameter fast='x'", "is not a valid int", "fast: int >= 1"]),
    (["--strategy", "sma_cross", "--param", "fast=3.5"], ["parameter fast='3.5'", "is not a valid int"]),
    (["--strategy", "momentum", "--param", "allow_short=maybe"], ["allow_short='maybe'", "not a valid bool"]),
    (["--strategy", "sma_cross", "--param", "fast"], ["bad --param 'fast': expected key=value"]),
    (["--strategy", "sma_cross", "--param", "fats=3"], ["unknown parameter 'fats'", "known: fast, slow"]),
    (["--strategy", "sma_cross", "--param", "fast=3", "--param", "fast=4"], ["'fast' given more than once"]),
]


@pytest.mark.parametrize(("args", "needles"), PARAM_CASES, ids=[" ".join(a) for a, _ in PARAM_CASES])
def test_backtest_refuses_bad_strategy_parameters(btc: str, args: list[str], needles: list[str]):
    # sma_cross is named where it is meant: the default strategy is momentum, as in paper and up
    refused(["backtest", "--data", btc, *args], *needles)


@pytest.mark.parametrize("command", ["paper", "up", "spec"])
def test_every_command_refuses_bad_strategy_parameters(command: str, tmp_path: Path):
    extra = ["--port", "0"] if command == "paper" else (["--state-dir", str(tmp_path / "st")] if command == "up" else [])
    refused([command, "--synthetic", "10", "--strategy", "sma_cross", "--param", "fast=-5", *extra],
            "`fast` must be an int >= 1")
    refused([command, "--synthetic", "10", "--strategy", "momentum", "--param", "macd_fast=30", *extra],
            "`macd_fast` must be < `macd_slow`")
    assert not (tmp_path / "st").exists()


def test_strategies_shows_the_declarations():
    res = runner.invoke(app, ["strategies"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "fast int >= 1, default 10 period of the fast SMA" in text and "rule: fast < slow" in text
    assert "rsi_overbought float in [0, 100], default 70.0" in text and "rule: macd_fast < macd_slow" in text
    # a user strategy (declared with bare defaults) shows the same way
    res = runner.invoke(app, ["strategies", "tests.strategy.user_strategy:Breakout"])
    assert res.exit_code == 0, res.output
    assert "lookback int, default 3" in " ".join(res.output.split())
    refused(["strategies", "nosuch.module:Foo"], "no module named 'nosuch'")


# --- run options ---------------------------------------------------------------------------------

OPTION_CASES = [
    (["--start-cash", "-5"], ["--start-cash must be > 0, got -5"]),
    (["--start-cash", "0"], ["--start-cash must be > 0"]),
    (["--start-cash", "lots"], ["--start-cash 'lots' is not a number"]),
    (["--fee-bps", "-5"], ["--fee-bps must be >= 0, got -5"]),
    (["--maker-fee-bps", "-1"], ["--maker-fee-bps must be >= 0"]),
    (["--slippage-bps", "-1"], ["--slippage-bps must be >= 0"]),
    (["--fee-bps", "inf"], ["--fee-bps 'inf' is not a finite number"]),
    (["--strategy", "nosuch.module:Foo"], ["cannot load strategy 'nosuch.module:Foo'", "no module named 'nosuch'"]),
    (["--strategy", "nosuch"], ["unknown strategy 'nosuch'"]),
]


@pytest.mark.parametrize(("args", "needles"), OPTION_CASES, ids=[" ".join(a) for a, _ in OPTION_CASES])
def test_backtest_refuses_bad_options(btc: str, args: list[str], needles: list[str]):
    refused(["backtest", "--data", btc, *args], *needles)


def test_symbol_with_files_of_several_symbols(data_dir: Path):
    refused(["backtest", "--data", str(data_dir / "BTC_USDT-1m.feather"), "--data", str(data_dir / "ETH_USDT-1m.feather"),
             "--symbol", "BTCUSDT"], "--symbol BTCUSDT given, but the files are of several symbols")


@pytest.mark.parametrize("command", ["paper", "up", "spec"])
def test_speed_zero_is_refused(command: str, tmp_path: Path):
    refused([command, "--synthetic", "10", "--speed", "0"], "--speed must be > 0 or 'max', got '0'")
    refused([command, "--synthetic", "10", "--speed", "-2"], "--speed must be > 0")
    refused([command, "--synthetic", "10", "--speed", "fast"], "--speed must be > 0")


@pytest.mark.parametrize("command", ["paper", "up", "spec"])
def test_synthetic_count_and_source(command: str, btc: str):
    refused([command, "--synthetic", "-1"], "--synthetic must be >= 0, got -1")
    refused([command, "--data", btc, "--synthetic", "10"], "give either --data or --synthetic, not both")
    refused([command], "give --data FILE (repeatable) or --synthetic N")


def test_paper_synthetic_runs_and_writes_run_files(tmp_path: Path):
    out = tmp_path / "run"
    res = run_claire(["paper", "--synthetic", "100", "--port", "0", "--out", str(out),
                      "--db", f"sqlite:///{tmp_path / 'paper.db'}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert {p.name for p in out.iterdir()} >= {"trades.csv", "fills.csv", "equity.csv", "risk_events.csv",
                                               "summary.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["events"] == 200 and summary["symbols"] == ["BTCUSDT", "ETHUSDT"]


# --- files, databases, ports, Redis ---------------------------------------------------------------

@pytest.mark.parametrize("command", ["backtest", "paper"])
def test_unwritable_out(command: str, btc: str, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    extra = ["--port", "0", "--db", f"sqlite:///{tmp_path / 'p.db'}"] if command == "paper" else []
    refused([command, "--data", btc, "--out", str(blocker / "run"), *extra],
            f"--out {blocker / 'run'}: cannot write the run files there", "Not a directory")
    refused([command, "--data", btc, "--out", str(blocker), *extra], f"--out {blocker}: exists and is not a directory")


def _db_cases() -> list[tuple[str, list[str]]]:
    return [
        ("notaurl", ["--db: invalid database URL 'notaurl'"]),
        ("mysql://u@h/claire", ["--db: unsupported database 'mysql'"]),
        ("postgresql+asyncpg://u@h/claire", ["--db: unsupported PostgreSQL driver 'asyncpg'"]),
        (f"postgresql://postgres@127.0.0.1:{free_port()}/claire", ["--db: cannot connect to", "Connection refused"]),
    ]


@pytest.mark.parametrize("command", ["backtest", "paper"])
def test_bad_or_unreachable_database(command: str, btc: str, tmp_path: Path):
    extra = ["--port", "0"] if command == "paper" else []
    for url, needles in _db_cases():
        refused([command, "--data", btc, "--db", url, "--out", str(tmp_path / "o"), *extra], *needles)


def test_paper_bad_database_from_the_environment(btc: str):
    refused(["paper", "--synthetic", "10", "--port", "0"], "CLAIRE_DATABASE_URL: invalid database URL 'bogus'",
            env={"CLAIRE_DATABASE_URL": "bogus"})


def test_paper_busy_port(tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_claire(["paper", "--synthetic", "100", "--port", str(port),
                          "--db", f"sqlite:///{tmp_path / 'p.db'}"], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    one_line_error(res.stderr, f"--port {port} is not available", "Address already in use")
    refused(["paper", "--synthetic", "10", "--port", "70000"], "--port must be within 0..65535")


def test_up_with_redis_down_starts_nothing(tmp_path: Path):
    db_url = f"sqlite:///{tmp_path / 'up.db'}"
    url = f"redis://127.0.0.1:{free_port()}/0"
    state = tmp_path / "state"
    res = run_claire(["up", "--synthetic", "10", "--redis", url, "--db", db_url, "--state-dir", str(state)],
                     cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    one_line_error(res.stderr, f"cannot reach Redis at {url}", "Connection refused")
    assert not (state / "pids.json").exists()


def test_up_with_a_wrong_redis_password_starts_nothing(tmp_path: Path):
    db_url = f"sqlite:///{tmp_path / 'up.db'}"
    from tests.support.redis_server import RedisServer

    state = tmp_path / "state"
    with RedisServer(tmp_path / "redis", password="s3cret-pw") as srv:
        url = f"redis://127.0.0.1:{srv.port}/0"
        res = run_claire(["up", "--synthetic", "10", "--redis", url, "--db", db_url, "--state-dir", str(state)],
                         cwd=tmp_path, env={"REDIS_PASSWORD": "wrong"})
        assert res.returncode == 2, res.stderr
        line = one_line_error(res.stderr, "rejected the credentials", "REDIS_PASSWORD")
        assert "wrong" not in line  # never printed
        res = run_claire(["up", "--synthetic", "10", "--redis", url, "--db", db_url, "--state-dir", str(state)],
                         cwd=tmp_path, env={"REDIS_PASSWORD": ""})
        assert res.returncode == 2, res.stderr
        one_line_error(res.stderr, "requires a password", "REDIS_PASSWORD")
    assert not (state / "pids.json").exists()


def test_up_refuses_an_in_process_bus_and_an_unreachable_database(tmp_path: Path, redis_url: str):
    state = tmp_path / "state"
    refused(["up", "--synthetic", "10", "--redis", "memory://", "--state-dir", str(state)],
            "memory:// is a bus inside one process")
    refused(["up", "--synthetic", "10", "--redis", "http://x", "--state-dir", str(state)],
            "--redis: unsupported bus URL scheme 'http'")
    refused(["up", "--synthetic", "10", "--redis", redis_url, "--state-dir", str(state),
             "--db", f"postgresql://postgres@127.0.0.1:{free_port()}/claire"], "--db: cannot connect to")
    assert not (state / "pids.json").exists()


def test_db_restore_of_a_garbage_file_into_sqlite(tmp_path: Path):
    garbage = tmp_path / "claire-20260101-000000.sqlite"
    garbage.write_bytes(os.urandom(512))
    url = f"sqlite:///{tmp_path / 'claire.db'}"
    res = run_claire(["db", "restore", str(garbage), "--url", url], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    one_line_error(res.stderr, f"{garbage} is not an SQLite database")
    refused(["db", "restore", str(garbage), "--table", "trades", "--url", url], "is not an SQLite database")
    refused(["db", "restore", str(tmp_path / "missing.sqlite"), "--url", url], "not found")


# --- market data files: every command that reads them ------------------------------------------

@pytest.mark.parametrize("command", ["backtest", "paper", "up", "spec"])
def test_bad_data_file_in_every_command(command: str, tmp_path: Path):
    bad = tmp_path / "BTC_USDT-1m.feather"
    bad.write_bytes(b"not a feather file")
    extra = {"paper": ["--port", "0", "--db", f"sqlite:///{tmp_path / 'p.db'}"],
             "up": ["--state-dir", str(tmp_path / "st")]}.get(command, [])
    refused([command, "--data", str(bad), *extra], "BTC_USDT-1m.feather")
    refused([command, "--data", str(tmp_path / "missing.feather"), *extra], "market data file not found")
    assert not (tmp_path / "st").exists()  # up: nothing started


# --- the other commands ---------------------------------------------------------------------------

def test_service_with_a_bad_spec(tmp_path: Path):
    refused(["service", "risk", "--spec", str(tmp_path / "missing.json")], "--spec", "cannot read it")
    bad = tmp_path / "spec.json"
    bad.write_text("{not json")
    refused(["service", "risk", "--spec", str(bad)], "not a run spec", "invalid JSON")
    bad.write_text("[1, 2]")
    refused(["service", "risk", "--spec", str(bad)], "not a run spec")
    refused(["service", "nosuch", "--spec", str(bad)], "unknown service 'nosuch'")


def test_status_and_down_with_damaged_state(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "pids.json").write_text("{")
    refused(["status", "--state-dir", str(state)], "a state file", "is damaged")
    refused(["down", "--state-dir", str(state)], "a state file", "is damaged")


def test_spec_output_and_urls(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    refused(["spec", "--synthetic", "10", "-o", str(blocker / "spec.json")], "--output", "cannot write it")
    refused(["spec", "--synthetic", "10", "--db", "mysql://h/db"], "--db: unsupported database 'mysql'")
    refused(["spec", "--synthetic", "10", "--signal-replicas", "0"], "--signal-replicas must be >= 1")


def test_bench_replay_bad_input():
    refused(["bench", "replay", "--repeat", "0"], "--repeat must be >= 1")


# --- claire report (issue 12) ----------------------------------------------------------------------

REPORT_CASES = [
    (["report"], ["give a run directory or --db URL"]),
    (["report", "missing-dir"], ["missing-dir: no such directory"]),
    (["report", "."], ["not a run directory", "no equity.csv, summary.json"]),
    (["report", "a-file"], ["a-file: not a directory"]),
    (["report", ".", "--db", "sqlite:///empty.db"], ["give a run directory or --db URL"]),
    (["report", ".", "--run", "r1"], ["--run needs --db"]),
    (["report", "--db", "sqlite:///missing.db"], ["--db: missing.db: no such database file"]),
    (["report", "--db", "mysql://h/db"], ["unsupported database 'mysql'"]),
    (["report", "--db", "sqlite:///empty.db"], ["the database holds no runs"]),
    (["report", "--db", "sqlite:///empty.db", "--run", "r1"], ["--run r1: no such run in the database"]),
    (["report", "--db", "sqlite:///plain.db"], ["no claire tables"]),
    (["report", ".", "--min-psr", "2"], ["min_psr and min_quality_score must be <= 1"]),
]


@pytest.mark.parametrize(("args", "needles"), REPORT_CASES, ids=[" ".join(a) for a, _ in REPORT_CASES])
def test_report_refuses_bad_input(tmp_path: Path, args: list[str], needles: list[str]):
    from claire.storage import Database

    (tmp_path / "a-file").write_text("x")
    (tmp_path / "plain.db").write_bytes(b"")
    (tmp_path / "equity.csv").write_text("time,equity\n") if "--min-psr" in args else None
    (tmp_path / "summary.json").write_text("{}") if "--min-psr" in args else None
    with Database(f"sqlite:///{tmp_path / 'empty.db'}") as db:
        db.upgrade()
    refused(args, *needles)


def test_report_refuses_a_bad_verdict_threshold_in_the_environment(tmp_path: Path):
    refused(["report", "."], "CLAIRE_VERDICT_MIN_PSR: expected a float, got 'high'",
            env={"CLAIRE_VERDICT_MIN_PSR": "high"})


# --- alerts (issue 13) ------------------------------------------------------------------------------

def test_alerts_refuses_an_unknown_id_and_a_missing_database(tmp_path: Path):
    from claire.storage import Database

    with Database(f"sqlite:///{tmp_path / 'a.db'}") as db:
        db.upgrade()
    refused(["alerts", "--db", "sqlite:///a.db", "--ack", "no-such-id"], "--ack no-such-id: no alert with this id")
    refused(["alerts", "--db", "sqlite:///missing.db"], "--db: missing.db: no such database file")
    refused(["alerts", "--db", "mysql://h/db"], "unsupported database 'mysql'")


def test_paper_refuses_a_bad_alert_setting_in_the_environment():
    refused(["paper", "--synthetic", "10", "--port", "0"], "CLAIRE_ALERT_DRAWDOWN_PCT='lots': expected a number",
            env={"CLAIRE_ALERT_DRAWDOWN_PCT": "lots"})
    refused(["paper", "--synthetic", "10", "--port", "0"], "CLAIRE_ALERT_DRAWDOWN_PCT", "must be within 0..1",
            env={"CLAIRE_ALERT_DRAWDOWN_PCT": "3"})


# --- issue 12: the live view (`claire web`, `--web`) --------------------------------------------

WEB_CASES = [
    (["web", "--db", "sqlite:///missing.db"], ["no such file", "missing.db"]),
    (["web", "--db", "sqlite:///plain.db"], ["no Claire schema"]),
    (["web", "--db", "sqlite:///empty.db"], ["holds no run yet"]),
    (["web", "--db", "sqlite:///one.db", "--run", "nope"], ["run 'nope' is not in", "the latest: r1"]),
    (["web", "--db", "mysql://h/db"], ["unsupported database 'mysql'"]),
    (["web", "--db", "sqlite:///one.db", "--host", "0.0.0.0"], ["--host 0.0.0.0", "give a token"]),
    (["web", "--db", "sqlite:///one.db", "--host", "0.0.0.0", "--token", "short"], ["at least 8 characters"]),
    (["web", "--db", "sqlite:///one.db", "--port", "70000"], ["--port must be within 0..65535"]),
    (["web", "--db", "sqlite:///one.db", "--port", "TAKEN"], ["is not available on 127.0.0.1"]),
    (["paper", "--synthetic", "10", "--db", "sqlite:///p.db", "--web", "--web-port", "TAKEN"],
     ["--web-port", "is not available on 127.0.0.1"]),
]


@pytest.mark.parametrize(("args", "needles"), WEB_CASES, ids=[" ".join(a) for a, _ in WEB_CASES])
def test_web_refuses_bad_input(tmp_path: Path, args: list[str], needles: list[str]):
    from claire.storage import Database

    (tmp_path / "plain.db").write_bytes(b"")
    for name in ("empty.db", "one.db"):
        with Database(f"sqlite:///{tmp_path / name}") as db:
            db.upgrade()
            if name == "one.db":
                with db.begin() as conn:
                    conn.exec_driver_sql("INSERT INTO runs (id, mode) VALUES ('r1', 'paper')")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = str(busy.getsockname()[1])
        refused([taken if a == "TAKEN" else a for a in args], *needles)


def test_web_refuses_an_unreachable_postgres():
    refused(["web", "--db", f"postgresql://postgres@127.0.0.1:{free_port()}/claire"], "cannot connect")


# --- claire papertest ----------------------------------------------------------------------------

PAPERTEST_CASES = [
    (["papertest", "start", "--duration", "7x"], ["--duration '7x' is not a duration"]),
    (["papertest", "start", "--duration", "0s"], ["must be at least 1 s"]),
    (["papertest", "start", "--symbols", "BTC/USDT"], ["--symbols: 'BTC/USDT' is not an exchange symbol"]),
    (["papertest", "start", "--symbols", " , "], ["--symbols is empty"]),
    (["papertest", "start", "--source", "binance"], ["--source must be mexc"]),
    (["papertest", "start", "--db", "postgresql://u:secret@h/db"], ["--db must not carry a password"]),
    (["papertest", "start", "--mexc-url", "ftp://x"], ["--mexc-url 'ftp://x' is not an http(s) URL"]),
    (["papertest", "start", "--strategy", "momentum", "--param", "rsi_period=0"], ["`rsi_period` must be an int >= 1"]),
    (["papertest", "check", "--duration", "soon"], ["--duration 'soon' is not a duration"]),
    (["papertest", "stop", "--run-dir", "nowhere"], ["no papertest in nowhere"]),
    (["papertest", "resume", "--run-dir", "nowhere"], ["no papertest in nowhere"]),
    (["papertest", "status", "--run-dir", "nowhere"], ["no papertest in nowhere"]),
    (["papertest", "report", "--run-dir", "nowhere"], ["no papertest in nowhere"]),
]


@pytest.mark.parametrize(("args", "needles"), PAPERTEST_CASES, ids=[" ".join(a) for a, _ in PAPERTEST_CASES])
def test_papertest_refuses_bad_input(args: list[str], needles: list[str]):
    refused(args, *needles)


def test_papertest_refuses_a_second_run_and_a_resume_or_stop_of_none(tmp_path: Path):
    """A run dir whose supervisor is alive (here: a stand-in process named like one) is not
    started again nor resumed; a finished one is not resumed or stopped; an unfinished one is
    resumed, not restarted; a pid of another process (reused after a reboot) is no supervisor."""
    from claire.runtime.papertest.plan import Plan

    run_dir = tmp_path / "pt"
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "papertest", "supervise"])
    time.sleep(0.3)  # exec'd: its command line is its own
    try:
        plan = Plan(run_id="pt-x", run_dir=str(run_dir), duration_s=60, symbols=["BTCUSDT"], status="running",
                    supervisor_pid=stand_in.pid)
        plan.save()
        refused(["papertest", "start", "--run-dir", str(run_dir)], "already running in", "pt-x")
        refused(["papertest", "resume", "--run-dir", str(run_dir)], "is running", "nothing to resume")
    finally:
        stand_in.kill()
        stand_in.wait()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.3)  # exec'd: its command line is its own
        plan.supervisor_pid = other.pid  # alive, but not a papertest supervisor
        assert not plan.active()
    finally:
        other.kill()
        other.wait()
    plan.supervisor_pid, plan.status = None, "interrupted"
    plan.save()
    refused(["papertest", "start", "--run-dir", str(run_dir)], "unfinished", "papertest resume")
    refused(["papertest", "stop", "--run-dir", str(run_dir)], "no papertest running in")
    plan.env_names = ["CLAIRE_H7B_UNSET_VARIABLE"]
    plan.save()
    refused(["papertest", "resume", "--run-dir", str(run_dir)], "CLAIRE_H7B_UNSET_VARIABLE", "set it again")
    plan.status = "finished"
    plan.save()
    refused(["papertest", "resume", "--run-dir", str(run_dir)], "is finished", "nothing to resume")
    (run_dir / "papertest.json").write_text("{not json")
    refused(["papertest", "status", "--run-dir", str(run_dir)], "cannot read the papertest state")


def test_papertest_start_refuses_on_a_failed_preflight(tmp_path: Path):
    """The pre-flight's table, then one line naming what failed; nothing is started."""
    run_dir = tmp_path / "pt"
    refused(["papertest", "start", "--source", "mexc-fake", "--run-dir", str(run_dir),
             "--db", f"postgresql://postgres@127.0.0.1:{free_port()}/claire"], "pre-flight failed: database")
    refused(["papertest", "start", "--mexc-url", f"http://127.0.0.1:{free_port()}", "--symbols", "BTCUSDT",
             "--run-dir", str(run_dir)], "pre-flight failed", "exchange")
    assert not (run_dir / "papertest.json").exists()

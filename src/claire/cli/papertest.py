"""``claire papertest``: the unattended paper test (start, check, status, stop, resume, report).

Registered on the app by :func:`register` (see :mod:`claire.cli.main`). The run itself lives in
:mod:`claire.runtime.papertest` (plan and state file, the detached supervisor, the paper worker,
the status screen).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console

from claire.cli.errors import fail as _fail

app = typer.Typer(help="The unattended paper test: pre-flight, a detached supervised run, status, report.",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)

RunDirOpt = Annotated[Path, typer.Option("--run-dir", help="The run's directory (state, logs, run files, report).")]
DEFAULT_RUN_DIR = Path("runs/papertest")
#: environment variables a papertest reads (their names go into the state file, never values)
ENV_VARS = ("CLAIRE_DATABASE_URL", "CLAIRE_REDIS_URL", "CLAIRE_NOTIFY_URLS", "MEXC_REST_URL", "MEXC_WS_URL",
            "MEXC_STALE_SEC", "CLAIRE_ALERT_DRAWDOWN_PCT", "CLAIRE_WEB_TOKEN", "PGPASSWORD", "REDIS_PASSWORD")




def _plan_or_fail(run_dir: Path) -> Any:
    from claire.runtime.papertest.plan import PlanError, load_plan

    try:
        return load_plan(run_dir)
    except PlanError as exc:
        _fail(str(exc))


def _free_port() -> int:
    from claire.runtime.supervision import free_port  # start-up time: the runtime only when it runs

    return free_port()


def _port_free(port: int) -> bool:
    from claire.runtime.supervision import port_problem  # start-up time: the runtime only when it runs

    return port_problem(port) is None


def _ws_of(rest_url: str) -> str:
    u = urlsplit(rest_url)
    scheme = "wss" if u.scheme == "https" else "ws"
    return f"{scheme}://{u.netloc}/ws"


def _bundled(symbols: list[str], data: list[Path] | None) -> list[str]:
    """The 1m bar files a local fake serves: --data, else the bundled ``data/<BASE>_USDT-1m.feather``."""
    if data:
        for f in data:
            if not f.is_file():
                _fail(f"--data {f}: file not found")
        return [str(f.resolve()) for f in data]
    root = Path(__file__).resolve().parents[3] / "data"
    files = []
    for s in symbols:
        base = s[:-4] if s.endswith("USDT") else s
        f = root / f"{base}_USDT-1m.feather"
        if not f.is_file():
            _fail(f"--source mexc-fake: no bundled data for {s} ({f.name}); give --data FILE")
        files.append(str(f))
    return files


def _make_plan(run_dir: Path, duration: str, source: str, symbols: str, strategy: str, param: list[str] | None,
               distributed: bool, web: bool, web_port: int, mexc_url: str | None, speed: float,
               data: list[Path] | None, db: str | None, redis_url: str | None, port: int) -> Any:
    from claire.runtime.papertest.plan import (
        Plan,
        PlanError,
        has_password,
        new_run_id,
        parse_duration,
        parse_symbols,
    )

    try:
        seconds = parse_duration(duration)
        syms = parse_symbols(symbols)
    except PlanError as exc:
        _fail(str(exc))
    if source not in ("mexc", "mexc-fake"):
        _fail(f"--source must be mexc (the exchange, or --mexc-url) or mexc-fake (a local replay), not {source!r}")
    if not speed > 0:
        _fail(f"--speed must be > 0 (bars per second), got {speed:g}")
    for opt, url in (("--db", db), ("--redis", redis_url)):
        if has_password(url):
            _fail(f"{opt} must not carry a password (it would be written to the state file): "
                  f"put it in {'CLAIRE_DATABASE_URL' if opt == '--db' else 'CLAIRE_REDIS_URL'} or PGPASSWORD/REDIS_PASSWORD")
    if mexc_url is not None and not urlsplit(mexc_url).scheme.startswith("http"):
        _fail(f"--mexc-url {mexc_url!r} is not an http(s) URL (the REST URL `claire mexc-fake` prints)")
    _check_strategy(strategy, param)
    plan = Plan(run_id=new_run_id(), run_dir=str(run_dir.resolve()), duration_s=seconds, symbols=syms,
                strategy=strategy, params=list(param or []), source=source, distributed=distributed, web=web,
                web_port=web_port, db_url=db, redis_url=redis_url, fake_speed=speed,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    if source == "mexc-fake":
        plan.fake_data = _bundled(syms, data)
        fport = _free_port()
        plan.mexc_rest_url, plan.mexc_ws_url = f"http://127.0.0.1:{fport}", f"ws://127.0.0.1:{fport}/ws"
    elif mexc_url:
        plan.mexc_rest_url, plan.mexc_ws_url = mexc_url.rstrip("/"), _ws_of(mexc_url)
    plan.port = port or (0 if distributed else _free_port())
    plan.env_names = [v for v in ENV_VARS if os.environ.get(v)]
    return plan


def _check_strategy(strategy: str, param: list[str] | None) -> None:
    from claire.config import ConfigError, make_config
    from claire.config.options import RunOptions

    try:
        make_config(RunOptions(source="mexc", symbols="BTCUSDT", strategy=strategy, param=list(param or [])))
    except ConfigError as exc:
        _fail(str(exc))


def _preflight(plan: Any) -> bool:
    from claire.runtime.papertest.checks import render_checks, run_checks

    rows = run_checks(plan)
    out.print(render_checks(rows))
    failed = [r for r in rows if not r.ok and not getattr(r, "skipped", False)]
    if failed:  # the environment's problem: one line naming it, exit 2
        _fail("pre-flight failed: " + "; ".join(f"{r.name}: {r.detail}" for r in failed))
    return True


def _refuse_existing(run_dir: Path) -> None:
    """A run dir with an active or unfinished papertest is not started over."""
    from claire.runtime.papertest.plan import STATE_FILE, PlanError, load_plan

    if not (run_dir / STATE_FILE).exists():
        return
    try:
        old = load_plan(run_dir)
    except PlanError as exc:
        _fail(str(exc))
    if old.active():
        _fail(f"a papertest is already running in {run_dir} (run {old.run_id}): "
              "`claire papertest status`, or `claire papertest stop` first")
    if old.status not in ("finished", "failed"):
        _fail(f"the papertest {old.run_id} in {run_dir} is unfinished ({old.status}): "
              "`claire papertest resume` continues it, or start in another --run-dir")
    (run_dir / STATE_FILE).rename(run_dir / f"papertest-{old.run_id}.json")
    for name in ("completed.json",):
        (run_dir / name).unlink(missing_ok=True)


def _spawn_supervisor(run_dir: Path) -> subprocess.Popen[bytes]:
    from claire.runtime.papertest.run import claire_argv

    log_dir = run_dir / "logs" / "supervisor"
    log_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_dir / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # our own interpreter and CLI, no shell; a new session: the run survives the terminal
        return subprocess.Popen(claire_argv("papertest", "supervise", "--run-dir", str(run_dir)),  # noqa: S603
                                stdout=fd, stderr=fd, stdin=subprocess.DEVNULL, start_new_session=True,
                                umask=0o077)
    finally:
        os.close(fd)


def _wait_running(run_dir: Path, proc: subprocess.Popen[bytes], timeout: float) -> Any:
    from claire.runtime.papertest.plan import load_plan

    deadline = time.monotonic() + timeout
    while True:
        plan = load_plan(run_dir)
        if plan.status in ("running", "finished", "stopping"):
            return plan
        if plan.status == "failed":
            _fail(f"papertest {plan.run_id} did not start: {plan.reason}", 1)
        if proc.poll() is not None and plan.status == "starting":
            from claire.runtime.supervision import failure_reason

            _fail(f"the supervisor exited: {failure_reason(run_dir / 'logs' / 'supervisor' / 'stderr.log')}", 1)
        if time.monotonic() > deadline:
            _fail(f"papertest {plan.run_id} did not start within {timeout:.0f} s (see {run_dir}/logs)", 1)
        time.sleep(0.1)


@app.command()
def start(
    duration: Annotated[str, typer.Option(help="How long: 7d, 36h, 90m (wall clock; a replaying exchange: its event time).")] = "7d",
    source: Annotated[str, typer.Option(help="mexc (the exchange, or --mexc-url) or mexc-fake (a local replay of bundled data).")] = "mexc",
    symbols: Annotated[str, typer.Option(help="Comma-separated exchange symbols.")] = "BTCUSDT,ETHUSDT,SOLUSDT",
    strategy: Annotated[str, typer.Option(help="Built-in name or module:Class.")] = "momentum",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Strategy parameter k=v (repeatable).")] = None,
    distributed: Annotated[bool, typer.Option(help="Run the services of `claire up` (Redis, PostgreSQL) instead of one process.")] = False,
    web: Annotated[bool, typer.Option(help="Serve the live view while the run goes on.")] = False,
    web_port: Annotated[int, typer.Option(help="Port of the live view (0: a free one).")] = 0,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    mexc_url: Annotated[str | None, typer.Option(help="REST URL of a MEXC-compatible exchange (e.g. `claire mexc-fake`'s).")] = None,
    speed: Annotated[float, typer.Option(help="--source mexc-fake: bars per second of the replay.")] = 60.0,
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="--source mexc-fake: 1m bar files (default: the bundled ones).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL without password (default CLAIRE_DATABASE_URL, else SQLite in the run dir).")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis", help="--distributed: Redis URL (default CLAIRE_REDIS_URL).")] = None,
    port: Annotated[int, typer.Option(help="Paper: its /health port; --distributed: the port base (0: a free one / the defaults).")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run to be up.")] = 180.0,
) -> None:
    """Pre-flight, then start the run detached under one supervisor (it survives the terminal)."""
    if not 0 <= port <= 65535:
        _fail(f"--port must be within 0..65535, got {port}")
    _refuse_existing(run_dir)
    plan = _make_plan(run_dir, duration, source, symbols, strategy, param, distributed, web, web_port, mexc_url,
                      speed, data, db, redis_url, port)
    from claire.runtime.papertest.checks import decide_clock
    from claire.runtime.papertest.plan import private_dir

    private_dir(run_dir)
    _preflight(plan)
    plan.clock, server_ms = decide_clock(plan)
    now = datetime.now(UTC)
    plan.started_at = now.isoformat(timespec="seconds")
    if plan.clock == "wall":
        plan.ends_at = (now + timedelta(seconds=plan.duration_s)).isoformat(timespec="seconds")
    plan.save()
    proc = _spawn_supervisor(Path(plan.run_dir))
    plan = _wait_running(Path(plan.run_dir), proc, timeout)
    out.print(f"papertest {plan.run_id} running: {', '.join(plan.symbols)} {plan.strategy}, "
              f"{'distributed' if plan.distributed else 'one process'}, for {duration} "
              f"({'exchange event time: a replay' if plan.clock == 'exchange' else 'wall clock'})", markup=False)
    out.print(f"supervisor pid {plan.supervisor_pid}; run dir {plan.run_dir}; "
              "`claire papertest status`, `stop`, `report`", markup=False)
    del server_ms


@app.command()
def check(
    source: Annotated[str, typer.Option()] = "mexc",
    symbols: Annotated[str, typer.Option()] = "BTCUSDT,ETHUSDT,SOLUSDT",
    strategy: Annotated[str, typer.Option()] = "momentum",
    param: Annotated[list[str] | None, typer.Option("--param", "-p")] = None,
    duration: Annotated[str, typer.Option()] = "7d",
    distributed: Annotated[bool, typer.Option()] = False,
    run_dir: RunDirOpt = DEFAULT_RUN_DIR,
    mexc_url: Annotated[str | None, typer.Option()] = None,
    db: Annotated[str | None, typer.Option("--db")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis")] = None,
    port: Annotated[int, typer.Option()] = 0,
) -> None:
    """The pre-flight alone: a table of checks (exit 2 naming what failed)."""
    plan = _make_plan(run_dir, duration, source, symbols, strategy, param, distributed, False, 0, mexc_url,
                      60.0, None, db, redis_url, port)
    from claire.runtime.papertest.plan import private_dir

    private_dir(run_dir)
    _preflight(plan)
    out.print("pre-flight passed", markup=False)


@app.command()
def status(run_dir: RunDirOpt = DEFAULT_RUN_DIR,
           json_out: Annotated[bool, typer.Option("--json", help="The same as JSON.")] = False) -> None:
    """One screen: progress, equity, PnL, drawdown vs limits, trading state, positions, freshness, components, alerts."""
    from claire.runtime.papertest.status import collect, render

    data = collect(_plan_or_fail(run_dir))
    if json_out:
        print(json.dumps(data, default=str))
    else:
        out.print(render(data))


@app.command()
def stop(run_dir: RunDirOpt = DEFAULT_RUN_DIR,
         timeout: Annotated[float, typer.Option(help="Seconds to wait for the final report.")] = 600.0) -> None:
    """Finish the run now: a clean stop, the final report and summary."""
    plan = _plan_or_fail(run_dir)
    if not plan.active():
        _fail(f"no papertest running in {run_dir} (run {plan.run_id} is {plan.status})")
    os.kill(plan.supervisor_pid, signal.SIGUSR1)
    out.print(f"stopping papertest {plan.run_id} ...", markup=False)
    plan = _wait_finished(run_dir, timeout, plan.supervisor_pid)
    _print_report(plan)


def _wait_finished(run_dir: Path, timeout: float, supervisor_pid: int | None = None) -> Any:
    """Until the run is over and its supervisor has exited."""
    from claire.runtime.papertest.plan import load_plan, pid_alive

    deadline = time.monotonic() + timeout
    while True:
        plan = load_plan(run_dir)
        over = plan.status in ("finished", "failed", "interrupted") and not plan.active()
        if over and not (supervisor_pid and pid_alive(supervisor_pid)):
            return plan
        if time.monotonic() > deadline:
            _fail(f"papertest {plan.run_id} did not finish within {timeout:.0f} s (it goes on; see {run_dir}/logs)", 1)
        time.sleep(0.2)


def _print_report(plan: Any) -> None:
    if plan.report:
        out.print(f"report: {plan.report}", markup=False)
    out.print(f"verdict: {plan.verdict or '-'}", markup=False)


@app.command()
def resume(run_dir: RunDirOpt = DEFAULT_RUN_DIR,
           timeout: Annotated[float, typer.Option(help="Seconds to wait for the run to be up.")] = 180.0) -> None:
    """Continue the run after a crash or a reboot: the same run id, its state from the database checkpoint."""
    from claire.runtime.papertest.plan import update_plan

    plan = _plan_or_fail(run_dir)
    if plan.active():
        _fail(f"the papertest {plan.run_id} in {run_dir} is running (supervisor pid {plan.supervisor_pid}): nothing to resume")
    if plan.status == "finished":
        _fail(f"the papertest {plan.run_id} in {run_dir} is finished: nothing to resume (`claire papertest report`)")
    missing = [v for v in plan.env_names if not os.environ.get(v)]
    if missing:
        _fail(f"the run was started with {', '.join(missing)} set; set it again to resume")
    port = plan.port
    if port and not plan.distributed and not _port_free(port):
        port = _free_port()  # taken since (a reboot): the paper component's /health moves
    update_plan(run_dir, status="starting", resumed=plan.resumed + 1, reason="", port=port)
    proc = _spawn_supervisor(Path(plan.run_dir))
    plan = _wait_running(Path(plan.run_dir), proc, timeout)
    out.print(f"papertest {plan.run_id} resumed (supervisor pid {plan.supervisor_pid})", markup=False)


@app.command()
def report(run_dir: RunDirOpt = DEFAULT_RUN_DIR,
           wait: Annotated[bool, typer.Option(help="Wait for the run to finish, then show its final report.")] = False,
           timeout: Annotated[float, typer.Option(help="With --wait: seconds to wait at most.")] = 86_400.0) -> None:
    """The report of the current or last run (written now for a run still going on)."""
    from claire.runtime.papertest.run import write_report

    plan = _plan_or_fail(run_dir)
    if wait and plan.active():
        out.print(f"waiting for papertest {plan.run_id} to finish ...", markup=False)
        plan = _wait_finished(run_dir, timeout, plan.supervisor_pid)
    if plan.status != "finished" or not plan.report:
        path, verdict = write_report(plan)
        plan.report, plan.verdict = path, verdict
        if plan.status != "finished":
            out.print(f"papertest {plan.run_id} is {plan.status}: the report so far", markup=False)
    _print_report(plan)


@app.command("worker", hidden=True)
def worker(run_dir: RunDirOpt) -> None:
    """The paper component of a papertest (started by its supervisor)."""
    from claire.runtime.logs import configure_logging
    from claire.runtime.papertest.plan import load_plan
    from claire.runtime.papertest.worker import run_worker

    configure_logging("paper", load_plan(run_dir).log_dir)
    raise typer.Exit(run_worker(run_dir))


@app.command("supervise", hidden=True)
def supervise(run_dir: RunDirOpt) -> None:
    """The supervisor of a papertest (started detached by `start` / `resume`)."""
    from claire.runtime.papertest.run import supervise as run

    raise typer.Exit(run(run_dir))


def register(main_app: typer.Typer) -> None:
    main_app.add_typer(app, name="papertest")

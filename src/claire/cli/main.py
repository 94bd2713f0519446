"""The `claire` command line."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
import typer.core
from rich.console import Console
from rich.table import Table

from claire.cli.alerts import register as _register_alerts
from claire.cli.alerts import with_alert_env
from claire.cli.errors import checked_database
from claire.cli.errors import fail as _fail
from claire.cli.live import register as _register_live
from claire.cli.papertest import register as _register_papertest
from claire.cli.report import register as _register_report
from claire.cli.web import register as _register_web
from claire.cli.web import web_view_options
from claire.config.options import RunOptions


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's or the environment's problem (bad value, file, URL, server
    down, port busy): one line on stderr and exit 2, never a traceback."""
    errors: list[type[BaseException]] = [ValueError, OSError]
    try:
        from claire.storage.database import (
            StorageError,  # start-up time: SQLAlchemy only for commands with a database
        )

        errors.append(StorageError)
    except ImportError:  # pragma: no cover - storage not installed
        pass
    from claire.bus.base import BusError  # start-up time: redis only for commands with a bus

    errors.append(BusError)
    try:
        from sqlalchemy.exc import (
            OperationalError,  # start-up time: SQLAlchemy only for commands with a database
        )

        errors.append(OperationalError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import redis  # start-up time: redis only for commands with a bus

        errors.append(redis.exceptions.ConnectionError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import psycopg  # start-up time: the PostgreSQL driver only for PostgreSQL

        errors.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def error_text(exc: BaseException) -> str:
    """One line naming the problem of ``exc``."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    try:
        from claire.storage.database import (
            one_line,  # start-up time: SQLAlchemy only for commands with a database
        )

        text = one_line(exc) if exc.__class__.__module__.startswith("sqlalchemy") else str(exc)
    except ImportError:  # pragma: no cover
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _typer_exceptions() -> tuple[type[BaseException], ...]:
    """What typer raises itself (usage errors, Exit, Abort): passed on to it as they are. Newer
    typer has its own click (``TyperException`` is the base of its usage errors); an older one
    raises click's."""
    base = getattr(typer, "TyperException", None)
    if base is None:  # pragma: no cover - typer on click
        import click  # start-up time: only with a typer that imports it anyway

        base = click.exceptions.ClickException
    return (base, typer.Exit, typer.Abort)


_PASSED_ON = _typer_exceptions()


class ClaireGroup(typer.core.TyperGroup):
    """Every command runs under this group: a user error ends in one line and exit code 2
    (set CLAIRE_DEBUG=1 to see the traceback instead)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASSED_ON:
            raise
        except _user_errors() as exc:
            if os.environ.get("CLAIRE_DEBUG"):
                raise
            _fail(error_text(exc))


app = typer.Typer(
    name="claire",
    help="Claire de Binare: event-driven crypto paper trading (replay, paper, distributed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=ClaireGroup,
)
bench_app = typer.Typer(help="Benchmarks (figures, not tests).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console(stderr=True)
out = Console()


def _register_optional() -> None:
    try:
        # start-up time: the command's own module only when it runs
        from claire.cli.db import app as db_app
    except ImportError:  # pragma: no cover - storage not installed
        return
    app.add_typer(db_app, name="db", help="Database: migrations, backup, restore.")




def check_out_dir(path: Path | None, opt: str = "--out") -> None:
    """Refuse an --out directory that cannot be created or written, before any work is done."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        _fail(f"{opt} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".claire-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        _fail(f"{opt} {path}: cannot write the run files there: {exc.strerror or exc}")


def check_database(url: str, opt: str = "--db") -> None:
    """Refuse a malformed, unsupported or unreachable database URL before the run starts."""
    checked_database(url, opt).dispose()


def check_port(port: int, opt: str = "--port", host: str = "127.0.0.1") -> None:
    """Refuse a port out of range or in use (0 = any free port)."""

    if not 0 <= port <= 65535:
        _fail(f"{opt} must be within 0..65535, got {port}")
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
        try:
            s.bind((host, port))
        except OSError as exc:
            _fail(f"{opt} {port} is not available on {host}: {exc.strerror or exc}")


def check_redis(url: str, opt: str = "--redis") -> None:
    """Ping Redis once (short timeouts): refuse it down or refusing the credentials."""
    import redis  # start-up time: redis only for commands with a bus

    from claire.bus import make_bus

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        _fail(f"{opt} memory:// is a bus inside one process; the services of `claire up` need Redis "
              "(for one process use `claire paper`)")
    redis_scheme = scheme in ("redis", "rediss", "unix")
    options: dict[str, Any] = {"connect_timeout": 3.0, "socket_timeout": 5.0} if redis_scheme else {}
    try:
        bus = make_bus(url, prefix="", **options)
    except ValueError as exc:
        _fail(f"{opt}: {exc}")
    client = getattr(bus, "client", None)
    try:
        if client is not None:
            client.ping()
    except redis.exceptions.AuthenticationError as exc:
        if client.connection_pool.connection_kwargs.get("password") is None:  # type: ignore[union-attr]
            _fail(f"Redis at {bus.url} requires a password: set REDIS_PASSWORD (and REDIS_USERNAME "  # type: ignore[attr-defined]
                  "for an ACL user) or put it in the URL")
        _fail(f"Redis at {bus.url} rejected the credentials ({error_text(exc)}); "  # type: ignore[attr-defined]
              "check REDIS_USERNAME / REDIS_PASSWORD or the URL")
    except redis.exceptions.ResponseError as exc:
        _fail(f"Redis at {bus.url} refused the connection: {error_text(exc)}")  # type: ignore[attr-defined]
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        _fail(f"cannot reach Redis at {bus.url}: {error_text(exc)}")  # type: ignore[attr-defined]
    finally:
        bus.close()


def check_data(cfg: Any) -> None:
    """Open the market data files of ``cfg`` once: a bad file is refused here, with its reason,
    before anything starts (the distributed services read them in other processes)."""
    if cfg.data.paths:
        from claire.marketdata import (
            open_market_data,  # start-up time: pyarrow only for commands that read data
        )

        open_market_data(cfg.data.paths, cfg.data.symbol)


# --- the run options: declared once (help here, defaults in claire.config.options.RunOptions) ---

DataOpt = Annotated[list[Path], typer.Option("--data", "-d", help="Market data file(s): .feather bars, .gz Binance capture, .parquet ticks. Repeat for several symbols.")]
ReplayDataOpt = Annotated[list[Path] | None, typer.Option("--data", "-d", help="Market data file(s) to replay (repeat for several symbols).")]
SyntheticOpt = Annotated[int, typer.Option(help="Instead of --data: N synthetic 1m bars per symbol (BTCUSDT, ETHUSDT).")]
SymbolOpt = Annotated[str | None, typer.Option(help="Symbol (exchange form, e.g. BTCUSDT); default: from the file name.")]
StrategyOpt = Annotated[str, typer.Option(help="Built-in name (sma_cross, momentum) or module:Class.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="Strategy parameter k=v (repeatable).")]
QtyOpt = Annotated[str | None, typer.Option(help="Fixed order quantity (base asset); default: sized from equity and limits.")]
FeeOpt = Annotated[str, typer.Option(help="Taker fee in bps (also the maker fee unless --maker-fee-bps).")]
MakerOpt = Annotated[str | None, typer.Option(help="Maker fee in bps.")]
SlipOpt = Annotated[str, typer.Option(help="Fixed slippage in bps against the taker.")]
FillOpt = Annotated[str, typer.Option(help="Bar fill convention: next_open or close.")]
RiskOpt = Annotated[str, typer.Option(help="Risk gate: default (limits from env/flags) or none.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Directory for the run files (`up`: with --wait).")]
CashOpt = Annotated[str, typer.Option(help="Start capital in USDT.")]
VolOpt = Annotated[str, typer.Option(help="Max share of a bar's volume one order may take per bar (0-1], or 'none'.")]
SpeedOpt = Annotated[str, typer.Option(help="Pace: 1 = event-time pace, N = N times faster, max = as fast as possible.")]
ReplicasOpt = Annotated[int, typer.Option(help="Replicas of the signal service (symbols are shared out).")]
TopologyOpt = Annotated[str, typer.Option(
    help="seeds: the seeds' six services; account: risk, execution and portfolio as one service "
         "(two hops fewer per market event, same results).")]
StateOpt = Annotated[Path, typer.Option(help="State directory (spec, pids, logs).")]

#: the defaults of every run option, declared once (claire.config.options.RunOptions)
_D = RunOptions()
_FIELDS = {f.name: f for f in dataclasses.fields(RunOptions)}
#: parameter name -> run option, where the name would shadow something in a command
_RENAMED = {"out_dir": "out", "redis_url": "redis"}


def _run_options(params: dict[str, Any]) -> RunOptions:
    """The run options among a command's parameters (its ``locals()`` before anything else), as one
    :class:`RunOptions`: every command hands the same thing to ``make_config``."""
    values = {_RENAMED.get(k, k): v for k, v in params.items()}
    return RunOptions(**{k: v for k, v in values.items()  # a list option not given (None): RunOptions' []
                         if k in _FIELDS and (v is not None or _FIELDS[k].default_factory is dataclasses.MISSING)})


def run_config(opts: RunOptions, **from_env: bool) -> Any:
    """The configuration tree of ``opts`` (every bad value named in one line, exit 2), its
    --out directory checked writable before any work is done. ``from_env``: see make_config."""
    from claire.config import (  # start-up time: the configuration only for the commands that need it
        ConfigError,
        make_config,
    )

    try:
        cfg = make_config(opts, **from_env)
    except ConfigError as exc:
        _fail(str(exc))
    check_out_dir(opts.out)
    return cfg


def print_summary(summary: dict[str, Any], title: str = "Run summary") -> None:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("symbols", ", ".join(summary.get("symbols", []))), ("period", f"{summary.get('start_time', '')} .. {summary.get('end_time', '')}"),
        ("market events", f"{summary.get('events', 0):,}"), ("signals", summary["signals"]), ("orders", summary["orders"]),
        ("fills", summary["fills"]), ("risk rejections", summary["risk_rejections"]),
        ("round trips (closed)", summary["trades"]), ("open round trips", summary["open_trades"]),
        ("win rate (net)", f"{summary['win_rate']:.2%}" if summary["win_rate"] is not None else "-"),
        ("gross realized PnL", summary["realized_pnl_gross"]), ("fees", summary["fees"]),
        ("net realized PnL", summary["realized_pnl_net"]), ("unrealized PnL", summary["unrealized_pnl"]),
        ("net PnL (after fees)", summary["net_pnl"]),
        ("final equity", summary["final_equity"]), ("total return", f"{summary['total_return_pct']:.3f} %"),
        ("max drawdown", f"{summary['max_drawdown']:.3%}"), ("sharpe (daily, ann.)", summary["sharpe"]),
        ("profit factor (net)", summary["profit_factor"]),
    ]
    for k, v in rows:
        table.add_row(k, "-" if v is None else str(v))
    out.print(table)
    if summary.get("rejections_by_check"):
        out.print("risk rejections by check: " + ", ".join(f"{k} {v}" for k, v in summary["rejections_by_check"].items()))
    for change in summary.get("trading_state_changes", []):
        out.print(f"trading state -> [bold]{change['state']}[/] at {change['time']}: {change['reason']}")


@app.command()
def backtest(
    data: DataOpt,
    symbol: SymbolOpt = _D.symbol,
    strategy: StrategyOpt = _D.strategy,
    param: ParamOpt = None,
    quantity: QtyOpt = _D.quantity,
    fee_bps: FeeOpt = _D.fee_bps,
    maker_fee_bps: MakerOpt = _D.maker_fee_bps,
    slippage_bps: SlipOpt = _D.slippage_bps,
    fill: FillOpt = _D.fill,
    risk: RiskOpt = _D.risk,
    start_cash: CashOpt = _D.start_cash,
    max_volume_share: VolOpt = _D.max_volume_share,
    out_dir: OutOpt = None,
    db: Annotated[str | None, typer.Option("--db", help="Also write every event to this database URL.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
) -> None:
    """Replay market data through strategy, risk, paper execution and portfolio."""
    opts = _run_options(locals())
    cfg = run_config(opts)
    if opts.db is not None:
        check_database(opts.db)
    from claire.runtime.backtest import (
        run_backtest_cli,  # start-up time: the core and its readers only for the command that runs them
    )

    summary = run_backtest_cli(cfg, progress=progress and not json_out, console=console)
    if json_out:
        out.print_json(json.dumps(summary, default=str))
    else:
        print_summary(summary)
        if cfg.runtime.out:
            out.print(f"run files: {cfg.runtime.out}/{{trades,fills,equity,risk_events,signals}}.csv, summary.json")


@app.command()
def strategies(
    spec: Annotated[list[str] | None, typer.Argument(
        help="Strategies to show (a built-in name or package.module:Class); default: the built-ins.")] = None,
) -> None:
    """List the built-in strategies (or the given ones) with their declared parameters and rules."""
    from rich.markup import escape  # start-up time: rich only to print tables and progress

    from claire.strategy.registry import describe_strategy, load_strategy, strategy_names

    for name in spec or strategy_names():
        cls = load_strategy(name)
        out.print(f"[bold]{escape(name)}[/] ({cls.__module__}:{cls.__qualname__})", soft_wrap=True)
        for line in describe_strategy(cls) or ["(no parameters)"]:
            out.print("  " + escape(line), soft_wrap=True)


SourceOpt = Annotated[str, typer.Option(help="Market data: files (--data/--synthetic) or mexc (live, --symbols; recorded to OUT/capture/).")]
SymbolsOpt = Annotated[str | None, typer.Option(help="--source mexc: the symbols, comma-separated (e.g. BTCUSDT,ETHUSDT).")]


@app.command()
def paper(
    source: SourceOpt = _D.source,
    symbols: SymbolsOpt = _D.symbols,
    data: ReplayDataOpt = None,
    synthetic: SyntheticOpt = _D.synthetic,
    symbol: SymbolOpt = _D.symbol,
    strategy: StrategyOpt = _D.strategy,
    param: ParamOpt = None,
    quantity: QtyOpt = _D.quantity,
    fee_bps: FeeOpt = _D.fee_bps,
    maker_fee_bps: MakerOpt = _D.maker_fee_bps,
    slippage_bps: SlipOpt = _D.slippage_bps,
    fill: FillOpt = _D.fill,
    risk: RiskOpt = _D.risk,
    start_cash: CashOpt = _D.start_cash,
    max_volume_share: VolOpt = _D.max_volume_share,
    speed: SpeedOpt = _D.speed,
    out_dir: OutOpt = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default CLAIRE_DATABASE_URL or sqlite:///claire.db).")] = None,
    port: Annotated[int, typer.Option(help="Port of /health, /ready, /metrics.")] = 8000,
    resume: Annotated[bool, typer.Option(help="Continue this run from its last checkpoint in the database, if any.")] = True,
    log_dir: Annotated[Path | None, typer.Option(help="Write logs (JSON lines) to LOG_DIR/paper/<YYYY-MM-DD>.log (default OUT/logs with --out).")] = None,
    web: Annotated[bool, typer.Option("--web", help="Serve the live view (as `claire web`) on 127.0.0.1:--web-port while the run goes.")] = False,
    web_port: Annotated[int, typer.Option(help="Port of the live view with --web (0: any free port, printed).")] = 8080,
) -> None:
    """Paper trading in one process: the core, the in-memory bus and the writer (SQLite by default)."""
    opts = _run_options(locals())
    from claire.runtime.distributed.app import (
        market_events,  # start-up time: the distributed runtime (redis) only for its commands
    )
    from claire.runtime.paper import run_paper

    cfg = run_config(opts, database_from_env=True)
    cfg = with_alert_env(cfg)  # CLAIRE_ALERT_*: a bad value is refused before anything starts
    from claire.runtime.sources import (
        resolve_data,  # start-up time: the core and its readers only for the command that runs them
    )

    cfg = resolve_data(cfg)  # a MEXC capture as --data: replayed through the adapter
    web_options = web_view_options(web, web_port, lambda url: out.print(f"live view on {url}", soft_wrap=True))
    if cfg.data.source == "mexc":
        if cfg.runtime.speed is not None:
            _fail("--speed is for replays of files; MEXC data comes at its own pace")
        if web_options is not None:
            _fail("--web with --source mexc: not yet; run `claire web --db URL` beside it")
        # start-up time: the command's own module only when it runs
        from claire.cli.live import paper_mexc

        check_port(port)
        check_database(cfg.runtime.database_url, "--db" if opts.db else "CLAIRE_DATABASE_URL")
        _paper_logging(cfg, log_dir, port)
        summary, notes = paper_mexc(cfg, db_url=cfg.runtime.database_url, port=port, console=console)
        print_summary(summary, "Paper run (MEXC)")
        for line in notes:
            out.print(line, markup=False, soft_wrap=True)
        return
    check_port(port)
    db_url = cfg.runtime.database_url
    check_database(db_url, "--db" if opts.db else "CLAIRE_DATABASE_URL")
    # start-up time: only for the command that uses it
    import signal as _signal

    from rich.progress import Progress  # start-up time: rich only to print tables and progress

    events = market_events(cfg)  # a bad data file: its one line, before anything else is printed
    _paper_logging(cfg, log_dir, port)
    total = len(events) if isinstance(events, list) else getattr(events, "count", None)
    stop = threading.Event()
    for sig in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(sig, lambda *_: stop.set())
    # not a terminal: no bar, the progress lines of the log (every 10 s) show on stderr instead
    with Progress(console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("paper", total=total if isinstance(total, int) else None)
        summary = run_paper(cfg, events, db_url=db_url, speed=cfg.runtime.speed, port=port,
                            progress=lambda n: bar.advance(task, n), stop=stop, resume=resume, web=web_options)
    if not summary.get("completed", True):
        out.print("[yellow]stopped: the state is saved; run the same command again to resume[/]")
    print_summary(summary, "Paper run")
    if cfg.runtime.out:
        out.print(f"run files: {cfg.runtime.out}")


def _paper_logging(cfg: Any, log_dir: Path | None, port: int) -> None:
    """Logs of ``claire paper``: JSON lines per UTC day in LOG_DIR/paper (default OUT/logs), the
    console at INFO when it is not a terminal (progress lines), else WARNING (the bar shows it);
    then where the endpoints are (on stdout: stderr stays for progress lines and errors)."""
    from claire.runtime.logs import configure_logging  # start-up time: structlog only for the runtimes

    directory = log_dir or (Path(cfg.runtime.out) / "logs" if cfg.runtime.out else None)
    configure_logging("paper", directory, console_level="WARNING" if console.is_terminal else "INFO")
    if port:  # --port 0: a free port chosen at start (the run's /health names it)
        base = f"http://127.0.0.1:{port}"
        out.print(f"health: {base}/health  ready: {base}/ready  metrics: {base}/metrics", markup=False,
                  soft_wrap=True, highlight=False)
    if directory is not None:
        out.print(f"logs: {directory / 'paper'}", markup=False, soft_wrap=True, highlight=False)


@app.command()
def service(
    name: Annotated[str, typer.Argument(help="marketdata, signal, risk, execution, portfolio or writer.")],
    spec: Annotated[Path, typer.Option(help="Run spec written by `claire up` (spec.json).")],
    replica: Annotated[int, typer.Option(help="Replica index (signal service).")] = 0,
    port: Annotated[int | None, typer.Option(help="Port of /health, /ready, /metrics (default from the spec).")] = None,
    log_dir: Annotated[Path | None, typer.Option(help="Write logs to LOG_DIR/<service>/<YYYY-MM-DD>.log.")] = None,
) -> None:
    """Run one service of the distributed runtime until SIGTERM."""
    from claire.runtime.distributed.app import (  # start-up time: the distributed runtime (redis) only for its commands
        SERVICES,
        run_service,
    )

    # start-up time: the core and its readers only for the command that runs them
    from claire.runtime.logs import configure_logging

    if name not in SERVICES:
        _fail(f"unknown service {name!r} (one of {', '.join(SERVICES)})")
    if replica < 0:
        _fail(f"--replica must be >= 0, got {replica}")
    if port is not None:
        check_port(port)
    try:
        spec_data = json.loads(spec.read_text())
    except OSError as exc:
        _fail(f"--spec {spec}: cannot read it: {exc.strerror or exc}")
    except ValueError as exc:
        _fail(f"--spec {spec}: not a run spec (invalid JSON: {exc})")
    if not isinstance(spec_data, dict) or not isinstance(spec_data.get("runtime"), dict):
        _fail(f"--spec {spec}: not a run spec (write one with `claire spec` or `claire up`)")
    _check_spec(spec, spec_data)
    configure_logging(f"signal-{replica}" if name == "signal" else name, log_dir)
    # the run's identity on /metrics (claire_run_info)
    from claire.runtime.distributed.app import config_from_spec
    from claire.runtime.metrics import run_info_labels, set_process_run_info

    set_process_run_info(**run_info_labels(config_from_spec(spec_data)))
    raise typer.Exit(run_service(name, spec_data, replica, port))


def _check_spec(path: Path, spec_data: dict[str, Any]) -> None:
    """Refuse a spec whose settings do not fit the configuration tree, naming the field."""
    import msgspec  # start-up time: msgspec only for the commands that encode

    from claire.runtime.distributed.app import config_from_spec

    try:
        config_from_spec(spec_data)
    except msgspec.ValidationError as exc:
        _fail(f"--spec {path}: not a valid run spec: {exc}")


def _check_topology(topology: str) -> None:
    from claire.config import (
        TOPOLOGIES,  # start-up time: the configuration only for the commands that need it
    )

    if topology not in TOPOLOGIES:
        _fail(f"--topology must be one of {', '.join(TOPOLOGIES)}, not {topology!r}")


@app.command()
def up(
    source: SourceOpt = _D.source,
    symbols: SymbolsOpt = _D.symbols,
    data: ReplayDataOpt = None,
    synthetic: SyntheticOpt = _D.synthetic,
    symbol: SymbolOpt = _D.symbol,
    strategy: StrategyOpt = _D.strategy,
    param: ParamOpt = None,
    quantity: QtyOpt = _D.quantity,
    fee_bps: FeeOpt = _D.fee_bps,
    maker_fee_bps: MakerOpt = _D.maker_fee_bps,
    slippage_bps: SlipOpt = _D.slippage_bps,
    fill: FillOpt = _D.fill,
    risk: RiskOpt = _D.risk,
    start_cash: CashOpt = _D.start_cash,
    max_volume_share: VolOpt = _D.max_volume_share,
    speed: SpeedOpt = _D.speed,
    signal_replicas: ReplicasOpt = _D.signal_replicas,
    topology: TopologyOpt = _D.topology,
    out_dir: OutOpt = None,
    redis_url: Annotated[str | None, typer.Option("--redis", help="Redis URL (default CLAIRE_REDIS_URL or redis://127.0.0.1:6379/0).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default CLAIRE_DATABASE_URL).")] = None,
    state_dir: StateOpt = Path(".claire"),
    wait: Annotated[bool, typer.Option(help="With a finite replay: return once everything is processed and persisted, write the run files, stop the services.")] = False,
    fresh: Annotated[bool, typer.Option(help="Start from scratch (delete this run's bus keys); --no-fresh resumes.")] = True,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds.")] = 3600,
    port_base: Annotated[int | None, typer.Option("--port-base", help="Ports of /health, /ready, /metrics from this one on (market data, signal, risk, execution, portfolio, writer, account; signal replicas +10 each); default 8000.")] = None,
    web: Annotated[bool, typer.Option("--web", help="Also start the live view (`claire web`) on 127.0.0.1:--web-port; `claire down` stops it.")] = False,
    web_port: Annotated[int, typer.Option(help="Port of the live view with --web (0: any free port, printed).")] = 8080,
) -> None:
    """Start every service as its own process against Redis and PostgreSQL."""
    opts = _run_options(locals())
    from claire.runtime.distributed.app import (  # start-up time: the distributed runtime (redis) only for its commands
        run_hash,
        spec_from_config,
    )

    # start-up time: the distributed runtime (redis) only for its commands
    from claire.runtime.distributed.supervisor import up as sv_up

    if wait and not timeout > 0:
        _fail(f"--timeout must be > 0, got {timeout}")
    cfg = run_config(opts, database_from_env=True, bus_from_env=True)
    cfg = with_alert_env(cfg)  # CLAIRE_ALERT_*: into the run spec, a bad value refused before anything starts
    from claire.runtime.sources import (
        resolve_data,  # start-up time: the core and its readers only for the command that runs them
    )

    cfg = resolve_data(cfg)  # a MEXC capture as --data: replayed through the adapter
    live = cfg.data.source == "mexc" and not cfg.data.paths
    if live and cfg.runtime.speed is not None:
        _fail("--speed is for replays of files; MEXC data comes at its own pace")
    # everything the services need is checked here, before any of them starts
    if cfg.data.source != "mexc":
        check_data(cfg)
    check_redis(cfg.runtime.bus_url, "--redis" if opts.redis else "CLAIRE_REDIS_URL")
    check_database(cfg.runtime.database_url, "--db" if opts.db else "CLAIRE_DATABASE_URL")
    if cfg.data.source == "mexc":
        from claire.runtime.distributed.app import (
            with_exchange_rules,  # start-up time: the distributed runtime (redis) only for its commands
        )

        try:  # every service sizes and fills by the exchange's rules: they go into the spec
            cfg = with_exchange_rules(cfg)
        except Exception as exc:
            _fail(f"MEXC: {exc}")
    spec = spec_from_config(cfg)
    spec["runtime"]["prefix"] = f"claire:{{{run_hash(spec)}}}:"
    spec = _check_up_ports(spec, port_base, state_dir)
    web_options = web_view_options(web, web_port)
    from claire.runtime.supervision import (
        StartFailure,  # start-up time: the distributed runtime (redis) only for its commands
    )

    try:
        pids = sv_up(spec, state_dir, fresh=fresh)
    except StartFailure as exc:
        _fail(f"{exc.component} failed to start: {exc.reason} (the other services are stopped; "
              f"logs: {state_dir}/logs/{exc.component}/)")
    out.print(f"started {len(pids)} services: " + ", ".join(f"{k} (pid {v})" for k, v in pids.items()))
    out.print(f"logs: {state_dir}/logs/<service>/<day>.log; `claire status`, `claire down`")
    if web_options is not None:
        _up_web(state_dir, cfg.runtime.database_url, spec["runtime"]["run_id"], web_port)
    if wait:
        _wait_up(spec, cfg, state_dir, live, timeout)


def _wait_up(spec: dict[str, Any], cfg: Any, state_dir: Path, live: bool, timeout: float) -> None:
    """`up --wait`: follow the run to its end, print its summary and write its run files; the
    services are stopped afterwards, also when the run cannot finish."""
    from claire.runtime.distributed.report import (
        wait_and_report,  # start-up time: the distributed runtime (redis) only for its commands
    )
    from claire.runtime.distributed.supervisor import (
        down as sv_down,  # start-up time: the distributed runtime (redis) only for its commands
    )

    if live:  # a live run ends on Ctrl-C / SIGTERM: end of data, then the run files as after a replay
        import signal as _signal

        from claire.runtime.distributed.supervisor import (
            finish as sv_finish,  # start-up time: the distributed runtime (redis) only for its commands
        )

        out.print("live MEXC data: Ctrl-C ends the run (the services finish it and the run files are written)")
        for sig in (_signal.SIGINT, _signal.SIGTERM):
            _signal.signal(sig, lambda *_: sv_finish(state_dir))
    try:
        summary = wait_and_report(spec, timeout=timeout, console=console, state_dir=state_dir)
    except RuntimeError as exc:  # a service given up, the supervisor gone: one line, at once (then down)
        _fail(str(exc), code=1)
    finally:
        sv_down(state_dir)
        _down_web(state_dir)
    print_summary(summary, "Distributed run")
    if cfg.runtime.out:
        out.print(f"run files: {cfg.runtime.out}")


def _check_up_ports(spec: dict[str, Any], port_base: int | None, state_dir: Path) -> dict[str, Any]:
    """The run's ports (from --port-base), each checked free before anything starts; a run of the
    same state directory still up is named as such."""
    from claire.runtime.distributed.supervisor import (  # start-up time: the distributed runtime only for its commands
        port_conflicts,
        supervisor_status,
        with_port_base,
    )

    if port_base is not None:
        if not 0 < port_base <= 65535 - 40:
            _fail(f"--port-base must be within 1..65495, got {port_base}")
        spec = with_port_base(spec, port_base)
    running = supervisor_status(state_dir)
    if running["alive"] and running["state"] in ("starting", "running"):
        _fail(f"a run is already up in --state-dir {state_dir} (supervisor pid {running['pid']}); "
              "stop it with `claire down` first")
    taken = port_conflicts(spec)
    if taken:
        service, port, why = taken[0]
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        _fail(f"port {port} of the {service} service is not available: {why}{more}; "
              "choose other ports with --port-base")
    return spec


def _check_spec_url(opt: str, url: str | None) -> None:
    """A URL for a spec file: well-formed and without a password (the services read it from their environment)."""

    try:
        has_password = bool(url) and urlsplit(url).password is not None  # type: ignore[arg-type]
    except ValueError as exc:
        _fail(f"{opt} {url!r} is not a URL: {exc}")
    if has_password:
        _fail(f"{opt} must not carry a password: the services read it from their environment")


@app.command("spec")
def spec_cmd(
    data: ReplayDataOpt = None,
    synthetic: SyntheticOpt = _D.synthetic,
    symbol: SymbolOpt = _D.symbol,
    strategy: StrategyOpt = _D.strategy,
    param: ParamOpt = None,
    quantity: QtyOpt = _D.quantity,
    fee_bps: FeeOpt = _D.fee_bps,
    maker_fee_bps: MakerOpt = _D.maker_fee_bps,
    slippage_bps: SlipOpt = _D.slippage_bps,
    fill: FillOpt = _D.fill,
    risk: RiskOpt = _D.risk,
    start_cash: CashOpt = _D.start_cash,
    max_volume_share: VolOpt = _D.max_volume_share,
    speed: SpeedOpt = _D.speed,
    signal_replicas: ReplicasOpt = _D.signal_replicas,
    topology: TopologyOpt = _D.topology,
    redis_url: Annotated[str | None, typer.Option("--redis", help="Redis URL for the spec, without credentials; default: none, each service uses its CLAIRE_REDIS_URL.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL for the spec, without password; default: none, each service uses its CLAIRE_DATABASE_URL.")] = None,
    data_root: Annotated[str | None, typer.Option(help="Name the data files DATA_ROOT/<file name> (where containers mount them, e.g. /data).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the spec to this file (default: stdout).")] = None,
) -> None:
    """Write the run spec of a distributed run (spec.json) without starting anything (containers, deploy/)."""
    opts = _run_options(locals())
    from claire.runtime.distributed.app import (  # start-up time: the distributed runtime (redis) only for its commands
        run_hash,
        spec_from_config,
    )

    _check_spec_url("--redis", opts.redis)
    _check_spec_url("--db", opts.db)
    if opts.db:
        from claire.storage.database import (  # start-up time: SQLAlchemy only for commands with a database
            StorageError,
            normalize_url,
        )

        try:
            normalize_url(opts.db)
        except StorageError as exc:
            _fail(f"--db: {exc}")
    cfg = run_config(opts)
    check_data(cfg)
    spec = spec_from_config(cfg)
    if data_root:
        spec["data"]["paths"] = [f"{data_root.rstrip('/')}/{Path(p).name}" for p in spec["data"]["paths"]]
    spec["runtime"]["prefix"] = f"claire:{{{run_hash(spec)}}}:"
    text = json.dumps(spec, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text)
        except OSError as exc:
            _fail(f"--output {output}: cannot write it: {exc.strerror or exc}")
        console.print(f"spec written to {output}")


def _state(fn: Any, state_dir: Path) -> Any:
    """``fn(state_dir)``; a damaged state file (spec.json, pids.json) is named in one line."""
    try:
        return fn(state_dir)
    except ValueError as exc:
        _fail(f"--state-dir {state_dir}: a state file (spec.json or pids.json) is damaged: {exc}")


@app.command()
def status(state_dir: StateOpt = Path(".claire"), json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Health of each service of `claire up`."""
    from claire.runtime.distributed.supervisor import (
        status as sv_status,  # start-up time: the distributed runtime (redis) only for its commands
    )

    rows = _state(sv_status, state_dir)
    if json_out:
        print(json.dumps(rows, default=str))
        return
    if not rows:
        out.print("no services running (start them with `claire up`)")
        return
    table = Table(title="services")
    for col in ("service", "pid", "alive", "port", "health", "ready", "processed", "restarts"):
        table.add_column(col)
    for r in rows:
        ok = lambda b: "[green]yes[/]" if b else "[red]no[/]"  # noqa: E731
        table.add_row(r["service"], str(r["pid"]), ok(r["alive"]), str(r["port"]), ok(r["health"]), ok(r["ready"]),
                      str(r["detail"].get("processed", "")), str(r.get("restarts", 0)))
    out.print(table)
    _print_supervision(state_dir, rows)


def _print_supervision(state_dir: Path, rows: list[dict[str, Any]]) -> None:
    """The supervisor's line under the status table, and why a service is not ready."""
    from claire.runtime.distributed.supervisor import (
        supervisor_status,  # start-up time: the distributed runtime (redis) only for its commands
    )

    sup = supervisor_status(state_dir)
    if sup["pid"]:
        state = sup["state"] if sup["alive"] else "not running"
        out.print(f"supervisor: pid {sup['pid']}, {state}" + (f" ({sup['error']})" if sup.get("error") else ""))
    for r in rows:
        checks = (r.get("detail") or {}).get("checks") or {}
        for key, val in checks.items():
            if isinstance(val, str) and r["alive"] and not r["ready"]:
                out.print(f"{r['service']}: not ready: {key}: {val}")


@app.command(hidden=True)
def supervise(
    state_dir: StateOpt = Path(".claire"),
    start_timeout: Annotated[float, typer.Option(help="Seconds the services get to answer /health.")] = 120.0,
) -> None:
    """The supervisor of `claire up` (started by it, detached): starts the services, restarts a
    crashed one with backoff, stops them on SIGTERM."""
    import signal as _signal

    # start-up time: the distributed runtime (redis) only for its commands
    from claire.runtime.distributed.supervisor import supervise as sv_supervise
    from claire.runtime.logs import configure_logging

    configure_logging("supervisor", state_dir / "logs")
    stop = threading.Event()
    for sig in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(sig, lambda *_: stop.set())
    raise typer.Exit(sv_supervise(state_dir, stop, start_timeout))


@app.command()
def down(state_dir: StateOpt = Path(".claire")) -> None:
    """Stop the services of `claire up` (SIGTERM, then SIGKILL after 20 s)."""
    from claire.runtime.distributed.supervisor import (
        down as sv_down,  # start-up time: the distributed runtime (redis) only for its commands
    )

    res = _state(sv_down, state_dir)
    web_res = _down_web(state_dir)
    if web_res is not None:
        res = {**res, "web": web_res}
    for k, v in res.items():
        out.print(f"{k}: {v}")
    if not res:
        out.print("nothing to stop")


def _up_web(state_dir: Path, database_url: str, run_id: str, port: int) -> None:
    """`up --web`: the live view as one more process (a failure to start it is named, the run goes on)."""
    from claire.runtime.distributed.supervisor import (
        start_web,  # start-up time: the distributed runtime (redis) only for its commands
    )

    try:
        out.print(f"live view on {start_web(state_dir, database_url, run_id, port)}", soft_wrap=True)
    except (OSError, RuntimeError) as exc:
        console.print(f"[yellow]the live view did not start: {error_text(exc)} (logs: {state_dir}/logs/web.log)[/]")


def _down_web(state_dir: Path) -> str | None:
    from claire.runtime.distributed.supervisor import (
        stop_web,  # start-up time: the distributed runtime (redis) only for its commands
    )

    return stop_web(state_dir)


@bench_app.command("replay")
def bench_replay(
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Bar files (default: the five bundled 1m files).")] = None,
    strategy: Annotated[str | None, typer.Option(help="One scenario with this strategy (default: sma_cross --risk none, then momentum).")] = None,
    risk: Annotated[str | None, typer.Option(help="Risk gate of that scenario: default or none (default: none for sma_cross).")] = None,
    repeat: Annotated[int, typer.Option(help="Runs of each measurement; the median is reported.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line.")] = False,
) -> None:
    """What `claire backtest` costs, phase by phase: imports, load, engine, run files, the whole command and its peak memory."""
    from claire.benchmarks.replay import bench_replay as run  # start-up time: only for `claire bench`
    from claire.benchmarks.replay import format_report

    if repeat < 1:
        _fail(f"--repeat must be >= 1, got {repeat}")
    if risk is not None and risk not in ("default", "none"):
        _fail(f"--risk must be default or none, got {risk!r}")
    res = run(data, strategy=strategy, repeat=repeat, risk=risk, log=lambda text: console.print(text, markup=False),
              json_out=json_out)
    if json_out:
        print(json.dumps(res))
    else:
        print(format_report(res))


def _bench_pg_database() -> tuple[str, Any]:
    """A fresh PostgreSQL database for a benchmark (dropped by the returned cleanup)."""

    import psycopg  # start-up time: the PostgreSQL driver only for PostgreSQL

    admin = os.environ.get("CLAIRE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"claire_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')

    def cleanup() -> None:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", cleanup


@bench_app.command("storage")
def bench_storage(
    events: Annotated[int, typer.Option(help="Events for the writer throughput run.")] = 100_000,
    rows: Annotated[int, typer.Option(help="Rows per table for the seed-002 queries.")] = 1_000_000,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Writer throughput into PostgreSQL and the seed-002 query latencies (fresh database, dropped after)."""
    from claire.benchmarks.storage import (  # start-up time: only for `claire bench`
        query_latency,
        writer_throughput,
    )

    url, cleanup = _bench_pg_database()
    try:
        res = {"bench": "storage", "writer": writer_throughput(url, events),
               "queries": query_latency(url, rows), "command": "claire bench storage --json"}
    finally:
        cleanup()
    print(json.dumps(res, default=str)) if json_out else out.print(res)


@bench_app.command("bus")
def bench_bus(
    n: Annotated[int, typer.Option(help="Messages per run.")] = 20_000,
    redis_url: Annotated[str, typer.Option("--redis")] = "redis://127.0.0.1:6379/0",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Publish + read + ack throughput of the in-memory and the Redis bus by batch size."""
    from claire.benchmarks.bus import run_benchmarks  # start-up time: only for `claire bench`

    res = {"bench": "bus", "results": run_benchmarks(redis_url, n), "command": "claire bench bus --json"}
    print(json.dumps(res, default=str)) if json_out else out.print(res)


@bench_app.command("pipeline")
def bench_pipeline_cmd(
    events: Annotated[int, typer.Option(help="Market events to replay.")] = 30_000,
    rate: Annotated[float | None, typer.Option(help="Market events per second (default: as fast as it goes).")] = None,
    topology: TopologyOpt = "seeds",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The distributed pipeline (every service a process, Redis, PostgreSQL): events/s, latency, memory."""
    from claire.benchmarks.pipeline import bench_pipeline  # start-up time: only for `claire bench`

    _check_topology(topology)
    res = bench_pipeline(events, rate=rate, topology=topology)
    res["command"] = (f"claire bench pipeline --events {events}" + (f" --rate {rate:g}" if rate else "")
                      + (f" --topology {topology}" if topology != "seeds" else "") + " --json")
    print(json.dumps(res, default=str)) if json_out else out.print(res)


@bench_app.command("mexc")
def bench_mexc_cmd(
    symbols: Annotated[int, typer.Option(help="Synthetic symbols the frames go round.")] = 20,
    rate: Annotated[float, typer.Option(help="Frames per second of the latency run.")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the latency run.")] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line.")] = False,
) -> None:
    """Live market data in process: MEXC frames decoded/s, frame -> signal / fill latency, RSS."""
    from claire.benchmarks.mexc import bench_mexc, format_report  # start-up time: only for `claire bench`

    if symbols < 1 or rate <= 0 or seconds <= 0:
        _fail("--symbols, --rate and --seconds must be > 0")
    res = bench_mexc(symbols, rate, seconds)
    print(json.dumps(res)) if json_out else print(format_report(res))


@bench_app.command("web")
def bench_web_cmd(
    rate: Annotated[float, typer.Option(help="Market events per second of the paper run beside the view.")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the paper run (the measurements happen while it goes).")] = 90.0,
    loads: Annotated[int, typer.Option(help="Page loads; the median is reported.")] = 5,
    updates: Annotated[int, typer.Option(help="Fills inserted, each timed from its commit to the page.")] = 10,
    db: Annotated[str | None, typer.Option("--db", help="Database of the run (default: a temporary SQLite file).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line.")] = False,
) -> None:
    """The live view next to a paper run: page load (navigation timing) and update latency (insert -> visible)."""
    from claire.benchmarks.web import bench_web, format_report  # start-up time: only for `claire bench`

    if rate <= 0 or seconds <= 0 or loads < 1 or updates < 1:
        _fail("--rate and --seconds must be > 0, --loads and --updates >= 1")
    res = bench_web(rate, seconds, loads, updates, db, log=lambda text: console.print(text, markup=False))
    print(json.dumps(res)) if json_out else print(format_report(res))


def main() -> None:  # pragma: no cover
    _register_optional()
    app()


_register_optional()
_register_live(app)
_register_alerts(app)
_register_web(app)
_register_papertest(app)
_register_report(app, bench_app)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Benchmark of the distributed runtime (a benchmark, not a test): every service as its own
process over Redis Streams, PostgreSQL as the system of record.

``bench_pipeline(n_events, rate)`` starts the six services exactly as ``claire up`` does (the
spec from :func:`claire.runtime.distributed.app.spec_from_config`, the processes from
:mod:`claire.runtime.distributed.supervisor`), against a fresh PostgreSQL database created for the run and
dropped after it, and a run-private key prefix on Redis (deleted after). The market data service
replays synthetic 1m bars (two symbols, the same generator as ``--synthetic``) or bar files,
paced by the spec's ``speed`` so that it publishes ``rate`` events per second, or as fast as it
can (``rate=None``).

How it measures (nothing in the services is instrumented):

* **Publish times come from Redis.** A stream entry id is ``<ms>-<n>``, the server's wall clock
  (milliseconds) when the XADD ran. The bench reads ``market_data`` after the run (its own
  consumer groups, never read, keep the streams from being trimmed) and maps every market event's
  ``seq`` to its publish time. A fill (an ``OrderResult`` that fills) carries the ``seq`` of the
  market event that caused it: the bar whose open fills a resting order, or the bar whose signal
  produced an order that filled at once. So ``fill publish time - market publish time`` is the
  end-to-end latency marketdata -> signal -> risk -> execution, without touching any code.
  Resolution: 1 ms (both ends are truncated to the millisecond).
* **Persisted times come from PostgreSQL.** Before the services start, the bench migrates the
  fresh database and adds an ``AFTER INSERT`` trigger on ``trades`` that calls ``pg_notify``
  with the row id (plus one statement-level notify per insert into the other event tables).
  PostgreSQL delivers a notification when the inserting transaction **commits**, i.e. when the
  row becomes visible to every reader; a listener thread in the bench stamps it on arrival
  (``time.time()``, same host clock as Redis). ``persisted time - market publish time`` is the
  latency from the market event to its fill being durable in the system of record (an upper
  bound by the notification delivery, well under a millisecond locally; the trigger's own cost
  is a few microseconds per row of the writer's transaction).
* **Throughput with everything persisted**: ``events / (last row committed - first market
  event published)``, measured once the writer has checkpointed ``final_persisted`` (it does so
  after an empty read following the final portfolio snapshot). ``pipeline_eps`` stops the clock
  at the publish of the final snapshot instead (the writer's tail excluded).
* **Memory**: ``VmHWM`` (peak RSS) and ``VmRSS`` of every service process from
  ``/proc/PID/status`` just before they are stopped; CPU seconds (user + system) from
  ``/proc/PID/stat``; the Redis server's CPU from ``INFO cpu`` (delta over the run).

Market events published before the consumers are ready would be charged their start-up time,
so the bench starts every other service first, waits until each answers ``/health``, and only
then starts the market data service.

Targets (REQUIREMENTS.md, performance): >= 5,000 market events/s sustained with everything
persisted, p99 < 20 ms at 1,000 events/s, <= 300 MB per service.

    python -m claire.benchmarks.pipeline --events 20000 --rate 1000 --json
    python -m claire.benchmarks.pipeline --events 40000 --json          # max rate
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import psycopg.sql
from sqlalchemy.engine import make_url

from claire.bus import make_bus
from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.events import FILL_STATUS_VALUES
from claire.events.topics import MARKET_DATA, ORDER_RESULTS, SNAPSHOTS
from claire.marketdata import open_market_data
from claire.runtime.distributed import supervisor as sv
from claire.runtime.distributed.app import spec_from_config, split_secrets
from claire.storage import Database

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYNTH_SYMBOLS = 2  # synthetic_bars(["BTCUSDT", "ETHUSDT"], ...) in services.app.market_events
SYNTH_INTERVAL_S = 60
NOTIFY_CHANNEL = "claire_bench"
EVENT_TABLES = ("signals", "orders", "portfolio_snapshots", "risk_events", "positions")


class _Seq(msgspec.Struct):
    seq: int = 0


class _Fill(msgspec.Struct):
    type: str
    id: str = ""
    seq: int = 0
    status: str = ""


_seq_decoder = msgspec.json.Decoder(_Seq)
_fill_decoder = msgspec.json.Decoder(_Fill)


# --- helpers -------------------------------------------------------------------------------------

def _id_ms(mid: bytes | str) -> int:
    s = mid.decode() if isinstance(mid, bytes) else mid
    return int(s.split("-", 1)[0])


def percentiles(values: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max by nearest rank (no interpolation), in the unit of ``values``."""
    if not values:
        return {"n": 0}
    v = sorted(values)

    def rank(p: float) -> float:
        return v[max(0, math.ceil(p * len(v)) - 1)]

    return {"n": len(v), "p50": round(rank(0.50), 2), "p90": round(rank(0.90), 2), "p99": round(rank(0.99), 2),
            "max": round(v[-1], 2), "mean": round(sum(v) / len(v), 2)}


def _free_port() -> int:
    from claire.runtime.supervision import free_port

    return free_port()


def _proc_status(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = round(int(val.split()[0]) / 1024, 1)  # kB -> MB
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / tick, 2)  # utime + stime
        out["sys_s"] = round(int(fields[12]) / tick, 2)  # of which in the kernel (syscalls, wake-ups)
    except (OSError, IndexError, ValueError):
        pass
    return out


def _http_ok(port: int, path: str = "/health", timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status == 200
    except Exception:
        return False


def _pg_url(url: str, dbname: str | None = None, driver: bool = False) -> str:
    """The admin URL with another database name; ``driver`` gives the SQLAlchemy form."""
    u = make_url(url)
    if dbname is not None:
        u = u.set(database=dbname)
    u = u.set(drivername="postgresql+psycopg" if driver else "postgresql")
    return u.render_as_string(hide_password=False)


class _Listener(threading.Thread):
    """LISTEN on the bench channel; stamps every notification with the wall clock on arrival."""

    def __init__(self, dsn: str) -> None:
        super().__init__(name="bench-listen", daemon=True)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self.stop = threading.Event()
        self.trades: dict[str, float] = {}  # fill id -> commit seen (epoch s)
        self.last_commit = 0.0
        self.count = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for n in self.conn.notifies(timeout=0.2):
                t = time.time()
                self.count += 1
                self.last_commit = t
                kind, _, ident = n.payload.partition(":")
                if kind == "trades":
                    self.trades.setdefault(ident, t)

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        self.conn.close()


_TRIGGERS_SQL = """
CREATE OR REPLACE FUNCTION claire_bench_trade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{ch}', 'trades:' || NEW.id); RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION claire_bench_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{ch}', TG_TABLE_NAME || ':'); RETURN NULL; END $$;
CREATE TRIGGER claire_bench_trade AFTER INSERT ON trades FOR EACH ROW EXECUTE FUNCTION claire_bench_trade();
""".replace("{ch}", NOTIFY_CHANNEL)


def _prepare_database(admin_url: str, dbname: str) -> str:
    """Create ``dbname``, migrate it, add the notify triggers; returns its SQLAlchemy URL."""
    with psycopg.connect(_pg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = _pg_url(admin_url, dbname, driver=True)
    db = Database(url)
    try:
        db.upgrade()
    finally:
        dispose = getattr(db, "dispose", None) or getattr(getattr(db, "engine", None), "dispose", None)
        if dispose:
            dispose()
    with psycopg.connect(_pg_url(admin_url, dbname), autocommit=True) as conn:
        conn.execute(_TRIGGERS_SQL)
        for table in EVENT_TABLES:
            conn.execute(f"CREATE TRIGGER claire_bench_{table} AFTER INSERT ON {table} "
                         "FOR EACH STATEMENT EXECUTE FUNCTION claire_bench_stmt()")
    return url


def _drop_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(_pg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _table_counts(url: str) -> dict[str, int]:
    out = {}
    with psycopg.connect(_pg_url(url), autocommit=True) as conn:
        for t in ("signals", "orders", "trades", "portfolio_snapshots", "risk_events", "dead_letters"):
            query = psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(t))
            out[t] = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
    return out


def _read_stream(client: Any, key: str, chunk: int = 10_000) -> list[tuple[bytes, bytes]]:
    """Every (id, payload) of a stream, in order."""
    out: list[tuple[bytes, bytes]] = []
    start: bytes | str = "-"
    while True:
        entries = client.xrange(key, min=start, max="+", count=chunk)
        if not entries:
            return out
        out += [(mid, fields.get(b"payload", b"")) for mid, fields in entries]
        if len(entries) < chunk:
            return out
        start = b"(" + entries[-1][0]


# --- the benchmark ---------------------------------------------------------------------------

def bench_pipeline(n_events: int = 20_000, rate: float | None = None, redis_url: str | None = None,
                   db_url: str | None = None, *, strategy: str = "momentum", data: list[Path] | None = None,
                   timeout: float = 900.0, profile_dir: Path | None = None, keep: bool = False,
                   topology: str = "seeds") -> dict[str, Any]:
    """Run the whole distributed pipeline once and measure it (see the module docstring).

    ``n_events``: synthetic market events (rounded up to a multiple of the two symbols); ignored
    with ``data`` (bar files: all their bars are replayed). ``rate``: market events per second
    (paced by event time), None = as fast as possible. ``redis_url``: default
    ``CLAIRE_REDIS_URL`` or redis://127.0.0.1:6379/0 (credentials from the URL or
    ``REDIS_PASSWORD``). ``db_url``: a PostgreSQL URL whose user may create databases (default
    ``CLAIRE_BENCH_PG_URL`` or postgresql://postgres@127.0.0.1:5432/postgres); a database
    ``claire_bench_<hex>`` is created on that server and dropped afterwards (unless ``keep``).
    ``profile_dir``: also record each service with py-spy (flamegraph SVGs; the figures of a
    profiled run are disturbed by the sampling). ``keep``: keep the database, the bus keys and the
    state dir (logs) for a look afterwards.
    """
    redis_url = redis_url or os.environ.get("CLAIRE_REDIS_URL") or DEFAULT_REDIS
    admin_url = db_url or os.environ.get("CLAIRE_BENCH_PG_URL") or DEFAULT_PG_ADMIN
    token = uuid.uuid4().hex[:10]
    paths, events_per_event_s, synthetic = _plan_source(data, n_events)
    speed = rate / events_per_event_s if rate else None
    cfg = RunConfig(strategy=StrategySettings(name=strategy),
                    data=DataSettings(paths=[str(p) for p in paths], synthetic=synthetic),
                    runtime=RuntimeSettings(run_id=f"bench-{token}"))
    run = _Run(token, admin_url, make_bus(redis_url, prefix=f"claire:{{bench-{token}}}:"))
    result: dict[str, Any] = {}
    try:
        run.db_sqla = _prepare_database(admin_url, run.dbname)
        run.listener = _Listener(_pg_url(admin_url, run.dbname))
        run.listener.start()
        ports = {name: _free_port() for name in [*sv.START_ORDER, "account"]}
        spec = spec_from_config(cfg, bus_url=redis_url, prefix=run.prefix, database_url=run.db_sqla,
                                partitions=1, speed=speed, ports=ports, topology=topology)
        redis_cpu0 = _redis_cpu(run.client)
        load_before = os.getloadavg()
        run.start(spec, topology)
        if profile_dir is not None:
            run.spies = _start_profilers(profile_dir, run.pids)
        run.wait_done(timeout)
        mem = {d: _proc_status(pid) for d, pid in run.pids.items()}
        redis_cpu = round(_redis_cpu(run.client) - redis_cpu0, 2)
        run.stop()
        result = run.measure(run.listener)
        result.update({
            "rate_target": rate if rate else "max",
            "speed": round(speed, 3) if speed else None,
            "source": "files" if paths else "synthetic",
            "strategy": strategy,
            "topology": topology,
            "services": mem,
            "max_service_hwm_mb": max((m.get("VmHWM", 0.0) for m in mem.values()), default=0.0),
            "redis_cpu_s": redis_cpu,
            "redis": _redis_info(run.client),
            "profiled": profile_dir is not None,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            # the machine's 1-minute load before and after: other work running meanwhile skews the figures
            "loadavg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        })
        return result
    finally:
        run.close(keep, result)


def _plan_source(data: list[Path] | None, n_events: int) -> tuple[list[Path], float, int]:
    """(bar files, market events per second of event time, synthetic bars per symbol)."""
    if not data:
        per_symbol = max(1, math.ceil(n_events / SYNTH_SYMBOLS))
        return [], SYNTH_SYMBOLS / SYNTH_INTERVAL_S, per_symbol
    paths = [Path(p).resolve() for p in data]
    evs = list(open_market_data(paths))
    n = len(evs)
    span_s = (evs[-1].ts_event - evs[0].ts_event) / 1e9 if n > 1 else 1.0
    return paths, (n - 1) / span_s if span_s > 0 else float(n), 0


def _eps(events: int, first_ms: int, last_ms: int | None) -> float | None:
    """Events per second between two publish times (ms); None without a positive span."""
    if last_ms is None or last_ms <= first_ms:
        return None
    return round(events / ((last_ms - first_ms) / 1000), 1)


class _Run:
    """One bench run's resources: the database, the bus keys, the state dir, the processes."""

    def __init__(self, token: str, admin_url: str, bus: Any) -> None:
        self.admin_url = admin_url
        self.dbname = f"claire_bench_{token}"
        self.prefix = f"claire:{{bench-{token}}}:"
        self.bus = bus
        self.client = bus.client
        self.state_dir = Path(tempfile.mkdtemp(prefix="claire-bench-"))
        self.log_dir = self.state_dir / "logs"
        self.db_sqla: str | None = None
        self.listener: _Listener | None = None
        self.pids: dict[str, int] = {}
        self.procs: list[subprocess.Popen] = []
        self.spies: list[subprocess.Popen] = []

    def start(self, spec: dict[str, Any], topology: str) -> None:
        """Every service but market data, healthy; then market data (see the module docstring)."""
        spec_path = self.state_dir / "spec.json"
        public, secret_env = split_secrets(spec)  # passwords reach the services by environment only
        sv.private_dir(self.state_dir)
        sv.write_private(spec_path, json.dumps(public, indent=2))
        sv.create_groups(self.bus, 1, report=False, topology=topology)
        # the bench's own groups: never read, so the streams keep every entry until we read them
        for s in (MARKET_DATA, ORDER_RESULTS, SNAPSHOTS):
            self.bus.ensure_group(s, "bench", "0")
        services = [s for s in sv.service_list(1, topology) if s[0] != "marketdata"]
        for name, replica, display in services:
            self._add(display, sv.start_service(spec_path, name, replica, self.log_dir, env=secret_env))
        _wait_healthy(spec, [(n_, r) for n_, r, _ in services], self.procs, timeout=60)
        self._add("marketdata", sv.start_service(spec_path, "marketdata", 0, self.log_dir, env=secret_env))
        sv.write_private(self.state_dir / "pids.json", json.dumps(self.pids, indent=2))

    def _add(self, display: str, proc: subprocess.Popen) -> None:
        self.procs.append(proc)
        self.pids[display] = proc.pid

    def wait_done(self, timeout: float) -> None:
        """Until the writer has checkpointed ``final_persisted``."""
        deadline = time.monotonic() + timeout
        while True:
            cp = self.bus.load_checkpoint("writer")
            if cp is not None and b"final_persisted" in cp[1]:
                break
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"service pid {p.pid} exited with {p.returncode}; logs: {self.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline not done after {timeout:.0f}s; logs: {self.log_dir}")
            time.sleep(0.05)
        time.sleep(0.3)  # let the last notifications arrive

    def stop(self) -> None:
        for spy in self.spies:
            spy.send_signal(2)
        sv.down(self.state_dir)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        for spy in self.spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()

    def measure(self, listener: _Listener) -> dict[str, Any]:
        """Publish times from the streams, commit times from the listener, rows from the database."""
        market_ms: dict[int, int] = {}
        for mid, payload in _read_stream(self.client, self.prefix + MARKET_DATA):
            if not payload.startswith(b'{"type":"control"'):
                market_ms[_seq_decoder.decode(payload).seq] = _id_ms(mid)
        if not market_ms:
            raise RuntimeError("no market events on the stream")
        first_pub_ms = min(market_ms.values())
        fills: list[tuple[str, int, int]] = []  # (fill id, seq, publish ms)
        for mid, payload in _read_stream(self.client, self.prefix + ORDER_RESULTS):
            if payload.startswith(b'{"type":"order_result"'):
                f = _fill_decoder.decode(payload)
                if f.status in FILL_STATUS_VALUES:
                    fills.append((f.id, f.seq, _id_ms(mid)))
        final_ms = None
        for mid, payload in _read_stream(self.client, self.prefix + SNAPSHOTS):
            if b'"reason":"final"' in payload:
                final_ms = _id_ms(mid)
        lat_pub = [float(ms - market_ms[seq]) for _, seq, ms in fills if seq in market_ms]
        lat_db = [listener.trades[fid] * 1000 - market_ms[seq] for fid, seq, _ in fills
                  if fid in listener.trades and seq in market_ms]
        seconds = listener.last_commit - first_pub_ms / 1000
        n = len(market_ms)
        return {
            "bench": "pipeline",
            "events": n,
            "seconds": round(seconds, 3),
            "throughput_eps": round(n / seconds, 1) if seconds > 0 else None,
            "pipeline_eps": _eps(n, first_pub_ms, final_ms),
            "publish_eps": _eps(n, first_pub_ms, max(market_ms.values())),
            "fills": len(fills),
            "latency_fill_published_ms": percentiles(lat_pub),
            "latency_fill_persisted_ms": percentiles(lat_db),
            "db_rows": _table_counts(self.db_sqla or ""),
        }

    def close(self, keep: bool, result: dict[str, Any]) -> None:
        """Stop what still runs; drop the database, the bus keys and the state dir unless ``keep``
        (then ``result`` names them)."""
        if self.pids:
            with contextlib.suppress(Exception):
                sv.down(self.state_dir, timeout=10)
        for p in [*self.procs, *self.spies]:
            if p.poll() is None:
                p.kill()
        if self.listener is not None:
            self.listener.close()
        if keep:
            self.bus.close()
            result.update(kept_prefix=self.prefix, state_dir=str(self.state_dir))
            if self.db_sqla is not None:
                result["kept_database"] = self.dbname
            return
        try:
            sv.purge(self.bus)
        finally:
            self.bus.close()
        if self.db_sqla is not None:
            _drop_database(self.admin_url, self.dbname)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def _wait_healthy(spec: dict[str, Any], services: list[tuple[str, int]], procs: list[subprocess.Popen],
                  timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = {sv.port_of(spec, name, rep) for name, rep in services}
    while waiting:
        waiting = {p for p in waiting if not _http_ok(p)}
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"service pid {proc.pid} exited with {proc.returncode} during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError(f"services on ports {sorted(waiting)} not healthy after {timeout:.0f}s")
        time.sleep(0.05)
    time.sleep(0.2)  # the loops enter their first blocking read


def _start_profilers(profile_dir: Path, pids: dict[str, int]) -> list[subprocess.Popen]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    profile_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for display, pid in pids.items():
        argv = [exe, "record", "--pid", str(pid), "--rate", "200", "--nonblocking",
                "--format", "raw", "--output", str(profile_dir / f"{display}.txt")]
        out.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,  # noqa: S603 - py-spy with our own argv, no shell
                                    stderr=subprocess.DEVNULL))
    return out


def _redis_cpu(client: Any) -> float:
    try:
        info = client.info("cpu")
        return float(info.get("used_cpu_user", 0)) + float(info.get("used_cpu_sys", 0))
    except Exception:
        return 0.0


def _redis_info(client: Any) -> dict[str, Any]:
    try:
        ver = client.info("server").get("redis_version")
        pers = client.info("persistence")
        return {"version": ver, "appendonly": bool(pers.get("aof_enabled")),
                "appendfsync": (client.config_get("appendfsync") or {}).get("appendfsync")}
    except Exception:
        return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m claire.benchmarks.pipeline",
                                 description="Throughput, latency and memory of the distributed pipeline.")
    ap.add_argument("--events", type=int, default=20_000, help="synthetic market events (default 20000)")
    ap.add_argument("--rate", type=float, default=None, help="market events per second (default: max)")
    ap.add_argument("--data", type=Path, action="append", help="bar file(s) instead of synthetic bars")
    ap.add_argument("--strategy", default="momentum")
    ap.add_argument("--redis", default=None, help=f"Redis URL (default CLAIRE_REDIS_URL or {DEFAULT_REDIS})")
    ap.add_argument("--db", default=None, help="PostgreSQL URL of a user that may create databases "
                    f"(default CLAIRE_BENCH_PG_URL or {DEFAULT_PG_ADMIN})")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--profile", type=Path, default=None, help="record every service with py-spy into this dir")
    ap.add_argument("--keep", action="store_true", help="keep the database, the bus keys and the state dir")
    ap.add_argument("--topology", choices=["seeds", "account"], default="seeds",
                    help="seeds: six services; account: risk+execution+portfolio as one service")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    a = ap.parse_args(argv)
    res = bench_pipeline(a.events, a.rate, a.redis, a.db, strategy=a.strategy, data=a.data, timeout=a.timeout,
                         profile_dir=a.profile, keep=a.keep, topology=a.topology)
    rate = f" --rate {a.rate:g}" if a.rate else ""
    files = "".join(f" --data {p}" for p in a.data or [])
    topo = " --topology account" if a.topology == "account" else ""
    cmd = f"python -m claire.benchmarks.pipeline --events {a.events}{rate}{files}{topo} --json"
    res["command"] = cmd
    if a.json:
        print(json.dumps(res))
    else:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

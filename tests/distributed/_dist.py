"""Helpers of the distributed-runtime acceptance tests (real processes, Redis, PostgreSQL).

Everything here drives the product from the outside: the ``claire`` command line in
subprocesses, ``claire.runtime.distributed.supervisor`` for runs that need their own ports, Redis and the
database read back directly.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.feather as feather
import sqlalchemy as sa

from claire.events import FILL_STATUS_VALUES
from tests.support.ports import bindable, free_port_base

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
SERVICE_NAMES = ["marketdata", "signal", "risk", "execution", "portfolio", "writer"]
STRATEGY_ARGS = ["--strategy", "sma_cross", "-p", "fast=10", "-p", "slow=30"]
# the columns of fills.csv compared across runtimes (ids are deterministic, so they are compared too)
FILL_COLS = ["time", "fill_id", "order_id", "signal_id", "symbol", "side", "status", "quantity", "price", "fee"]
FILL_STATUSES = FILL_STATUS_VALUES


# --- data ---------------------------------------------------------------------------------------

def write_bars(directory: Path, symbols: Sequence[str], n: int, offset: int = 0) -> list[Path]:
    """The first ``n`` 1m bars (from ``offset``) of each bundled symbol, as small feather files
    named like the originals (the symbol and the run key come from the file name)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for sym in symbols:
        name = f"{sym}_USDT-1m.feather"
        table = feather.read_table(DATA / name).slice(offset, n)
        assert table.num_rows == n
        path = directory / name
        feather.write_feather(table, path)
        out.append(path)
    return out


def data_args(paths: Iterable[Path]) -> list[str]:
    args: list[str] = []
    for p in paths:
        args += ["--data", str(p)]
    return args


def free_ports() -> dict[str, int]:
    """One free port per service, below the ephemeral range (tests.support.ports; signal replicas
    use port + 10 * replica: checked free too)."""
    names = [*SERVICE_NAMES, "account"]  # account: with --topology account
    base = free_port_base([*range(len(names)), names.index("signal") + 10])
    return {name: base + k for k, name in enumerate(names)}


@contextlib.contextmanager
def default_ports():
    """`claire up` serves /health etc. on the fixed default ports (8000-8005, signal replicas
    +10): one such run at a time across test processes (pytest-xdist workers), and only once the
    ports are free. Yields a list: the state directories added to it are stopped before the
    ports are handed on."""
    import fcntl

    from claire.runtime.distributed.app import DEFAULT_PORTS

    ports = sorted(set(DEFAULT_PORTS.values()) | {DEFAULT_PORTS["signal"] + 10})
    with (Path(tempfile.gettempdir()) / "claire-tests-default-ports.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            deadline = time.monotonic() + 30
            while not all(bindable(p) for p in ports):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the default service ports {ports} are taken by another process")
                time.sleep(0.2)
            state_dirs: list[Path] = []
            yield state_dirs
        finally:
            for d in state_dirs:
                if read_pids(d):
                    stop_all(d)
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- the command line -----------------------------------------------------------------------------

def claire_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "claire"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "claire.cli.main"]


def run_claire(args: Sequence[str], *, cwd: Path, timeout: float = 240, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*claire_cmd(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"claire {' '.join(map(str, args[:2]))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def fill_rows(out_dir: Path, cols: Sequence[str] = FILL_COLS) -> list[tuple[str, ...]]:
    return [tuple(r[c] for c in cols) for r in read_csv(out_dir / "fills.csv")]


def summary(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "summary.json").read_text())


# --- Redis ---------------------------------------------------------------------------------------

def delete_prefix(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        n = 0
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
            n += 1
        return n
    finally:
        client.close()


def load_checkpoint(spec: dict[str, Any], name: str) -> tuple[int, bytes] | None:
    from claire.bus import RedisStreamsBus

    bus = RedisStreamsBus(spec["runtime"]["bus_url"], spec["runtime"]["prefix"], reconnect_timeout_s=5)
    try:
        return bus.load_checkpoint(name)
    finally:
        bus.close()


def md_position(spec: dict[str, Any]) -> int:
    """How many market events the market data service has committed."""
    cp = load_checkpoint(spec, "marketdata")
    return 0 if cp is None else int(json.loads(cp[1])["pos"])


# --- processes -----------------------------------------------------------------------------------

def read_pids(state_dir: Path) -> dict[str, int]:
    path = state_dir / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def reap(pid: int, timeout: float = 20.0) -> int | None:
    """Exit code of our child ``pid`` (None if it is not our child or did not exit in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


def log_tails(state_dir: Path, n: int = 25) -> str:
    parts = []
    for f in sorted((state_dir / "logs").glob("*/*.log")):
        lines = f.read_text(errors="replace").splitlines()[-n:]
        parts.append(f"--- {f.relative_to(state_dir)}\n" + "\n".join(lines))
    return "\n".join(parts)


def wait_until(pred: Any, timeout: float, what: str, interval: float = 0.05, state_dir: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n" + (log_tails(state_dir) if state_dir else ""))


def wait_final(spec: dict[str, Any], state_dir: Path, timeout: float = 150.0) -> None:
    """Until the writer has persisted everything up to the final snapshot; fails early if a
    service process dies on its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cp = load_checkpoint(spec, "writer")
        except Exception:  # e.g. Redis being restarted by the test
            cp = None
        if cp is not None and b"final_persisted" in cp[1]:
            return
        dead = [name for name, pid in read_pids(state_dir).items() if not alive(pid)]
        if dead:
            raise AssertionError(f"service(s) {dead} died during the run\n{log_tails(state_dir)}")
        time.sleep(0.2)
    raise AssertionError(f"the run did not finish within {timeout}s\n{log_tails(state_dir)}")


def up_when_ready(spec: dict[str, Any], state_dir: Path, timeout: float = 90) -> dict[str, int]:
    """`supervisor.up`, except that the market data service (the replay) starts only once every
    other service answers /health, as a readiness-gated rollout does: the replay's wall-clock
    schedule then does not depend on how long the others take to start on a busy machine."""
    from claire.bus import make_bus
    from claire.runtime.distributed.supervisor import create_groups, purge, service_list, start_service

    state_dir.mkdir(parents=True, exist_ok=True)
    spec_path = state_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    partitions = int(spec["runtime"].get("partitions", 1))
    bus = make_bus(spec["runtime"]["bus_url"], prefix=spec["runtime"]["prefix"])
    try:
        purge(bus)
        create_groups(bus, partitions, topology=spec["runtime"].get("topology", "seeds"))
    finally:
        bus.close()
    pids: dict[str, int] = {}
    services = service_list(partitions, spec["runtime"].get("topology", "seeds"))
    for name, replica, display in services:
        if name == "marketdata":
            (state_dir / "pids.json").write_text(json.dumps(pids, indent=2))
            wait_until(lambda: all_healthy(spec, partitions, skip=("marketdata",)), timeout,
                       "the services to be ready", state_dir=state_dir)
        pids[display] = start_service(spec_path, name, replica, state_dir / "logs").pid
    (state_dir / "pids.json").write_text(json.dumps(pids, indent=2))
    return pids


def restart_service(state_dir: Path, display: str) -> int:
    """Start one service again exactly as the supervisor does, and record its new pid."""
    from claire.runtime.distributed.supervisor import start_service

    name, _, rep = display.partition("-")
    proc = start_service(state_dir / "spec.json", name, int(rep or 0), state_dir / "logs")
    pids = read_pids(state_dir)
    pids[display] = proc.pid
    (state_dir / "pids.json").write_text(json.dumps(pids, indent=2))
    return proc.pid


def stop_all(state_dir: Path) -> dict[str, str]:
    from claire.runtime.distributed.supervisor import down

    pids = read_pids(state_dir)
    res = down(state_dir)
    for pid in pids.values():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        reap(pid, timeout=0.5)
    return res


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def all_healthy(spec: dict[str, Any], partitions: int = 1, skip: Sequence[str] = ()) -> bool:
    """Every service of ``spec`` answers /health with 200."""
    from claire.runtime.distributed.supervisor import port_of, service_list

    for name, replica, _ in service_list(partitions, spec["runtime"].get("topology", "seeds")):
        if name in skip:
            continue
        try:
            code, _ = http_get(port_of(spec, name, replica), "/health", timeout=1.0)
        except OSError:
            return False
        if code != 200:
            return False
    return True


def metric_values(text: str, name: str) -> dict[str, float]:
    """Samples of one metric family from Prometheus text: {label string: value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, labels = head.partition("{")
        if metric == name:
            out["{" + labels if labels else ""] = float(value)
    return out


# --- a run built in Python (own ports, own prefix) --------------------------------------------

def make_cfg(data: Sequence[Path], *, fill: str = "next_open", out: Path | None = None) -> Any:
    """The config `claire backtest/paper/up` build from the same flags (sma_cross 10/30, default risk)."""
    from claire.config import RunOptions, make_config

    return make_config(RunOptions(data=list(data), strategy="sma_cross", param=["fast=10", "slow=30"], fill=fill,
                                  out=out))


def make_spec(cfg: Any, *, bus_url: str, prefix: str, db_url: str, speed: float | None = None,
              partitions: int = 1, ports: dict[str, int] | None = None, topology: str = "seeds") -> dict[str, Any]:
    from claire.runtime.distributed.app import spec_from_config

    return spec_from_config(cfg, bus_url=bus_url, prefix=prefix, database_url=db_url, partitions=partitions,
                            speed=speed, ports=ports or free_ports(), topology=topology)


# --- the database --------------------------------------------------------------------------------

def db_result(url: str) -> dict[str, Any]:
    """What a run left in the system of record."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            q = lambda sql: c.execute(sa.text(sql)).all()  # noqa: E731
            res = {
                "trades": [tuple(map(str, r)) for r in q(
                    "select id, ts, symbol, side, status, quantity, price, fee, order_id from trades order by ts, id")],
                "orders": [tuple(map(str, r)) for r in q(
                    "select id, symbol, side, status, quantity, filled_quantity from orders order by id")],
                "snapshots": [tuple(map(str, r)) for r in q(
                    "select id, ts, reason, equity from portfolio_snapshots order by ts, id")],
                "final_equity": [str(r[0]) for r in q("select equity from portfolio_snapshots where reason = 'final'")],
                "counts": {t: q(f"select count(*) from {t}")[0][0] for t in
                           ("signals", "orders", "trades", "portfolio_snapshots", "risk_events")},
                "dead_letters": q("select source, reason from dead_letters"),
            }
    finally:
        eng.dispose()
    return res

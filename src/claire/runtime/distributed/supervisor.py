"""`claire up` / `status` / `down`: every service as its own process against Redis and PostgreSQL.

State lives in ``--state-dir`` (default ``.claire``): ``spec.json`` (the run, shared by every
service), ``pids.json`` and the logs (``logs/<service>/<YYYY-MM-DD>.log``). Services start by
dependency level (writer, portfolio, execution, risk, signal replicas, market data last; with
``--topology account`` risk, execution and portfolio are the one ``account`` service), after
the consumer groups exist, so no message is published before its readers are known.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from claire.bus import make_bus
from claire.bus.base import Bus
from claire.events.topics import ALERTS, ORDER_RESULTS, ORDERS, PIPE_RESULTS, RISK_EVENTS, SIGNALS, SNAPSHOTS
from claire.runtime.distributed.app import DEFAULT_PORTS, config_from_spec, split_secrets
from claire.runtime.distributed.runner import stage_inputs

START_ORDER = ["writer", "portfolio", "execution", "risk", "signal", "marketdata"]
ACCOUNT_START_ORDER = ["writer", "account", "signal", "marketdata"]


def service_list(partitions: int, topology: str = "seeds") -> list[tuple[str, int, str]]:
    """(service, replica, display name) in start order."""
    out = []
    for name in ACCOUNT_START_ORDER if topology == "account" else START_ORDER:
        if name == "signal":
            out += [("signal", i, f"signal-{i}" if partitions > 1 else "signal") for i in range(partitions)]
        else:
            out.append((name, 0, name))
    return out


def port_of(spec: dict[str, Any], name: str, replica: int) -> int:
    ports = (spec.get("runtime") or {}).get("ports") or DEFAULT_PORTS
    return int(ports[name]) + (10 * replica if name == "signal" else 0)


def create_groups(bus: Bus, partitions: int, report: bool = True, topology: str = "seeds") -> None:
    for i in range(partitions):
        for s in stage_inputs("signal", i, partitions):
            bus.ensure_group(s, "signal-" + str(i) if partitions > 1 else "signal", "0")
    for name in ("account",) if topology == "account" else ("risk", "execution", "portfolio"):
        for s in stage_inputs(name, 0, partitions):
            bus.ensure_group(s, name, "0")
    topics = [SIGNALS, ORDERS, ORDER_RESULTS, SNAPSHOTS, RISK_EVENTS, ALERTS]
    for s in topics:
        bus.ensure_group(s, "writer", "0")
    if report:
        for s in (SIGNALS, ORDERS, PIPE_RESULTS, RISK_EVENTS, ALERTS):
            bus.ensure_group(s, "report", "0")


def purge(bus: Bus) -> int:
    """Delete every key of this run's prefix (a fresh start)."""
    client = getattr(bus, "client", None)
    if client is None:
        return 0
    n = 0
    for key in client.scan_iter(match=bus.prefix + "*", count=1000):
        client.delete(key)
        n += 1
    return n


def write_private(path: Path, text: str) -> None:
    """Write a state file readable by the user alone (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def private_dir(path: Path) -> Path:
    """Create the state directory (and its parents) private to the user (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def start_service(spec_path: Path, name: str, replica: int, log_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "claire.cli.main", "service", name, "--spec", str(spec_path),
           "--replica", str(replica), "--log-dir", str(log_dir)]
    svc_dir = private_dir(log_dir / (f"signal-{replica}" if name == "signal" else name))
    err = os.fdopen(os.open(svc_dir / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    # umask 077: the logs a service writes are the user's alone, like the spec
    # our own interpreter and CLI, argv from our spec, no shell
    return subprocess.Popen(cmd, stdout=err, stderr=err, stdin=subprocess.DEVNULL,  # noqa: S603
                            start_new_session=True, env={**os.environ, **(env or {})}, umask=0o077)


def up(spec: dict[str, Any], state_dir: Path, fresh: bool = True) -> dict[str, int]:
    private_dir(state_dir)
    spec_path = state_dir / "spec.json"
    public, secret_env = split_secrets(spec)  # passwords reach the services by environment only
    write_private(spec_path, json.dumps(public, indent=2))
    log_dir = private_dir(state_dir / "logs")
    runtime = config_from_spec(spec).runtime
    bus = make_bus(runtime.bus_url, prefix=runtime.prefix)
    try:
        if fresh:
            purge(bus)
        create_groups(bus, runtime.partitions, topology=runtime.topology)
    finally:
        bus.close()
    pids: dict[str, int] = {}
    for name, replica, display in service_list(runtime.partitions, runtime.topology):
        proc = start_service(spec_path, name, replica, log_dir, env=secret_env)
        pids[display] = proc.pid
    write_private(state_dir / "pids.json", json.dumps(pids, indent=2))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _get(port: int, path: str, timeout: float = 1.0) -> tuple[int, dict[str, Any] | None]:
    """GET ``path`` of a service on this host: (HTTP status, JSON body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except Exception:
            return exc.code, None
    except Exception:
        return 0, None


def status(state_dir: Path) -> list[dict[str, Any]]:
    pids = json.loads((state_dir / "pids.json").read_text()) if (state_dir / "pids.json").exists() else {}
    spec = json.loads((state_dir / "spec.json").read_text()) if (state_dir / "spec.json").exists() else {}
    rows = []
    for display, pid in pids.items():
        name, _, rep = display.partition("-")
        port = port_of(spec, name, int(rep or 0))
        alive = _alive(pid)
        hcode, health = _get(port, "/health") if alive else (0, None)
        rcode, ready = _get(port, "/ready") if alive else (0, None)
        rows.append({"service": display, "pid": pid, "alive": alive, "port": port,
                     "health": hcode == 200, "ready": rcode == 200, "detail": (health or {}) | (ready or {})})
    return rows


def finish(state_dir: Path) -> bool:
    """End a live run (``--source mexc``): the market data service publishes what its source
    still holds, then end_of_data (SIGUSR1), and the other services finish the run as after a
    replay (final snapshot, persisted). False when the service is not running."""
    pids = json.loads((state_dir / "pids.json").read_text()) if (state_dir / "pids.json").exists() else {}
    pid = pids.get("marketdata")
    if pid is None or not _alive(pid):
        return False
    os.kill(pid, signal.SIGUSR1)
    return True


def down(state_dir: Path, timeout: float = 20.0) -> dict[str, str]:
    pids = json.loads((state_dir / "pids.json").read_text()) if (state_dir / "pids.json").exists() else {}
    result: dict[str, str] = {}
    for pid in pids.values():
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for display, pid in pids.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            result[display] = "killed"
        else:
            result[display] = "stopped"
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if pids:
        write_private(state_dir / "pids.json", "{}")
    return result

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
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from claire.bus import make_bus
from claire.bus.base import Bus
from claire.events import Alert, AlertLevel, encode
from claire.events.topics import ALERTS, ORDER_RESULTS, ORDERS, PIPE_RESULTS, RISK_EVENTS, SIGNALS, SNAPSHOTS
from claire.runtime.distributed.app import DEFAULT_PORTS, config_from_spec, resolve_secrets, split_secrets
from claire.runtime.distributed.runner import dead_letter_streams, stage_inputs
from claire.runtime.supervision import (
    STATE_FILE,
    Component,
    StartFailure,
    Supervisor,
    failure_reason,
    local_get,
    pid_alive,
    port_problem,
    read_state,
)

log = logging.getLogger("claire.runtime.distributed.supervisor")

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
    for s in [*topics, *dead_letter_streams(bus, partitions, topology)]:  # dead letters: into the database
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


def expire(bus: Bus, seconds: int) -> int:
    """Set an expiry on every key of this run's prefix; returns how many."""
    client = getattr(bus, "client", None)
    if client is None:
        return 0
    n = 0
    for key in client.scan_iter(match=bus.prefix + "*", count=1000):
        n += bool(client.expire(key, seconds))
    return n


def persist(bus: Bus) -> int:
    """Remove the expiry of every key of this run's prefix (a resumed run keeps its keys)."""
    client = getattr(bus, "client", None)
    if client is None:
        return 0
    return sum(bool(client.persist(key)) for key in client.scan_iter(match=bus.prefix + "*", count=1000))


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


def service_command(spec_path: Path, name: str, replica: int, log_dir: Path) -> list[str]:
    """The command line of one service (our own interpreter and CLI)."""
    return [sys.executable, "-m", "claire.cli.main", "service", name, "--spec", str(spec_path),
            "--replica", str(replica), "--log-dir", str(log_dir)]


def components(spec: dict[str, Any], state_dir: Path) -> list[Component]:
    """The services of a run as supervised components, in start order; market data (the replay
    or the live feed) starts only once every other service answers /health."""
    runtime = config_from_spec(spec).runtime
    spec_path, log_dir = state_dir / "spec.json", state_dir / "logs"
    return [Component(display, service_command(spec_path, name, replica, log_dir),
                      log_path=log_dir / display / "stderr.log", health_port=port_of(spec, name, replica),
                      after_healthy=name == "marketdata")
            for name, replica, display in service_list(runtime.partitions, runtime.topology)]


def with_port_base(spec: dict[str, Any], base: int) -> dict[str, Any]:
    """``spec`` with every service port taken from ``base`` in the order of DEFAULT_PORTS (signal
    replicas at +10 each, as always): ``--port-base 8100`` gives market data 8100, signal 8101, ..."""
    ports = {name: base + i for i, name in enumerate(DEFAULT_PORTS)}
    return {**spec, "runtime": {**spec["runtime"], "ports": ports}}


def port_conflicts(spec: dict[str, Any], host: str = "127.0.0.1") -> list[tuple[str, int, str]]:
    """(service, port, why) for every port of the run that cannot be bound now."""
    runtime = config_from_spec(spec).runtime
    out = []
    for name, replica, display in service_list(runtime.partitions, runtime.topology):
        port = port_of(spec, name, replica)
        if not 0 < port < 65536:
            out.append((display, port, "out of range"))
            continue
        why = port_problem(port, host)
        if why is not None:
            out.append((display, port, why.lower()))
    return out


def prepare(spec: dict[str, Any], state_dir: Path, fresh: bool = True) -> dict[str, str]:
    """Write the spec (passwords taken out), make the bus ready (a fresh start purges the run's
    keys; a resume keeps them, no longer expiring); returns the environment with the passwords."""
    private_dir(state_dir)
    public, secret_env = split_secrets(spec)  # passwords reach the services by environment only
    write_private(state_dir / "spec.json", json.dumps(public, indent=2))
    private_dir(state_dir / "logs")
    runtime = config_from_spec(spec).runtime
    bus = make_bus(runtime.bus_url, prefix=runtime.prefix)
    try:
        if fresh:
            purge(bus)
        else:
            persist(bus)
        create_groups(bus, runtime.partitions, topology=runtime.topology)
    finally:
        bus.close()
    return secret_env


def up(spec: dict[str, Any], state_dir: Path, fresh: bool = True, timeout: float = 120.0) -> dict[str, int]:
    """Start the run under a detached supervisor process (``claire supervise``), which starts the
    services, restarts a crashed one with backoff and stops them on SIGTERM (``claire down``).
    Returns once every service answers /health; raises :class:`StartFailure` at once when one
    cannot start (the supervisor then stops the others and exits)."""
    secret_env = prepare(spec, state_dir, fresh)
    state_file = state_dir / STATE_FILE
    with contextlib.suppress(FileNotFoundError):
        state_file.unlink()
    cmd = [sys.executable, "-m", "claire.cli.main", "supervise", "--state-dir", str(state_dir),
           "--start-timeout", str(timeout)]
    err = os.open(state_dir / "logs" / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # our own interpreter and CLI, no shell; its own session: it survives the terminal
        proc = subprocess.Popen(cmd, stdout=err, stderr=err, stdin=subprocess.DEVNULL,  # noqa: S603
                                start_new_session=True, env={**os.environ, **secret_env}, umask=0o077)
    finally:
        os.close(err)
    deadline = time.monotonic() + timeout + 30
    while True:
        st = read_state(state_dir)
        if st.get("state") == "running":
            return {k: int(v["pid"]) for k, v in st["components"].items() if v.get("pid")}
        if st.get("state") == "failed" and proc.poll() is not None:
            raise StartFailure(st["error"]["component"], st["error"]["reason"])
        if proc.poll() is not None and st.get("state") != "failed":
            raise StartFailure("supervisor", failure_reason(state_dir / "logs" / "supervisor.log"))
        if time.monotonic() > deadline:
            proc.terminate()
            raise StartFailure("supervisor", f"the services did not start within {timeout:.0f} s")
        time.sleep(0.05)


def _alert_publisher(spec: dict[str, Any]) -> Any:
    """on_event of the supervisor: each event as an Alert on the run's ``alerts`` topic (persisted
    by the writer, picked up by the alert rules); a bus that is down only loses the alert."""
    runtime = config_from_spec(spec).runtime
    levels = {"restarted": AlertLevel.WARNING, "died": AlertLevel.WARNING, "gave_up": AlertLevel.CRITICAL}
    bus_box: list[Bus] = []

    def publish(ev: dict[str, Any]) -> None:
        now = time.time_ns()
        what = {"restarted": "was restarted", "died": "died", "gave_up": "keeps crashing; given up"}[ev["kind"]]
        alert = Alert(id=f"supervisor:{ev['kind']}:{ev['component']}:{ev['restarts']}:{now}", ts_event=now,
                      ts_recv=now, level=levels[ev["kind"]], source="supervisor", code=f"service_{ev['kind']}",
                      message=f"{ev['component']} {what} (exit code {ev['exit_code']}: {ev['reason']}; "
                              f"restarts {ev['restarts']})",
                      details={k: v for k, v in ev.items() if v is not None})
        log.warning("%s", alert.message)
        if not bus_box:
            bus_box.append(make_bus(runtime.bus_url, prefix=runtime.prefix, reconnect_timeout_s=5))
        bus_box[0].publish(ALERTS, encode(alert))

    return publish


def supervise(state_dir: Path, stop: threading.Event, start_timeout: float = 120.0) -> int:
    """The detached supervisor (``claire supervise``): start the services, watch and restart them
    until ``stop``, then stop them. 3 when a service could not start (named in the state file)."""
    spec = resolve_secrets(json.loads((state_dir / "spec.json").read_text()))
    sup = Supervisor(components(spec, state_dir), state_dir, on_event=_alert_publisher(spec))
    try:
        sup.start_all(start_timeout)
    except StartFailure as exc:
        log.error("%s", exc)
        sup.stop_all(10.0)
        sup.phase, sup.error = "failed", {"component": exc.component, "reason": exc.reason}
        sup.save()
        return 3
    sup.run(stop)
    res = sup.stop_all(20.0)
    log.info("stopped: %s", res)
    return 0


_alive = pid_alive  # a zombie child counts as dead


def _get(port: int, path: str, timeout: float = 1.0) -> tuple[int, dict[str, Any] | None]:
    """GET ``path`` of a service on this host: (HTTP status, JSON body); (0, None) on no answer."""
    code, raw = local_get(port, path, timeout)
    try:
        return code, json.loads(raw) if raw else None
    except ValueError:
        return code, None


def status(state_dir: Path) -> list[dict[str, Any]]:
    pids = json.loads((state_dir / "pids.json").read_text()) if (state_dir / "pids.json").exists() else {}
    spec = json.loads((state_dir / "spec.json").read_text()) if (state_dir / "spec.json").exists() else {}
    comps = read_state(state_dir).get("components") or {}
    rows = []
    for display, pid in pids.items():
        name, _, rep = display.partition("-")
        port = port_of(spec, name, int(rep or 0))
        alive = _alive(pid)
        hcode, health = _get(port, "/health") if alive else (0, None)
        rcode, ready = _get(port, "/ready") if alive else (0, None)
        comp = comps.get(display) or {}
        rows.append({"service": display, "pid": pid, "alive": alive, "port": port,
                     "health": hcode == 200, "ready": rcode == 200, "restarts": int(comp.get("restarts") or 0),
                     "last_exit": comp.get("reason"), "detail": (health or {}) | (ready or {})})
    return rows


def supervisor_status(state_dir: Path) -> dict[str, Any]:
    """The supervisor process: its pid, whether it is alive, its state (running, failed, ...)."""
    st = read_state(state_dir)
    pid = st.get("pid")
    alive = isinstance(pid, int) and pid > 0 and _alive(pid)
    return {"pid": pid, "alive": alive, "state": st.get("state"), "error": st.get("error")}


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


def stop_supervisor(state_dir: Path, timeout: float = 30.0) -> str | None:
    """SIGTERM the run's supervisor (it stops the services, then exits) and wait for it; None
    when there is none running."""
    st = read_state(state_dir)
    pid = st.get("pid")
    if not pid or not _alive(int(pid)) or st.get("state") in ("stopped", "failed"):
        return None
    pid = int(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        return "killed"
    return "stopped"


def down(state_dir: Path, timeout: float = 20.0, keep_s: int | None = None) -> dict[str, str]:
    """Stop the supervisor first (so that nothing is restarted), then whatever service is still
    up; then retire the run's bus keys (:func:`retire_keys`)."""
    pids = json.loads((state_dir / "pids.json").read_text()) if (state_dir / "pids.json").exists() else {}
    sup = stop_supervisor(state_dir, timeout + 10)
    result: dict[str, str] = {} if sup is None else {"supervisor": sup}
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
    if result and (state_dir / "spec.json").exists():
        with contextlib.suppress(Exception):  # Redis gone: its keys are not ours to worry about then
            retired = retire_keys(resolve_secrets(json.loads((state_dir / "spec.json").read_text())), keep_s)
            if retired:
                result["bus keys"] = retired
    return result


#: seconds the bus keys of a run stopped before its end are kept (for `claire up --no-fresh`)
KEEP_UNFINISHED_S = 7 * 86_400


def retire_keys(spec: dict[str, Any], keep_s: int | None = None) -> str:
    """A finished run's keys on the bus (streams, groups, checkpoints) are deleted; those of a run
    stopped before its end expire after ``keep_s`` (default 7 days), so that it can still be
    resumed until then (``up --no-fresh`` makes them permanent again)."""
    runtime = config_from_spec(spec).runtime
    bus = make_bus(runtime.bus_url, prefix=runtime.prefix, reconnect_timeout_s=5)
    try:
        cp = bus.load_checkpoint("writer")
        if cp is not None and b"final_persisted" in cp[1]:
            return f"{purge(bus)} deleted (the run is finished)"
        n = expire(bus, KEEP_UNFINISHED_S if keep_s is None else keep_s)
        return f"{n} expire in {(KEEP_UNFINISHED_S if keep_s is None else keep_s) / 86_400:g} days" if n else ""
    finally:
        bus.close()


# --- `up --web`: the live view as one more process beside the services (issue 12) -------------
WEB_PID_FILE = "web.pid"


def start_web(state_dir: Path, database_url: str, run_id: str, port: int, timeout: float = 20.0) -> str:
    """Start ``claire web`` for ``run_id`` (127.0.0.1:``port``, 0: any free port) beside the
    services; its pid in ``web.pid`` (:func:`stop_web`), its output in ``logs/web.log``. The URL
    of the database goes by environment (never argv). Returns the view's URL once it serves."""
    log_path = private_dir(state_dir / "logs") / "web.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    cmd = [sys.executable, "-m", "claire.cli.main", "web", "--run", run_id, "--port", str(port)]
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # our own interpreter and CLI, argv from our spec, no shell
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,  # noqa: S603
                                start_new_session=True, umask=0o077,
                                env={**os.environ, "CLAIRE_DATABASE_URL": database_url})
    finally:
        os.close(out)
    write_private(state_dir / WEB_PID_FILE, str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
        for line in text.splitlines():
            if line.startswith("live view of run ") and " on " in line:
                return line.split(" on ", 1)[1].split()[0]
        if proc.poll() is not None:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"claire web exited with code {proc.returncode}")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/"


def stop_web(state_dir: Path, timeout: float = 10.0) -> str | None:
    """Stop the live view of ``up --web`` (SIGTERM, then SIGKILL); None when none runs."""
    pid_file = state_dir / WEB_PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    pid_file.unlink(missing_ok=True)
    if not _alive(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        return "killed"
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return "stopped"

"""The runtimes fail loudly and heal (issue 13, point 3): a taken port or an unreachable database
stops `claire up` at once; the supervisor restarts a service killed with -9; a market event with
a seq far ahead is dead-lettered with the reason (also in the database) and later events flow; a
consumer that makes no progress is not ready and alerts; a finished run leaves no bus keys."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

import pytest
import redis
import sqlalchemy as sa

from claire.bus import make_bus
from claire.events import Bar, decode, encode
from claire.events.topics import ALERTS, MARKET_DATA
from claire.runtime.backtest import run_backtest
from claire.runtime.distributed import supervisor
from claire.runtime.distributed.app import Service
from claire.runtime.distributed.runner import StageService
from claire.runtime.metrics import ServiceMetrics
from claire.runtime.supervision import Component, StartFailure, Supervisor, read_state
from tests.distributed._dist import (
    db_result,
    http_get,
    make_cfg,
    make_spec,
    md_position,
    read_pids,
    run_claire,
    wait_final,
    wait_until,
    write_bars,
)
from tests.support.ports import free_port, free_port_base

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("distributed")]


def _listening() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def _free_base(n: int = 20) -> int:
    """A port base with ``n`` free ports after it (below the ephemeral range)."""
    return free_port_base(range(n))


# --- start-up: refused before anything starts ---------------------------------------------------

def test_up_refuses_a_taken_port_at_once(tmp_path, pg_database, redis_url):
    base = _free_base()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", base + 1))  # the signal service's port
        taken.listen()
        t0 = time.monotonic()
        proc = run_claire(["up", "--synthetic", "50", "--port-base", base, "--db", pg_database, "--redis", redis_url,
                           "--state-dir", tmp_path / "state"], cwd=tmp_path, check=False, timeout=60)
        elapsed = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert elapsed < 30  # at once: not after the start timeout (120 s); slow only on a loaded machine
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"port {base + 1} of the signal service is not available" in lines[0]
    assert not (tmp_path / "state" / "pids.json").exists()  # nothing started


def test_up_refuses_an_unreachable_database_at_once(tmp_path, redis_url):
    dead = free_port()  # nothing listens there
    t0 = time.monotonic()
    proc = run_claire(["up", "--synthetic", "50", "--port-base", _free_base(), "--redis", redis_url,
                       "--db", f"postgresql+psycopg://postgres@127.0.0.1:{dead}/claire", "--state-dir", tmp_path / "s"],
                      cwd=tmp_path, check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 15
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert str(dead) in proc.stderr
    assert not (tmp_path / "s" / "pids.json").exists()


# --- the supervisor on its own --------------------------------------------------------------------

def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_supervisor_names_the_component_and_reason_at_once(tmp_path):
    """A component that cannot bind its port: StartFailure at once, the reason from its log."""
    with _listening() as taken:
        port = taken.getsockname()[1]
        bind = f"import socket; socket.socket().bind(('127.0.0.1', {port}))"
        sleeper = Component("ok", _py("import time; time.sleep(60)"), log_path=tmp_path / "ok.log")
        bad = Component("web", _py(bind), log_path=tmp_path / "web.log", health_port=port)
        sup = Supervisor([sleeper, bad], tmp_path / "st")
        t0 = time.monotonic()
        with pytest.raises(StartFailure) as err:
            sup.start_all(timeout_s=30)
        assert time.monotonic() - t0 < 5
        sup.stop_all(5)
    assert err.value.component == "web"
    assert err.value.reason.startswith(f"address already in use on port {port}")
    state = read_state(tmp_path / "st")
    assert state["state"] == "stopped" and state["error"]["component"] == "web"


def test_a_health_probe_that_reads_its_own_request_is_no_answer(tmp_path):
    """CI once died on ``BadStatusLine: GET /health HTTP/1.1``: a probe of a port in the
    ephemeral range nobody listened on yet connected to itself (TCP self-connect) and read its
    own request back. Such an echo is "not up yet", never an exception; and probes in a tight
    loop (``claire status`` every 0.3 s) all get their answer from a live service."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from claire.runtime.supervision import _health_ok, local_get

    with _listening() as echo:
        port = echo.getsockname()[1]

        def serve() -> None:
            conn, _ = echo.accept()
            with conn:
                conn.sendall(conn.recv(4096))

        threading.Thread(target=serve, daemon=True).start()
        assert local_get(port, "/health", 2.0) == (0, b"")
    assert _health_ok(port, None, 0.5) is False  # nothing listens now: no answer, no exception

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answers = [local_get(server.server_address[1], "/health", 2.0) for _ in range(2_000)]
    finally:
        server.shutdown()
        server.server_close()
    assert answers == [(200, b"{}")] * 2_000


def test_supervisor_restarts_a_killed_component_with_backoff(tmp_path):
    events: list[dict] = []
    comp = Component("worker", _py("import time; time.sleep(60)"), log_path=tmp_path / "w.log")
    sup = Supervisor([comp], tmp_path / "st", backoff_s=(0.3, 0.6), on_event=events.append)
    sup.start_all(timeout_s=10)
    stop = threading.Event()
    runner = threading.Thread(target=sup.run, args=(stop,), kwargs={"interval_s": 0.05})
    runner.start()
    try:
        first = sup.pids()["worker"]
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: sup.restarts["worker"] == 1, 5, "the restart")
        assert sup.pids()["worker"] != first
        assert [e["kind"] for e in events] == ["died", "restarted"]
        assert events[0]["exit_code"] == -9 and events[1]["restarts"] == 1
        # a second quick crash waits for the next backoff step
        t_kill = time.monotonic()
        os.kill(sup.pids()["worker"], signal.SIGKILL)
        wait_until(lambda: sup.restarts["worker"] == 2, 5, "the second restart")
        assert time.monotonic() - t_kill >= 0.55
        # the state files follow (written by the supervisor's thread just after the restart)
        wait_until(lambda: read_state(tmp_path / "st")["components"]["worker"]["restarts"] == 2, 5, "the state file")
        wait_until(lambda: json.loads((tmp_path / "st" / "pids.json").read_text()) == {"worker": sup.pids()["worker"]},
                   5, "pids.json")
    finally:
        stop.set()
        runner.join()
        res = sup.stop_all(5)
    assert res == {"worker": "stopped"}


def test_supervisor_gives_up_a_component_that_keeps_crashing(tmp_path):
    events: list[dict] = []
    crash = "import sys, time; time.sleep(0.3); print('RuntimeError: boom', file=sys.stderr); sys.exit(3)"
    sup = Supervisor([Component("flaky", _py(crash), log_path=tmp_path / "f.log")], tmp_path / "st",
                     backoff_s=(0.05,), on_event=events.append, max_streak=2)
    sup.start_all(timeout_s=10)
    deadline = time.monotonic() + 10
    while not any(e["kind"] == "gave_up" for e in events) and time.monotonic() < deadline:
        sup.poll()
        time.sleep(0.02)
    assert [e["kind"] for e in events] == ["died", "restarted", "died", "restarted", "died", "gave_up"]
    assert events[-1] == {"kind": "gave_up", "component": "flaky", "restarts": 2, "exit_code": 3,
                          "reason": "RuntimeError: boom"}
    assert read_state(tmp_path / "st")["components"]["flaky"]["gave_up"] is True
    sup.stop_all(1)


# --- a run under `up`: kill -9, a far-ahead seq, the keys after down ------------------------------

def test_up_heals_a_killed_service_and_dead_letters_a_seq_far_ahead(tmp_path, pg_database, redis_url, redis_prefix,
                                                                     cleanup):
    data = write_bars(tmp_path / "data", ["BTC"], 500)
    cfg = make_cfg(data)
    spec = make_spec(cfg, bus_url=redis_url, prefix=redis_prefix, db_url=pg_database, speed=8000.0)
    state = cleanup.services(tmp_path / "state")
    supervisor.up(spec, state)
    forged_seq = 999_999
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: md_position(spec) >= 100, 30, "the replay to begin", state_dir=state)
        real = decode(client.xrange(redis_prefix + MARKET_DATA, count=1)[0][1][b"payload"])
        assert isinstance(real, Bar)
        forged = encode(Bar(**{**{f: getattr(real, f) for f in real.__struct_fields__}, "id": "forged", "seq": forged_seq}))
        client.xadd(redis_prefix + MARKET_DATA, {"payload": forged})
        victim = read_pids(state)["signal"]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: read_pids(state).get("signal") not in (None, victim), 10, "the restart", state_dir=state)
        wait_final(spec, state, timeout=90)
        dlq = client.xrange(redis_prefix + MARKET_DATA + ".dlq")
    finally:
        client.close()
    rows = {r["service"]: r for r in json.loads(run_claire(["status", "--state-dir", state, "--json"], cwd=tmp_path).stdout)}
    assert rows["signal"]["restarts"] == 1 and rows["signal"]["alive"]
    assert all(r["restarts"] == 0 for name, r in rows.items() if name != "signal")

    # the forged event: dead-lettered with the reason, on the bus and in the database
    assert len(dlq) == 1
    reason = dlq[0][1][b"h:dlq-reason"].decode()
    assert reason.startswith(f"seq {forged_seq} ahead of expected ")
    res = db_result(pg_database)
    assert [(s, r.split(" (")[0]) for s, r in res["dead_letters"]] == [("market_data", reason)]
    # the supervisor told: died and restarted, as alerts persisted by the writer
    engine = sa.create_engine(pg_database)
    try:
        with engine.connect() as conn:
            alerts = conn.execute(sa.text("select code, message from alerts where source = 'supervisor'")).all()
    finally:
        engine.dispose()
    assert sorted(code for code, _ in alerts) == ["service_died", "service_restarted"]
    assert all("signal" in message and "SIGKILL" in message for _, message in alerts)

    # later real events still flowed: the run is the backtest's, nothing lost, nothing doubled
    bt = run_backtest(cfg)
    assert res["counts"]["trades"] == len(bt.fills) > 5
    assert [r[0] for r in res["trades"]] == [f.id for f in sorted(bt.fills, key=lambda f: (f.ts_event, f.id))]

    # down: the supervisor first (nothing restarted), then the services; the finished run's keys go
    proc = run_claire(["down", "--state-dir", state], cwd=tmp_path)
    assert "supervisor: stopped" in proc.stdout and "deleted" in proc.stdout
    assert read_state(state)["state"] == "stopped"
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=redis_prefix + "*")) == []
    finally:
        client.close()


def test_down_of_an_unfinished_run_lets_its_keys_expire(redis_url, redis_prefix, tmp_path, pg_database):
    spec = make_spec(make_cfg(write_bars(tmp_path / "d", ["BTC"], 50)), bus_url=redis_url, prefix=redis_prefix,
                     db_url=pg_database)
    bus = make_bus(redis_url, prefix=redis_prefix)
    try:
        supervisor.create_groups(bus, 1)
        bus.publish(MARKET_DATA, b"x")
        assert "expire in 7 days" in supervisor.retire_keys(spec)
        client = bus.client  # type: ignore[attr-defined]
        ttls = [client.ttl(k) for k in client.scan_iter(match=redis_prefix + "*")]
        assert ttls and all(0 < t <= 7 * 86_400 for t in ttls)
        supervisor.persist(bus)  # `up --no-fresh`: kept again
        assert all(client.ttl(k) == -1 for k in client.scan_iter(match=redis_prefix + "*"))
    finally:
        bus.close()


# --- a consumer that makes no progress ------------------------------------------------------------

def test_a_stalled_consumer_is_not_ready_and_alerts(redis_url, redis_prefix):
    bus = make_bus(redis_url, prefix=redis_prefix)
    release = threading.Event()

    class Stuck:
        def get_state(self) -> dict:
            return {}

    def handle(stream, ev, raw):
        release.wait(20)  # a stage that hangs on its input
        return []

    loop = StageService("stuck", bus, ["in"], handle, Stuck(), ServiceMetrics("stuck"), batch=1, block_ms=50)
    svc = Service("stuck", loop, loop.metrics, bus, stall_s=0.5)
    bus.ensure_group(ALERTS, "probe", "0")
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, args=(stop,))
    worker.start()
    try:
        assert svc.check_stall() is None  # nothing waiting
        raw = encode(Bar(id="b1", ts_event=1, ts_recv=1, symbol="BTCUSDT", interval_s=60, open=1, high=1, low=1,
                         close=1, volume=1))
        bus.publish("in", raw)
        bus.publish("in", raw)
        wait_until(lambda: svc.check_stall() is not None, 5, "the stall to be seen")
        ok, detail = svc.ready()
        assert ok is False
        assert detail["checks"]["progress"].startswith("stalled: no progress for ")
        assert "on in" in detail["checks"]["progress"]
        alerts = [decode(m.payload) for m in bus.read("probe", "p", [ALERTS], count=10)]
        assert [(a.code, a.source) for a in alerts] == [("service_stalled", "stuck")]
        port = free_port()
        from claire.runtime.http import HealthServer

        server = HealthServer(port, "stuck", loop.metrics.registry, svc.health, svc.ready).start()
        try:
            code, body = http_get(port, "/ready")
            assert code == 503 and b"stalled" in body
        finally:
            server.stop()
        release.set()
        wait_until(lambda: svc.check_stall() is None, 5, "progress again")
        assert svc.ready()[0] is True
    finally:
        release.set()
        stop.set()
        worker.join(10)
        bus.close()


# --- units: the seq check, the backlog ----------------------------------------------------------

def _bar(seq: int) -> Bar:
    ts = 1_767_225_600_000_000_000 + seq * 60_000_000_000
    return Bar(id=f"b{seq}", ts_event=ts, ts_recv=ts, seq=seq, symbol="BTCUSDT", interval_s=60, open=1, high=1,
               low=1, close=1, volume=1)


def test_signal_stage_tells_a_gap_from_a_duplicate(tmp_path):
    from claire.engine.kernel import build_core
    from claire.events import IdFactory
    from claire.runtime.distributed.stages import SequenceGap, SignalStage

    cfg = make_cfg(write_bars(tmp_path / "d", ["BTC"], 5))

    def stage(**kw) -> SignalStage:
        st = SignalStage(build_core(cfg, lambda e: None, IdFactory("t")).signals)
        for k, v in kw.items():
            setattr(st, k, v)
        return st

    one = stage(contiguous=True)  # one partition: every seq is the last + 1
    for seq in (1, 2):
        assert one.handle(_bar(seq), encode(_bar(seq)))
    assert one.handle(_bar(2), encode(_bar(2))) == [] and one.duplicates == 1
    with pytest.raises(SequenceGap, match=r"^seq 99 ahead of expected 3$"):
        one.handle(_bar(99), encode(_bar(99)))
    assert one.last_seq == 2  # the position did not move
    assert one.handle(_bar(3), encode(_bar(3))) and one.last_seq == 3

    part = stage(published=lambda: 10)  # a partition: rising, bounded by what market data published
    assert part.handle(_bar(5), encode(_bar(5)))
    with pytest.raises(SequenceGap, match="seq 50 ahead of the 10 events market data has published"):
        part.handle(_bar(50), encode(_bar(50)))
    assert part.handle(_bar(7), encode(_bar(7))) and part.last_seq == 7


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_backlog_counts_undelivered_and_pending(kind, redis_url, redis_prefix):
    bus = make_bus("memory://" if kind == "memory" else redis_url, prefix=redis_prefix)
    try:
        assert bus.backlog("s", "g") == 0  # no stream, no group
        bus.ensure_group("s", "g", "0")
        for _ in range(5):
            bus.publish("s", b"x")
        assert bus.backlog("s", "g") == 5
        got = bus.read("g", "c", ["s"], count=2)
        assert bus.backlog("s", "g") == 5  # 3 undelivered + 2 pending
        bus.ack("s", "g", [m.id for m in got])
        assert bus.backlog("s", "g") == 3
    finally:
        bus.close()


def test_free_port_is_below_the_ephemeral_range_and_bindable():
    """A port handed to a component that binds it later is not one an outgoing connection could
    take in between (the kernel gives those from the ephemeral range)."""
    from claire.runtime.supervision import ephemeral_port_low, free_port

    low = ephemeral_port_low()
    ports = {free_port() for _ in range(20)}
    assert all(20_000 <= p < low for p in ports), (low, ports)
    assert len(ports) > 1  # random, not one fixed port parallel runs would share
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))

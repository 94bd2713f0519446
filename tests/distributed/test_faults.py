"""Faults in the middle of a distributed replay: a service killed with SIGKILL and restarted,
Redis restarted (AOF, appendfsync always), PostgreSQL restarted, malformed messages on the
market data stream. Each run's system of record (PostgreSQL) must end up exactly as after an
undisturbed run: the same trades, orders, snapshots, risk events and final equity, nothing lost,
nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from claire.runtime.backtest import run_backtest
from claire.runtime.distributed import supervisor
from tests.conftest import REDIS_URL
from tests.distributed._dist import (
    db_result,
    load_checkpoint,
    make_cfg,
    make_spec,
    md_position,
    read_pids,
    reap,
    restart_service,
    run_claire,
    stop_all,
    up_when_ready,
    wait_final,
    wait_until,
    write_bars,
)
from tests.support.pg_server import PgServer
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("distributed")]

BARS = 1200  # per symbol (BTC, ETH): 2,400 market events spanning 1,200 minutes of event time
N_EVENTS = 2 * BARS
SPEED = 16_000.0  # 72,000 s of event time in 4.5 s: the replay is still running when the fault hits


@pytest.fixture(scope="module")
def fault_data(tmp_path_factory) -> list[Path]:
    return write_bars(tmp_path_factory.mktemp("fault-data"), ["BTC", "ETH"], BARS)


def _run(spec: dict, state: Path, during=None, final_timeout: float = 150) -> dict:
    if during is None:
        supervisor.up(spec, state)
    else:  # the replay starts once the others are ready: the fault then hits a running pipeline
        up_when_ready(spec, state)
        during(spec, state)
    wait_final(spec, state, timeout=final_timeout)
    stop_all(state)
    return db_result(spec["runtime"]["database_url"])


@pytest.fixture(scope="module")
def reference(fault_data, tmp_path_factory, pg_database_module, cleanup_module):
    """The undisturbed distributed run (same data, same config), read back from PostgreSQL."""
    d = tmp_path_factory.mktemp("fault-ref")
    spec = make_spec(make_cfg(fault_data), bus_url=REDIS_URL, prefix=f"claire-test:dist-ref:{uuid.uuid4().hex[:8]}:",
                     db_url=pg_database_module())
    cleanup_module.keys(REDIS_URL, spec["runtime"]["prefix"])
    ref = _run(spec, cleanup_module.services(d / "state"))
    # and it is the backtest's result
    bt = run_backtest(make_cfg(fault_data))
    assert ref["counts"]["trades"] == len(bt.fills) > 30
    assert [r[0] for r in ref["trades"]] == [f.id for f in sorted(bt.fills, key=lambda f: (f.ts_event, f.id))]
    assert [Decimal(e) for e in ref["final_equity"]] == [bt.final_equity]
    assert ref["dead_letters"] == []
    return ref


def _spec(fault_data, bus_url, prefix, db_url):
    return make_spec(make_cfg(fault_data), bus_url=bus_url, prefix=prefix, db_url=db_url, speed=SPEED)


def _status(state: Path) -> dict[str, dict]:
    rows = json.loads(run_claire(["status", "--state-dir", state, "--json"], cwd=state).stdout)
    return {r["service"]: r for r in rows}


def _assert_same(res: dict, ref: dict) -> None:
    assert set(res["snapshots"]) == set(ref["snapshots"])
    assert res["counts"] == ref["counts"]
    assert len({r[0] for r in res["trades"]}) == len(res["trades"])  # nothing doubled
    assert res["trades"] == ref["trades"]
    assert res["orders"] == ref["orders"]
    assert res["final_equity"] == ref["final_equity"]
    assert res["dead_letters"] == []


# --- (a) kill -9 of each service, restart it ------------------------------------------------

def _progress(victim: str, spec: dict, ref: dict) -> tuple[float, bool]:
    """(share of the run the victim has committed, whether it has finished)."""
    if victim == "writer":
        import sqlalchemy as sa

        done = (load_checkpoint(spec, "writer") or (0, b""))[1].find(b"final_persisted") >= 0
        eng = sa.create_engine(spec["runtime"]["database_url"])
        try:
            with eng.connect() as c:
                n = c.execute(sa.text("select count(*) from trades")).scalar()
        except sa.exc.ProgrammingError:  # the tables are not there yet
            n = 0
        finally:
            eng.dispose()
        return n / ref["counts"]["trades"], done
    cp = load_checkpoint(spec, victim)
    if cp is None:
        return 0.0, False
    st = json.loads(cp[1])
    if victim == "marketdata":
        return st["pos"] / N_EVENTS, bool(st["done"])
    seq = st["last_seq"] if victim == "signal" else st["cur"]  # the last market event it processed
    return seq / N_EVENTS, bool(st.get("done")) or seq >= N_EVENTS


@pytest.mark.parametrize("victim", ["signal", "risk", "execution", "portfolio", "writer", "marketdata", "account"])
def test_kill_9_of_a_service_mid_replay_then_restart(victim, fault_data, reference, tmp_path, pg_database,
                                                     redis_prefix, cleanup):
    """``account``: the same with ``--topology account`` (risk, execution and portfolio in one
    service); the result must still be the seeds' topology's undisturbed run."""
    spec = _spec(fault_data, REDIS_URL, redis_prefix, pg_database)
    if victim == "account":
        spec["runtime"]["topology"] = "account"
    services = {"writer", "signal", "marketdata"} | (
        {"account"} if victim == "account" else {"portfolio", "execution", "risk"})
    state = cleanup.services(tmp_path / "state")
    killed: dict = {}

    def kill_and_restart(spec, state):
        wait_until(lambda: _progress(victim, spec, reference)[0] >= 1 / 3, 90,
                   f"{victim} to get through a third of the run", interval=0.02, state_dir=state)
        pid = read_pids(state)[victim]
        os.kill(pid, signal.SIGKILL)
        killed["at"] = _progress(victim, spec, reference)
        assert reap(pid, 10) == -signal.SIGKILL
        time.sleep(0.5)  # the others carry on without it
        killed["new_pid"] = restart_service(state, victim)
        # `claire status` sees every service, the restarted one included, alive and healthy
        deadline = time.monotonic() + 60
        while True:
            rows = _status(state)
            ok = all(r["alive"] and r["health"] for r in rows.values())
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert set(rows) == services
        assert ok, [(k, r["alive"], r["health"], r["detail"]) for k, r in rows.items()]
        assert rows[victim]["pid"] == killed["new_pid"]

    res = _run(spec, state, kill_and_restart)
    share, done = killed["at"]
    assert 0 < share < 1 and not done, f"the kill must hit {victim} in the middle of the run: {killed}"
    _assert_same(res, reference)
    if victim in ("signal", "risk", "execution", "portfolio", "account"):
        log_dir = state / "logs" / ("signal-0" if victim == "signal" else victim)
        text = "".join(p.read_text() for p in log_dir.glob("20*.log"))
        assert "restored checkpoint" in text  # it resumed from its checkpoint, not from scratch


# --- (b) Redis restarts (AOF, appendfsync always) --------------------------------------------

@pytest.mark.parametrize("how", ["shutdown", "kill-9"])
def test_redis_restart_mid_replay(how, fault_data, reference, tmp_path, pg_database, cleanup):
    """Redis goes away mid-run (SHUTDOWN, or kill -9) and comes back on the same port and data
    directory: every service rides the outage out and the run ends exactly as undisturbed.

    FAILS intermittently (about every second run with kill -9, less often with SHUTDOWN) on the
    src bug that test_a_read_reply_lost_in_a_redis_outage_is_delivered_again pins down: an
    XREADGROUP that ran on the server but whose reply died with the connection leaves its
    entries pending for the consumer forever, so the run stalls (risk waits for an echo that
    never comes) or events are skipped (different trades, fewer snapshots in PostgreSQL).
    """
    with RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always") as srv:
        spec = _spec(fault_data, srv.url(), f"claire-test:redis-restart:{uuid.uuid4().hex[:8]}:", pg_database)
        state = cleanup.services(tmp_path / "state")
        seen: dict = {}

        def restart_redis(spec, state):
            wait_until(lambda: md_position(spec) >= N_EVENTS // 3, 60, "a third of the replay", state_dir=state)
            seen["pos"] = md_position(spec)
            srv.restart(hard=how == "kill-9", down_for=1.0)

        res = _run(spec, state, restart_redis)
        logs = "".join(p.read_text() for p in (state / "logs").glob("*/20*.log"))
        # every service survived the outage (wait_final fails on a dead one) and finished the run
        assert seen["pos"] < N_EVENTS
        assert "retry 1 in" in logs  # the services saw the outage and reconnected with backoff
        _assert_same(res, reference)


def test_a_read_reply_lost_in_a_redis_outage_is_delivered_again(redis_url, redis_prefix):
    """What makes the kill-9 restart above lose or stall a run, made deterministic: Redis ran an
    XREADGROUP (the entries are now pending for the consumer) but the reply was lost with the
    connection. The bus reconnects and retries with ``>``, which only hands out newer entries,
    so the pending ones are never seen by the consumer; services only re-claim their pending
    entries at start-up.

    FAILS on a src bug (claire/bus/redis_streams.py ``RedisStreamsBus.read``): the retry after a
    connection error must first re-read the consumer's own pending entries (``XREADGROUP ... 0``)
    and return those when there are any.
    """
    from claire.bus import RedisStreamsBus
    from tests.distributed._proxy import ReplyCuttingProxy

    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with ReplyCuttingProxy(port) as proxy:
        bus = RedisStreamsBus(proxy.url(), redis_prefix, reconnect_timeout_s=10)
        try:
            bus.ensure_group("s", "g", "0")
            bus.publish_many("s", [b"m%d" % i for i in range(5)])
            proxy.cut_next_reply(b"XREADGROUP")
            got = bus.read("g", "c", ["s"], count=10, block_ms=300)
            got += bus.read("g", "c", ["s"], count=10, block_ms=300)
            assert proxy.cut == 1
            pending = bus.pending_count("s", "g")
        finally:
            bus.close()
    assert [m.payload for m in got] == [b"m0", b"m1", b"m2", b"m3", b"m4"], f"delivered {got}, {pending} stuck pending"


# --- (c) PostgreSQL restarts ---------------------------------------------------------------

def test_postgres_restart_mid_replay(fault_data, reference, tmp_path, redis_prefix, cleanup):
    """PostgreSQL (a private server) is killed -9 mid-run and started again: the writer retries
    its batch until the database is back; nothing is lost, nothing doubled."""
    with PgServer() as pg:
        db_url = pg.create_database("claire_dist")
        spec = _spec(fault_data, REDIS_URL, redis_prefix, db_url)
        state = cleanup.services(tmp_path / "state")
        seen: dict = {}

        def restart_pg(spec, state):
            wait_until(lambda: md_position(spec) >= N_EVENTS // 3, 60, "a third of the replay", state_dir=state)
            seen["pos"] = md_position(spec)
            pg.kill()  # kill -9 of the postmaster and its backends
            time.sleep(1.5)
            pg.start()

        res = _run(spec, state, restart_pg)
        writer_log = "".join(p.read_text() for p in (state / "logs" / "writer").glob("20*.log"))
        stop_all(state)
    assert seen["pos"] < N_EVENTS
    assert "database unavailable" in writer_log  # the writer did hit the outage and retried
    _assert_same(res, reference)


# --- (d) malformed messages on market_data --------------------------------------------------

def _malformed(n: int) -> list[bytes]:
    bar = {"type": "bar", "ts_event": 1774267800000000000, "ts_recv": 1774267800000000000, "v": 1,
           "correlation_id": None, "causation_id": None, "seq": 0, "symbol": "BTCUSDT", "interval_s": 60,
           "open": "69979.98", "high": "70112.55", "low": "69973.41", "close": "70070.53", "volume": "32.55652"}
    out: list[bytes] = []
    for i in range(n):
        kind = i % 8
        if kind == 0:  # garbage bytes
            out.append(b"\xff\xfe\x00" + bytes((i * 37 + k) % 256 for k in range(24)) + str(i).encode())
        elif kind == 1:  # wrong types
            out.append(json.dumps({**bar, "id": f"bad-{i}", "ts_event": "yesterday", "open": [1, 2]}).encode())
        elif kind == 2:  # unknown type tag
            out.append(json.dumps({**bar, "id": f"bad-{i}", "type": "candle"}).encode())
        elif kind == 3:  # negative price
            out.append(json.dumps({**bar, "id": f"bad-{i}", "seq": 10 + i, "open": "-1", "low": "-2"}).encode())
        elif kind == 4:  # negative volume, zero interval
            out.append(json.dumps({**bar, "id": f"bad-{i}", "volume": "-5", "interval_s": 0}).encode())
        elif kind == 5:  # missing fields
            out.append(json.dumps({"type": "bar", "id": f"bad-{i}", "symbol": "BTCUSDT"}).encode())
        elif kind == 6:  # truncated JSON
            text = json.dumps({"type": "bar", "id": f"bad-{i}", **{k: v for k, v in bar.items() if k != "type"}})
            out.append(text.encode()[: text.index(",", 30) + 1 + i % 50])
        else:  # not an object / not a number
            out.append(f'[{i}, "bar"]'.encode() if i % 16 == 7 else json.dumps({**bar, "id": f"bad-{i}", "open": "NaNx"}).encode())
    assert len(set(out)) == n
    return out


def test_malformed_market_data_goes_to_the_dead_letter_stream(fault_data, reference, tmp_path, pg_database,
                                                               redis_url, redis_prefix, cleanup):
    import redis

    bad = _malformed(1000)
    spec = _spec(fault_data, redis_url, redis_prefix, pg_database)
    state = cleanup.services(tmp_path / "state")
    key = spec["runtime"]["prefix"] + "market_data"
    seen: dict = {}

    def inject(spec, state):
        client = redis.Redis.from_url(redis_url)
        try:
            wait_until(lambda: md_position(spec) >= N_EVENTS // 5, 60, "a fifth of the replay", state_dir=state)
            for chunk in range(10):
                with client.pipeline(transaction=False) as pipe:
                    for payload in bad[chunk * 100:(chunk + 1) * 100]:
                        pipe.xadd(key, {"payload": payload})
                    pipe.execute()
                time.sleep(0.1)
            seen["pos"] = md_position(spec)
        finally:
            client.close()

    up_when_ready(spec, state)
    inject(spec, state)
    wait_final(spec, state)
    client = redis.Redis.from_url(redis_url)
    try:  # read before `down`, which deletes a finished run's keys
        dlq = client.xrange(spec["runtime"]["prefix"] + "market_data.dlq")
    finally:
        client.close()
    stop_all(state)
    res = db_result(spec["runtime"]["database_url"])
    assert seen["pos"] < N_EVENTS, "the malformed messages must be mixed into a running replay"
    # every dead letter is in the database too (the writer stores each service's dead letters)
    stored = res.pop("dead_letters")
    assert len(stored) == len(bad)
    assert {source for source, _ in stored} == {"market_data"}
    assert all(reason.startswith("malformed event") for _, reason in stored)
    # and never silently: the writer's alert rules raised event_dead_lettered for them
    eng = sa.create_engine(spec["runtime"]["database_url"])
    try:
        with eng.connect() as c:
            alerts = c.execute(sa.text("select code, level, occurrences, message from alerts "
                                       "where code = 'event_dead_lettered'")).all()
    finally:
        eng.dispose()
    assert alerts and {(code, level) for code, level, _, _ in alerts} == {("event_dead_lettered", "critical")}
    assert all(m.startswith("signal: ") and "of market_data dead-lettered: malformed event" in m
               for _, _, _, m in alerts), alerts
    _assert_same({**res, "dead_letters": []}, reference)
    assert len(dlq) == len(bad)
    assert sorted(f[b"payload"] for _, f in dlq) == sorted(bad)
    for _, fields in dlq:
        assert fields.get(b"h:dlq-reason"), fields
        assert fields[b"h:dlq-stream"] == b"market_data"
        assert fields[b"h:dlq-group"] == b"signal"
    reasons = {f[b"h:dlq-reason"].split(b":")[0] for _, f in dlq}
    assert reasons <= {b"malformed event"}, reasons


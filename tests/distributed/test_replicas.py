"""`claire up --signal-replicas 2`: the symbols are shared out between two signal services (each
symbol to exactly one), both do work, and the run's fills, round trips and final equity are those
of one replica and of `claire backtest`."""

from __future__ import annotations

import json

import pytest

from claire.events import decode
from claire.runtime.distributed.report import wait_and_report
from tests.conftest import REDIS_URL
from tests.distributed._dist import (
    FILL_COLS,
    FILL_STATUSES,
    STRATEGY_ARGS,
    data_args,
    db_result,
    default_ports,
    fill_rows,
    http_get,
    metric_values,
    read_csv,
    read_pids,
    run_claire,
    summary,
    write_bars,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("distributed")]

SYMBOLS = ["BTC", "ETH", "SOL"]  # crc32 % 2: BTCUSDT -> 1, ETHUSDT and SOLUSDT -> 0
BARS = 1500


def test_two_signal_replicas_match_one_replica_and_backtest(tmp_path, pg_database_module, cleanup):
    import redis

    data = write_bars(tmp_path / "data", SYMBOLS, BARS)
    common = [*data_args(data), *STRATEGY_ARGS]
    run_claire(["backtest", *common, "--out", tmp_path / "bt", "--no-progress"], cwd=tmp_path)

    with default_ports() as started:  # `claire up` serves on the default ports
        # one replica, `--wait`
        one = cleanup.services(tmp_path / "one")
        run_claire(["up", *common, "--state-dir", one, "--db", pg_database_module(), "--redis", REDIS_URL,
                    "--out", tmp_path / "up1", "--wait", "--timeout", "180"], cwd=tmp_path, timeout=240)
        cleanup.keys_of(one)

        # two replicas: started by `claire up`, followed to the end like `--wait` does, then inspected live
        two = cleanup.services(tmp_path / "two")
        started += [one, two]
        db2 = pg_database_module()
        out = run_claire(["up", *common, "--signal-replicas", "2", "--state-dir", two, "--db", db2,
                          "--redis", REDIS_URL, "--out", tmp_path / "up2"], cwd=tmp_path)
        assert "signal-0" in out.stdout and "signal-1" in out.stdout
        spec = json.loads((two / "spec.json").read_text())
        cleanup.keys_of(two)
        assert spec["runtime"]["partitions"] == 2
        wait_and_report(spec, timeout=180)

        # same results as one replica and as the backtest
        ref = fill_rows(tmp_path / "bt")
        assert len(ref) > 50
        assert fill_rows(tmp_path / "up1") == ref
        assert fill_rows(tmp_path / "up2") == ref
        assert read_csv(tmp_path / "up2" / "trades.csv") == read_csv(tmp_path / "bt" / "trades.csv")
        assert read_csv(tmp_path / "up1" / "trades.csv") == read_csv(tmp_path / "bt" / "trades.csv")
        equities = {summary(tmp_path / d)["final_equity"] for d in ("bt", "up1", "up2")}
        assert len(equities) == 1
        assert summary(tmp_path / "up2")["signal_replicas"] == 2
        res = db_result(db2)
        assert res["counts"]["trades"] == sum(1 for r in ref if r[FILL_COLS.index("status")] in FILL_STATUSES)

        # both replicas processed events; each symbol went through exactly one of them
        rows = {r["service"]: r for r in json.loads(run_claire(["status", "--state-dir", two, "--json"], cwd=tmp_path).stdout)}
        assert set(rows) == {"writer", "portfolio", "execution", "risk", "signal-0", "signal-1", "marketdata"}
        assert all(r["alive"] and r["health"] for r in rows.values()), rows
        ports = {f"signal-{i}": rows[f"signal-{i}"]["port"] for i in range(2)}
        assert ports["signal-1"] == ports["signal-0"] + 10
        events_in = {}
        signal_symbols = {}
        for name, port in ports.items():
            code, body = http_get(port, "/metrics")
            assert code == 200
            text = body.decode()
            events_in[name] = sum(metric_values(text, "claire_events_in_total").values())
            signal_symbols[name] = {lab.split('symbol="')[1].split('"')[0]
                                    for lab in metric_values(text, "signals_generated_total")}
        client = redis.Redis.from_url(REDIS_URL)
        try:  # what each replica published: the market events it forwarded and its signals
            seen = {}
            for i in range(2):
                keys = [k.decode() for k in client.scan_iter(match=f"{spec['runtime']['prefix']}*signals.p{i}")]
                assert len(keys) == 1, keys
                syms = set()
                for _, fields in client.xrange(keys[0]):
                    sym = getattr(decode(fields[b"payload"]), "symbol", None)
                    if sym:
                        syms.add(sym)
                seen[f"signal-{i}"] = syms
        finally:
            client.close()
        assert seen == {"signal-0": {"ETHUSDT", "SOLUSDT"}, "signal-1": {"BTCUSDT"}}
        assert events_in["signal-0"] == 2 * BARS + 1 and events_in["signal-1"] == BARS + 1  # + end_of_data each
        assert signal_symbols == seen  # every symbol produced signals, each in its one replica
        assert (two / "logs" / "signal-0").is_dir() and (two / "logs" / "signal-1").is_dir()

        down = run_claire(["down", "--state-dir", two], cwd=tmp_path)
        assert "signal-1: stopped" in down.stdout
    assert read_pids(two) == {}

"""`claire up --source mexc`: the market data service is the MEXC adapter, here against the fake
exchange serving the bundled BTC and ETH 1m files at high speed.

- the run (every service its own process, Redis, PostgreSQL) gives exactly the fills, orders,
  signals and final equity of `claire backtest` of the run's own capture (the same events, ids
  included: the live run and its replay share the run key), the books included: the paper
  exchange of the distributed stages fills on their levels as the one-process core's does;
- its signals are those of `claire backtest` of the same files over the streamed window (the
  warm-up bars are history: their signals are dropped). Its fills are not those of the file
  backtest, and cannot be: the live stream also carries trades and quotes, on which the paper
  exchange fills and the portfolio marks (a file of bars has neither);
- /ready and /metrics of the market data service show each symbol's freshness and the feed's
  figures; SIGUSR1 (``supervisor.finish``) ends the live stream with end of data, so the run
  finishes like a replay.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pytest

from claire.config import RunOptions, make_config
from claire.events import Bar, decode
from claire.runtime.backtest import run_backtest
from claire.runtime.distributed import supervisor
from claire.runtime.distributed.app import spec_from_config, with_exchange_rules
from tests.distributed._dist import (
    DATA,
    db_result,
    free_ports,
    http_get,
    load_checkpoint,
    metric_values,
    stop_all,
    wait_final,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("distributed")]

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
PARAMS = ["fast=10", "slow=30"]
SPEED = 25  # bars per second: 25 x 4 steps x 4 pushes x 2 symbols = 800 frames/s
BARS = 260  # streamed bars per symbol before the run is ended
STEP_NS = 60 * 1_000_000_000


@pytest.fixture()
def fake_exchange():
    """The fake exchange in its own process, serving the two bundled files."""
    cmd = [sys.executable, "-m", "claire.adapters.mexc.fake", "--data", str(DATA / "BTC_USDT-1m.feather"),
           "--data", str(DATA / "ETH_USDT-1m.feather"), "--speed", str(SPEED), "--history", "200"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        urls = json.loads(proc.stdout.readline())
        yield urls
    finally:
        proc.terminate()
        proc.wait(10)


def _metrics(port: int) -> str:
    code, body = http_get(port, "/metrics")
    assert code == 200
    return body.decode()


def _streamed_bars(spec: dict) -> list[Bar]:
    import redis

    client = redis.Redis.from_url(spec["runtime"]["bus_url"])
    try:
        msgs = client.xrange(spec["runtime"]["prefix"] + "market_data")
    finally:
        client.close()
    return [ev for ev in (decode(fields[b"payload"])
                          for _, fields in msgs) if type(ev) is Bar]


def _file_window(out: Path, bars: list[Bar]) -> list[Path]:
    """The bundled files cut to the streamed bars (same names: the same symbols)."""
    paths = []
    for name, sym in (("BTC_USDT-1m.feather", "BTCUSDT"), ("ETH_USDT-1m.feather", "ETHUSDT")):
        opens = sorted(b.ts_event - STEP_NS for b in bars if b.symbol == sym)
        table = feather.read_table(DATA / name)
        ns = pa.compute.cast(table["date"], pa.timestamp("ns", "UTC")).cast(pa.int64())
        mask = pa.compute.and_(pa.compute.greater_equal(ns, opens[0]), pa.compute.less_equal(ns, opens[-1]))
        cut = table.filter(mask)
        assert cut.num_rows == len(opens), "the streamed bars are contiguous"
        out.mkdir(parents=True, exist_ok=True)
        feather.write_feather(cut, out / name)
        paths.append(out / name)
    return paths


def test_up_source_mexc_equals_the_backtest(tmp_path, redis_url, redis_prefix, pg_database, cleanup,
                                            fake_exchange, monkeypatch):
    monkeypatch.setenv("MEXC_REST_URL", fake_exchange["rest_url"])  # the services inherit them
    monkeypatch.setenv("MEXC_WS_URL", fake_exchange["ws_url"])
    out = tmp_path / "out"
    cfg = make_config(RunOptions(source="mexc", symbols=",".join(SYMBOLS), strategy="sma_cross", param=PARAMS,
                                 out=out))
    cfg = with_exchange_rules(cfg)
    spec = spec_from_config(cfg, bus_url=redis_url, prefix=redis_prefix, database_url=pg_database,
                            ports=free_ports())
    port = spec["runtime"]["ports"]["marketdata"]
    state = cleanup.services(tmp_path / "state")
    supervisor.up(spec, state)

    def bars_each() -> int:
        text = _metrics(port) if http_get(port, "/health")[0] == 200 else ""
        counts = metric_values(text, "claire_marketdata_events_total")
        return min((counts.get(f'{{service="marketdata",symbol="{s}"}}', 0) for s in SYMBOLS), default=0)

    # ~17 events per bar and symbol (1 bar, 8 trades, 4 quotes, 3-4 books)
    wait_until(lambda: _safe(bars_each) >= 17 * BARS, 120, "the live stream", interval=0.5, state_dir=state)

    # /ready and /metrics while the data flows: every symbol fresh
    code, body = http_get(port, "/ready")
    ready = json.loads(body)
    assert code == 200 and ready["ready"] is True, ready
    assert ready["checks"]["data_fresh"] is True
    assert set(ready["checks"]["symbols"]) == set(SYMBOLS)
    assert all(a is not None and a < 5 for a in ready["checks"]["symbols"].values()), ready
    m = _metrics(port)
    ages = metric_values(m, "claire_marketdata_last_event_age_seconds")
    assert {k for k in ages} == {f'{{service="marketdata",symbol="{s}"}}' for s in SYMBOLS}
    assert all(0 <= a < 5 for a in ages.values()), ages
    assert len(metric_values(m, "claire_marketdata_last_event_timestamp_seconds")) == 2
    assert sum(metric_values(m, "claire_marketdata_frames_decoded_total").values()) > 16 * BARS
    assert sum(metric_values(m, "claire_marketdata_decode_errors_total").values()) == 0
    assert metric_values(m, "claire_marketdata_connections") == {'{service="marketdata"}': 1.0}
    for name in ("claire_marketdata_reconnects_total", "claire_marketdata_gaps_repaired_total",
                 "claire_marketdata_bars_repaired_total"):
        assert len(metric_values(m, name)) == 2, name  # one series per symbol, 0 or not
    assert "claire_marketdata_ws_reconnects_total" in m

    # end the live stream: the services finish the run like a replay
    assert supervisor.finish(state)
    wait_final(spec, state, timeout=120)
    cp = json.loads(load_checkpoint(spec, "marketdata")[1])
    assert cp["done"] is True and cp["live_from"] > 0
    bars = _streamed_bars(spec)
    stop_all(state)
    res = db_result(pg_database)
    assert not res["dead_letters"]

    # 1. the backtest of the run's own capture: the same run, ids included
    from claire.runtime.sources import market_source, resolve_data, with_rules

    cap_cfg = resolve_data(make_config(RunOptions(data=[out / "capture"], strategy="sma_cross", param=PARAMS)))
    assert cap_cfg.run_key() == cfg.run_key()
    src = market_source(cap_cfg)  # with the books: the distributed paper exchange fills on them too
    src.start()
    cap_cfg = with_rules(cap_cfg, src)
    bt = run_backtest(cap_cfg, src)
    src.close()
    assert src.books > 0
    # the books matter here: without them the paper exchange fills otherwise (on the touch only),
    # so the equality below holds only if the distributed stages carry the books as the core does
    touch_only = market_source(cap_cfg, books=False)
    touch_only.start()
    bt_touch = run_backtest(cap_cfg, touch_only)
    touch_only.close()
    assert [(f.quantity, f.price) for f in bt_touch.fills] != [(f.quantity, f.price) for f in bt.fills]
    fills = sorted(bt.fills, key=lambda f: (f.ts_event, f.id))
    assert len(fills) > 4
    assert [r[0] for r in res["trades"]] == [f.id for f in fills]
    assert [(Decimal(r[5]), Decimal(r[6])) for r in res["trades"]] == [(f.quantity, f.price) for f in fills]
    assert res["counts"]["orders"] == len(bt.recorder.orders)
    assert res["counts"]["signals"] == len(bt.recorder.signals)
    assert [Decimal(e) for e in res["final_equity"]] == [bt.final_equity]

    # 2. the backtest of the same files over the streamed window: the same signals after the warm-up
    assert len(bars) >= 2 * BARS
    history_until = cp["live_from"] * 1_000_000
    file_bt = run_backtest(make_config(RunOptions(data=_file_window(tmp_path / "window", bars),
                                                  strategy="sma_cross", param=PARAMS)))
    file_bars = {(b.symbol, b.ts_event): b for b in bars}
    want = sorted((s.ts_event, s.symbol, s.side.value) for s in file_bt.recorder.signals
                  if s.ts_event > history_until)
    got = sorted((s.ts_event, s.symbol, s.side.value) for s in bt.recorder.signals)
    assert len(want) > 4
    assert got == want
    assert all(k in file_bars for k in ((s, t) for t, s, _ in got))


def _safe(fn):
    try:
        return fn()
    except OSError:
        return 0

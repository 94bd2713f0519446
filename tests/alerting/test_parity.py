"""The same alerts from both runtimes on the same data: the paper runtime's writer sees the core's
events in their order, the distributed writer reads them stream by stream, batch by batch (here
from real Redis streams into PostgreSQL). The alert service raises and stores the same alerts
(ids, codes, figures, repeat counts) either way."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec

from claire.config.tree import AlertSettings, RunConfig
from claire.events import Event, encode
from claire.events.topics import topic_out
from claire.marketdata.synthetic import synthetic_bars
from claire.runtime.alerts import AlertService
from claire.runtime.backtest import run_backtest
from claire.runtime.distributed.runner import WriterService
from claire.storage import Database, EventWriter
from claire.storage.alerts import list_alerts

START = 1_767_225_600_000_000_000  # 2026-01-01 00:00 UTC
STREAM_ORDER = ("signals", "orders", "order_results", "portfolio_snapshots", "risk_events", "alerts")


def _run_events() -> list[tuple[str, bytes]]:
    out: list[Event] = []
    run_backtest(RunConfig(), synthetic_bars(["BTCUSDT", "ETHUSDT"], 1600, START), forward=out.append,
                 keep_events=False)
    return [(topic_out(ev)[0], encode(ev)) for ev in out]


SETTINGS = AlertSettings(drawdown_pct=Decimal("0.01"), cooldown_s=3600)


def _alerts(msgs: list[tuple[str, bytes]]) -> list[tuple[str, str, str]]:
    svc = AlertService("run-parity", SETTINGS)
    for stream, raw in msgs:
        svc.observe(stream, raw)
    final = svc.final_summary()
    assert final is not None
    return [(a.id, a.code, msgspec.json.encode(a.details).decode()) for a in svc.fired]


def test_the_same_alerts_in_event_order_and_in_stream_batches() -> None:
    msgs = _run_events()
    in_order = _alerts(msgs)
    batched: list[tuple[str, bytes]] = []
    for i in range(0, len(msgs), 250):  # a writer's batch: each stream's messages, one stream after the other
        batch = msgs[i:i + 250]
        batched += sorted(batch, key=lambda m: STREAM_ORDER.index(m[0]))
    assert batched != msgs
    assert _alerts(batched) == in_order
    codes = [c for _, c, _ in in_order]
    assert codes.count("daily_summary") == 2 and "drawdown" in codes  # one midnight and the final one


def _stored(db_url: str, run_id: str) -> list[tuple[str, str, int, str | None]]:
    db = Database(db_url)
    try:
        return sorted((r["id"], r["code"], r["occurrences"], r["category"]) for r in list_alerts(db, run_id, limit=10_000)
                      if r["category"] is not None)
    finally:
        db.dispose()


def _paper_writer(db_url: str, run_id: str, msgs: list[tuple[str, bytes]]) -> None:
    """The one-process runtime's way: the in-memory bus, the writer service, the alert hook."""
    from claire.bus import InMemoryBus

    _writer_run(InMemoryBus("p:"), db_url, run_id, msgs, batch=1000)


def _writer_run(bus: object, db_url: str, run_id: str, msgs: list[tuple[str, bytes]], batch: int) -> None:
    db = Database(db_url)
    writer = EventWriter(db, run_id)
    svc = AlertService(run_id, SETTINGS, db=db)
    loop = WriterService(bus, writer, batch=batch, block_ms=10)  # type: ignore[arg-type]
    loop.observe = svc.observe
    loop.start()
    for i in range(0, len(msgs), 400):  # published as the services would: in order, a chunk at a time
        by_stream: dict[str, list[bytes]] = {}
        for stream, raw in msgs[i:i + 400]:
            by_stream.setdefault(stream, []).append(raw)
        for stream, raws in by_stream.items():
            bus.publish_many(stream, raws)  # type: ignore[attr-defined]
    while loop.consumed < len(msgs):
        loop.step()
    svc.close()
    writer.close()
    db.dispose()


def test_paper_and_distributed_writers_store_the_same_alerts(tmp_path: Path, pg_database: str, redis_url: str,
                                                              redis_prefix: str) -> None:
    from claire.bus import make_bus

    msgs = _run_events()
    run_id = RunConfig().run_key()
    sqlite_url = f"sqlite:///{tmp_path / 'paper.db'}"
    _paper_writer(sqlite_url, run_id, msgs)
    bus = make_bus(redis_url, prefix=redis_prefix)
    try:
        _writer_run(bus, pg_database, run_id, msgs, batch=300)
    finally:
        bus.close()
    paper, distributed = _stored(sqlite_url, run_id), _stored(pg_database, run_id)
    assert paper == distributed
    assert {c for _, c, _, _ in paper} >= {"drawdown", "daily_summary"}


def test_paper_runtime_and_distributed_services_raise_the_same_alerts(tmp_path: Path) -> None:
    """The whole pipeline both ways: `run_paper` (one process) and the distributed services (in
    threads, on the in-memory bus), each with its alert service on its writer, same data."""
    import claire.runtime.distributed.app as dist_app
    from claire.bus import InMemoryBus
    from claire.config.tree import DataSettings
    from claire.runtime.alerts import attach_alerts
    from claire.runtime.distributed.threads import run_services_threads
    from claire.runtime.paper import run_paper

    cfg = RunConfig(data=DataSettings(synthetic=1600), alerts=SETTINGS)
    paper_url = f"sqlite:///{tmp_path / 'paper.db'}"
    run_paper(cfg, dist_app.market_events(cfg), db_url=paper_url, port=None)
    dist_url = f"sqlite:///{tmp_path / 'dist.db'}"
    spec = dist_app.spec_from_config(cfg, bus_url="memory://", prefix="t:", database_url=dist_url)
    shared = InMemoryBus("t:")
    build = dist_app._writer_service

    def writer_with_alerts(cfg: RunConfig, *args: object) -> object:
        svc = build(cfg, *args)  # type: ignore[arg-type]
        if svc.loop.alerts is None:  # the distributed writer's wiring (app.py), here if it is not there yet
            attach_alerts(svc.loop, cfg.run_key(), cfg.alerts, svc.loop.writer.db)
        return svc

    dist_app._writer_service = writer_with_alerts  # type: ignore[assignment]
    try:
        services = run_services_threads(spec, lambda: InMemoryBus("t:", share_with=shared), timeout=120)
    finally:
        dist_app._writer_service = build
    services["writer"].loop.alerts.close()
    run_id = cfg.run_key()
    paper = [a for a in _stored(paper_url, run_id) if not a[0].endswith(":final")]  # paper's end-of-data summary
    assert paper == _stored(dist_url, run_id)
    assert {c for _, c, _, _ in paper} >= {"drawdown", "daily_summary"}

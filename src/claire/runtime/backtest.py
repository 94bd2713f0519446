"""Replay/backtest runtime: market data from files, through the core, as fast as it goes."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from claire.engine.core import TradingCore
from claire.engine.kernel import RunConfig, build_core
from claire.events import Bar, BookDepth, Event, QuoteTick, TradeTick
from claire.portfolio import Portfolio
from claire.reporting import Recorder, RoundTrip, summarize
from claire.reporting.runfiles import write_run_files


@dataclass
class RunResult:
    config: RunConfig
    recorder: Recorder
    portfolio: Portfolio
    summary: dict[str, Any]
    events: int
    seconds: float
    out: Path | None = None
    #: the fills' prices after (``(fill id, price, event time)``, see SignalEngine.take_prices_after)
    prices_after: list[tuple[str, str, int]] | None = None

    @property
    def round_trips(self) -> list[RoundTrip]:
        return self.recorder.round_trips

    @property
    def fills(self) -> list[Any]:
        return self.recorder.fills

    @property
    def final_equity(self) -> Decimal:
        return self.portfolio.equity()


def run_events(core: TradingCore, events: Iterable[Bar | TradeTick | QuoteTick | BookDepth],
               progress: Callable[[int], Any] | None = None, every: int = 10_000) -> int:
    """Feed market events to the core. Returns how many were processed."""
    if progress is None:
        core.run(events)
        return core.processed
    it = iter(events)
    while True:  # in chunks of `every`, reporting each (the last one may be short, or empty)
        n = core.run(islice(it, every))
        progress(n)
        if n < every:
            return core.processed


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a replay (restored after).

    A replay allocates millions of objects and frees nearly all of them by reference counting:
    the events are msgspec structs without GC tracking, the core makes no reference cycles per
    event. With the collector on, its generation-2 passes re-scan everything the run keeps
    (positions' tuples, risk events' dicts) over and over. Objects that exist before the run
    (modules, the loaded columns) are moved out of its generations first (``gc.freeze``), so
    the collections that follow the run do not scan them either."""
    was = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        if was:
            gc.enable()


def bind_source(events: Any, core: TradingCore) -> None:
    """A source that takes part in the run (a MEXC source: its data-quality alerts go through the
    core's emit, the end of its warm-up to the signal engine) is bound to the core."""
    bind = getattr(events, "bind", None)
    if bind is not None:
        bind(core)


def run_backtest(cfg: RunConfig, events: Iterable[Bar | TradeTick | QuoteTick | BookDepth] | None = None,
                 progress: Callable[[int], Any] | None = None, forward: Callable[[Event], Any] | None = None,
                 keep_events: bool = True) -> RunResult:
    """Replay ``events`` (default: the files of ``cfg.data``) through the core, the garbage
    collector paused (:func:`gc_paused`). ``keep_events=False`` keeps only what the run files
    and the summary need (see :class:`Recorder`), as ``claire backtest`` does."""
    if events is None:
        from claire.marketdata import (
            open_market_data,  # start-up time: pyarrow only for commands that read data
        )

        events = open_market_data(cfg.data.paths, cfg.data.symbol)
    recorder = Recorder(forward=forward, keep_events=keep_events)
    with gc_paused():
        core = build_core(cfg, recorder.emit)
        bind_source(events, core)
        t0 = time.perf_counter()
        n = run_events(core, events, progress)
        core.finish()
        seconds = time.perf_counter() - t0
        summary = summarize(recorder, core.portfolio, {
            **cfg.summary_fields(), "events": n,
            "symbols": sorted(core.signals.strategies),
        })
        out = write_run_files(cfg.runtime.out, recorder, summary) if cfg.runtime.out else None
    take = getattr(core.signals, "take_prices_after", None)
    return RunResult(cfg, recorder, core.portfolio, summary, n, seconds, out,
                     prices_after=take() if take is not None else None)


def _plain_files(paths: Iterable[Path | str]) -> bool:
    """Whether every ``--data`` path is a regular file whose name does not end in ``.gz``:
    none is then a MEXC capture (a directory, or a ``mexc-YYYYMMDD.jsonl.gz`` file) and
    ``sources.resolve_data`` would return the configuration as it is."""
    return all(Path(p).is_file() and not str(p).endswith(".gz") for p in paths)


def run_backtest_cli(cfg: RunConfig, progress: bool = True, console: Any = None) -> dict[str, Any]:
    """`claire backtest`: load with a progress bar, replay, write run files (and the database).
    A MEXC capture as ``--data`` is replayed through the adapter (:mod:`claire.runtime.sources`)."""
    if not _plain_files(cfg.data.paths):
        from claire.runtime.sources import (
            resolve_data,  # start-up time: the MEXC adapter (protobuf, asyncio) only for a capture
        )

        cfg = resolve_data(cfg)
    data: Any
    if cfg.data.source == "mexc":
        from claire.runtime.sources import (  # start-up time: the core and its readers only for the command that runs them
            market_source,
            with_rules,
        )

        data = market_source(cfg)
        data.start()
        cfg = with_rules(cfg, data)
    else:
        from claire.marketdata import (
            open_market_data,  # start-up time: pyarrow only for commands that read data
        )

        data = open_market_data(cfg.data.paths, cfg.data.symbol)
    total = getattr(data, "count", None)
    forward = None
    writer = None
    if cfg.runtime.database_url:
        from claire.storage import (  # start-up time: SQLAlchemy only for commands with a database
            Database,
            EventWriter,
        )

        db = Database(cfg.runtime.database_url)
        db.upgrade()
        writer = EventWriter(db, cfg.run_key(), mode="backtest", config={"strategy": cfg.strategy.name,
                             "params": {k: str(v) for k, v in cfg.strategy.params.items()}, "risk": cfg.risk_mode,
                             "fill": str(cfg.execution.fill), "data": [str(p) for p in cfg.data.paths]})
        forward = writer.write
    try:
        if progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )  # start-up time: rich only to print tables and progress

            cols = [TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
                    TimeElapsedColumn(), TimeRemainingColumn()]
            with Progress(*cols, console=console, transient=False) as bar:
                task = bar.add_task("replay", total=total)
                result = run_backtest(cfg, events=data, progress=lambda n: bar.advance(task, n), forward=forward,
                                      keep_events=False)
        else:  # (rich.progress not even imported)
            result = run_backtest(cfg, events=data, forward=forward, keep_events=False)
    finally:
        if writer is not None:
            writer.close(end_run=True)
        if cfg.data.source == "mexc":
            data.close()
    if writer is not None:
        from claire.reporting.period_metrics import (
            performance_rows,  # start-up time: reporting only for the commands that report
        )
        from claire.storage.performance_metrics import (
            write_performance,  # start-up time: SQLAlchemy only for commands with a database
        )

        write_performance(writer.db, cfg.run_key(), performance_rows(result.recorder, result.portfolio, result.summary))
        from claire.runtime.analytics import (
            RunAnalytics,  # start-up time: SQLAlchemy only for commands with a database
        )

        analytics = RunAnalytics(writer.db, cfg.run_key())  # the fills' prices after, and why not
        analytics.prices_after(result.prices_after or ())
        analytics.finish(performance=False)  # (the performance rows above: from the Recorder)
        writer.db.dispose()
    result.summary["engine_seconds"] = round(result.seconds, 3)
    result.summary["events_per_sec"] = round(result.events / result.seconds) if result.seconds else None
    quality = getattr(data, "quality", None)
    if quality is not None:
        result.summary["data_quality_records"] = len(quality)
        if cfg.runtime.out:
            from claire.reporting.runfiles import (
                write_data_quality,  # start-up time: reporting only for the commands that report
            )

            write_data_quality(cfg.runtime.out, quality)
    if cfg.runtime.out:

        (Path(cfg.runtime.out) / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str) + "\n")
    return result.summary

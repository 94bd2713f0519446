"""The command line of live MEXC data: ``claire mexc-fake`` and ``claire paper --source mexc``.

Registered on the app by :func:`register` (see :mod:`claire.cli.main`).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from claire.cli.errors import fail as _fail


def _ints(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected bar numbers like 5,9, got {text!r}") from None


def mexc_fake(
    data: Annotated[list[Path], typer.Option("--data", "-d", help="1m bar file(s) (.feather) to serve; repeat for several symbols.")],
    speed: Annotated[float, typer.Option(help="Bars per wall-clock second (60 = one hour of bars a minute).")] = 1.0,
    history: Annotated[int, typer.Option(help="Bars in the past at start (REST klines only; enough for the strategy's warm-up).")] = 100,
    port: Annotated[int, typer.Option(help="Port (0: any free port; the URLs are printed).")] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    steps: Annotated[int, typer.Option(help="Kline/deal/quote pushes per bar.")] = 4,
    disconnect_every_bars: Annotated[int | None, typer.Option(help="Fault: close every socket every N bars.")] = None,
    skip_kline: Annotated[str | None, typer.Option(help="Fault: bar numbers (from the first streamed bar) without kline pushes, e.g. 5,9.")] = None,
    blocked_topic: Annotated[list[str] | None, typer.Option(help="Fault: answer this subscription with 'Blocked' (repeatable).")] = None,
    rest_429_every: Annotated[int | None, typer.Option(help="Fault: every Nth REST request gets 429 with Retry-After.")] = None,
    retry_after: Annotated[float, typer.Option(help="Retry-After of those 429 answers (s).")] = 1.0,
    silent_at_bar: Annotated[int | None, typer.Option(help="Fault: the sockets go silent (stay open) at this bar.")] = None,
    paused_symbol: Annotated[list[str] | None, typer.Option(help="Fault: exchangeInfo says this symbol is paused (repeatable).")] = None,
) -> None:
    """A local fake MEXC (public REST + protobuf WebSocket) serving bar files; prints its URLs as one JSON line.

    Point a run at it with MEXC_REST_URL and MEXC_WS_URL. SIGINT/SIGTERM stop it (exit 0)."""

    from claire.adapters.mexc.fake import (
        run_fake,  # start-up time: aiohttp and protobuf only with --source mexc
    )

    if not speed > 0:
        _fail(f"--speed must be > 0 (bars per second), got {speed:g}")
    if history < 1:
        _fail(f"--history must be >= 1, got {history}")
    if steps < 1:
        _fail(f"--steps must be >= 1, got {steps}")
    for name, v in (("--disconnect-every-bars", disconnect_every_bars), ("--rest-429-every", rest_429_every)):
        if v is not None and v < 1:
            _fail(f"{name} must be >= 1, got {v}")
    if not 0 <= port <= 65535:
        _fail(f"--port must be within 0..65535, got {port}")  # a busy one: the bind's error, one line
    for f in data:
        if not f.is_file():
            _fail(f"--data {f}: file not found")
    options: dict[str, Any] = {
        "speed": speed, "history": history, "steps": steps, "disconnect_every_bars": disconnect_every_bars,
        "skip_kline_bars": _ints(skip_kline), "blocked_topics": blocked_topic or [],
        "rest_429_every": rest_429_every, "retry_after": retry_after, "silent_at_bar": silent_at_bar,
        "paused_symbols": paused_symbol or []}

    import asyncio  # start-up time: the event loop only for the commands that run one

    async def serve() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_fake([str(f) for f in data], host=host, port=port, **options)

    asyncio.run(serve())


def paper_mexc(cfg: Any, *, db_url: str, port: int, console: Any) -> tuple[dict[str, Any], list[str]]:
    """``claire paper`` on MEXC data: live (``--source mexc``), recorded to ``<out>/capture/``,
    or a capture given as ``--data`` replayed. SIGINT/SIGTERM end a live run cleanly (what the
    feed holds is processed, the run is finished and its files written; exit 0).

    The port and the database are checked by the caller. Returns the summary and lines to show."""
    from claire.runtime.paper import (
        run_paper,  # start-up time: the core and its readers only for the command that runs them
    )
    from claire.runtime.sources import MexcSource, warmup_of, with_rules

    live = not cfg.data.paths
    outdir = Path(cfg.runtime.out) if cfg.runtime.out else None
    if live:
        warmup = warmup_of(cfg)
        capture = outdir / "capture" if outdir is not None else None
        source = MexcSource(list(cfg.data.symbols), warmup=warmup, capture_dir=capture)
        banner = (f"MEXC live: {', '.join(cfg.data.symbols)}, warm-up {warmup} bars"
                  + (f", recorded to {capture}" if capture else "") + "; Ctrl-C (or SIGTERM) stops")
    else:
        banner = f"MEXC capture {cfg.data.paths[0]}: replayed"
        source = MexcSource(replay=cfg.data.paths[0])
    stopping = [0]

    def on_signal(*_: Any) -> None:
        stopping[0] += 1
        if stopping[0] == 1:
            source.stop()  # the feed delivers what it holds, then the stream ends
        else:
            source.close()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        source.start()  # the exchange's refusals (unknown symbol, blocked topic): one line, exit 2
        cfg = with_rules(cfg, source)  # sized and filled by the exchange's trading rules
        console.print(banner, markup=False, soft_wrap=True)
        summary = run_paper(cfg, source, db_url=db_url, speed=None, port=port, stop=threading.Event(),
                            resume=False)
    finally:
        source.close()
        for sig, h in old.items():
            signal.signal(sig, h)
    summary["source"] = "mexc" if live else "mexc capture"
    summary["stopped_by_signal"] = bool(stopping[0])
    summary["data_quality_records"] = len(source.quality)
    if source.live_from_ms is not None:
        from claire.events.time import (
            iso_from_ns,  # start-up time: msgspec structs only for the commands that use them
        )

        summary["live_from"] = iso_from_ns(source.live_from_ms * 1_000_000)
    notes: list[str] = []
    if source.quality:
        kinds: dict[str, int] = {}
        for r in source.quality:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        notes.append("data quality: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    if outdir is not None:
        from claire.reporting.runfiles import (
            write_data_quality,  # start-up time: reporting only for the commands that report
        )

        write_data_quality(outdir, source.quality)
        (outdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        notes.append(f"run files: {outdir}" + (f" (capture: {outdir / 'capture'})" if live else ""))
    return summary, notes


def register(app: typer.Typer) -> None:
    app.command("mexc-fake")(mexc_fake)

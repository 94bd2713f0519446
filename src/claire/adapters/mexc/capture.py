"""Recording of everything the MEXC feed used, and its replay through the same code.

Format: a directory of files ``mexc-YYYYMMDD.jsonl.gz``, one per UTC day of the receive time,
gzip-compressed JSON lines (a file appended to later holds several gzip members, which every
gzip reader reads as one stream; a truncated last line after a crash is ignored). One record a
line, in the order things happened; ``t`` is the local receive time in ns:

- ``{"t":…, "k":"start", "v":1, "symbols":[…], "warmup":N, "interval_s":60, "channels":[…]}``:
  a feed started (its settings, so a replay needs no arguments);
- ``{"t":…, "k":"ws", "c":<conn>, "b":"<base64>"}``: a binary push (protobuf) as received;
- ``{"t":…, "k":"ws", "c":<conn>, "x":"<text>"}``: a text frame (acks, PONG; not replayed);
- ``{"t":…, "k":"conn", "c":<conn>, "e":"connected"|"disconnected", "symbols":[…],
  "reason":"…", "stale":[…]}``: a connection came up (all its topics acked) or went down;
- ``{"t":…, "k":"rest", "path":"/api/v3/klines", "q":{…}, "status":200, "ra":<Retry-After s or
  null>, "body":"<response text>"}``: a REST response (``"error":"…"`` instead of status/body
  when the request failed without one).

A directory may hold several runs (each begins with its ``start`` record); a replay picks one.
A replay (:func:`replay_capture`) feeds the ``ws``/``conn`` records to the same
:class:`~claire.adapters.mexc.feed.MexcFeed` code, and answers its REST requests with the recorded
responses (matched by path and query, in order), so it yields the same events, ids included.
"""

from __future__ import annotations

import base64
import gzip
import logging
import time
import zlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec

from claire.adapters.mexc.models import (
    ConnEvent,
    Frame,
    ReplayMismatchError,
    RestResponse,
    StreamItem,
    TransportError,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PREFIX = "mexc-"
SUFFIX = ".jsonl.gz"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def capture_file_name(ts_ns: int) -> str:
    day = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y%m%d")
    return f"{PREFIX}{day}{SUFFIX}"


def query_key(path: str, params: dict[str, Any] | None) -> str:
    """How a REST request is matched in a replay: its path and sorted query."""
    items = sorted((k, str(v)) for k, v in (params or {}).items())
    return f"{path}?{urlencode(items)}" if items else path


class CaptureWriter:
    """Appends records to the day's file of ``directory``; flushes at most every ``flush_s``."""

    def __init__(self, directory: str | Path, *, flush_s: float = 1.0, compresslevel: int = 6) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_s
        self.compresslevel = compresslevel
        self.records = 0
        self._name: str | None = None
        self._fh: gzip.GzipFile | None = None
        self._last_flush = time.monotonic()

    def _file(self, ts: int) -> gzip.GzipFile:
        name = capture_file_name(ts)
        if name != self._name or self._fh is None:
            if self._fh is not None:
                self._fh.close()
            self._fh = gzip.GzipFile(self.directory / name, "ab", compresslevel=self.compresslevel)
            self._name = name
        return self._fh

    def write(self, record: dict[str, Any]) -> None:
        fh = self._file(record["t"])
        fh.write(_encode(record) + b"\n")
        self.records += 1
        now = time.monotonic()
        if now - self._last_flush >= self.flush_s:
            fh.flush()
            self._last_flush = now

    # one method per record kind
    def start(self, ts: int, **settings: Any) -> None:
        self.write({"t": ts, "k": "start", "v": FORMAT_VERSION, **settings})

    def frame(self, conn: int, data: bytes, ts: int) -> None:
        self.write({"t": ts, "k": "ws", "c": conn, "b": base64.b64encode(data).decode()})

    def text(self, conn: int, text: str, ts: int) -> None:
        self.write({"t": ts, "k": "ws", "c": conn, "x": text})

    def conn_event(self, ev: ConnEvent) -> None:
        rec: dict[str, Any] = {"t": ev.ts_recv, "k": "conn", "c": ev.conn, "e": ev.kind, "symbols": list(ev.symbols)}
        if ev.reason:
            rec["reason"] = ev.reason
        if ev.stale:
            rec["stale"] = list(ev.stale)
        self.write(rec)

    def rest(self, ts: int, path: str, params: dict[str, Any] | None, *, status: int | None = None,
             body: bytes | None = None, retry_after: float | None = None, error: str | None = None) -> None:
        rec: dict[str, Any] = {"t": ts, "k": "rest", "path": path, "q": {k: str(v) for k, v in (params or {}).items()}}
        if error is not None:
            rec["error"] = error
        else:
            rec["status"] = status
            rec["ra"] = retry_after
            rec["body"] = (body or b"").decode("utf-8", "replace")
        self.write(rec)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._name = None

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- reading -----------------------------------------------------------------------------


def capture_files(directory: str | Path) -> list[Path]:
    """The capture files of ``directory`` in order (or ``directory`` itself: one capture file)."""
    d = Path(directory)
    if d.is_file() and d.name.startswith(PREFIX) and d.name.endswith(SUFFIX):
        return [d]
    if not d.is_dir():
        raise FileNotFoundError(f"capture directory not found: {d}")
    files = sorted(p for p in d.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX))
    if not files:
        raise FileNotFoundError(f"no MEXC capture files ({PREFIX}YYYYMMDD{SUFFIX}) in {d}")
    return files


def iter_records(directory: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of a capture directory, in order (a truncated tail is skipped with a warning)."""
    for path in capture_files(directory):
        with gzip.open(path, "rb") as fh:
            try:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        yield _decode(line)
                    except msgspec.DecodeError:
                        log.warning("%s: skipped a broken line (an interrupted write?)", path.name)
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                log.warning("%s: the file ends early (%s); replaying what is there", path.name, exc)


def iter_run(directory: str | Path, run: int = 0) -> Iterator[dict[str, Any]]:
    """The records of the ``run``-th feed start in ``directory`` (a directory may hold several runs)."""
    n = -1
    for rec in iter_records(directory):
        if rec.get("k") == "start":
            n += 1
            if n > run:
                return
        if n == run:
            yield rec


def stream_item(rec: dict[str, Any]) -> StreamItem | None:
    """The stream item of a ``ws`` (binary) or ``conn`` record; None for the others."""
    k = rec.get("k")
    if k == "ws" and "b" in rec:
        return Frame(rec["c"], base64.b64decode(rec["b"]), rec["t"])
    if k == "conn":
        return ConnEvent(conn=rec["c"], kind=rec["e"], symbols=tuple(rec.get("symbols", ())),
                         reason=rec.get("reason", ""), ts_recv=rec["t"], stale=tuple(rec.get("stale", ())))
    return None


class ReplaySource:
    """The recorded stream items, as the feed reads them from a live :class:`MexcStream`."""

    def __init__(self, directory: str | Path, run: int = 0) -> None:
        self.directory = Path(directory)
        self.run = run

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def items(self) -> AsyncIterator[StreamItem]:
        for rec in iter_run(self.directory, self.run):
            item = stream_item(rec)
            if item is not None:
                yield item


class ReplayTransport:
    """Answers REST requests with the recorded responses, matched by path and query, in order."""

    def __init__(self, directory: str | Path, run: int = 0) -> None:
        self._responses: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for rec in iter_run(directory, run):
            if rec.get("k") == "rest":
                self._responses[query_key(rec["path"], rec.get("q"))].append(rec)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> RestResponse:
        key = query_key(path, params)
        queue = self._responses.get(key)
        if not queue:
            raise ReplayMismatchError(f"the capture holds no (more) REST response for {key}: the replay "
                                      "diverged from the recording (different code or settings?)")
        rec = queue.popleft()
        if "error" in rec:
            raise TransportError(rec["error"])
        return RestResponse(status=rec["status"], body=rec["body"].encode(), retry_after=rec.get("ra"),
                            ts_recv=rec["t"])

    async def close(self) -> None:
        return None


def read_start(directory: str | Path, run: int = 0) -> dict[str, Any]:
    """The settings of the ``run``-th feed start recorded in ``directory``."""
    for rec in iter_run(directory, run):
        if rec.get("k") == "start":
            return rec
    raise ValueError(f"{directory}: the capture has no start record number {run} (not written by MexcFeed?)")

"""A local spool for the events of a one-process run while its database is unreachable.

:class:`Spool` is an append-only file of records under the run directory
(``<run dir>/spool/spool-NNNNNN.msgpack``): each record a frame of 4-byte length, 4-byte CRC-32
and a msgpack body (:class:`SpoolRecord`: the event's wire bytes, the msgspec encoding of
:mod:`claire.events`, with the stream it came from; or a checkpoint). Every append is flushed
and fsync'd before it returns, so what the caller acknowledges survives a crash; a torn last
frame (a crash in the middle of a write) is ignored when the file is read back.

:class:`SpoolingWriter` puts it in front of an :class:`~claire.storage.writer.EventWriter`: while
the database answers, everything goes straight through; when a write fails for longer than
``give_up_after_s`` (the writer's own retry), the events not committed go to the spool and so does
everything after them, and the run goes on. Every ``probe_every_s`` it tries the database; once
it answers, the spool is written in order (the writer is idempotent on event ids, so a record
written twice, after a replay that failed half way, changes nothing), then deleted, and the
writer is used directly again. ``on_change(reachable, reason)`` tells the owner (who raises the
alert). A spool left behind by a run that stopped while the database was away is written when
the run is started again, before its checkpoint is read.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from claire.storage.database import StorageError, one_line

log = logging.getLogger("claire.storage.spool")

_HEADER = struct.Struct(">II")  # body length, CRC-32 of the body
EVENT = "event"
CHECKPOINT = "checkpoint"


class SpoolRecord(msgspec.Struct, array_like=True, frozen=True):
    """One spooled thing: an event's wire bytes from ``source``, or a checkpoint."""

    kind: str
    source: str = ""
    payload: bytes = b""
    position: int = -1


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpoolRecord)


class Spool:
    """Append-only, fsync'd record files in ``directory`` (created on the first append)."""

    def __init__(self, directory: str | Path, max_file_bytes: int = 64 * 2**20) -> None:
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self._fh: Any = None
        self.records_written = 0  # appended since the last clear

    def files(self) -> list[Path]:
        """The spool files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("spool-*.msgpack"))

    def __bool__(self) -> bool:
        return any(p.stat().st_size > 0 for p in self.files())

    def _open(self) -> Any:
        if self._fh is not None and self._fh.tell() < self.max_file_bytes:
            return self._fh
        self._close_file()
        self.directory.mkdir(parents=True, exist_ok=True)
        files = self.files()
        n = int(files[-1].stem.split("-")[1]) + 1 if files else 1
        path = self.directory / f"spool-{n:06d}.msgpack"
        self._fh = open(path, "ab")  # noqa: SIM115 - kept open across appends, closed by clear/close
        return self._fh

    def append(self, records: list[SpoolRecord]) -> None:
        """Write ``records`` at the end and fsync: on disk when this returns."""
        if not records:
            return
        fh = self._open()
        frames = []
        for rec in records:
            body = _encoder.encode(rec)
            frames.append(_HEADER.pack(len(body), zlib.crc32(body)))
            frames.append(body)
        fh.write(b"".join(frames))
        fh.flush()
        os.fsync(fh.fileno())
        self.records_written += len(records)

    def records(self) -> Iterator[SpoolRecord]:
        """Every record, in the order appended; a torn or damaged tail of a file is skipped."""
        for path in self.files():
            data = path.read_bytes()
            pos = 0
            while pos + _HEADER.size <= len(data):
                size, crc = _HEADER.unpack_from(data, pos)
                body = data[pos + _HEADER.size : pos + _HEADER.size + size]
                if len(body) < size or zlib.crc32(body) != crc:
                    log.warning("spool %s: damaged record at byte %d skipped with the rest of the file", path, pos)
                    break
                yield _decoder.decode(body)
                pos += _HEADER.size + size

    def clear(self) -> None:
        """Delete the spool files (after everything in them is in the database)."""
        self._close_file()
        for path in self.files():
            path.unlink()
        self.records_written = 0

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        self._close_file()


class SpoolingWriter:
    """An :class:`~claire.storage.writer.EventWriter` that keeps going while the database is
    away (see the module doc). Has what the writer service and the paper runtime call:
    ``write_raw``, ``flush``, ``save_checkpoint``, ``load_checkpoint``, ``close``. Thread-safe."""

    def __init__(
        self,
        writer: Any,
        directory: str | Path,
        *,
        give_up_after_s: float = 2.0,
        probe_every_s: float = 1.0,
        on_change: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.writer = writer
        self.spool = Spool(directory)
        # the writer retries a lost connection this long before the events go to the spool
        writer.retry_timeout = give_up_after_s
        self.probe_every_s = probe_every_s
        self.on_change = on_change
        self._lock = threading.RLock()
        self._unflushed: list[SpoolRecord] = []  # given to the writer, not yet committed
        self.spooling = False
        self.outages = 0
        self.spooled_total = 0  # records that went through the spool
        self.last_error: str | None = None
        self._next_probe = 0.0
        if self.spool:  # left behind by a run stopped while the database was away
            log.info("writing the %s left in %s", "spool", self.spool.directory)
            self.spooling = True
            self._drain(notify=False)
            if self.spooling:
                raise StorageError(f"cannot write the spooled events of {self.spool.directory}: {self.last_error}")

    # --- what the writer service calls ---------------------------------------------------
    def write_raw(self, payload: bytes, source: str = "raw") -> None:
        with self._lock:
            self._unflushed.append(SpoolRecord(EVENT, source, bytes(payload)))
            if self.spooling:
                return
            try:
                self.writer.write_raw(payload, source=source)  # may flush a full batch
            except StorageError as exc:
                self._spill(exc)

    def flush(self) -> None:
        with self._lock:
            if not self.spooling:
                try:
                    self.writer.flush()
                    self._unflushed.clear()
                    return
                except StorageError as exc:
                    self._spill(exc)
            self._to_spool()
            self._maybe_drain()

    def save_checkpoint(self, position: int, state: bytes) -> None:
        with self._lock:
            if not self.spooling:
                try:
                    self.writer.save_checkpoint(position, state)
                    self._unflushed.clear()
                    return
                except StorageError as exc:
                    self._spill(exc)
            self._unflushed.append(SpoolRecord(CHECKPOINT, payload=bytes(state), position=int(position)))
            self._to_spool()
            self._maybe_drain()

    def load_checkpoint(self) -> tuple[int, bytes] | None:
        return self.writer.load_checkpoint()  # type: ignore[no-any-return]

    def close(self, *, end_run: bool = False, wait_s: float = 120.0) -> None:
        """Write the spool (waiting up to ``wait_s`` for the database), then close the writer.
        If the database does not come back, the spool stays on disk for the next start and
        StorageError says so."""
        with self._lock:
            if self.spooling:
                self._to_spool()
                deadline = time.monotonic() + wait_s
                while True:
                    self._drain()
                    if not self.spooling or time.monotonic() >= deadline:
                        break
                    time.sleep(self.probe_every_s)
                if self.spooling:
                    self.spool.close()
                    raise StorageError(
                        f"database still unreachable ({self.last_error}); {self.spool.records_written} "
                        f"events stay in {self.spool.directory} and are written when the run starts again"
                    )
            self.spool.close()
            self.writer.close(end_run=end_run)

    def state(self) -> dict[str, Any]:
        """For /health and status: spooling now or not, and how much went through the spool."""
        return {
            "spooling": self.spooling,
            "spooled": self.spool.records_written,
            "spooled_total": self.spooled_total,
            "outages": self.outages,
            "last_error": self.last_error,
        }

    # --- the outage ----------------------------------------------------------------------
    def _spill(self, exc: BaseException) -> None:
        """The database stopped answering: what the writer holds goes to the spool instead."""
        self.writer.discard_buffer()
        self.spooling = True
        self.outages += 1
        self.last_error = one_line(exc)
        self._next_probe = time.monotonic() + self.probe_every_s
        log.error("database unreachable (%s): events go to %s until it is back", self.last_error,
                  self.spool.directory)
        self._to_spool()
        self._notify(False, self.last_error)

    def _to_spool(self) -> None:
        if self._unflushed:
            self.spool.append(self._unflushed)
            self.spooled_total += len(self._unflushed)
            self._unflushed = []

    def _maybe_drain(self) -> None:
        if time.monotonic() >= self._next_probe:
            self._drain()

    def _drain(self, notify: bool = True) -> None:
        """Write the whole spool in order, then delete it; on a new failure keep it (and retry
        after ``probe_every_s``)."""
        self._next_probe = time.monotonic() + self.probe_every_s
        try:
            self.writer.db.check()
            n = 0
            for rec in self.spool.records():
                if rec.kind == CHECKPOINT:
                    self.writer.save_checkpoint(rec.position, rec.payload)
                else:
                    self.writer.write_raw(rec.payload, source=rec.source)
                n += 1
            self.writer.flush()
        except StorageError as exc:
            self.writer.discard_buffer()
            self.last_error = one_line(exc)
            return
        self.spool.clear()
        self.spooling = False
        log.warning("database reachable again: %d spooled records written", n)
        if notify:
            self._notify(True, f"{n} spooled records written")

    def _notify(self, reachable: bool, reason: str) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(reachable, reason)
        except Exception:  # the owner's alert must not stop the writes
            log.exception("on_change callback failed")

"""Logs per service and per UTC day: <log_dir>/<service>/<YYYY-MM-DD>.log."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path


class DailyFileHandler(logging.Handler):
    """Writes to one file per UTC day, switching files at midnight."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._day = ""
        self._fh = None

    def _file_for_now(self):
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if day != self._day:
            if self._fh is not None:
                self._fh.close()
            self._fh = (self.directory / f"{day}.log").open("a", buffering=1)
            self._day = day
        return self._fh

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._file_for_now().write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        super().close()


def configure_logging(service: str, log_dir: str | Path | None, level: str = "INFO") -> None:
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s [" + service + "] %(message)s")
    fmt.converter = __import__("time").gmtime
    handler: logging.Handler = DailyFileHandler(Path(log_dir) / service) if log_dir else logging.StreamHandler()
    handler.setFormatter(fmt)
    root.handlers[:] = [handler]

"""The one error a market data file that cannot be read raises: :class:`DataFileError`."""

from __future__ import annotations

import os
from pathlib import Path


class DataFileError(ValueError):
    """A market data file that cannot be read: one line naming the file and what was expected.

    A ``ValueError``, so callers that map ``ValueError`` to ``error: <message>`` show it as is.
    The message is folded onto one line (no tracebacks or library source locations).
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class DataFileNotFoundError(DataFileError, FileNotFoundError):
    """A market data file that does not exist (also a ``FileNotFoundError``)."""

    def __init__(self, message: str) -> None:
        DataFileError.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def reason(exc: BaseException, limit: int = 160) -> str:
    """The first line of a library's error message, shortened: what went wrong, no internals."""
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(exc).__name__
    # Arrow messages sometimes append a C++ source location ("/arrow/cpp/src/...cc:123  ...")
    cut = line.find("/arrow/")
    if cut > 0:
        line = line[:cut].rstrip(" .:")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_file(path: Path) -> None:
    """A missing path or a directory: :class:`DataFileError` naming it."""
    if not path.exists():
        raise DataFileNotFoundError(f"market data file not found: {path}")
    if path.is_dir():
        raise DataFileError(f"market data path is a directory, expected a file: {path}")
    if not os.access(path, os.R_OK):
        raise DataFileError(f"{path.name}: market data file is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path.name}: the file is empty (0 bytes); expected market data")

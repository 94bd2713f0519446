"""Storage errors with messages fit for one line of CLI output (drivers add multi-line detail)."""

from __future__ import annotations


class StorageError(RuntimeError):
    """A storage problem with a message fit for one line of CLI output."""


class DatabaseURLError(StorageError, ValueError):
    """The database URL cannot be used."""


def one_line(exc: BaseException) -> str:
    """The first meaningful line of an exception's message (drivers add multi-line detail)."""
    msg = str(getattr(exc, "orig", None) or exc).strip()
    for line in msg.splitlines():
        line = line.strip()
        if line and not line.startswith("(Background on this error"):
            return line
    return type(exc).__name__

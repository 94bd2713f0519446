"""What every command does with a user error: one line on stderr (``error: ...``, never
wrapped) and exit code 2; and the database check the commands with ``--db`` share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import typer


def fail(msg: str, code: int = 2) -> NoReturn:
    """One line on stderr and exit ``code``."""
    typer.echo(f"error: {' '.join(str(msg).split())}", err=True)
    raise typer.Exit(code)


def checked_database(url: str, opt: str = "--db", existing: bool = False) -> Any:
    """The :class:`~claire.storage.database.Database` of ``url``, answering (the caller disposes
    of it); one line and exit 2 for a malformed, unsupported or unreachable URL, and with
    ``existing`` for a SQLite file that is not there (a reader never creates one)."""
    from claire.storage.database import (  # start-up time: SQLAlchemy only for commands with a database
        Database,
        StorageError,
    )

    try:
        db = Database(url)
    except StorageError as exc:
        fail(f"{opt}: {exc}")
    name = db.url.database
    if existing and db.is_sqlite and name and name != ":memory:" and not Path(name).is_file():
        db.dispose()
        fail(f"{opt}: {name}: no such database file")
    try:
        db.check()
    except StorageError as exc:
        db.dispose()
        fail(f"{opt}: {exc}")
    return db

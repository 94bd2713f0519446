"""`claire db ...`: migrations, retention, backup and restore of the database that
``CLAIRE_DATABASE_URL`` names (default ``sqlite:///claire.db`` in the current directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from claire.cli.errors import fail as _fail

app = typer.Typer(
    help="Database: migrations, retention, backup, restore (URL from CLAIRE_DATABASE_URL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", "--db", help="Database URL (default: $CLAIRE_DATABASE_URL, else sqlite:///claire.db)."),
]




def _open(url: str | None):
    # start-up time: storage (sqlalchemy, alembic) only when a db command runs, not for claire --help
    from claire.storage.database import Database, StorageError, default_url

    try:
        db = Database(url or default_url())
        db.check()
    except StorageError as exc:
        _fail(str(exc))
    return db


def _guard(fn, *args, **kw):
    # start-up time: storage (sqlalchemy, alembic) only when a db command runs, not for claire --help
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from claire.storage.database import StorageError, one_line

    try:
        return fn(*args, **kw)
    except (StorageError, ValueError) as exc:
        _fail(str(exc))
    except (sqlite3.DatabaseError, OperationalError, OSError) as exc:
        _fail(one_line(exc))


SQLITE_MAGIC = b"SQLite format 3\x00"


def _label(rev: str | None) -> str:
    # start-up time: storage (sqlalchemy, alembic) only when a db command runs, not for claire --help
    from claire.storage import migrate

    if rev is None:
        return "none (empty database)"
    v = migrate.version_of(rev)
    return f"{rev} (schema {v})" + (" head" if rev == migrate.head() else "")


@app.command()
def upgrade(
    to: Annotated[
        str, typer.Option("--to", help="Target: head, a revision (v2_0) or a version (2.0).")
    ] = "head",
    url: UrlOpt = None,
) -> None:
    """Migrate the schema up (to the newest by default), keeping the data."""
    db = _open(url)
    try:
        before = _guard(db.current_revision)
        after = _guard(db.upgrade, to)
        typer.echo(f"{db.safe_url}: {_label(before)} -> {_label(after)}")
    finally:
        db.dispose()


@app.command()
def downgrade(
    to: Annotated[
        str, typer.Option("--to", help="Target: -1 (one step), a revision, a version or base.")
    ] = "-1",
    url: UrlOpt = None,
) -> None:
    """Migrate the schema down (one step by default). Tables of later versions are dropped."""
    db = _open(url)
    try:
        before = _guard(db.current_revision)
        if before is None:
            _fail("the database has no schema to downgrade")
        after = _guard(db.downgrade, to)
        typer.echo(f"{db.safe_url}: {_label(before)} -> {_label(after)}")
    finally:
        db.dispose()


@app.command()
def current(url: UrlOpt = None) -> None:
    """Show the schema revision of the database."""
    db = _open(url)
    try:
        typer.echo(_label(_guard(db.current_revision)))
    finally:
        db.dispose()


@app.command()
def history(url: UrlOpt = None) -> None:
    """List the migrations, oldest first, marking the one the database is at."""
    # start-up time: storage (sqlalchemy, alembic) only when a db command runs, not for claire --help
    from claire.storage import migrate
    from claire.storage.database import Database, StorageError, default_url

    cur = None
    try:
        db = Database(url or default_url())
        try:
            cur = db.current_revision()
        finally:
            db.dispose()
    except StorageError:
        pass  # the history is still useful without a reachable database
    for r in migrate.revisions():
        mark = "*" if r["revision"] == cur else " "
        typer.echo(f"{mark} {r['revision']}  {r['version']}  {r['description']}")


@app.command()
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's rows (default: every run).")] = None,
    now: Annotated[
        str | None,
        typer.Option("--now", help="The time ages are measured from, ISO 8601 (default: now, UTC); "
                     "a replay passes its own clock."),
    ] = None,
    signals_days: Annotated[int, typer.Option(help="Keep signals this many days.")] = 30,
    orders_days: Annotated[
        int, typer.Option(help="Keep orders this many days (those with trades always).")
    ] = 90,
    risk_events_days: Annotated[int, typer.Option(help="Keep risk events this many days.")] = 90,
    url: UrlOpt = None,
) -> None:
    """Delete rows past retention (S6): signals 30 days, orders and risk events 90 days; trades,
    their orders and snapshots are kept for good. Idempotent; prints the count per table."""
    # start-up time: storage (sqlalchemy, alembic) only when a db command runs, not for claire --help
    from datetime import UTC, datetime

    from claire.storage.retention import prune as do_prune

    at = None
    if now is not None:
        try:
            at = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            _fail(f"--now {now!r} is not an ISO 8601 time (e.g. 2026-12-06T00:00:00Z)")
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    db = _open(url)
    try:
        out = _guard(
            do_prune,
            db,
            now=at,
            run=run,
            signals_days=signals_days,
            orders_days=orders_days,
            risk_events_days=risk_events_days,
            dry_run=dry_run,
        )
        verb = "would delete" if dry_run else "deleted"
        for table, n in out.items():
            typer.echo(f"{table}: {verb} {n}")
    finally:
        db.dispose()


@app.command()
def backup(
    dir: Annotated[Path, typer.Option("--dir", help="Directory of the backups.")] = Path("backups"),
    keep_days: Annotated[float, typer.Option("--keep-days", help="Delete backups older than this.")] = 14,
    url: UrlOpt = None,
) -> None:
    """Back up the database into DIR/claire-YYYYmmdd-HHMMSS.{dump,sqlite}; prints its path last."""
    # start-up time: storage (sqlalchemy, alembic) only when a db command runs, not for claire --help
    from claire.storage import backup as bk

    db = _open(url)
    try:
        path = _guard(bk.backup, db, dir, keep_days)
        typer.echo(str(path))
    finally:
        db.dispose()


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A backup made by `claire db backup`.")],
    table: Annotated[str | None, typer.Option("--table", help="Restore only this table's data.")] = None,
    url: UrlOpt = None,
) -> None:
    """Restore the whole database (replacing it) or one table's data from a backup."""
    # start-up time: storage (sqlalchemy, alembic) only when a db command runs, not for claire --help
    from claire.storage import backup as bk

    db = _open(url)
    try:
        if db.is_sqlite and file.is_file():
            with file.open("rb") as fh:
                magic = fh.read(len(SQLITE_MAGIC))
            if magic != SQLITE_MAGIC:
                _fail(f"{file} is not an SQLite database: restoring {db.safe_url} needs a .sqlite backup "
                      "made by `claire db backup`")
        _guard(bk.restore, db, file, table)
        typer.echo(f"restored {'table ' + table if table else 'database'} of {db.safe_url} from {file}")
    finally:
        db.dispose()

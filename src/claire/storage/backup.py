"""Backup and restore (S8): whole database or one table, PostgreSQL and SQLite.

PostgreSQL: ``pg_dump -Fc`` into ``claire-YYYYmmdd-HHMMSS.dump``; restore with
``pg_restore --clean --if-exists`` in one transaction. One table: its data is read from the
dump (``pg_restore --data-only -t NAME``) into a temporary table, then the table is made equal
to it (rows missing from the backup deleted, the others inserted or updated) in one transaction,
so rows of other tables that refer to it stay valid.
SQLite: the online backup API into ``claire-YYYYmmdd-HHMMSS.sqlite``; one table the same way
as above through an attached copy.

The client tools come from PATH when their major version matches the server's, else from
/usr/lib/postgresql/<server major>/bin; passwords go through PGPASSWORD, never argv.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from claire.storage.database import Database, StorageError
from claire.storage.models import metadata

NAME_RE = re.compile(r"^claire-(\d{8})-(\d{6})(?:-\d+)?\.(dump|sqlite)$")
PG_LIB = Path("/usr/lib/postgresql")


# --- files ------------------------------------------------------------------------------


def _backup_path(directory: Path, ext: str, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    path = directory / f"claire-{stamp}.{ext}"
    n = 1
    while path.exists():
        path = directory / f"claire-{stamp}-{n}.{ext}"
        n += 1
    return path


def prune_backups(directory: Path, keep_days: float, now: datetime | None = None) -> list[Path]:
    """Delete backups (by the time in their name) older than ``keep_days``; returns them. Only
    the project's own files (``claire-YYYYmmdd-HHMMSS[-n].dump|sqlite``) are ever touched."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=keep_days)
    gone = []
    for p in sorted(Path(directory).glob("claire-*")):
        m = NAME_RE.match(p.name)
        if not m:
            continue
        made = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        if made < cutoff:
            p.unlink()
            gone.append(p)
    return gone


# --- PostgreSQL tools -------------------------------------------------------------------


def _major(version_text: str) -> int:
    m = re.search(r"(\d+)(?:\.\d+)?", version_text)
    if not m:
        raise StorageError(f"cannot read a version from {version_text!r}")
    return int(m.group(1))


def server_major(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def pg_tool(name: str, major: int) -> str:
    """The pg_dump/pg_restore whose major version matches the server's."""
    candidates = []
    found = shutil.which(name)
    if found:
        candidates.append(found)
    candidates.append(str(PG_LIB / str(major) / "bin" / name))
    newer = None
    for c in candidates:
        if not os.path.exists(c):
            continue
        out = subprocess.run([c, "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603 - a PostgreSQL client binary found on PATH or in the PostgreSQL lib dir, fixed argv, no shell
        m = re.search(r"\)\s*(\d+)", out)
        v = int(m.group(1)) if m else _major(out)
        if v == major:
            return c
        if v > major and newer is None:
            newer = c
    if newer and name == "pg_dump":
        return newer  # a newer pg_dump reads an older server
    raise StorageError(f"no {name} of PostgreSQL {major} found (looked in PATH and {PG_LIB}/{major}/bin)")


def _libpq(db: Database) -> tuple[list[str], dict[str, str]]:
    u = db.url
    args = []
    if u.host:
        args += ["-h", u.host]
    if u.port:
        args += ["-p", str(u.port)]
    if u.username:
        args += ["-U", u.username]
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return args, env


def _run(cmd: list[str], env: dict[str, str]) -> str:
    res = subprocess.run(cmd, capture_output=True, env=env, check=False)  # noqa: S603 - pg_dump/pg_restore/psql with argv we build (no shell), the password by environment
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise StorageError(f"{Path(cmd[0]).name} failed: {err[-1] if err else 'exit ' + str(res.returncode)}")
    return res.stdout.decode(errors="replace")


# --- backup -----------------------------------------------------------------------------


def backup(
    db: Database, directory: str | Path = "backups", keep_days: float | None = 14, now: datetime | None = None
) -> Path:
    """Write a dated backup into ``directory``, delete those older than ``keep_days`` (None: keep
    all); returns the new file."""
    now = now or datetime.now(UTC)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if db.is_postgres:
        path = _backup_path(directory, "dump", now)
        args, env = _libpq(db)
        tool = pg_tool("pg_dump", server_major(db))
        _run([tool, "-Fc", "--no-owner", "-f", str(path), *args, "-d", str(db.url.database)], env)
    else:
        path = _backup_path(directory, "sqlite", now)
        src = sqlite3.connect(_sqlite_file(db))
        dst = sqlite3.connect(path)
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
            src.close()
    if keep_days is not None:
        prune_backups(directory, keep_days, now)
    return path


def _sqlite_file(db: Database) -> str:
    name = db.url.database
    if not name or name == ":memory:":
        raise StorageError("an in-memory SQLite database cannot be backed up or restored")
    return name


# --- restore ----------------------------------------------------------------------------


def restore(db: Database, file: str | Path, table: str | None = None) -> None:
    """Restore the whole database from ``file``, or only the data of ``table``."""
    file = Path(file)
    if not file.is_file():
        raise StorageError(f"backup file {file} not found")
    if table is not None and table not in metadata.tables:
        raise StorageError(f"unknown table {table!r}; tables: {', '.join(sorted(metadata.tables))}")
    if db.is_postgres:
        if table is None:
            _pg_restore_all(db, file)
        else:
            _pg_restore_table(db, file, table)
    else:
        if table is None:
            _sqlite_restore_all(db, file)
        else:
            _sqlite_restore_table(db, file, table)


def _pg_restore_all(db: Database, file: Path) -> None:
    db.dispose()  # no pooled connection of ours holds locks on what is dropped
    args, env = _libpq(db)
    tool = pg_tool("pg_restore", server_major(db))
    db.dispose()
    _run(
        [
            tool,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            *args,
            "-d",
            str(db.url.database),
            str(file),
        ],
        env,
    )


_COPY_RE = re.compile(r"^COPY (\S+) \((.*?)\) FROM stdin;\n(.*?)^\\\.$", re.M | re.S)


def _sync_sql(table: str, source: str) -> tuple[str, str]:
    """DELETE rows missing from ``source`` and upsert the rest, keyed by the primary key."""
    t = metadata.tables[table]
    pk = [c.name for c in t.primary_key.columns]
    cols = [c.name for c in t.columns]
    match = " AND ".join(f"s.{k} = {table}.{k}" for k in pk)
    delete_sql = f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM {source} s WHERE {match})"  # noqa: S608 - table and column names come from our own schema, values are bound parameters
    names = ", ".join(cols)
    rest = [c for c in cols if c not in pk]
    if rest:
        conflict = f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in rest)}"
    else:
        conflict = "DO NOTHING"
    insert_sql = f"INSERT INTO {table} ({names}) SELECT {names} FROM {source} WHERE true ON CONFLICT ({', '.join(pk)}) {conflict}"  # noqa: S608 - table and column names come from our own schema, values are bound parameters
    return delete_sql, insert_sql


def _pg_restore_table(db: Database, file: Path, table: str) -> None:
    _args, env = _libpq(db)
    tool = pg_tool("pg_restore", server_major(db))
    script = _run([tool, "--data-only", "-t", table, "-f", "-", str(file)], env)
    m = _COPY_RE.search(script)
    if m is None:
        raise StorageError(f"backup {file.name} holds no data of table {table!r}")
    columns, data = m.group(2), m.group(3)
    delete_sql, insert_sql = _sync_sql(table, "_claire_restore")
    with db.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE _claire_restore (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur, cur.copy(f"COPY _claire_restore ({columns}) FROM STDIN") as cp:
            cp.write(data.encode())
        conn.exec_driver_sql(delete_sql)
        conn.exec_driver_sql(insert_sql)
        for col in metadata.tables[table].primary_key.columns:
            seq = conn.exec_driver_sql(f"SELECT pg_get_serial_sequence('{table}', '{col.name}')").scalar()
            if seq:
                conn.exec_driver_sql(
                    f"SELECT setval('{seq}', GREATEST((SELECT max({col.name}) FROM {table}), 1))"  # noqa: S608 - table, column and sequence names come from our own schema
                )


def _sqlite_restore_all(db: Database, file: Path) -> None:
    db.dispose()
    src = sqlite3.connect(file)
    dst = sqlite3.connect(_sqlite_file(db))
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()
    db.dispose()


def _sqlite_restore_table(db: Database, file: Path, table: str) -> None:
    delete_sql, insert_sql = _sync_sql(table, "_claire_restore." + table)
    # an attached database cannot be ATTACHed inside a transaction: attach first
    with db.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.execute("ATTACH DATABASE ? AS _claire_restore", (str(file),))
        try:
            raw.execute("BEGIN IMMEDIATE")
            try:
                raw.execute(delete_sql)
                raw.execute(insert_sql)
                raw.execute("COMMIT")
            except BaseException:
                raw.execute("ROLLBACK")
                raise
        finally:
            raw.execute("DETACH DATABASE _claire_restore")

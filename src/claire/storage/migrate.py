"""Schema migrations (Alembic), run from the installed package without an alembic.ini.

Revisions mirror the seeds' phases: ``v1_0`` (1.0.0 core) -> ``v2_0`` (2.0.0 risk events and
execution analysis) -> ``v3_0`` (3.0.0 analytics) -> ``v4_0`` (4.0.0 operations). ``--to`` accepts a revision id, a schema
version (``2.0``, ``2.0.0``, ``v2``), ``head``, ``base`` or a relative step (``-1``, ``+1``).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from claire.storage.errors import StorageError, one_line

if TYPE_CHECKING:
    from claire.storage.database import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@functools.cache
def head() -> str:
    h = script().get_current_head()
    if h is None:
        raise StorageError(f"no migration revisions in {MIGRATIONS_DIR}: the package is incomplete")
    return h


@functools.cache
def _revisions() -> tuple[dict[str, str | None], ...]:
    return tuple(revisions_uncached())


def revisions() -> list[dict[str, str | None]]:
    """Oldest first: revision id, parent, schema version, description."""
    return [dict(r) for r in _revisions()]


def revisions_uncached() -> list[dict[str, str | None]]:
    """Oldest first: revision id, parent, schema version, description."""
    out = []
    for rev in script().walk_revisions():
        mod = rev.module
        out.append(
            {
                "revision": rev.revision,
                "down_revision": rev.down_revision if isinstance(rev.down_revision, str) else None,
                "version": getattr(mod, "VERSION", None),
                "description": getattr(mod, "DESCRIPTION", rev.doc),
            }
        )
    return list(reversed(out))


def resolve_revision(text: str) -> str:
    """Map user input to an Alembic revision target."""
    t = text.strip()
    low = t.lower()
    if low in ("head", "heads", "base") or re.fullmatch(r"[+-]\d+", t):
        return low
    known = {r["revision"]: r for r in revisions()}
    if t in known:
        return t
    m = re.fullmatch(r"v?(\d+)(?:[._](\d+))?(?:[._](\d+))?", low)
    if m:
        major, minor = m.group(1), m.group(2) or "0"
        cand = f"v{int(major)}_{int(minor)}"
        if cand in known:
            return cand
    choices = ", ".join(f"{r['revision']} ({r['version']})" for r in known.values())
    raise ValueError(f"unknown schema revision {text!r}; known: {choices}, head, base, -1, +1")


def _run(db: Database, fn, *args: Any) -> None:

    try:
        with db.begin() as conn:
            fn(alembic_config(conn), *args)
    except SQLAlchemyError as exc:
        raise StorageError(f"migration failed on {db.safe_url}: {one_line(exc)}") from exc


def upgrade(db: Database, to: str = "head") -> str | None:
    _run(db, command.upgrade, resolve_revision(to))
    return current(db)


def downgrade(db: Database, to: str = "-1") -> str | None:
    _run(db, command.downgrade, resolve_revision(to))
    return current(db)


def current(db: Database) -> str | None:

    try:
        with db.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the schema revision of {db.safe_url}: {one_line(exc)}") from exc


def version_of(revision: str | None) -> str | None:
    for r in revisions():
        if r["revision"] == revision:
            return r["version"]
    return None

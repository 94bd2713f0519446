"""PostgreSQL (or embedded SQLite) system of record: schema, migrations, writer, backup."""

from claire.storage.database import Database, DatabaseURLError, StorageError, default_url
from claire.storage.queries import load_checkpoint, prune
from claire.storage.writer import EventWriter

__all__ = [
    "Database",
    "DatabaseURLError",
    "EventWriter",
    "StorageError",
    "default_url",
    "load_checkpoint",
    "prune",
]

"""Shared fixtures. Tests use the real PostgreSQL and Redis of this machine (never mocks).

Each test session makes its own PostgreSQL database and its own Redis key prefix and removes
them at the end. A missing server is a failure, not a skip: set CLAIRE_TEST_PG_URL /
CLAIRE_TEST_REDIS_URL to point elsewhere.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

PG_ADMIN_URL = os.environ.get("CLAIRE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CLAIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def run_token() -> str:
    """Unique per test session (and per xdist worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{worker}_{uuid.uuid4().hex[:8]}"


def _pg_admin():
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # a missing server fails the test, never skips
        pytest.fail(f"PostgreSQL is required for this test and is not reachable at {PG_ADMIN_URL}: {exc}")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """libpq URL of the admin database (checked reachable)."""
    _pg_admin().close()
    return PG_ADMIN_URL


@pytest.fixture()
def pg_database(run_token: str):
    """A fresh, empty PostgreSQL database for one test; yields a SQLAlchemy URL."""
    name = f"claire_test_{run_token}_{uuid.uuid4().hex[:6]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is required for this test and is not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture()
def redis_prefix(redis_url: str, run_token: str):
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis

    prefix = f"claire-test:{run_token}:{uuid.uuid4().hex[:6]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()

"""Secrets never reach a file: `claire up` with a password in every URL leaves no password in
anything it writes, and what it writes under its state directory is the user's alone."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import quote

import pytest

from claire.config import RunConfig, RuntimeSettings, from_spec, to_spec
from claire.runtime.distributed import supervisor
from claire.runtime.distributed.app import resolve_secrets, split_secrets
from tests.distributed._dist import db_result, make_cfg, make_spec, wait_final, write_bars
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("distributed")]

REDIS_PASSWORD = "redis-Pw/with:odd@chars"
DB_PASSWORD = "db-S3cret-Pw"  # the test server trusts local connections: the password is carried, not checked


def test_split_and_resolve_secrets_round_trip():
    cfg = RunConfig(runtime=RuntimeSettings(
        database_url=f"postgresql+psycopg://claire:{DB_PASSWORD}@db:5432/claire?sslmode=disable",
        bus_url=f"redis://:{quote(REDIS_PASSWORD, safe='')}@redis:6379/0", prefix="p:"))
    spec = to_spec(cfg)
    public, env = split_secrets(spec)
    text = json.dumps(public)
    assert DB_PASSWORD not in text and quote(REDIS_PASSWORD, safe="") not in text
    assert public["runtime"]["database_url"] == "postgresql+psycopg://claire@db:5432/claire?sslmode=disable"
    assert public["runtime"]["database_url_password_env"] == "CLAIRE_SPEC_DATABASE_PASSWORD"
    assert from_spec(public).runtime.database_url_password_env == "CLAIRE_SPEC_DATABASE_PASSWORD"  # still the tree
    assert resolve_secrets(public, env) == spec
    # a URL without a password stays as it is and needs nothing from the environment
    plain = to_spec(RunConfig(runtime=RuntimeSettings(database_url="sqlite:///x.db", bus_url="redis://127.0.0.1:6379/0")))
    assert split_secrets(plain) == (plain, {})
    with pytest.raises(ValueError, match="CLAIRE_SPEC_DATABASE_PASSWORD"):
        resolve_secrets(public, {})


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_up_writes_no_password_and_private_files(tmp_path, pg_database, cleanup):
    with RedisServer(tmp_path / "redis", password=REDIS_PASSWORD) as redis_srv:
        data = write_bars(tmp_path / "data", ["BTC"], 400)
        out = tmp_path / "out"
        db_url = pg_database.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
        assert DB_PASSWORD in db_url
        cfg = make_cfg(data, out=out)
        spec = make_spec(cfg, bus_url=redis_srv.url(), prefix="secrets:", db_url=db_url)
        state = cleanup.services(tmp_path / "state")
        supervisor.up(spec, state)
        wait_final(spec, state)
        assert db_result(pg_database)["counts"]["portfolio_snapshots"] > 0  # the services reached both servers
        supervisor.down(state)

        written = _files(state)
        assert any(p.name == "spec.json" for p in written) and any(p.suffix == ".log" for p in written)
        secrets = (DB_PASSWORD, REDIS_PASSWORD, quote(REDIS_PASSWORD, safe=""))
        for path in written + _files(tmp_path / "data"):
            body = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in body, f"{path} holds a password"
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        for path in written:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

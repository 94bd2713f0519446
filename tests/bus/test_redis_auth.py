"""Authentication against private redis-server instances: requirepass, and an ACL user."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import NoPermissionError

from claire.bus import BusAuthenticationError, BusUnavailableError, RedisStreamsBus, make_bus
from tests.support.redis_server import AclUser, RedisServer

PASSWORD = "pw-S3cret/with:odd@chars"
ACL_USER = AclUser("claire", "acl-S3cret-pw")
LIMITED = AclUser(
    "limited",
    "limited-pw",
    # what the bus needs: stream commands, the scripts for trim/dead-letter, and PING
    "~app:* resetchannels -@all +@stream +evalsha +eval +script|load +script|exists +ping",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_PASSWORD", "REDIS_USERNAME", "CLAIRE_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis-pw"), password=PASSWORD) as srv:
        yield srv


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(
        tmp_path_factory.mktemp("redis-acl"), acl_users=[ACL_USER, LIMITED], disable_default_user=True
    ) as srv:
        yield srv


def roundtrip(bus: RedisStreamsBus, stream: str = "app:s") -> None:
    bus.ensure_group(stream, "g")
    mid = bus.publish(stream, b"hello", {"k": "v"})
    [msg] = bus.read("g", "c", [stream])
    assert (msg.id, msg.payload, msg.headers) == (mid, b"hello", {"k": "v"})
    assert bus.ack(stream, "g", [mid]) == 1
    assert bus.trim(stream) == 0
    assert bus.pending_count(stream, "g") == 0


def assert_rejected(bus: RedisStreamsBus) -> None:
    t0 = time.monotonic()
    with pytest.raises(BusAuthenticationError):
        bus.publish("app:s", b"x")
    assert time.monotonic() - t0 < 2.0  # not retried for the whole reconnect budget
    bus.close()


# -- requirepass -----------------------------------------------------------------------------


def test_password_server_rejects_missing_or_wrong_password(pw_server: RedisServer) -> None:
    assert_rejected(RedisStreamsBus(pw_server.bare_url(), reconnect_timeout_s=10))
    assert_rejected(RedisStreamsBus(pw_server.url(password="wrong"), reconnect_timeout_s=10))


def test_password_from_url_argument_or_env(pw_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with RedisStreamsBus(pw_server.url()) as bus:  # in the URL (percent-encoded)
        roundtrip(bus, "app:url")
    with RedisStreamsBus(pw_server.bare_url(), password=PASSWORD) as bus:  # explicit argument
        roundtrip(bus, "app:arg")
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    with RedisStreamsBus(pw_server.bare_url()) as bus:  # environment
        roundtrip(bus, "app:env")
    monkeypatch.setenv("CLAIRE_REDIS_URL", pw_server.bare_url())
    bus = make_bus(None, "p:")  # URL and password both from the environment
    try:
        assert isinstance(bus, RedisStreamsBus)
        roundtrip(bus, "app:make")
    finally:
        bus.close()


def test_password_never_shown(pw_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bus = RedisStreamsBus(pw_server.url(), reconnect_timeout_s=0.3)
    assert PASSWORD not in repr(bus) and "***" in repr(bus)
    assert PASSWORD not in bus.url
    roundtrip(bus, "app:hidden")
    bus.close()
    # a server that is down: reconnect attempts are logged, the password is not
    dead = RedisStreamsBus(pw_server.url().replace(str(pw_server.port), "1"), reconnect_timeout_s=0.3)
    with pytest.raises(BusUnavailableError) as err:
        dead.publish("app:s", b"x")
    dead.close()
    assert PASSWORD not in str(err.value)
    assert any("retry" in r.getMessage() for r in caplog.records)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text


# -- ACL users -------------------------------------------------------------------------------


def test_acl_server_rejects_missing_or_wrong_credentials(acl_server: RedisServer) -> None:
    assert_rejected(RedisStreamsBus(acl_server.bare_url(), reconnect_timeout_s=10))
    assert_rejected(RedisStreamsBus(acl_server.url(password=ACL_USER.password), reconnect_timeout_s=10))
    assert_rejected(RedisStreamsBus(acl_server.url(ACL_USER.name, "wrong"), reconnect_timeout_s=10))


def test_acl_user_from_url_or_env(acl_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with RedisStreamsBus(acl_server.url(ACL_USER.name, ACL_USER.password)) as bus:
        roundtrip(bus, "app:url")
        assert bus.client.acl_whoami() in ("claire", b"claire")
        assert ACL_USER.password not in repr(bus) and "claire:***@" in repr(bus)
    monkeypatch.setenv("REDIS_USERNAME", ACL_USER.name)
    monkeypatch.setenv("REDIS_PASSWORD", ACL_USER.password)
    with RedisStreamsBus(acl_server.bare_url()) as bus:
        roundtrip(bus, "app:env")
        assert bus.client.acl_whoami() in ("claire", b"claire")


def test_acl_user_with_only_the_permissions_the_bus_needs(acl_server: RedisServer) -> None:
    with RedisStreamsBus(acl_server.url(LIMITED.name, LIMITED.password)) as bus:
        roundtrip(bus, "app:limited")
        ids = bus.publish_many("app:limited", [b"a", b"b"])
        [a, b] = bus.read("g", "c", ["app:limited"])
        assert [a.id, b.id] == ids
        assert [m.deliveries for m in bus.claim_stale("app:limited", "g", "c2", 0)] == [2, 2]
        assert bus.dead_letter("app:limited", "g", a, "bad") is not None
        assert bus.length("app:limited.dlq") == 1
        with pytest.raises(NoPermissionError):
            bus.publish("other:s", b"outside the allowed key pattern")


def test_server_helper_restarts_on_same_port_and_dir(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="x", appendonly=True) as srv:
        port = srv.port
        with RedisStreamsBus(srv.url()) as bus:
            bus.publish("s", b"persisted")
        srv.restart()  # graceful
        assert srv.port == port and srv.running
        srv.restart(hard=True)  # kill -9
        with RedisStreamsBus(srv.url()) as bus:
            assert bus.length("s") == 1
        srv.stop()
        assert not srv.running

"""Redis Streams implementation of the bus contract (see :mod:`claire.bus.base`).

* One Redis stream per logical stream, key ``<prefix><stream>``; a message is stored as the fields
  ``payload`` (raw bytes) and ``h:<name>`` per header.
* redis-py with the hiredis parser (used automatically when ``hiredis`` is installed).
* Connection settings come from the URL (``redis://`` or ``rediss://`` for TLS), else from
  ``CLAIRE_REDIS_URL``. Credentials: explicit ``username``/``password`` arguments, else those in
  the URL, else ``REDIS_USERNAME``/``REDIS_PASSWORD`` from the environment. The password is never
  logged; ``repr`` and log lines show the URL with the password replaced by ``***``.
* Every command is retried on ``ConnectionError``/``TimeoutError`` (including ``LOADING`` while a
  restarted server replays its AOF) with exponential backoff capped at ``backoff_cap_s``, for at
  most ``reconnect_timeout_s`` in total, after which :class:`BusUnavailableError` is raised.
  Authentication errors are not retried: they raise :class:`BusAuthenticationError`.

Consequences of retrying, all covered by at-least-once delivery and idempotent consumers:

* A publish is retried until the server answers (or the reconnect budget is spent, which raises
  :class:`BusUnavailableError`: the caller then knows it may not have been published), so a
  publish that returned an id is never lost
  (provided the server persists it: with AOF ``appendfsync always`` a crash loses nothing that was
  acknowledged; with ``everysec`` up to one second of writes can be lost on a crash). If the
  connection broke after the server had appended the message but before the reply arrived, the
  retry appends it a second time: a retried publish can *duplicate* a message (a retried
  ``publish_many`` chunk can duplicate part of that chunk). Consumers tolerate this because they
  are idempotent by event id.
* A read whose reply was lost leaves its messages pending for this consumer; ``claim_stale`` (by
  any consumer of the group, this one included) recovers them once idle. A claim whose reply was
  lost likewise, at the cost of one extra delivery count.
* ``ack`` and ``dead_letter`` are idempotent, so retrying them is harmless.

The hot path (``read``, ``ack``, ``commit``) sends its commands on a connection of its own per
thread, taken once from the client's pool, instead of through ``Redis.execute_command``: the
client's per-command bookkeeping (pool checkout and release, retry wrapper, observability hooks)
costs ~35 µs of CPU per command, three times the round trip itself, and a service runs two such
commands per batch. Replies are parsed here (they are raw RESP). Errors are handled exactly as for
every other command (``_call``): a broken connection is dropped and reconnected on the retry.

Trimming and dead-lettering run small Lua scripts (atomic, no payload transfer). Minimal ACL for
a service user (tested): ``~<prefix>* resetchannels -@all +@stream +evalsha +eval +script|load
+script|exists +ping``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.retry import Retry

from claire.bus.base import (
    REASON_MAX_DELIVERIES,
    Bus,
    BusAuthenticationError,
    BusClosedError,
    BusUnavailableError,
    Message,
    NoGroupError,
    dead_letter_headers,
    format_id,
    next_id,
    parse_id,
)

log = logging.getLogger("claire.bus.redis")

T = TypeVar("T")

ENV_URL = "CLAIRE_REDIS_URL"
ENV_USERNAME = "REDIS_USERNAME"
ENV_PASSWORD = "REDIS_PASSWORD"  # noqa: S105 - the name of the environment variable, not a password

F_PAYLOAD = b"payload"
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
H_PREFIX = b"h:"

# KEYS[1] stream; ARGV[1] safe bound ("" when the stream has no group), ARGV[2] max_len (-1: none),
# ARGV[3] most entries to remove in one call (keeps the script short; the caller loops).
# Removes the oldest entries so that at most max_len remain, but never an entry >= bound.
_TRIM_LUA = """
local key = KEYS[1]
local bound = ARGV[1]
local maxlen = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local len = redis.call('XLEN', key)
local excess
if maxlen < 0 then
  if bound == '' then return 0 end
  excess = len
else
  excess = len - maxlen
end
if excess <= 0 then return 0 end
if excess > limit then excess = limit end
local upper = '+'
if bound ~= '' then upper = '(' .. bound end
local below = redis.call('XRANGE', key, '-', upper, 'COUNT', excess)
local n = #below
if n == 0 then return 0 end
if n < excess then
  -- every entry below the bound goes; they are exactly the ones below it
  return redis.call('XTRIM', key, 'MINID', bound)
end
local after = redis.call('XRANGE', key, '(' .. below[n][1], '+', 'COUNT', 1)
if #after == 0 then
  return redis.call('XTRIM', key, 'MAXLEN', 0)
end
return redis.call('XTRIM', key, 'MINID', after[1][1])
"""

# KEYS[1] source stream, KEYS[2] dead-letter stream; ARGV[1] group, ARGV[2] id, ARGV[3..] fields.
# Writes the dead letter only if the message was still pending, so a retry cannot duplicate it.
_DEAD_LETTER_LUA = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
"""


# One processing step of a service, atomically: skip if already committed (a retry), else publish
# the outputs, ack the inputs and store the checkpoint. KEYS[1]: checkpoint hash.
# ARGV: number, state, n_publish, (stream, payload)*, n_acks, (stream, group, n_ids, ids...)*
_COMMIT_LUA = """
local cur = redis.call('HGET', KEYS[1], 'n')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
local i = 3
local np = tonumber(ARGV[i]); i = i + 1
for _ = 1, np do
  redis.call('XADD', ARGV[i], '*', 'payload', ARGV[i + 1]); i = i + 2
end
local na = tonumber(ARGV[i]); i = i + 1
for _ = 1, na do
  local stream, group, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]); i = i + 3
  redis.call('XACK', stream, group, unpack(ARGV, i, i + n - 1)); i = i + n
end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'state', ARGV[2])
return 1
"""


def _no_script(exc: ResponseError) -> bool:
    """A restarted server has forgotten the script (redis-py maps NOSCRIPT to NoScriptError)."""
    return isinstance(exc, NoScriptError) or str(exc).startswith("NOSCRIPT")


def _has_entries(reply: Any) -> bool:
    """A raw XREADGROUP reply (RESP2 list or RESP3 map) holds at least one entry."""
    return any(entries for _, entries in (reply.items() if isinstance(reply, dict) else reply or []))


def _resolve_url(url: str | None) -> str:
    url = url or os.environ.get(ENV_URL)
    if not url:
        raise ValueError(f"no Redis URL given and {ENV_URL} is not set")
    return url


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Return the URL without user info, and the username and password it carried."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} (expected redis:// or rediss://)")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), username, password


def redact_url(url: str, username: str | None = None, password: str | None = None) -> str:
    """The URL with its password (if any) replaced by ``***``; safe to log."""
    clean, url_user, url_pw = _split_credentials(url)
    user = username or url_user
    has_pw = bool(password or url_pw)
    if not user and not has_pw:
        return clean
    parts = urlsplit(clean)
    userinfo = (quote(user, safe="") if user else "") + (":***" if has_pw else "")
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))


class RedisStreamsBus(Bus):
    """The bus over Redis Streams."""

    def __init__(
        self,
        url: str | None = None,
        prefix: str = "",
        *,
        username: str | None = None,
        password: str | None = None,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        reconnect_timeout_s: float = 60.0,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 2.0,
        pipeline_chunk: int = 1_000,
        trim_chunk: int = 10_000,
        client_name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(prefix, **options)
        raw_url = _resolve_url(url)
        clean_url, url_user, url_pw = _split_credentials(raw_url)
        username = username or url_user or os.environ.get(ENV_USERNAME) or None
        password = password or url_pw or os.environ.get(ENV_PASSWORD) or None
        self.url = redact_url(clean_url, username, password)  # for display only
        self.reconnect_timeout_s = reconnect_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.pipeline_chunk = pipeline_chunk
        self.trim_chunk = trim_chunk
        # Blocking reads are split so one XREADGROUP never outlives the socket timeout.
        self._block_chunk_ms = max(100, int((socket_timeout - 1.0) * 1000)) if socket_timeout else None
        self._closed = False
        self._stop = threading.Event()
        self._r = redis.Redis.from_url(
            clean_url,
            username=username,
            password=password,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),  # retries are ours (backoff, budget, logging)
            retry_on_error=[],
            client_name=client_name,
            decode_responses=False,
        )
        self._trim_script = self._r.register_script(_TRIM_LUA)
        self._dlq_script = self._r.register_script(_DEAD_LETTER_LUA)
        self._commit_script = self._r.register_script(_COMMIT_LUA)
        self._local = threading.local()  # the hot path's connection of each thread
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        log.debug("redis bus %s prefix=%r", self.url, prefix)

    def __repr__(self) -> str:
        return f"RedisStreamsBus({self.url!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (for diagnostics and tests)."""
        return self._r

    # -- internals ----------------------------------------------------------------------------

    def _key(self, stream: str) -> str:
        return self.prefix + stream

    def _conn(self) -> Any:
        """This thread's own connection for the hot path (taken from the client's pool once)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._r.connection_pool.make_connection()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _raw(self, *args: Any) -> Any:
        """One command on this thread's own connection; the raw (RESP) reply. Errors propagate
        (``_call`` retries); a connection that failed mid-command is dropped (reconnects on use)."""
        conn = self._conn()
        try:
            conn.send_command(*args)
            return conn.read_response()
        except ResponseError:
            raise  # a command error: the connection is fine
        except BaseException:
            conn.disconnect()
            raise

    def _raw_many(self, cmds: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one packet on this thread's connection; the replies in order, a
        command error as its ``ResponseError`` object (the other replies are still read)."""
        conn = self._conn()
        try:
            conn.send_packed_command(conn.pack_commands(cmds))
            out: list[Any] = []
            for _ in cmds:
                try:
                    out.append(conn.read_response())
                except ResponseError as exc:
                    out.append(exc)
            return out
        except BaseException:
            conn.disconnect()
            raise

    def _evalsha(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return self._raw("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not _no_script(exc):
                raise
            self._raw("SCRIPT", "LOAD", script.script)  # a restarted server forgot it
            return self._raw("EVALSHA", script.sha, len(keys), *keys, *args)

    def _messages(self, resp: Any, names: Mapping[str, str]) -> list[Message]:
        """Messages of a raw XREADGROUP reply (RESP2 list or RESP3 map)."""
        out: list[Message] = []
        if not resp:
            return out
        items = resp.items() if isinstance(resp, dict) else resp
        for key, entries in items:
            stream = names[key.decode() if isinstance(key, bytes) else key]
            for mid, fields in entries:
                if fields is not None and len(fields) == 2 and fields[0] == F_PAYLOAD:  # the common case
                    out.append(Message(stream, mid.decode(), fields[1], 1, _NO_HEADERS))
                else:
                    flat = fields or []
                    out.append(self._to_message(stream, mid, dict(zip(flat[::2], flat[1::2], strict=True)), 1))
        return out

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``, reconnecting with capped exponential backoff on connection/timeout errors."""
        delay = self.backoff_base_s
        deadline = time.monotonic() + self.reconnect_timeout_s
        attempt = 0
        while True:
            if self._closed:
                raise BusClosedError("bus is closed")
            try:
                return fn()
            except AuthenticationError as exc:
                raise BusAuthenticationError(f"Redis at {self.url} rejected the credentials: {exc}") from exc
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                attempt += 1
                if time.monotonic() + delay > deadline:
                    raise BusUnavailableError(
                        f"Redis at {self.url} unavailable for {self.reconnect_timeout_s:.0f}s during {what}: {exc}"
                    ) from exc
                log.warning(
                    "redis %s failed (%s: %s); retry %d in %.2fs",
                    what,
                    type(exc).__name__,
                    exc,
                    attempt,
                    delay,
                )
                if self._stop.wait(delay):
                    raise BusClosedError("bus is closed") from exc
                delay = min(delay * 2, self.backoff_cap_s)
            except ResponseError as exc:
                if str(exc).startswith("NOGROUP"):
                    raise NoGroupError(str(exc)) from exc
                raise

    @staticmethod
    def _fields(payload: bytes, headers: Mapping[str, str] | None) -> dict[bytes, bytes]:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        fields: dict[bytes, bytes] = {F_PAYLOAD: bytes(payload)}
        if headers:
            for k, v in headers.items():
                fields[H_PREFIX + k.encode()] = str(v).encode()
        return fields

    @staticmethod
    def _to_message(stream: str, mid: bytes, fields: dict[bytes, bytes] | None, deliveries: int) -> Message:
        fields = fields or {}
        if len(fields) == 1:  # the common case: a payload and no headers
            return Message(stream, mid.decode(), fields.get(F_PAYLOAD, b""), deliveries, _NO_HEADERS)
        headers = {
            k[len(H_PREFIX) :].decode(): v.decode() for k, v in fields.items() if k.startswith(H_PREFIX)
        }
        return Message(stream, mid.decode(), fields.get(F_PAYLOAD, b""), deliveries, headers)

    def _maybe_trim(self, stream: str, n: int) -> None:
        if self._count_published(stream, n):
            self.trim(stream)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, stream: str, payload: bytes, headers: Mapping[str, str] | None = None) -> str:
        key, fields = self._key(stream), self._fields(payload, headers)
        mid = self._call("publish", lambda: self._r.xadd(key, fields))
        self._maybe_trim(stream, 1)
        return mid.decode()

    def publish_many(
        self, stream: str, payloads: Iterable[bytes], headers: Mapping[str, str] | None = None
    ) -> list[str]:
        key = self._key(stream)
        all_fields = [self._fields(p, headers) for p in payloads]
        ids: list[str] = []
        for i in range(0, len(all_fields), self.pipeline_chunk):
            chunk = all_fields[i : i + self.pipeline_chunk]

            def send(chunk: list[dict[bytes, bytes]] = chunk) -> list[bytes]:
                with self._r.pipeline(transaction=False) as pipe:
                    for fields in chunk:
                        pipe.xadd(key, fields)
                    return pipe.execute()

            ids.extend(mid.decode() for mid in self._call("publish_many", send))
        self._maybe_trim(stream, len(ids))
        return ids

    # -- groups and reading ---------------------------------------------------------------------

    def ensure_group(self, stream: str, group: str, start: str = "0") -> bool:
        key = self._key(stream)

        def create() -> bool:
            try:
                self._r.xgroup_create(key, group, id=start, mkstream=True)
                return True
            except ResponseError as exc:
                if str(exc).startswith("BUSYGROUP"):
                    return False
                raise

        return self._call("ensure_group", create)

    def read(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[Message]:
        if isinstance(streams, str):
            streams = [streams]
        if count < 1:
            raise ValueError("count must be >= 1")
        names = {self._key(s): s for s in streams}
        deadline = time.monotonic() + (block_ms or 0) / 1000.0
        while True:
            block = None
            if block_ms:
                remaining = max(1, int((deadline - time.monotonic()) * 1000))
                block = min(remaining, self._block_chunk_ms) if self._block_chunk_ms else remaining

            attempts = [0]
            cmd = self._read_cmd(group, consumer, list(names), count, block)

            def xread(cmd: list[Any] = cmd, attempts: list[int] = attempts) -> Any:
                attempts[0] += 1
                if attempts[0] > 1:
                    # a retry after a lost connection: a read the server ran but whose reply was
                    # lost left its entries pending for this consumer; hand those out first
                    pending = self._raw(*self._read_cmd(group, consumer, list(names), count, None, "0"))
                    if _has_entries(pending):
                        return pending
                return self._raw(*cmd)

            out = self._messages(self._call("read", xread), names)
            if out or not block_ms or time.monotonic() >= deadline or self._closed:
                return out

    def ack(self, stream: str, group: str, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        key = self._key(stream)
        return int(self._call("ack", lambda: self._raw("XACK", key, group, *ids)))

    def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Message]:
        key = self._key(stream)
        out: list[Message] = []
        cursor: bytes | str = "0-0"
        while len(out) < count:
            need = count - len(out)

            def autoclaim(cursor: bytes | str = cursor, need: int = need) -> Any:
                return self._r.xautoclaim(key, group, consumer, min_idle_ms, cursor, count=need)

            resp = self._call("claim_stale", autoclaim)
            cursor, entries = resp[0], resp[1]
            if entries:
                # XAUTOCLAIM does not report delivery counts: read them back from the PEL.
                def counts(entries: list = entries) -> list:
                    with self._r.pipeline(transaction=False) as pipe:
                        for mid, _ in entries:
                            pipe.xpending_range(key, group, mid, mid, 1, consumer)
                        return pipe.execute()

                infos = self._call("claim_stale", counts)
                dead: list[tuple[Message, int]] = []
                for (mid, fields), info in zip(entries, infos, strict=True):
                    if not info:  # taken by another consumer in the meantime, or acked
                        continue
                    deliveries = int(info[0]["times_delivered"])
                    if deliveries > self.max_deliveries:
                        dead.append((self._to_message(stream, mid, fields, deliveries - 1), deliveries - 1))
                    else:
                        out.append(self._to_message(stream, mid, fields, deliveries))
                if dead:
                    self._dead_letter_batch(stream, group, [(m, REASON_MAX_DELIVERIES, d) for m, d in dead])
            if cursor in (b"0-0", "0-0"):
                break
        return out

    def pending_count(self, stream: str, group: str) -> int:
        key = self._key(stream)
        return int(self._call("pending_count", lambda: self._r.xpending(key, group))["pending"])

    def backlog(self, stream: str, group: str) -> int:
        key = self._key(stream)

        def info() -> Any:
            try:
                return self._r.xinfo_groups(key)
            except ResponseError:  # no such stream
                return []

        for g in self._call("backlog", info):
            name = g.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == group:
                lag = g.get("lag")
                if lag is None:  # unknown after a trim or deletion: count what is after its position
                    last = g.get("last-delivered-id")
                    start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
                    after: Any = self._call("backlog", lambda start=start: self._r.xrange(key, start, "+", count=10_000))
                    lag = len(after or [])
                return int(lag) + int(g.get("pending") or 0)
        return 0

    def _dead_letter_batch(
        self, stream: str, group: str, items: list[tuple[Message, str, int | None]]
    ) -> list[str | None]:
        key, dlq = self._key(stream), self.dlq_name(stream)
        dlq_key = self._key(dlq)

        def run() -> list:
            with self._r.pipeline(transaction=False) as pipe:
                for message, reason, deliveries in items:
                    fields = self._fields(
                        message.payload, dead_letter_headers(message, group, reason, deliveries)
                    )
                    args: list[Any] = [group, message.id]
                    for k, v in fields.items():
                        args += [k, v]
                    self._dlq_script(keys=[key, dlq_key], args=args, client=pipe)
                return pipe.execute()

        results = [r.decode() if r else None for r in self._call("dead_letter", run)]
        self._maybe_trim(dlq, sum(1 for r in results if r))
        return results

    def dead_letter(self, stream: str, group: str, message: Message, reason: str) -> str | None:
        return self._dead_letter_batch(stream, group, [(message, reason, None)])[0]

    # -- housekeeping -------------------------------------------------------------------------

    def _safe_bound(self, key: str) -> str:
        """Smallest id some group still needs ("" when the stream has no group)."""
        try:
            groups = self._call("trim", lambda: self._r.xinfo_groups(key))
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return ""
            raise
        if not groups:
            return ""
        bounds: list[tuple[int, int]] = []
        with_pending = []
        for g in groups:
            after_last = next_id(parse_id(g["last-delivered-id"]))
            if int(g["pending"]) > 0:
                with_pending.append((g["name"], after_last))
            else:
                bounds.append(after_last)
        if with_pending:

            def oldest() -> list:
                with self._r.pipeline(transaction=False) as pipe:
                    for name, _ in with_pending:
                        pipe.xpending(key, name)
                    return pipe.execute()

            for (_, after_last), summary in zip(with_pending, self._call("trim", oldest), strict=True):
                # All acked since XINFO: everything up to the last-delivered id seen then is acked.
                bounds.append(parse_id(summary["min"]) if summary["pending"] else after_last)
        # Groups only move forward (and pending entries only get acked), so a bound computed from
        # this snapshot stays safe while the trim script runs.
        return format_id(min(bounds))

    def trim(self, stream: str) -> int:
        key = self._key(stream)
        bound = self._safe_bound(key)
        max_len = -1 if self.max_len is None else self.max_len
        args = [bound, max_len, self.trim_chunk]
        removed = 0
        while True:
            n = int(self._call("trim", lambda: self._trim_script(keys=[key], args=args)))
            removed += n
            if n < self.trim_chunk:
                return removed

    def length(self, stream: str) -> int:
        key = self._key(stream)
        return int(self._call("length", lambda: self._r.xlen(key)))

    def ping(self) -> bool:
        """True if the server answers (one attempt, no retry)."""
        try:
            return bool(self._r.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def _checkpoint_key(self, name: str) -> str:
        return f"{self.prefix}checkpoint:{name}"

    def _commit_args(
        self,
        name: str,
        number: int,
        state: bytes,
        publish: Sequence[tuple[str, bytes]],
        acks: Sequence[tuple[str, str, Sequence[str]]],
    ) -> tuple[list[Any], list[Any], dict[str, int]]:
        keys = [self._checkpoint_key(name)]
        args: list[Any] = [number, bytes(state), len(publish)]
        counts: dict[str, int] = {}
        for stream, payload in publish:
            args += [self._key(stream), bytes(payload)]
            counts[stream] = counts.get(stream, 0) + 1
        acks = [(st, g, list(ids)) for st, g, ids in acks if ids]
        args.append(len(acks))
        for stream, group, ids in acks:
            args += [self._key(stream), group, len(ids), *ids]
        return keys, args, counts

    def commit(
        self,
        name: str,
        number: int,
        state: bytes,
        publish: Sequence[tuple[str, bytes]] = (),
        acks: Sequence[tuple[str, str, Sequence[str]]] = (),
    ) -> bool:
        keys, args, counts = self._commit_args(name, number, state, publish, acks)
        done = int(self._call("commit", lambda: self._evalsha(self._commit_script, keys, args)))
        for stream, n in counts.items():
            self._maybe_trim(stream, n)
        return bool(done)

    def _read_cmd(self, group: str, consumer: str, keys: Sequence[str], count: int, block: int | None,
                  start: str = ">") -> list[Any]:
        cmd: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
        if block is not None:
            cmd += ["BLOCK", block]
        return [*cmd, "STREAMS", *keys, *([start] * len(keys))]

    @staticmethod
    def _reply_error(reply: Any) -> None:
        if isinstance(reply, ResponseError):
            if str(reply).startswith("NOGROUP"):
                raise NoGroupError(str(reply)) from reply
            raise reply

    def commit_and_read(
        self,
        name: str,
        number: int,
        state: bytes,
        publish: Sequence[tuple[str, bytes]],
        acks: Sequence[tuple[str, str, Sequence[str]]],
        *,
        group: str,
        consumer: str,
        streams: Sequence[str],
        count: int = 100,
        block_ms: int | None = None,
    ) -> tuple[bool, list[Message]]:
        if isinstance(streams, str):
            streams = [streams]
        if count < 1:
            raise ValueError("count must be >= 1")
        if block_ms and self._block_chunk_ms and block_ms > self._block_chunk_ms:
            return super().commit_and_read(name, number, state, publish, acks, group=group, consumer=consumer,
                                           streams=streams, count=count, block_ms=block_ms)
        keys, args, counts = self._commit_args(name, number, state, publish, acks)
        script = self._commit_script
        commit_cmd = ["EVALSHA", script.sha, len(keys), *keys, *args]
        names = {self._key(s): s for s in streams}
        read_cmd = self._read_cmd(group, consumer, list(names), count, block_ms or None)
        attempts = [0]

        def run() -> list[Any]:
            attempts[0] += 1
            if attempts[0] == 1:
                return self._raw_many([commit_cmd, read_cmd])
            # A retry after a lost connection. First the commit, to completion (skipped by its
            # number if it had run; a restarted server that forgot the script gets it again):
            # until it has run, the batch it acks is still pending for this consumer and must
            # not be read back as new work. Then what a read whose reply was lost left pending.
            committed = self._evalsha(script, keys, args)
            pending = self._raw(*self._read_cmd(group, consumer, list(names), count, None, "0"))
            if _has_entries(pending):
                return [committed, pending]
            return [committed, self._raw(*read_cmd)]

        committed, reply = self._call("commit", run)
        if isinstance(committed, ResponseError) and _no_script(committed):
            # a restarted server forgot the script: the commit did not run (the read did)
            committed = self._call("commit", lambda: self._evalsha(script, keys, args))
        self._reply_error(committed)
        self._reply_error(reply)
        for stream, n in counts.items():
            self._maybe_trim(stream, n)
        return bool(int(committed)), self._messages(reply, names)

    def ack_many(self, acks: Sequence[tuple[str, str, Sequence[str]]]) -> int:
        cmds = [("XACK", self._key(stream), group, *ids) for stream, group, ids in acks if ids]
        if not cmds:
            return 0
        replies = self._call("ack", lambda: self._raw_many(cmds))
        for r in replies:
            self._reply_error(r)
        return sum(int(r) for r in replies)

    def load_checkpoint(self, name: str) -> tuple[int, bytes] | None:
        key = self._checkpoint_key(name)
        res = self._call("load_checkpoint", lambda: self._r.hmget(key, "n", "state"))
        if res[0] is None:
            return None
        return int(res[0]), res[1] or b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.disconnect()
        self._r.close()

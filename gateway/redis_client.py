"""Redis connections built from settings (TLS included), and round trips of several commands
and script calls (the scripts themselves: gateway/scripts.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from settings import Settings

# A Redis that accepts connections but does not answer must not hold a request for long; the
# gateway's own blocking reads wait far less than this.
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0
# How long a process waits between two tries at a dependency that is down: doubling from the
# first to the last, so an outage of any length costs a few tries a second at most, and a
# dependency that is back is found within OUTAGE_MAX_WAIT_SECONDS.
OUTAGE_FIRST_WAIT_SECONDS = 0.1
OUTAGE_MAX_WAIT_SECONDS = 2.0


def connect(settings: Settings, *, decode: bool = True) -> redis.Redis:
    """A client for REDIS_URL. `decode=False` is for RQ, which stores pickled bytes and blocks
    on its queues for minutes, so it gets no read timeout."""
    options: dict[str, object] = {
        "decode_responses": decode,
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS if decode else None,
    }
    if settings.redis_url.startswith("rediss://") and not settings.redis_tls_verify:
        options["ssl_cert_reqs"] = "none"  # Heroku Redis presents a self-signed certificate
    # A gevent web process serves many requests at once: past REDIS_MAX_CONNECTIONS they wait
    # for a free connection (as long as a read may take) instead of failing "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=SOCKET_TIMEOUT_SECONDS,
        **options,
    )
    return redis.Redis.from_pool(pool)


class RoundTrip:
    """Commands and script calls sent to Redis together, in one round trip (a pipeline without
    MULTI); `send()` gives each one's reply, or its error in its place.

    redis-py pipelines Script objects with a SCRIPT EXISTS round trip before every send; here
    scripts go out as EVALSHA, and one that Redis lost (a restart, SCRIPT FLUSH) is loaded again
    and its calls sent again: NOSCRIPT means that call did nothing.

    The calls are written on a pooled connection and their replies read back by the client's
    own parser (its reply callbacks, its retry policy on a lost connection): what redis-py's
    pipeline does, less its per-send bookkeeping (a pipeline object, its observability
    records and command stack), which cost an accepted write more than the write's own checks.
    """

    def __init__(self, client: redis.Redis, connection: Any = None) -> None:
        """`connection`: one of the client's pool that the caller holds for itself (one sender
        at a time); by default each send takes one from the pool and gives it back."""
        self._client = client
        self._connection = connection
        self._calls: list[tuple[Script | None, tuple[Any, ...]]] = []

    def command(self, *args: Any) -> None:
        self._calls.append((None, args))

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        self._calls.append((script, ("EVALSHA", script.sha, len(keys), *keys, *args)))

    def send(self) -> list[Any]:
        replies = self._pipeline(range(len(self._calls)))
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            for script in {id(s): s for s, _ in (self._calls[i] for i in lost) if s}.values():
                self._client.script_load(script.script)
            for i, reply in zip(lost, self._pipeline(lost), strict=True):
                replies[i] = reply
        return replies

    def _pipeline(self, indexes: Sequence[int]) -> list[Any]:
        commands = [self._calls[i][1] for i in indexes]
        pool = self._client.connection_pool
        connection = self._connection or pool.get_connection()
        try:
            if self._connection is not None:
                _ready(connection)
            return connection.retry.call_with_retry(
                lambda: _exchange(self._client, connection, commands),
                lambda error: connection.disconnect(),
            )
        except BaseException:
            connection.disconnect()  # replies may be left unread on it: it connects afresh
            raise
        finally:
            if self._connection is None:
                pool.release(connection)


def _ready(connection: Any) -> None:
    """Check a held connection as the pool checks one it hands out: one with something to read
    (the server closed it, as after a Redis restart) is connected again before it is used."""
    try:
        connection.connect()
        if connection.can_read():
            raise redis.ConnectionError("Connection has data")
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        connection.disconnect()
        connection.connect()


def _exchange(client: redis.Redis, connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Write `commands` on `connection` at once and read their replies, an error in its place."""
    connection.send_packed_command(connection.pack_commands(commands))
    replies: list[Any] = []
    for command in commands:
        try:
            replies.append(client.parse_response(connection, command[0]))
        except redis.ResponseError as error:
            replies.append(error)
    return replies


class Outage:
    """One dependency's outages as one process (or thread) sees them: one log line when it goes
    down, one when it is back, none per retry in between; and the wait before the next try.

    `down()` on every failure, `up()` on every success (cheap when nothing was down)."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.since: float | None = None  # monotonic time the outage began; None while up
        self.failures = 0
        self._lock = threading.Lock()

    @property
    def is_down(self) -> bool:
        return self.since is not None

    def down(self, error: BaseException | str) -> float:
        """Note a failure (an exception, or its description); the seconds to wait before the
        next try."""
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
                self.log.warning("%s unavailable (%s); waiting for it", self.what, text)
            self.failures += 1
            return min(OUTAGE_MAX_WAIT_SECONDS, OUTAGE_FIRST_WAIT_SECONDS * 2 ** (self.failures - 1))

    def up(self) -> None:
        """Note a success: ends the outage, if there was one."""
        if self.since is None:
            return
        with self._lock:
            if self.since is not None:
                self.log.warning("%s back after %.1f s", self.what, time.monotonic() - self.since)
            self.since = None
            self.failures = 0


def wait_for_redis(client: redis.Redis, outage: Outage, stopped: threading.Event) -> bool:
    """PING until Redis answers (True), or `stopped` is set (False). A Redis still loading its
    data answers LOADING (BusyLoadingError): that is down too."""
    while not stopped.is_set():
        try:
            client.ping()
        except redis.RedisError as error:
            stopped.wait(outage.down(error))
            continue
        outage.up()
        return True
    return False

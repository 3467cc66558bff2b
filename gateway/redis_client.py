"""Redis connections built from settings (TLS included; a Redis Cluster with REDIS_CLUSTER=true),
and round trips of several commands and script calls (the scripts themselves: gateway/scripts.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    TryAgainError,
)

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
    """A client for REDIS_URL: a Redis Cluster client with REDIS_CLUSTER=true. `decode=False`
    is for RQ, which stores pickled bytes and blocks on its queues for minutes, so it gets no
    read timeout (and RQ's own client is `connect_queue`'s)."""
    options: dict[str, object] = {
        "decode_responses": decode,
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS if decode else None,
    }
    if settings.redis_url.startswith("rediss://") and not settings.redis_tls_verify:
        options["ssl_cert_reqs"] = "none"  # Heroku Redis presents a self-signed certificate
    if settings.redis_cluster:
        return connect_cluster(settings.redis_url, settings.redis_max_connections, options)
    return _plain(settings.redis_url, settings.redis_max_connections, options)


def connect_queue(settings: Settings, *, decode: bool = False) -> redis.Redis:
    """RQ's client: QUEUE_REDIS_URL (else REDIS_URL), always a plain Redis, pickled bytes and no
    read timeout (RQ blocks on its queues for minutes); `decode=True` to read RQ's registries."""
    options: dict[str, object] = {
        "decode_responses": decode,
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": None,
    }
    if settings.queue_url.startswith("rediss://") and not settings.redis_tls_verify:
        options["ssl_cert_reqs"] = "none"
    return _plain(settings.queue_url, settings.redis_max_connections, options)


def _plain(url: str, max_connections: int, options: dict[str, object]) -> redis.Redis:
    # A gevent web process serves many requests at once: past REDIS_MAX_CONNECTIONS they wait
    # for a free connection (as long as a read may take) instead of failing "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=SOCKET_TIMEOUT_SECONDS, **options
    )
    return redis.Redis.from_pool(pool)


def connect_cluster(url: str, max_connections: int, options: dict[str, object]) -> redis.Redis:
    """redis-py's cluster client, which follows the slots' masters (MOVED, failovers) itself.
    It is typed as `redis.Redis` for the gateway: it answers every command the gateway sends,
    each of whose keys is in one slot, and its pipelines group their calls by node."""
    options = {k: v for k, v in options.items() if k != "health_check_interval"}
    client = GatewayCluster.from_url(url, max_connections=max_connections, **options)
    return cast(redis.Redis, client)


class GatewayCluster(RedisCluster):
    """redis-py's cluster client, whose "no node reachable" (RedisClusterException, which is no
    RedisError) is raised as a ConnectionError: every loop and route of the gateway treats a
    lost Redis as an outage to wait out, whatever its kind."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)
        except RedisClusterException as error:
            if isinstance(error, redis.RedisError):
                raise
            raise redis.ConnectionError(str(error)) from error


def _slot(cluster: RedisCluster, args: Sequence[Any]) -> int:
    """The slot of a call's keys, found without asking the server (as redis-py would for a
    script or a stream read): a script's first key, a stream read's first stream."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        return int(cluster.keyslot(args[3]))
    if name in ("XREAD", "XREADGROUP"):
        return int(cluster.keyslot(args[[str(a).upper() for a in args].index("STREAMS") + 1]))
    try:
        return int(cluster.determine_slot(*args))
    except RedisClusterException:  # a command of no key (TIME): any node answers it
        return 0


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def disconnect(client: redis.Redis) -> None:
    """Close every connection of `client` now, even one in use (a blocking read is cut)."""
    if is_cluster(client):
        cast(RedisCluster, client).disconnect_connection_pools()
    else:
        client.connection_pool.disconnect()


@dataclass(frozen=True)
class ReplicaWait:
    """WAIT after a round trip's writes: `replicas` must acknowledge them within `timeout_ms`."""

    replicas: int
    timeout_ms: int


class ReplicasBehind(redis.ConnectionError):
    """Fewer replicas than REDIS_WAIT_REPLICAS acknowledged a round trip's writes in time: they
    are on the master, but not yet as durable as promised."""


# Replies that say the slot's master moved (a failover, a resharding): the call did nothing,
# and the client's map of the slots is out of date.
MOVED = (MovedError, AskError, TryAgainError, ClusterDownError)


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
    On a Redis Cluster the calls go out in one pipeline of the cluster client, each to its node.

    With `wait`, a WAIT follows the calls on the connection that sent them (on a Redis Cluster,
    one pipeline per master the calls go to), and when too few replicas acknowledged, every
    call's reply is a `ReplicasBehind` error instead.
    """

    def __init__(self, client: redis.Redis, wait: ReplicaWait | None = None, connection: Any = None) -> None:
        """`connection`: one of the client's pool that the caller holds for itself (one sender
        at a time; one Redis only); by default each send takes one from the pool and gives it back."""
        self._client = client
        self._wait = wait if wait and wait.replicas > 0 else None
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
        try:
            return self._pipeline_once(indexes)
        except RedisClusterException as error:  # no node reachable: an outage, as on one Redis
            if isinstance(error, redis.RedisError):
                raise
            raise redis.ConnectionError(str(error)) from error

    def _pipeline_once(self, indexes: Sequence[int]) -> list[Any]:
        if not is_cluster(self._client):
            commands = [self._calls[i][1] for i in indexes]
            return _waited(self._direct(commands + _wait_command(self._wait)), self._wait)
        cluster = cast(RedisCluster, self._client)
        nodes = [cluster.nodes_manager.get_node_from_slot(_slot(cluster, self._calls[i][1])) for i in indexes]
        if self._wait is None:
            # Each call sent to its node as found here: redis-py would ask the server for the keys
            # of every EVALSHA and XREADGROUP in a pipeline (COMMAND GETKEYS, a round trip each).
            pipe = cluster.pipeline(transaction=False)
            for i, node in zip(indexes, nodes, strict=True):
                pipe.execute_command(*self._calls[i][1], target_nodes=node)
            return pipe.execute(raise_on_error=False)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, node in zip(indexes, nodes, strict=True):
            by_node.setdefault(node.name, (node, []))[1].append(i)
        replies: dict[int, Any] = {}
        try:
            for node, group in by_node.values():
                node_client = cast(redis.Redis, cluster.get_redis_connection(node))
                replies.update(zip(group, self._send(node_client, group, self._wait), strict=True))
        except redis.ConnectionError:
            cluster.nodes_manager.initialize()  # a master gone: find who serves its slots now
            raise
        if any(isinstance(reply, MOVED) for reply in replies.values()):
            cluster.nodes_manager.initialize()
        return [replies[i] for i in indexes]

    def _direct(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """`commands` written on one connection of a plain Redis at once, their replies read."""
        pool = self._client.connection_pool
        connection = self._connection or pool.get_connection()
        try:
            if self._connection is not None:
                _ready(connection)
            return cast(
                list[Any],
                connection.retry.call_with_retry(
                    lambda: _exchange(self._client, connection, commands),
                    lambda error: connection.disconnect(),
                ),
            )
        except BaseException:
            connection.disconnect()  # replies may be left unread on it: it connects afresh
            raise
        finally:
            if self._connection is None:
                pool.release(connection)

    def _send(
        self, client: redis.Redis, indexes: Sequence[int], wait: ReplicaWait | None = None
    ) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for i in indexes:
            pipe.execute_command(*self._calls[i][1])
        for command in _wait_command(wait):
            pipe.execute_command(*command)
        return _waited(pipe.execute(raise_on_error=False), wait)


def _wait_command(wait: ReplicaWait | None) -> list[tuple[Any, ...]]:
    """The WAIT to send after the calls, if any."""
    return [] if wait is None else [("WAIT", wait.replicas, wait.timeout_ms)]


def _waited(replies: list[Any], wait: ReplicaWait | None) -> list[Any]:
    """The calls' replies, less the WAIT's at their end: each a `ReplicasBehind` error (an
    error a call got stays) when too few replicas acknowledged them in time."""
    if wait is None:
        return replies
    *replies, acknowledged = replies
    if isinstance(acknowledged, int) and acknowledged >= wait.replicas:
        return replies
    behind = ReplicasBehind(f"{acknowledged} of {wait.replicas} replicas acknowledged in time")
    return [reply if isinstance(reply, Exception) else behind for reply in replies]


# On a Redis Cluster one XREAD cannot wait on streams of several slots: `read_streams` looks
# at each stream (one pipeline) this often instead, until one has entries or the wait is over.
CLUSTER_POLL_SECONDS = 0.01


def read_streams(client: redis.Redis, streams: dict[str, str], *, count: int, block_ms: int) -> list[Any]:
    """XREAD of `streams` (name -> the id to read after), waiting up to `block_ms` for an entry:
    [[stream, entries], ...] for the streams that have some, as redis-py's xread answers. One
    blocking XREAD on one Redis; on a cluster, a pipeline of one XREAD per stream, repeated."""
    if not is_cluster(client):
        return client.xread(streams, count=count, block=block_ms) or []
    deadline = time.monotonic() + block_ms / 1000
    while True:
        trip = RoundTrip(client)
        for stream, after in streams.items():
            trip.command("XREAD", "COUNT", count, "STREAMS", stream, after)
        replies = []
        for reply in trip.send():
            if isinstance(reply, Exception):
                raise reply
            if reply:
                replies.append(_first_stream(reply))
        left = deadline - time.monotonic()
        if replies or left <= 0:
            return replies
        time.sleep(min(CLUSTER_POLL_SECONDS, left))


def _first_stream(reply: Any) -> list[Any]:
    """[stream, entries] of a one-stream XREAD reply (a list in RESP2, a map in RESP3)."""
    if isinstance(reply, dict):
        return list(next(iter(reply.items())))
    return list(reply[0])


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

"""Per-user rate limits, shared by every web process through Redis.

Each `/api` call counts against one limit of its user (the JWT `sub`, or the dev user): writes
against RATE_LIMIT_WRITES, reads and status polls against RATE_LIMIT_READS, both parsed by the
`limits` library ("6000/minute"). Both use the sliding-window counter: two counters per user and
limit, O(1) memory, with none of the fixed window's double burst at window edges. A call over
the limit is refused with 429 problem JSON and `Retry-After`.

Reads are counted by `limits` (one Lua script on the gateway's connection pool). Writes are
counted by the accept script itself (`gateway.accept.WriteLimit`), the same algorithm in the
same round trip as the command: a write stays one call to Redis, and a refused one writes nothing.
On a Redis Cluster the user's counters are in another slot than the command's partition, so
`limits` counts writes too (one round trip more per write; a replayed or refused write is
counted, as the accept script counts it on one Redis).

A write's body bytes beyond its first WRITE_BYTES_FREE count against RATE_LIMIT_WRITE_BYTES, from
its Content-Length (a chunked body, of unknown length, counts as MAX_BODY_BYTES), before the body
is read: a user sending large bodies fast is refused before their bodies cost any parsing, and
the workers, Redis and the other users' requests keep their share of the machine. A common small
write is not counted at all and stays one call to Redis.

The check runs in the API blueprints' before_request, after authentication: an unauthenticated
call is refused (401) before it is counted, and CORS preflights are not counted. (Flask-Limiter,
built on the same library, resolves its route and blueprint limits on every request: about
0.1 ms of Python per call on the accept path, for features the gateway does not use.)
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import RedisClusterStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter

from gateway.accept import WriteLimit
from gateway.api import current_user
from gateway.problems import Problem

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_BYTES_FREE = 16 * 1024  # bytes of each write's body not counted against RATE_LIMIT_WRITE_BYTES


@dataclass(frozen=True)
class RateLimits:
    """The limiter and the two limits (None: that kind of call is not limited)."""

    limiter: SlidingWindowCounterRateLimiter
    writes: RateLimitItem | None
    reads: RateLimitItem | None
    writes_counted_here: bool = False  # on a Redis Cluster: not by the accept script
    write_bytes: RateLimitItem | None = None

    def write_limit(self) -> WriteLimit | None:
        """The write limit, for the accept script to count (None: it counts none)."""
        return self._write_limit

    @functools.cached_property
    def _write_limit(self) -> WriteLimit | None:
        if self.writes is None or self.writes_counted_here:
            return None
        return WriteLimit(self.writes.amount, self.writes.get_expiry())

    def check_bytes(self, user: str, size: int) -> None:
        """Count a write's body of `size` bytes beyond WRITE_BYTES_FREE against the user's
        byte limit; Problem 429 when it is past it."""
        item, cost = self.write_bytes, size - WRITE_BYTES_FREE
        if item is None or cost <= 0:
            return
        who = hashlib.blake2b(user.encode(), digest_size=12).hexdigest()
        if self.limiter.hit(item, who, "write-bytes", cost=cost):
            return
        reset = self.limiter.get_window_stats(item, who, "write-bytes").reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise Problem(
            429,
            "Too Many Requests",
            f"More than {item.amount} bytes of write bodies per {item.get_expiry()} s from one user "
            f"(beyond the first {WRITE_BYTES_FREE} of each). Try again in {wait} s.",
            slug="rate-limited",
            headers={"Retry-After": str(wait)},
        )

    def check(self, user: str, method: str) -> None:
        """Count a read (on a cluster, any call) against the user's limit; Problem 429 when it
        is past it. (On one Redis, writes are counted by the accept script.)"""
        if method in WRITES and not self.writes_counted_here:
            return
        scope, item = ("writes", self.writes) if method in WRITES else ("reads", self.reads)
        if item is None:
            return
        who = hashlib.blake2b(user.encode(), digest_size=12).hexdigest()  # any id, a plain key
        if self.limiter.hit(item, who, scope):
            return
        reset = self.limiter.get_window_stats(item, who, scope).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise too_many(item, scope, wait)


# Device registrations and removals a user may make: a phone registers its token at each start,
# so a few a minute is plenty; the limit keeps a client from churning Redis keys in a loop.
DEVICE_CALLS = parse("30/minute")


def check_devices() -> None:
    """The devices blueprint's before_request: count a registration or removal for its user."""
    if request.method == "OPTIONS":
        return
    limits: RateLimits = current_app.extensions["rate_limits"]
    who = hashlib.blake2b(current_user().encode(), digest_size=12).hexdigest()
    if limits.limiter.hit(DEVICE_CALLS, who, "devices"):
        return
    reset = limits.limiter.get_window_stats(DEVICE_CALLS, who, "devices").reset_time
    raise too_many(DEVICE_CALLS, "device registrations", max(1, math.ceil(reset - time.time())))


def too_many(item: RateLimitItem, scope: str, wait: int) -> Problem:
    return Problem(
        429,
        "Too Many Requests",
        f"More than {item} calls ({scope}) from one user. Try again in {wait} s.",
        slug="rate-limited",
        headers={"Retry-After": str(wait)},
    )


def init_app(app: Flask) -> None:
    gw = app.extensions["gateway"]
    settings = gw.settings
    storage: Storage
    if settings.redis_cluster:
        tls = settings.redis_url.startswith("rediss://")
        url = "redis+cluster://" + settings.redis_url.split("://", 1)[1]
        storage = RedisClusterStorage(url, key_prefix=gw.keys.rate_limits(), ssl=tls)
    else:
        storage = RedisStorage(
            settings.redis_url, connection_pool=gw.redis.connection_pool, key_prefix=gw.keys.rate_limits()
        )
    app.extensions["rate_limits"] = RateLimits(
        SlidingWindowCounterRateLimiter(storage),
        parse(settings.rate_limit_writes) if settings.rate_limit_writes else None,
        parse(settings.rate_limit_reads) if settings.rate_limit_reads else None,
        writes_counted_here=settings.redis_cluster,
        write_bytes=parse(settings.rate_limit_write_bytes) if settings.rate_limit_write_bytes else None,
    )


def check() -> None:
    """A blueprint's before_request, after authentication: count this call for its user (a
    write is counted by the accept script, on a cluster here; its body's bytes here, before it
    is read)."""
    method = request.method
    if method == "OPTIONS":
        return
    limits: RateLimits = current_app.extensions["rate_limits"]
    if method not in WRITES or limits.writes_counted_here:
        limits.check(current_user(), method)
    if method not in WRITES:
        return
    size = request.content_length
    if size is None and request.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        size = current_app.config["MAX_CONTENT_LENGTH"] or 0  # its length is known only once read
    limits.check_bytes(current_user(), size or 0)

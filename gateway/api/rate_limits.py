"""Per-user rate limits, shared by every web process through Redis (Flask-Limiter over `limits`).

Each `/api` call counts against one limit of its user (the JWT `sub`, or the dev user): writes
against RATE_LIMIT_WRITES, reads and status polls against RATE_LIMIT_READS. Counting is one Lua
script on the gateway's own Redis connection pool, the sliding-window counter: two counters per
user and limit, O(1) memory, with none of the fixed window's double burst at window edges.
A call over the limit is refused with 429 problem JSON and `Retry-After`; only then does the
limiter read its window a second time, to tell the wait.

Preflights are not counted, and an unauthenticated call is refused (401) before it is counted.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask import Blueprint, Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded

from gateway.api import current_user
from gateway.problems import Problem

WRITES = ["POST", "PUT", "PATCH", "DELETE"]
READS = ["GET"]


def _user_key() -> str:
    """The caller's counters: a digest of the user id, so any id makes a plain, fixed-size key."""
    return hashlib.blake2b(current_user().encode(), digest_size=12).hexdigest()


def init_app(app: Flask, write_blueprints: list[Blueprint], read_blueprints: list[Blueprint]) -> None:
    gw = app.extensions["gateway"]
    settings = gw.settings
    limiter = Limiter(
        _user_key,
        storage_uri=settings.redis_url,
        storage_options={"connection_pool": gw.redis.connection_pool, "key_prefix": gw.keys.rate_limits()},
        strategy="sliding-window-counter",
        headers_enabled=False,  # the headers cost a second Redis call on every answer
    )
    limiter.request_filter(lambda: request.method == "OPTIONS")
    if settings.rate_limit_writes:
        writes = limiter.shared_limit(settings.rate_limit_writes, scope="writes", methods=WRITES)
        for blueprint in write_blueprints:
            writes(blueprint)
    if settings.rate_limit_reads:
        reads = limiter.shared_limit(settings.rate_limit_reads, scope="reads", methods=READS)
        for blueprint in read_blueprints:
            reads(blueprint)
    limiter.init_app(app)

    def too_many(error: RateLimitExceeded) -> Response:
        wait = 1
        breached = limiter.current_limit
        if breached is not None:
            wait = max(1, math.ceil(breached.window.reset_time - time.time()))
        return Problem(
            429,
            "Too Many Requests",
            f"More than {error.limit.limit} calls of this kind from one user. Try again in {wait} s.",
            slug="rate-limited",
            headers={"Retry-After": str(wait)},
        ).response()

    app.register_error_handler(RateLimitExceeded, too_many)

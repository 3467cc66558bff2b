"""RFC 9457 problem details: every error the API answers, from every route and from Flask itself."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import redis
from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from plugins.store import StoreUnavailable

log = logging.getLogger("gateway.problems")

MEDIA_TYPE = "application/problem+json"
# A Redis failure is logged when none came this long before it: once per outage, not per request.
REDIS_OUTAGE_QUIET_SECONDS = 10.0


class Problem(Exception):
    """An error answer. `slug` names the problem type (`/problems/<slug>`); none: about:blank."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}" if self.slug else "about:blank",
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()), status=self.status, mimetype=MEDIA_TYPE, headers=self.headers
        )


def _from_http(error: HTTPException) -> Response:
    response = Problem(error.code or 500, error.name, error.description).response()
    for key, value in error.get_headers():  # keeps Allow (405), WWW-Authenticate, Retry-After
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


def _from_redis_down(error: redis.RedisError) -> Response:
    """Redis cannot be reached, did not answer, or refused the write: try again shortly. The
    command was not accepted (nothing of it is kept), so a retry is safe."""
    now = time.monotonic()
    last = current_app.extensions.get("redis_failed_at", -REDIS_OUTAGE_QUIET_SECONDS)
    current_app.extensions["redis_failed_at"] = now
    if now - last >= REDIS_OUTAGE_QUIET_SECONDS:
        log.error("Redis failed: %s: %s (answering 503 while it lasts)", type(error).__name__, error)
    return Problem(
        503,
        "Service Unavailable",
        "The command broker cannot be reached: the command was not accepted, unless the connection "
        "broke in the middle of the call. Try again shortly; with the same Idempotency-Key a retry "
        "is always safe (it answers the first command's 202 if that one was accepted).",
        slug="broker-unavailable",
        headers={"Retry-After": "5"},
    ).response()


def _from_store_down(error: StoreUnavailable) -> Response:
    """A read's store cannot be reached; writes are unaffected (they only need Redis)."""
    log.error("store unreachable: %s", error)
    return Problem(
        503,
        "Service Unavailable",
        "The store holding this collection cannot be reached. Try again shortly.",
        slug="store-unavailable",
        headers={"Retry-After": "5"},
    ).response()


def _from_unexpected(error: Exception) -> Response:
    log.exception("unhandled error", exc_info=error)
    return Problem(500, "Internal Server Error", "The server could not complete the request.").response()


def init_app(app: Flask) -> None:
    app.register_error_handler(Problem, lambda p: p.response())
    app.register_error_handler(HTTPException, _from_http)
    # Any Redis failure (down, slow, read-only during a failover, out of memory) is the broker's.
    app.register_error_handler(redis.RedisError, _from_redis_down)
    app.register_error_handler(StoreUnavailable, _from_store_down)
    app.register_error_handler(Exception, _from_unexpected)

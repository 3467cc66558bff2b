"""Liveness and readiness probes.

`/readyz` tells anyone which dependency is down, and only operators why: an error text names
hosts, ports and database users. The text is logged either way.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, current_app, request
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.api import gateway, json_response
from gateway.api.openapi import answer, describe, ref
from gateway.auth import identity_of
from gateway.problems import Problem
from settings import Settings

log = logging.getLogger("gateway.health")

bp = Blueprint("health", __name__)

# A probe answers within its caller's timeout (Kubernetes and Heroku give a few seconds), so Redis
# gets one try of this long instead of the shared client's timeouts and retries.
PROBE_TIMEOUT_SECONDS = 2.0


def _ping_redis(settings: Settings) -> None:
    """PING on a connection of its own, with a short timeout and no retry; raise if no PONG."""
    options: dict[str, object] = {
        "socket_connect_timeout": PROBE_TIMEOUT_SECONDS,
        "socket_timeout": PROBE_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_url.startswith("rediss://") and not settings.redis_tls_verify:
        options["ssl_cert_reqs"] = "none"  # as the shared client does (gateway.redis_client)
    client = redis.Redis.from_url(settings.redis_url, **options)
    try:
        client.ping()
    finally:
        client.close()


@bp.get("/healthz")
@describe(tags=["probes"], responses={"200": answer("The process answers.", ref("Health"))})
def healthz() -> Response:
    """The process answers; says nothing of its dependencies."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
@describe(
    tags=["probes"],
    responses={
        "200": answer("Ready.", ref("Readiness")),
        "503": answer("Not ready: `checks` says what failed.", ref("Readiness")),
    },
)
def readyz() -> Response:
    """Redis and every store a collection is routed to answer."""
    gw = gateway()
    errors: dict[str, str] = {}
    try:
        _ping_redis(gw.settings)
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        errors["redis"] = f"error: {error}"
    for store in gw.stores.used():
        try:
            store.ping()
        except Exception as error:  # noqa: BLE001
            errors[f"store:{store.name}"] = f"error: {type(error).__name__}: {error}"
    checks = dict.fromkeys(["redis", *(f"store:{store.name}" for store in gw.stores.used())], "ok")
    detailed = bool(errors) and _operator()
    for name, text in errors.items():
        checks[name] = text if detailed else "down"
    _log_changes(errors)
    ready = not errors
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


def _log_changes(errors: dict[str, str]) -> None:
    """Log a dependency that went down (or changed its error) and one that came back: once per
    outage, not once per probe."""
    last: dict[str, str] = current_app.extensions.setdefault("readiness_errors", {})
    for name, text in errors.items():
        if last.get(name) != text:
            log.warning("not ready: %s %s", name, text)
    for name in last.keys() - errors.keys():
        log.warning("ready again: %s", name)
    last.clear()
    last.update(errors)


def _operator() -> bool:
    """Whether the caller proved to be an operator; a missing or bad token is just anonymous."""
    try:
        return identity_of(request).operator
    except Problem:
        return False

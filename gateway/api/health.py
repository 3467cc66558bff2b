"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from flask import Blueprint, Response
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.api import gateway, json_response
from gateway.api.openapi import answer, describe, ref
from settings import Settings

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
    client = redis.Redis.from_url(settings.redis_url, **options)  # type: ignore[arg-type]
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
    checks: dict[str, str] = {}
    try:
        _ping_redis(gw.settings)
        checks["redis"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["redis"] = f"error: {error}"
    for store in gw.stores.used():
        try:
            store.ping()
            checks[f"store:{store.name}"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks[f"store:{store.name}"] = f"error: {type(error).__name__}: {error}"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )

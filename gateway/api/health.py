"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response

from gateway.api import gateway, json_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers; says nothing of its dependencies."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Redis and every store a collection is routed to answer."""
    gw = gateway()
    checks: dict[str, str] = {}
    try:
        gw.redis.ping()
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
    return json_response({"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503)

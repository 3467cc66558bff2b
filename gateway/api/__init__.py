"""The HTTP API: write commands, command status, reads, health."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request

from gateway.auth import bearer_token, user_of
from gateway.context import Gateway


def gateway() -> Gateway:
    return current_app.extensions["gateway"]


def current_user() -> str:
    """The authenticated caller of this request (401 otherwise), checked once per request."""
    if "user" not in g:
        g.user = user_of(bearer_token(request), gateway().settings)
    return g.user


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json", headers=headers)


def init_app(app: Flask) -> None:
    from gateway.api import commands, cors, health, reads

    cors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(commands.bp)
    app.register_blueprint(reads.bp)

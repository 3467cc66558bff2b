"""The web application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from gateway import admin, api, auth, cli, client, logs, metrics, notify, problems, request_ids
from gateway.context import Gateway
from settings import load

log = logging.getLogger("gateway")

MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key has at least as many bits as the hash, 256


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then `test_config` overrides on top."""
    settings = load(**(test_config or {}))
    logs.configure(logs.format_for(settings.log_format, settings.app_env), settings.log_level)
    app = Flask(__name__, static_folder=None)  # an API: no static files, no /static route
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    gateway = Gateway(settings)
    gateway.stores  # noqa: B018 - load the plugins and route the collections now: bad settings fail at start
    app.extensions["gateway"] = gateway
    if settings.open_dev_mode:
        log.warning(
            "Neither JWT_SECRET nor JWT_JWKS_URL is set: open dev mode, every caller is the user %r. "
            "Set one before exposing this service.",
            "dev",
        )
    elif settings.jwt_secret and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        log.warning(
            "JWT_SECRET is shorter than %d bytes: tokens signed with it are easier to forge.",
            MIN_SECRET_BYTES,
        )
    request_ids.init_app(app)
    problems.init_app(app)
    auth.init_app(app)
    api.init_app(app)
    notify.init_app(app)
    metrics.init_app(app)
    client.init_app(app)
    admin.init_app(app)
    cli.init_app(app)
    return app

"""Cross-origin calls from the browser frontends named in CORS_ORIGINS (`*`: any origin), through
flask-cors.

Credentials travel in the Authorization header, never in cookies, so no
Access-Control-Allow-Credentials is sent. Preflights pass without a token (browsers send them
without the Authorization header): the blueprints' authentication lets OPTIONS through, and
Flask answers it with the route's allowed methods, to which flask-cors adds its headers.
"""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-Request-ID"]
# What a script may read of an answer: a 202's status URL and when to look at it, a replay
# marker, a 429's or 503's wait, the request's id for a bug report.
EXPOSED_HEADERS = ["Location", "Retry-After", "Idempotent-Replayed", "X-Request-ID"]
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer


def init_app(app: Flask) -> None:
    origins = app.extensions["gateway"].settings.cors_origin_list
    if not origins:
        return
    CORS(
        app,
        origins=origins,
        methods=METHODS,
        allow_headers=REQUEST_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE,
        supports_credentials=False,
        send_wildcard=False,  # with `*`, answer the caller's own origin, as for a listed one
    )

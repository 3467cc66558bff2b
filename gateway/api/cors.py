"""Cross-origin calls from the browser frontends named in CORS_ORIGINS (`*`: any origin).

Credentials travel in the Authorization header, never in cookies, so no
Access-Control-Allow-Credentials is sent. A preflight is answered before authentication:
browsers send it without the Authorization header.
"""

from __future__ import annotations

from flask import Flask, Response, request

METHODS = "GET, POST, PUT, PATCH, DELETE"
REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
EXPOSED_HEADERS = "Location, Retry-After"  # a 202's status URL and when to look at it
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may reuse a preflight answer


class Cors:
    """The CORS policy of one app, from its allowed origins."""

    def __init__(self, origins: list[str]) -> None:
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and (self.any_origin or origin in self.origins)

    def preflight(self) -> Response | None:
        """A 204 for an allowed origin's preflight; None lets any other request through."""
        origin = request.headers.get("Origin")
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if not self.allows(origin):
            return None
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = METHODS
        response.headers["Access-Control-Allow-Headers"] = REQUEST_HEADERS
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    def annotate(self, response: Response) -> Response:
        """Every answer to an allowed origin, errors included, says so, so scripts can read it."""
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if self.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin  # type: ignore[assignment]
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response


def init_app(app: Flask) -> None:
    origins = app.extensions["gateway"].settings.cors_origin_list
    if not origins:
        return
    cors = Cors(origins)
    app.before_request(cors.preflight)  # app-level: runs before the blueprints' authentication
    app.after_request(cors.annotate)

"""Security headers on every answer, errors included.

The API answers JSON to callers that authenticate with a bearer token, so the headers are the
few that matter for that: no content sniffing, nothing may load or frame an answer, no referrer
leaves, and HTTPS is remembered once a request came over it. A view that serves a page (the API
docs) sets its own Content-Security-Policy, which is kept.

Four fixed headers need no library: flask-talisman's other features (HTTPS redirects, cookie
flags, nonces for HTML templates) do not apply to a token-authenticated JSON API, and it builds
its policy string again on every answer. They are added as WSGI middleware, to the plain list
of header pairs the app hands the server: every answer passes there, Flask's own errors and
crashes too, and it costs a fraction of editing each response's werkzeug Headers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask

JSON_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HEADERS = (
    ("Content-Security-Policy", JSON_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),  # frame-ancestors for browsers without CSP level 2
    ("Referrer-Policy", "no-referrer"),
)
_LOWER = tuple((name.lower(), (name, value)) for name, value in HEADERS)
# Sent on HTTPS answers only (behind a proxy: X-Forwarded-Proto, which gunicorn.conf.py trusts,
# so that gunicorn sets wsgi.url_scheme from it).
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


class SecurityHeaders:
    """WSGI middleware adding the headers an answer does not set itself."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        secure = environ.get("wsgi.url_scheme") == "https"

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            headers.extend(pair for name, pair in _LOWER if name not in present)
            if secure and "strict-transport-security" not in present:
                headers.append(HSTS)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def init_app(app: Flask) -> None:
    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]

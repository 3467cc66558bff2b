"""Security headers on every answer, errors included.

The API answers JSON to callers that authenticate with a bearer token, so the headers are the
few that matter for that: no content sniffing, nothing may load or frame an answer, no referrer
leaves, and HTTPS is remembered once a request came over it. A view that serves a page (the API
docs) sets its own Content-Security-Policy, which is kept.

Four fixed headers need no library: flask-talisman's other features (HTTPS redirects, cookie
flags, nonces for HTML templates) do not apply to a token-authenticated JSON API, and it builds
its policy string again on every answer.
"""

from __future__ import annotations

from flask import Flask, Response, request

JSON_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HEADERS = (
    ("Content-Security-Policy", JSON_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),  # frame-ancestors for browsers without CSP level 2
    ("Referrer-Policy", "no-referrer"),
)
# Sent on HTTPS answers only (behind a proxy: X-Forwarded-Proto, which gunicorn.conf.py trusts).
HSTS = "max-age=31536000; includeSubDomains"


def add_headers(response: Response) -> Response:
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}  # one pass, not one per header
    headers.extend([(name, value) for name, value in HEADERS if name.lower() not in present])
    if request.is_secure and "strict-transport-security" not in present:
        headers["Strict-Transport-Security"] = HSTS
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_headers)

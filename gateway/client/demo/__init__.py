"""The demo page at /demo: a to-do list written with /client.js, plain HTML and one ES module.

It shows each write go pending -> applied live, a write that fails (a create of an id that
exists), and the live connection dropping and coming back. On when DEMO_PAGE says so, and by
default in development. The page's own Content-Security-Policy lets it run its own script and
the client from this origin, and talk to this origin only (`connect-src 'self'`, which covers
the WebSocket to the same host): nothing inline, nothing from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

from gateway.api.openapi import answer, describe
from gateway.client import Asset

HERE = Path(__file__).parent
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
MEDIA = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
FILES = {name: Asset((HERE / name).read_bytes(), media) for name, media in MEDIA.items()}

bp = Blueprint("demo", __name__)


def _serve(name: str) -> Response:
    policy = {"Content-Security-Policy": POLICY} if name == "index.html" else None
    return FILES[name].response("no-cache", policy, any_origin=False)


def _described(what: str, media: str) -> dict[str, object]:
    return {"tags": ["client"], "responses": {"200": answer(what, {"type": "string"}, media=media)}}


@bp.get("/demo")
@describe(
    summary="The demo page: a to-do list written with /client.js", **_described("The page.", "text/html")
)
def page() -> Response:
    return _serve("index.html")


@bp.get("/demo/app.js")
@describe(summary="The demo page's script", **_described("The module.", "text/javascript"))
def script() -> Response:
    return _serve("app.js")


@bp.get("/demo/style.css")
@describe(summary="The demo page's style sheet", **_described("The style sheet.", "text/css"))
def style() -> Response:
    return _serve("style.css")

"""The browser client (`gateway.js`, an ES module) and its TypeScript declarations, served.

Two URLs each:

- `/client.js`, `/client.d.ts`: the client of this deployment, whatever its version. Browsers
  may keep it but ask again on each use (`no-cache`), and the ETag makes that a 304.
- `/client/v<version>.js`, `/client/v<version>.d.ts`: the same bytes, kept a year without
  asking (`immutable`): an app that pins a version loads it once. The version is the client's
  own (`Gateway.version`, the `VERSION` constant of gateway.js), and `versions.json` beside it
  records the digest of each released version's files, so that a test fails when the files
  change and the version does not (an immutable URL must never serve two contents).

Both are public files: any origin may load them (`Access-Control-Allow-Origin: *`; a module
script is always fetched with CORS), which lets a page on another origin import the client
before CORS_ORIGINS is even set. Calling the API still needs CORS_ORIGINS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, request

from gateway.api.openapi import answer, describe

HERE = Path(__file__).parent
SCRIPT_MEDIA = "text/javascript; charset=utf-8"  # RFC 9239
TYPES_MEDIA = "application/typescript; charset=utf-8"
LATEST = "no-cache"  # keep, but revalidate on each use: a deploy's new client is seen at once
IMMUTABLE = "public, max-age=31536000, immutable"  # a versioned URL never changes content
VERSION = re.compile(r'^const VERSION = "([0-9]+\.[0-9]+\.[0-9]+)";$', re.MULTILINE)


@dataclass(frozen=True)
class Asset:
    """A served file: its bytes, media type and entity tag."""

    body: bytes
    media: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def response(
        self, cache_control: str, extra: dict[str, str] | None = None, *, any_origin: bool = True
    ) -> Response:
        """The file, or 304 when the request's If-None-Match names it; `any_origin`: readable by
        pages of every origin."""
        response = Response(self.body, content_type=self.media)
        response.set_etag(self.digest[:32])
        response.headers["Cache-Control"] = cache_control
        if any_origin:
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        response.headers.update(extra or {})
        response.make_conditional(request)  # turns it into a 304 in place when it may
        return response


def read_version(source: bytes) -> str:
    match = VERSION.search(source.decode())
    if not match:
        raise RuntimeError('gateway/client/gateway.js must declare `const VERSION = "x.y.z";`')
    return match.group(1)


SCRIPT = Asset((HERE / "gateway.js").read_bytes(), SCRIPT_MEDIA)
TYPES = Asset((HERE / "gateway.d.ts").read_bytes(), TYPES_MEDIA)
CLIENT_VERSION = read_version(SCRIPT.body)
SCRIPT_URL = f"/client/v{CLIENT_VERSION}.js"
TYPES_URL = f"/client/v{CLIENT_VERSION}.d.ts"

bp = Blueprint("client", __name__)

NOT_MODIFIED = {"description": "Not modified: the ETag sent in If-None-Match is still the file's."}


def _described(what: str, media: str) -> dict[str, object]:
    return {
        "tags": ["client"],
        "responses": {
            "200": answer(what, {"type": "string"}, media=media.split(";")[0]),
            "304": NOT_MODIFIED,
        },
    }


# Deno and some editors read the declarations of a module from this header.
TYPES_HEADER = {"X-TypeScript-Types": TYPES_URL}


@bp.get("/client.js")
@describe(
    summary="The browser client, an ES module (this deployment's version)",
    **_described("The module.", SCRIPT_MEDIA),
)
def script() -> Response:
    return SCRIPT.response(LATEST, TYPES_HEADER)


@bp.get("/client.d.ts")
@describe(
    summary="TypeScript declarations of the browser client", **_described("The declarations.", TYPES_MEDIA)
)
def types() -> Response:
    return TYPES.response(LATEST)


@bp.get(SCRIPT_URL)
@describe(
    summary=f"The browser client, version {CLIENT_VERSION} (immutable)",
    **_described("The module.", SCRIPT_MEDIA),
)
def versioned_script() -> Response:
    return SCRIPT.response(IMMUTABLE, TYPES_HEADER)


@bp.get(TYPES_URL)
@describe(
    summary=f"TypeScript declarations of the browser client, version {CLIENT_VERSION} (immutable)",
    **_described("The declarations.", TYPES_MEDIA),
)
def versioned_types() -> Response:
    return TYPES.response(IMMUTABLE)


def init_app(app: Flask) -> None:
    """Serve the client, and the demo page when DEMO_PAGE (or development) says so."""
    app.register_blueprint(bp)
    if app.extensions["gateway"].settings.demo_page_on:
        from gateway.client import demo

        app.register_blueprint(demo.bp)

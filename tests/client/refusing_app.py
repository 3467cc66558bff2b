"""The web app as `wsgi.py` builds it, for the browser tests' gunicorn, with one addition: the
paths listed in REFUSED_PATHS (comma-separated) are answered 403, as by a proxy that does not
pass them (e.g. `/ws`, to leave a client without WebSockets)."""

from __future__ import annotations

import os

from flask import Response, request

from app import create_app
from gateway.problems import Problem

app = create_app()
REFUSED = frozenset(filter(None, os.environ.get("REFUSED_PATHS", "").split(",")))


@app.before_request
def refuse() -> Response | None:
    if request.path in REFUSED:
        return Problem(403, "Forbidden", "refused by this test server").response()
    return None

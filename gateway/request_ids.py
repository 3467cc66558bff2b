"""`X-Request-ID`: taken from the request (a router or client may set one) or made, echoed on
the answer, and put on every log line of the request (gateway/logs.py), so that a user's report,
the router's log and the app's lines can be matched."""

from __future__ import annotations

import os
import re

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
VALID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")  # what routers send; anything else is replaced


def _assign() -> None:
    given = request.environ.get("HTTP_X_REQUEST_ID")  # the header, as WSGI names it
    g.request_id = given if given and VALID.fullmatch(given) else os.urandom(8).hex()


def _echo(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[HEADER] = request_id
    return response


def current() -> str | None:
    """This request's id (None outside a request)."""
    return g.get("request_id")


def init_app(app: Flask) -> None:
    app.before_request(_assign)
    app.after_request(_echo)

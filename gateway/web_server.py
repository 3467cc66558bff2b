"""The `web` process's gunicorn parts that gunicorn.conf.py names: its worker and access logger.

Loaded by gunicorn's arbiter before the app, so this module imports gunicorn and the
standard library alone (gateway/logs.py is plain logging).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from gunicorn import glogging, util
from gunicorn.workers import ggevent

from gateway import logs

PROBLEM_TYPE = "application/problem+json"
# Characters a client can put in a logged field that would break the line or its quoting.
_UNSAFE = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x22, 0x5C, 0x7F]}
_LOGGED_ATOMS = ("h", "u", "m", "U", "H", "f", "a")  # the client-controlled atoms of the format
_DEVICE_PATH = re.compile(r"^/api/devices/.+")


def escape(text: str) -> str:
    """`text` with control characters, quotes and backslashes as `\\xNN` escapes."""
    return text.translate(_UNSAFE)


class AccessLogger(glogging.Logger):
    """gunicorn's logger, in the format of the app's own lines (LOG_FORMAT, gateway/logs.py),
    with every client-controlled field of an access line escaped, and the FCM registration
    token of `DELETE /api/devices/<token>` left out. In JSON an access line is an object with
    the request's fields and its `request_id`."""

    log_format = "text"

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # Read here, in the arbiter, from the environment: the app's settings load later.
        self.log_format = logs.format_for(
            os.environ.get("LOG_FORMAT"), os.environ.get("APP_ENV") or "production"
        )
        for handler in self.error_log.handlers:
            handler.setFormatter(logs.formatter(self.log_format))
        if self.log_format == "json":
            for handler in self.access_log.handlers:
                handler.setFormatter(logs.JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if self.log_format != "json":
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        fields = {
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": round(atoms["D"] / 1000, 3),
            "remote": atoms["h"],
            "user_agent": atoms["a"],
        }
        extra = {"request_id": atoms.get("{x-request-id}o"), "fields": fields}
        self.access_log.info("%s %s %s", atoms["m"], atoms["U"], atoms["s"], extra=extra)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        if isinstance(atoms.get("U"), str) and _DEVICE_PATH.match(atoms["U"]):
            atoms["U"] = "/api/devices/<token>"
        for name in _LOGGED_ATOMS:
            value = atoms.get(name)
            if isinstance(value, str):
                atoms[name] = escape(value)
        return atoms


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's error answer (`util.write_error`) as an RFC 9457 problem."""
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status_int, "detail": mesg or reason}
    )
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1", "replace"))


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker, whose own refusals (a malformed request line, headers too
    large, a bad chunked body) are problems like every answer of the app."""

    def init_process(self) -> None:
        util.write_error = write_problem  # what the worker's handle_error answers with
        super().init_process()

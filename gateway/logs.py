"""One logging configuration for every process: web, worker, CLI, and gunicorn's own lines.

`LOG_FORMAT=text` writes `2026-12-04 15:57:59,764 INFO gateway.worker: message`; `json` writes
one object a line, `{"ts", "level", "logger", "msg"}` plus `request_id`, `command_id` and
`user` where the line knows them, for a platform's log search. Text is the default in
development and tests, JSON in production.

A web request's id and caller reach its lines without being passed along: a filter reads them
from Flask's `g`. Other lines name them with `extra={"command_id": ..., "request_id": ...}`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"
CONTEXT_FIELDS = ("request_id", "command_id", "user")


def format_for(log_format: str | None, app_env: str) -> str:
    """The format in force: the setting, or by default JSON in production and text elsewhere."""
    if log_format:
        return log_format
    return "json" if app_env == "production" else "text"


class RequestContext(logging.Filter):
    """Adds the current web request's id and user to each line logged while it is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            from flask import g, has_request_context
        except ImportError:  # pragma: no cover - flask is a dependency of every process
            return True
        if has_request_context():
            if getattr(record, "request_id", None) is None:
                record.request_id = g.get("request_id")
            if getattr(record, "user", None) is None:
                identity = g.get("identity")
                record.user = identity.user if identity is not None else None
        return True


class TextFormatter(logging.Formatter):
    """The classic line, with ` [request_id=… command_id=…]` appended where known."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        known = [f"{name}={value}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None))]
        record.context = f" [{' '.join(known)}]" if known else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a traceback goes in `exc`, on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value:
                line[name] = value
        for name, value in getattr(record, "fields", {}).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str, level: int | str = logging.INFO) -> None:
    """Send every logger's lines to stderr in `log_format`, at `level` and above (the root
    logger's one handler; called once per process, again only to change the format)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "gateway", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.gateway = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestContext())
    root.addHandler(handler)
    root.setLevel(level)

"""The operators' side of the web app: the `/admin` page and the JSON endpoints it (and any
script) uses, under `/admin/api`.

The page and its script and style are static and public: they hold no data. Every endpoint
under `/admin/api` needs an operator (a token whose roles claim holds ADMIN_ROLE; in open dev
mode, the one dev user): no token is 401, a user who is no operator 403.

- `GET /admin/api/status`: the pipeline's snapshot (gateway/pipeline_status.py).
- `GET /admin/api/dead-letters?collection=&error=&since=&limit=`: the matching dead letters,
  oldest failure first (gateway/dead_letters.py shows one), and how many match in all.
- `GET /admin/api/dead-letters/<partition>/<entry id>`: one dead letter.
- `POST /admin/api/dead-letters/replay` and `.../drop`, body `{"dead_letter": "<name>"}` for one,
  or `{"all": true, "collection"?, "error"?, "since"?}` for every one matching.
- `GET /admin/api/commands/<command id>`: any user's command status, to follow a replay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, request
from jsonschema import Draft202012Validator

from gateway import dead_letters as letters
from gateway import pipeline_status, record
from gateway.api import current_identity, gateway, json_response
from gateway.api.openapi import answer, describe, json_body, problem
from gateway.client import Asset
from gateway.ids import partition_of_command
from gateway.problems import Problem

HERE = Path(__file__).parent
# As the demo page's: its own script and style, talking to this origin only.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
FILES = {
    "index.html": Asset((HERE / "index.html").read_bytes(), "text/html; charset=utf-8"),
    "admin.js": Asset((HERE / "admin.js").read_bytes(), "text/javascript; charset=utf-8"),
    "admin.css": Asset((HERE / "admin.css").read_bytes(), "text/css; charset=utf-8"),
}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

page_bp = Blueprint("admin", __name__, url_prefix="/admin")
bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")


@bp.before_request
def operators_only() -> None:
    """401 without a (valid) token, 403 for a user who is not an operator."""
    if not current_identity().operator:
        raise Problem(403, "Forbidden", "Only operators may use the admin endpoints.", slug="forbidden")


@bp.errorhandler(letters.DeadLetterError)
def _bad_name(error: letters.DeadLetterError) -> Response:
    if isinstance(error, letters.NoSuchDeadLetter):
        return Problem(404, "Not Found", str(error), slug="no-such-dead-letter").response()
    if isinstance(error, letters.NotReplayed):
        return Problem(409, "Conflict", str(error), slug="dead-letter-not-replayed").response()
    return Problem(400, "Bad Request", str(error), slug="invalid-dead-letter-filter").response()


# --- the page -------------------------------------------------------------------------------


def _serve(name: str) -> Response:
    policy = {"Content-Security-Policy": POLICY} if name == "index.html" else None
    return FILES[name].response("no-cache", policy, any_origin=False)


def _file(what: str, media: str) -> dict[str, Any]:
    return {"tags": ["operations"], "responses": {"200": answer(what, {"type": "string"}, media=media)}}


@page_bp.get("")
@describe(summary="The operators' live page (static: it reads /admin/api)", **_file("The page.", "text/html"))
def page() -> Response:
    return _serve("index.html")


@page_bp.get("/admin.js")
@describe(summary="The operators' page's script", **_file("The module.", "text/javascript"))
def script() -> Response:
    return _serve("admin.js")


@page_bp.get("/admin.css")
@describe(summary="The operators' page's style sheet", **_file("The style sheet.", "text/css"))
def style() -> Response:
    return _serve("admin.css")


# --- the JSON endpoints ---------------------------------------------------------------------

OPERATOR_ONLY = {"403": problem("The caller is not an operator (ADMIN_ROLE in the token's roles).")}
BROKER_DOWN = {"503": problem("Redis cannot be reached.", retry_after=True)}
NULLABLE_SECONDS = {"type": ["number", "null"]}
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "at",
        "partitions",
        "backlog",
        "oldest_pending_seconds",
        "workers",
        "dead_letters",
        "totals",
    ],
    "properties": {
        "at": {"type": "string", "description": "Redis's clock when the snapshot was read"},
        "backlog": {"type": "integer", "description": "unfinished commands, all partitions"},
        "oldest_pending_seconds": NULLABLE_SECONDS,
        "partitions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["partition", "backlog", "oldest_pending_seconds", "holder", "paused_seconds"],
                "properties": {
                    "partition": {"type": "integer"},
                    "backlog": {"type": "integer"},
                    "oldest_pending_seconds": NULLABLE_SECONDS,
                    "holder": {"type": ["string", "null"], "description": "the worker holding its lease"},
                    "paused_seconds": {"type": "number", "description": "left of a store-outage pause"},
                    "dead_letters": {"type": "integer"},
                },
            },
        },
        "workers": {"type": "array", "items": {"type": "object"}},
        "leases_without_worker": {"type": "array", "items": {"type": "object"}},
        "dead_letters": {"type": "object"},
        "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
DEAD_LETTER_NAME = r"^[0-9]{1,4}/[0-9]{1,20}-[0-9]{1,20}$"
DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["dead_letter", "command_id", "op", "collection", "entity_id", "user", "error", "failed_at"],
    "properties": {
        "dead_letter": {"type": "string", "pattern": DEAD_LETTER_NAME},
        "command_id": {"type": ["string", "null"]},
        "op": {"type": ["string", "null"]},
        "collection": {"type": ["string", "null"]},
        "entity_id": {"type": ["string", "null"]},
        "user": {"type": ["string", "null"]},
        "payload": {},
        "error": {"type": ["string", "null"]},
        "error_type": {"type": "string"},
        "attempts": {"type": "integer"},
        "accepted_at": {"type": ["string", "null"]},
        "failed_at": {"type": ["string", "null"]},
        "request_id": {"type": "string", "description": "the X-Request-ID of the request that sent it"},
        "claims": {"type": "object", "description": "the token claims carried with it (COMMAND_CLAIMS)"},
    },
}
FILTERS: dict[str, dict[str, Any]] = {
    "collection": {"type": "string", "maxLength": 63},
    "error": {"type": "string", "maxLength": 500},
    "since": {
        "type": "string",
        "maxLength": 64,
        "description": "an ISO time, or a duration back: 30m, 1h, 2d",
    },
}
ACTION_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "required": ["dead_letter"],
            "properties": {"dead_letter": {"type": "string", "pattern": DEAD_LETTER_NAME}},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["all"],
            "properties": {"all": {"const": True}, **FILTERS},
            "additionalProperties": False,
        },
    ]
}
ACTION = Draft202012Validator(ACTION_SCHEMA)
ACTION_BODY = json_body(
    ACTION_SCHEMA,
    description="One dead letter by name, or every one matching the filters (`all` must be true).",
)
ACTION_PROBLEMS = {
    "400": problem("The body is not JSON, or a filter is not one (`since`)."),
    "404": problem("No such dead letter."),
    "409": problem("Not replayed: its payload was too large to keep, or a quota refuses it now."),
    "415": problem("The body is not sent as application/json."),
    "422": problem("Neither one dead letter's name nor `all: true` with filters."),
}


def _filters(values: Any) -> letters.Filters:
    return letters.Filters(
        collection=values.get("collection") or None,
        error=values.get("error") or None,
        since_ms=letters.parse_since(values.get("since") or None),
    )


def _chosen(body: dict[str, Any]) -> letters.Chosen:
    """The dead letters a replay or drop body names: one, or all matching its filters."""
    return letters.Chosen(body.get("dead_letter"), _filters(body))


@bp.get("/status")
@describe(
    tags=["operations"],
    summary="The pipeline now: backlog and oldest age per partition, workers, dead letters, totals",
    responses={
        "200": answer("The snapshot (docs/operations.md).", STATUS_SCHEMA),
        **OPERATOR_ONLY,
        **BROKER_DOWN,
    },
    auth=True,
)
def status() -> Response:
    return json_response(pipeline_status.snapshot(gateway()))


@bp.get("/dead-letters")
@describe(
    tags=["operations"],
    summary="The dead letters that match the filters, oldest failure first",
    parameters=[
        *(
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in FILTERS.items()
        ),
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        },
    ],
    responses={
        "200": answer(
            "At most `limit` of them, and how many match in all.",
            {
                "type": "object",
                "required": ["dead_letters", "matching"],
                "properties": {
                    "dead_letters": {"type": "array", "items": DEAD_LETTER_SCHEMA},
                    "matching": {"type": "integer"},
                },
            },
        ),
        "400": problem("A filter or the limit is not one."),
        **OPERATOR_ONLY,
        **BROKER_DOWN,
    },
    auth=True,
)
def list_dead_letters() -> Response:
    raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise Problem(
            400, "Bad Request", f"limit must be 1 to {MAX_LIMIT}.", slug="invalid-dead-letter-filter"
        )
    for name, schema in FILTERS.items():
        if len(request.args.get(name, "")) > schema["maxLength"]:
            raise Problem(400, "Bad Request", f"{name} is too long.", slug="invalid-dead-letter-filter")
    found = letters.matching(gateway(), _filters(request.args))
    shown = [letter.shown() for letter in found[: int(raw_limit)]]
    return json_response({"dead_letters": shown, "matching": len(found)})


@bp.get("/dead-letters/<partition>/<entry_id>")
@describe(
    tags=["operations"],
    summary="One dead letter",
    responses={
        "200": answer("The dead letter.", DEAD_LETTER_SCHEMA),
        "400": problem("Not a dead letter's name."),
        "404": problem("No such dead letter."),
        **OPERATOR_ONLY,
        **BROKER_DOWN,
    },
    auth=True,
)
def show_dead_letter(partition: str, entry_id: str) -> Response:
    return json_response(letters.get(gateway(), f"{partition}/{entry_id}").shown())


def _action() -> dict[str, Any]:
    """The body of a replay or drop: one dead letter's name, or `all` with filters."""
    if not request.is_json:
        raise Problem(415, "Unsupported Media Type", "Send the body as application/json.")
    body = request.get_json(silent=True)
    if body is None:
        raise Problem(400, "Bad Request", "The body is not JSON.", slug="malformed-json")
    if not ACTION.is_valid(body):
        raise Problem(
            422,
            "Unprocessable Content",
            'Send {"dead_letter": "<partition>/<entry id>"}, or {"all": true} with filters '
            "(collection, error, since).",
            slug="invalid-dead-letter-action",
        )
    return body


@bp.post("/dead-letters/replay")
@describe(
    tags=["operations"],
    summary="Replay dead letters: accept each command again as a new command of its user",
    requestBody=ACTION_BODY,
    responses={
        "200": answer(
            "The dead letters replayed, each with its new command (the dead letter is gone).",
            {
                "type": "object",
                "required": ["replayed"],
                "properties": {
                    "replayed": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "dead_letter": {"type": "string"},
                                "command_id": {"type": "string"},
                            },
                        },
                    }
                },
            },
        ),
        **ACTION_PROBLEMS,
        **OPERATOR_ONLY,
        **BROKER_DOWN,
    },
    auth=True,
)
def replay() -> Response:
    done = letters.replay_chosen(gateway(), _chosen(_action()))
    return json_response({"replayed": [one.shown() for one in done]})


@bp.post("/dead-letters/drop")
@describe(
    tags=["operations"],
    summary="Drop dead letters (their commands stay failed)",
    requestBody=ACTION_BODY,
    responses={
        "200": answer(
            "How many were dropped.",
            {"type": "object", "required": ["dropped"], "properties": {"dropped": {"type": "integer"}}},
        ),
        **ACTION_PROBLEMS,
        **OPERATOR_ONLY,
        **BROKER_DOWN,
    },
    auth=True,
)
def drop() -> Response:
    return json_response({"dropped": letters.drop_chosen(gateway(), _chosen(_action()))})


@bp.get("/commands/<command_id>")
@describe(
    tags=["operations"],
    summary="Any user's command status (to follow a replay)",
    responses={
        "200": answer("The command's status, as its owner sees it, and its owner.", {"type": "object"}),
        "404": problem("No such command (or its record expired)."),
        **OPERATOR_ONLY,
        **BROKER_DOWN,
    },
    auth=True,
)
def command_status(command_id: str) -> Response:
    gw = gateway()
    partition = partition_of_command(command_id, gw.settings.partitions)
    found = gw.redis.hgetall(gw.keys.command(partition, command_id)) if partition is not None else None
    if not found:
        raise Problem(404, "Not Found", "No such command.", slug="unknown-command")
    return json_response({**record.status(command_id, found), "user": found.get(record.USER)})


def init_app(app: Flask) -> None:
    app.register_blueprint(page_bp)
    app.register_blueprint(bp)

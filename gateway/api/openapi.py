"""The OpenAPI 3.1 description of the HTTP API, at /openapi.json, with Swagger UI at /docs.

apispec assembles it, once per process on first request, from the app itself: every URL rule
of the app becomes a path, whichever blueprint registered it. A view says what it takes and
answers with `@describe(...)` (bodies as pydantic models, `gateway.api.models`); a route of
another part of the gateway that has no `describe` is described in `OTHER_ROUTES` here, and one
in neither gets a bare entry, so that no route is ever missing. What depends on the settings is
described as configured: bearer authentication only with JWT_SECRET, 429 only where a rate limit
is set, the collection names when COLLECTIONS or SCHEMAS_DIR close the set.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from apispec import APISpec
from flask import Blueprint, Flask, Response, current_app
from offapi import OpenAPITemplate

from gateway.api import json_response
from gateway.api.models import IDEMPOTENCY_KEY_PATTERN, MODELS, entity_id_schema
from plugins.names import COLLECTION_NAME, RESERVED, RULE

bp = Blueprint("openapi", __name__)

View = TypeVar("View", bound=Callable[..., Any])
SPEC_URL = "/openapi.json"
VERSION = "1.0.0"
UNDOCUMENTED = frozenset({"HEAD", "OPTIONS"})  # answered by Flask itself for every route


def describe(**operation: Any) -> Callable[[View], View]:
    """Attach a view's OpenAPI operation: `summary` (default: the docstring's first line),
    `tags`, `parameters`, `requestBody`, `responses`, and the gateway's own flags `auth`
    (bearer token needed, with JWT_SECRET) and `limit` ("writes" or "reads": which rate limit)."""

    def mark(view: View) -> View:
        view.openapi = operation  # type: ignore[attr-defined]
        return view

    return mark


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def answer(
    description: str,
    schema: dict[str, Any] | None = None,
    *,
    media: str = "application/json",
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A response: `schema` under `media` (none: no body)."""
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


def problem(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    """An error response: problem JSON, with `Retry-After` when the client should wait."""
    headers = {"Retry-After": RETRY_AFTER} if retry_after else None
    return answer(description, ref("Problem"), media="application/problem+json", headers=headers)


def json_body(schema: dict[str, Any], *media: str, description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {m: {"schema": schema} for m in media or ("application/json",)},
    }


RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "schema": {"type": "string", "pattern": r"^[0-9]+$"},
}
IDEMPOTENCY_KEY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the same user and key within IDEMPOTENCY_TTL_SECONDS (at least 24 h) "
        "answer the first command again, queueing nothing; the same key with another request is 422."
    ),
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
}
ACCEPTED = answer(
    "Accepted: the command is queued (or, for a retried Idempotency-Key, was queued before).",
    ref("Accepted"),
    headers={
        "Location": {"description": "the command's status URL", "schema": {"type": "string"}},
        "Retry-After": RETRY_AFTER,
        "Idempotent-Replayed": {
            "description": "`true` on the answer to a retried Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        },
    },
)
BODY_LIMITS = (
    "A JSON object of at most MAX_BODY_BYTES, nested at most MAX_JSON_DEPTH levels deep, with at "
    "most MAX_JSON_MEMBERS members (object members and array elements) in all, and integers within 64 bits."
)
CLAIMS_TOO_LARGE = (
    "The token's claims carried with each command (COMMAND_CLAIMS, the roles claim) exceed 2 KiB."
)
WRITE_PROBLEMS = {
    "400": problem("The body is not JSON, or the Idempotency-Key is malformed."),
    "403": problem("The collection is read-only (operators excepted), or a plugin's rule refuses the write."),
    "404": problem("There is no such collection (not declared)."),
    "413": problem("The body is larger than MAX_BODY_BYTES."),
    "415": problem("The body is not sent as one of the media types this call takes."),
    "431": problem(CLAIMS_TOO_LARGE),
    "422": problem(
        "The body breaks a rule: not an object, too deep, too many members, an integer beyond 64 bits, "
        "an `id` that is not an entity id (or not the URL's), the collection's schema or its store's "
        "checks; or the Idempotency-Key came before with another request. `errors` names each field."
    ),
    "503": problem(
        "Redis (or, for a patch checked against a schema, the store) cannot be reached; or MAX_BACKLOG "
        "commands are unfinished in all (`/problems/backlog-full`: the workers are behind, nothing "
        "accepted is lost; try again after `Retry-After`).",
        retry_after=True,
    ),
}


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of `app`, as configured."""
    settings = app.extensions["gateway"].settings
    spec = APISpec(
        title="command-gateway",
        version=VERSION,
        openapi_version="3.1.0",
        info={
            "description": (
                "Writes are accepted at once (202) and applied in the background; follow the "
                "`status_url` of the answer to learn how each ended. Every error is an RFC 9457 "
                "problem (`application/problem+json`)."
            )
        },
    )
    components: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    for name, schema in components.items():
        spec.components.schema(name, schema)
    secured = not settings.open_dev_mode
    if secured:
        spec.components.security_scheme(
            "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256), user id in `sub`"}
        )
        # For clients that cannot set headers: a browser's EventSource, WebSocket.
        spec.components.security_scheme("query_token", {"type": "apiKey", "in": "query", "name": "token"})
    limits = {
        "writes": settings.rate_limit_writes,
        "reads": settings.rate_limit_reads,
        "write_bytes": settings.rate_limit_write_bytes,
    }
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        described = getattr(view, "openapi", None) or OTHER_ROUTES.get(rule.endpoint) or _bare(view)
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        parameters = [_path_parameter(app, name) for name in sorted(rule.arguments)]
        item = paths.setdefault(path, {"parameters": parameters})
        for method in sorted((rule.methods or set()) - UNDOCUMENTED):
            item[method.lower()] = _operation(described, view, rule.endpoint, secured, limits)
    for path, item in paths.items():
        parameters = item.pop("parameters")
        spec.path(path=path, operations=item, parameters=parameters)
    return spec.to_dict()


def _operation(
    described: dict[str, Any], view: Callable[..., Any], endpoint: str, secured: bool, limits: dict[str, str]
) -> dict[str, Any]:
    operation = {k: v for k, v in described.items() if k not in ("auth", "limit")}
    operation.setdefault("summary", (view.__doc__ or endpoint).strip().splitlines()[0])
    operation["operationId"] = endpoint
    responses = dict(operation.get("responses", {}))
    if described.get("auth") and secured:
        operation["security"] = [{"bearer": []}]
        if described["auth"] == "query":
            operation["security"].append({"query_token": []})
        responses["401"] = problem("The bearer token is missing or not valid.")
    kind = described.get("limit", "")
    if limits.get(kind) or kind == "writes":
        why = f"Past the user's rate limit of {kind} ({limits[kind]})" if limits.get(kind) else ""
        if kind == "writes":
            pending = "the user has MAX_PENDING_PER_USER commands unfinished (`/problems/too-many-pending`)"
            why = f"{why}, or {pending}" if why else pending[0].upper() + pending[1:]
            if limits.get("write_bytes"):
                why += f", or past its limit of write body bytes beyond 16 KiB each ({limits['write_bytes']})"
        responses["429"] = problem(f"{why}.", retry_after=True)
    responses.setdefault("405", METHOD_NOT_ALLOWED)
    operation["responses"] = responses
    return operation


# Any path answers a method it does not take with 405 and `Allow`.
METHOD_NOT_ALLOWED = problem("This path does not take this method; `Allow` lists those it takes.")


def _path_parameter(app: Flask, name: str) -> dict[str, Any]:
    schemas = {"collection": _collection_schema(app), "entity_id": entity_id_schema()}
    schema = schemas.get(name, {"type": "string", "pattern": "^[^/]+$"})
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _collection_schema(app: Flask) -> dict[str, Any]:
    names = app.extensions["collections"].names
    if names is not None:
        return {"type": "string", "enum": sorted(names), "description": "one of the configured collections"}
    return {
        "type": "string",
        "pattern": f"^{COLLECTION_NAME}$",
        "not": {"enum": list(RESERVED)},
        "description": f"a collection name: {RULE}",
    }


def _bare(view: Callable[..., Any]) -> dict[str, Any]:
    """A route nobody described: its summary, and that its errors are problems."""
    return {"responses": {"default": problem("An error.")}, "tags": ["other"]}


# Routes of other parts of the gateway (gateway/notify/), described here by endpoint name.
LAST_EVENT_ID = {
    "type": "string",
    "pattern": r"^[0-9]{1,15}-[0-9]{1,15}$",
    "description": "an event id as received",
}
# One event of the stream, as an SSE parser reads it (OpenAPI 3.1: `schema` is each event's).
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": "the notification event as JSON (`Event`)"},
        "event": {"type": "string", "enum": ["message"]},
        "id": {"type": "string", "description": "the event id, for Last-Event-ID"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
DEVICE_CALLS_LIMITED = problem(
    "Past the user's 30 device registrations and removals a minute.", retry_after=True
)
DEVICE_TOKEN = {"type": "string", "pattern": r"^[\x21-\x2e\x30-\x7e]{1,4096}$"}
OTHER_ROUTES: dict[str, dict[str, Any]] = {
    "sse.events": {
        "summary": "The user's notification events, as Server-Sent Events",
        "description": (
            "One event per finished command, each with its `id:`; a reconnecting EventSource sends "
            "`Last-Event-ID` and gets every later event still kept, in order. Comment lines keep "
            "an idle stream open. The stream does not end by itself."
        ),
        "tags": ["notifications"],
        "parameters": [
            {"name": "last_event_id", "in": "query", "schema": LAST_EVENT_ID},
            {"name": "Last-Event-ID", "in": "header", "schema": LAST_EVENT_ID},
        ],
        "responses": {
            "200": answer(
                "The event stream, an event a finished command.", SSE_EVENT, media="text/event-stream"
            ),
            "400": problem("A last event id that is not one, or a `limit` or `cursor` (this is no list)."),
            "503": problem("Redis cannot be reached.", retry_after=True),
        },
        "auth": "query",
    },
    "ws.events": {
        "summary": "The user's notification events over a WebSocket",
        "description": (
            "Upgrade to a WebSocket; each event comes as one JSON text frame. `last_event_id` "
            "replays, in order, every later event still kept."
        ),
        "tags": ["notifications"],
        "parameters": [{"name": "last_event_id", "in": "query", "schema": LAST_EVENT_ID}],
        "responses": {
            "101": {"description": "Switching to the WebSocket protocol."},
            "400": problem("Not a WebSocket upgrade, or a last event id that is not one."),
            "503": problem("Redis cannot be reached.", retry_after=True),
        },
        "auth": "query",
    },
    "devices.register": {
        "summary": "Register a device of the user for push notifications (FCM)",
        "tags": ["notifications"],
        "requestBody": json_body(
            {
                "type": "object",
                "required": ["token"],
                "properties": {"token": DEVICE_TOKEN},
                "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                "maxProperties": 16,
            },
            description="The device's FCM registration token.",
        ),
        "responses": {
            "200": answer(
                "Registered already: refreshed.", {"type": "object", "properties": {"token": DEVICE_TOKEN}}
            ),
            "201": answer("Registered.", {"type": "object", "properties": {"token": DEVICE_TOKEN}}),
            "400": problem("The body is not JSON."),
            "413": problem("The body is larger than MAX_BODY_BYTES."),
            "415": problem("The body is not sent as application/json."),
            "422": problem("Not an object with a registration token."),
            "429": DEVICE_CALLS_LIMITED,
            "503": problem("Redis cannot be reached.", retry_after=True),
        },
        "auth": True,
    },
    "devices.drop": {
        "summary": "Drop a device of the user",
        "tags": ["notifications"],
        "responses": {
            "204": {"description": "Dropped."},
            "404": problem("The user has no such device, or it is registered to another user now."),
            "429": DEVICE_CALLS_LIMITED,
            "503": problem("Redis cannot be reached.", retry_after=True),
        },
        "auth": True,
    },
}

_lock = threading.Lock()


def spec_of(app: Flask) -> dict[str, Any]:
    """The app's description, built on first use (after every blueprint is registered)."""
    with _lock:
        if "openapi" not in app.extensions:
            app.extensions["openapi"] = build(app)
        return app.extensions["openapi"]


@bp.get(SPEC_URL)
@describe(
    tags=["docs"],
    summary="This description of the API (OpenAPI 3.1)",
    responses={"200": answer("The OpenAPI document.", {"type": "object"})},
)
def openapi_json() -> Response:
    return json_response(spec_of(current_app._get_current_object()))  # type: ignore[attr-defined]


class DocsPage:
    """Swagger UI on one self-contained page (offapi), with a CSP that allows its own scripts by
    hash and nothing from elsewhere."""

    def __init__(self) -> None:
        self.html = OpenAPITemplate.SWAGGER.value.format(spec_url=SPEC_URL)
        hashes = " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
            for script in re.findall(r"<script>(.*?)</script>", self.html, re.S)
        )
        self.policy = (
            f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'"
        )


_docs: list[DocsPage] = []


@bp.get("/docs")
@describe(
    tags=["docs"],
    summary="Interactive documentation of the API (Swagger UI)",
    responses={"200": answer("The page.", {"type": "string"}, media="text/html")},
)
def docs() -> Response:
    with _lock:
        if not _docs:
            _docs.append(DocsPage())
    page = _docs[0]
    response = Response(page.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = page.policy
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response

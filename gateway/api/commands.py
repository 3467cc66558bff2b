"""Write routes (202 Accepted) and the command status route."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request

from gateway import request_ids
from gateway.accept import (
    BacklogFull,
    Idempotency,
    IdempotencyConflict,
    RateLimited,
    TooManyPending,
    accept,
    key_partition,
    prepare,
)
from gateway.access import may_write_at_once
from gateway.api import (
    authenticate,
    body_limits,
    carried_claims_json,
    check_authorized,
    check_collection_exists,
    check_target,
    collections,
    current_identity,
    current_user,
    forbidden,
    gateway,
    json_response,
    rate_limits,
    uri_path,
)
from gateway.api.models import IDEMPOTENCY_KEY_PATTERN, entity_id_schema
from gateway.api.openapi import (
    ACCEPTED,
    BODY_LIMITS,
    IDEMPOTENCY_KEY_HEADER,
    WRITE_PROBLEMS,
    answer,
    describe,
    json_body,
    problem,
    ref,
)
from gateway.ids import new_entity_id, new_entity_in
from gateway.problems import Problem
from gateway.record import status_of
from gateway.validation import (
    JSON_TYPES,
    MERGE_PATCH_TYPES,
    check_entity_id,
    invalid,
    json_object,
    refused,
)
from plugins.merge_patch import merge_patch
from plugins.store import Document, Op, Store, StoreUnavailable

log = logging.getLogger("gateway.api")

bp = Blueprint("commands", __name__, url_prefix="/api")

RETRY_AFTER_SECONDS = "1"  # most commands are applied well within a second
PENDING_RETRY_AFTER = "1"  # a user's commands are finished by the thousand a second
BACKLOG_RETRY_AFTER = "5"  # the workers are behind: give them a moment, not a hammering
REPLAYED = "Idempotent-Replayed"  # on the answer of a retry: the first request's command, nothing queued
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)  # printable ASCII, 1 to 255 characters


bp.before_request(authenticate)
bp.before_request(rate_limits.check)  # after authentication: counted per user


def _new_entity(collection: str) -> str:
    """A new entity's id. On a Redis Cluster, with an Idempotency-Key, one in the key's
    partition: a retry then looks its first command's record up in the same slot."""
    gw = gateway()
    key = request.headers.get("Idempotency-Key")
    if not (key and gw.keys.cluster):
        return new_entity_id()
    partitions = gw.settings.partitions
    return new_entity_in(collection, key_partition(current_identity().user, key, partitions), partitions)


def _idempotency(body: dict[str, Any] | None) -> Idempotency | None:
    """The request's Idempotency-Key, with a fingerprint of what it asks (method, URL, body)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise Problem(
            400,
            "Bad Request",
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            slug="invalid-idempotency-key",
        )
    request_line = f"{request.method} {request.path}\n".encode()
    fingerprint = hashlib.sha256(request_line + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Idempotency(key, fingerprint)


def _accepted(
    op: Op, collection: str, entity_id: str, payload: Document | None, sent: dict[str, Any] | None = None
) -> Response:
    """202 for the command, or for the first one its Idempotency-Key was sent with; `sent`: the body."""
    limits = current_app.extensions["rate_limits"]
    gw = gateway()
    identity = current_identity()
    try:
        call = prepare(
            gw,
            identity.user,
            op,
            collection,
            entity_id,
            payload,
            idempotency=_idempotency(sent),
            limit=limits.write_limit(),
            operator=identity.operator,
            request_id=request_ids.current() or "",
            claims=carried_claims_json(),
        )
        result = accept(gw, call)
    except RateLimited as error:
        raise rate_limits.too_many(limits.writes, "writes", error.retry_after) from error
    except TooManyPending as error:
        raise Problem(
            429,
            "Too Many Requests",
            f"{gw.settings.max_pending_per_user} of your commands are not finished yet "
            "(MAX_PENDING_PER_USER). Try again when some are.",
            slug="too-many-pending",
            headers={"Retry-After": PENDING_RETRY_AFTER},
        ) from error
    except BacklogFull as error:
        raise Problem(
            503,
            "Service Unavailable",
            "The workers are behind (MAX_BACKLOG commands unfinished); nothing accepted is lost. "
            "Try again later.",
            slug="backlog-full",
            headers={"Retry-After": BACKLOG_RETRY_AFTER},
        ) from error
    except IdempotencyConflict as error:
        raise Problem(
            422,
            "Unprocessable Content",
            "This Idempotency-Key was used before with a different request.",
            slug="idempotency-key-reused",
            errors=[{"field": "Idempotency-Key", "message": "already used with a different request"}],
        ) from error
    # Built by hand: command ids are URL-safe, and url_for costs ~20 us a request.
    status_url = f"{uri_path(request.script_root)}/api/commands/{result.command_id}"
    body = {
        "command_id": result.command_id,
        "entity_id": result.entity_id,
        "status": "pending",
        "status_url": status_url,
    }
    headers = {"Location": status_url, "Retry-After": RETRY_AFTER_SECONDS}
    if result.replayed:
        headers[REPLAYED] = "true"
    return json_response(body, 202, headers)


def _without_id(body: dict[str, Any], entity_id: str) -> Document:
    """The document to store: the body less its `id`, which must match the URL's if present."""
    if "id" in body and body["id"] != entity_id:
        raise invalid("id", "must be absent or equal to the id in the URL")
    return {k: v for k, v in body.items() if k != "id"}


def _check_write(op: Op, collection: str, entity_id: str, document: Document | None) -> None:
    """403 for a write the caller may not make whatever the document: a read-only collection
    (operators excepted), or one a plugin's `authorize` refuses. Whether the caller may change
    this document is decided where the write is applied (the store knows its owner)."""
    if not may_write_at_once(collections().declaration(collection), current_identity().operator):
        raise forbidden(f"{collection} is read-only: only operators write to it.")
    check_authorized(op, collection, entity_id, document)


def _check_document(op: Op, collection: str, entity_id: str, document: Document) -> None:
    """422 with every error the collection's schema and its store find in the write.

    The schema sees the document as a read would return it, `id` included. A patch is checked as
    its result: the document as stored now, merged with the patch (commands accepted but not yet
    applied are not part of it). The store's own `validate` gets the body (or the patch) as sent.
    """
    store = gateway().stores.for_collection(collection)
    known = collections()
    schema_errors: list[dict[str, str]] = []
    if collection in known.validators:
        result = document
        if op == "patch":
            result = merge_patch(store.get(collection, entity_id) or {}, document)
        schema_errors = known.errors(collection, {**result, "id": entity_id})
    owner_field = known.declaration(collection).owner_field
    if owner_field is not None:  # the store fills a declared owner column, whatever the body says
        document = {**document, owner_field: current_user()}
    errors = schema_errors + _store_errors(store, collection, op, document)
    if not errors:
        return
    problem = refused(errors)
    if op == "patch" and schema_errors:
        problem.detail = (
            f"{problem.detail}. A patch is checked as its result: {collection}/{entity_id} as "
            "stored now (commands not yet applied excluded), merged with the patch."
        )
    raise problem


def _store_errors(store: Store, collection: str, op: Op, document: Document) -> list[dict[str, str]]:
    """The store's own objections; none when it cannot be reached to ask: a write needs only
    Redis, and the store still refuses the document when the command is applied."""
    try:
        return store.validate(collection, op, document)
    except StoreUnavailable:
        log.debug("store %s unreachable: %s/%s accepted without its check", store.name, collection, op)
        return []


def _write(summary: str, body: dict[str, Any] | None, problems: tuple[str, ...]) -> dict[str, Any]:
    """The OpenAPI operation of a write route."""
    operation: dict[str, Any] = {
        "summary": summary,
        "tags": ["writes"],
        "parameters": [IDEMPOTENCY_KEY_HEADER],
        "responses": {"202": ACCEPTED, **{code: WRITE_PROBLEMS[code] for code in problems}},
        "auth": True,
        "limit": "writes",
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


DOCUMENT = {
    "type": "object",
    "properties": {"id": entity_id_schema("the entity id; without it the server makes one (a UUID)")},
}
SAME_ID = entity_id_schema("if present, the id in the URL")
ALL_PROBLEMS = ("400", "403", "404", "413", "415", "422", "431", "503")


@bp.post("/<collection:collection>")
@describe(
    **_write(
        "Create a document (202; fails later if the entity exists)",
        json_body(DOCUMENT, description=BODY_LIMITS),
        ALL_PROBLEMS,
    )
)
def create(collection: str) -> Response:
    check_collection_exists(collection)
    body = json_object(request, JSON_TYPES, body_limits())
    entity_id = check_entity_id(body["id"]) if "id" in body else _new_entity(collection)
    document = _without_id(body, entity_id)
    _check_write("create", collection, entity_id, document)
    _check_document("create", collection, entity_id, document)
    return _accepted("create", collection, entity_id, document, body)


@bp.put("/<collection:collection>/<entity_id>")
@describe(
    **_write(
        "Replace a document, creating it if absent (202)",
        json_body({"type": "object", "properties": {"id": SAME_ID}}, description=BODY_LIMITS),
        ALL_PROBLEMS,
    )
)
def replace(collection: str, entity_id: str) -> Response:
    check_target(collection, entity_id)
    body = json_object(request, JSON_TYPES, body_limits())
    document = _without_id(body, entity_id)
    _check_write("replace", collection, entity_id, document)
    _check_document("replace", collection, entity_id, document)
    return _accepted("replace", collection, entity_id, document, body)


@bp.patch("/<collection:collection>/<entity_id>")
@describe(
    **_write(
        "Patch a document with a JSON Merge Patch, RFC 7396 (202; fails later if the entity is absent)",
        json_body(
            {"type": "object", "properties": {"id": SAME_ID}},
            "application/merge-patch+json",
            "application/json",
            description=f"A merge patch: `null` removes a member. {BODY_LIMITS}",
        ),
        ALL_PROBLEMS,
    )
)
def patch(collection: str, entity_id: str) -> Response:
    check_target(collection, entity_id)
    body = json_object(request, MERGE_PATCH_TYPES, body_limits())
    document = _without_id(body, entity_id)
    _check_write("patch", collection, entity_id, document)
    _check_document("patch", collection, entity_id, document)
    return _accepted("patch", collection, entity_id, document, body)


@bp.delete("/<collection:collection>/<entity_id>")
@describe(**_write("Delete a document (202)", None, ("400", "403", "404", "422", "431", "503")))
def delete(collection: str, entity_id: str) -> Response:
    check_target(collection, entity_id)
    _check_write("delete", collection, entity_id, None)
    return _accepted("delete", collection, entity_id, None)


@bp.get("/commands/<command_id>")
@describe(
    summary="A command's status, to its owner",
    tags=["commands"],
    responses={
        "200": answer("The command's status.", ref("CommandStatus")),
        "404": problem("No such command, or another user's."),
        "503": problem("Redis cannot be reached.", retry_after=True),
    },
    auth=True,
    limit="reads",
)
def command_status(command_id: str) -> Response:
    status = status_of(gateway(), current_user(), command_id)
    if status is None:
        shown = command_id if len(command_id) <= 40 else command_id[:40] + "..."
        raise Problem(404, "Not Found", f"There is no command {shown!r}.", slug="unknown-command")
    return json_response(status)

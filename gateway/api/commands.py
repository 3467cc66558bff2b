"""Write routes (202 Accepted) and the command status route."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
from flask import Blueprint, Response, request, url_for

from gateway.api import current_user, gateway, json_response
from gateway.commands import Idempotency, IdempotencyConflict, accept, status_of
from gateway.ids import new_entity_id
from gateway.problems import Problem
from gateway.validation import (
    JSON_TYPES,
    MERGE_PATCH_TYPES,
    check_collection,
    check_entity_id,
    invalid,
    json_object,
)
from plugins.store import Document, Op

bp = Blueprint("commands", __name__, url_prefix="/api")

RETRY_AFTER_SECONDS = "1"  # most commands are applied well within a second
REPLAYED = "Idempotent-Replayed"  # on the answer of a retry: the first request's command, nothing queued
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")  # printable ASCII, 1 to 255 characters


@bp.before_request
def _authenticate() -> None:
    current_user()


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
    try:
        result = accept(
            gateway(), current_user(), op, collection, entity_id, payload, idempotency=_idempotency(sent)
        )
    except IdempotencyConflict as error:
        raise Problem(
            422,
            "Unprocessable Content",
            "This Idempotency-Key was used before with a different request.",
            slug="idempotency-key-reused",
            errors=[{"field": "Idempotency-Key", "message": "already used with a different request"}],
        ) from error
    status_url = url_for("commands.command_status", command_id=result.command_id)
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


@bp.post("/<collection>")
def create(collection: str) -> Response:
    check_collection(collection)
    body = json_object(request, JSON_TYPES)
    entity_id = check_entity_id(body["id"]) if "id" in body else new_entity_id()
    return _accepted("create", collection, entity_id, _without_id(body, entity_id), body)


@bp.put("/<collection>/<entity_id>")
def replace(collection: str, entity_id: str) -> Response:
    check_collection(collection)
    check_entity_id(entity_id)
    body = json_object(request, JSON_TYPES)
    return _accepted("replace", collection, entity_id, _without_id(body, entity_id), body)


@bp.patch("/<collection>/<entity_id>")
def patch(collection: str, entity_id: str) -> Response:
    check_collection(collection)
    check_entity_id(entity_id)
    body = json_object(request, MERGE_PATCH_TYPES)
    return _accepted("patch", collection, entity_id, _without_id(body, entity_id), body)


@bp.delete("/<collection>/<entity_id>")
def delete(collection: str, entity_id: str) -> Response:
    check_collection(collection)
    check_entity_id(entity_id)
    return _accepted("delete", collection, entity_id, None)


@bp.get("/commands/<command_id>")
def command_status(command_id: str) -> Response:
    status = status_of(gateway(), current_user(), command_id)
    if status is None:
        raise Problem(404, "Not Found", f"There is no command {command_id!r}.", slug="unknown-command")
    return json_response(status)

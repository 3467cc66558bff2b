"""Write routes (202 Accepted) and the command status route."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request, url_for

from gateway.api import current_user, gateway, json_response
from gateway.commands import accept, status_of
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


@bp.before_request
def _authenticate() -> None:
    current_user()


def _accepted(op: Op, collection: str, entity_id: str, payload: Document | None) -> Response:
    result = accept(gateway(), current_user(), op, collection, entity_id, payload)
    status_url = url_for("commands.command_status", command_id=result.command_id)
    body = {
        "command_id": result.command_id,
        "entity_id": result.entity_id,
        "status": "pending",
        "status_url": status_url,
    }
    return json_response(body, 202, {"Location": status_url, "Retry-After": RETRY_AFTER_SECONDS})


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
    return _accepted("create", collection, entity_id, _without_id(body, entity_id))


@bp.put("/<collection>/<entity_id>")
def replace(collection: str, entity_id: str) -> Response:
    check_collection(collection)
    check_entity_id(entity_id)
    body = json_object(request, JSON_TYPES)
    return _accepted("replace", collection, entity_id, _without_id(body, entity_id))


@bp.patch("/<collection>/<entity_id>")
def patch(collection: str, entity_id: str) -> Response:
    check_collection(collection)
    check_entity_id(entity_id)
    body = json_object(request, MERGE_PATCH_TYPES)
    return _accepted("patch", collection, entity_id, _without_id(body, entity_id))


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

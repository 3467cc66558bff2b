"""Read routes: straight from the store that holds the collection."""

from __future__ import annotations

from flask import Blueprint, Response, request

from gateway.api import current_user, gateway, json_response
from gateway.problems import Problem
from gateway.validation import check_collection, check_entity_id

bp = Blueprint("reads", __name__, url_prefix="/api")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@bp.before_request
def _authenticate() -> None:
    current_user()


@bp.get("/<collection>/<entity_id>")
def get_one(collection: str, entity_id: str) -> Response:
    check_collection(collection)
    check_entity_id(entity_id)
    document = gateway().stores.for_collection(collection).get(collection, entity_id)
    if document is None:
        raise Problem(404, "Not Found", f"There is no {collection}/{entity_id}.", slug="unknown-entity")
    return json_response({**document, "id": entity_id})


@bp.get("/<collection>")
def list_page(collection: str) -> Response:
    check_collection(collection)
    limit = request.args.get("limit", DEFAULT_LIMIT, type=int)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise Problem(
            400, "Bad Request", f"limit must be an integer from 1 to {MAX_LIMIT}.", slug="invalid-parameter"
        )
    cursor = request.args.get("cursor") or None
    try:
        page = gateway().stores.for_collection(collection).list(collection, limit, cursor)
    except ValueError as error:
        raise Problem(400, "Bad Request", f"cursor: {error}.", slug="invalid-parameter") from error
    return json_response({"items": page.items, "next": page.next})

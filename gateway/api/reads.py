"""Read routes: straight from the store that holds the collection."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from gateway.api import (
    access_of,
    authenticate,
    check_authorized,
    check_collection_exists,
    check_target,
    gateway,
    json_response,
    rate_limits,
)
from gateway.api.openapi import CLAIMS_TOO_LARGE, answer, describe, problem, ref
from gateway.problems import Problem

bp = Blueprint("reads", __name__, url_prefix="/api")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: int() would also take " 5", "+5" and "٥"


bp.before_request(authenticate)
bp.before_request(rate_limits.check)  # after authentication: counted per user


@bp.get("/<collection:collection>/<entity_id>")
@describe(
    summary="A stored document, with its id",
    tags=["reads"],
    responses={
        "200": answer("The document as the store holds it now.", ref("Document")),
        "403": problem("A plugin's rule refuses the read."),
        "404": problem("No such collection or document (or another user's, under policy owner)."),
        "422": problem("The id is not an entity id."),
        "431": problem(CLAIMS_TOO_LARGE),
        "503": problem("The store cannot be reached.", retry_after=True),
    },
    auth=True,
    limit="reads",
)
def get_one(collection: str, entity_id: str) -> Response:
    check_target(collection, entity_id)
    access = access_of(collection)
    document = gateway().stores.for_collection(collection).get(collection, entity_id, access)
    if document is None:  # another owner's document too: as if absent
        raise Problem(404, "Not Found", f"There is no {collection}/{entity_id}.", slug="unknown-entity")
    check_authorized("read", collection, entity_id, document)
    return json_response({**document, "id": entity_id})


def _limit(given: str | None) -> int:
    """The page size asked for: DEFAULT_LIMIT when absent, else 1 to MAX_LIMIT in plain digits."""
    if given is None:
        return DEFAULT_LIMIT
    if not LIMIT.fullmatch(given) or not 1 <= int(given) <= MAX_LIMIT:
        raise Problem(
            400, "Bad Request", f"limit must be an integer from 1 to {MAX_LIMIT}.", slug="invalid-parameter"
        )
    return int(given)


@bp.get("/<collection:collection>")
@describe(
    summary="A page of a collection's documents, in id order",
    tags=["reads"],
    parameters=[
        {
            "name": "limit",
            "in": "query",
            "description": f"documents per page, default {DEFAULT_LIMIT}",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        },
        {
            "name": "cursor",
            "in": "query",
            "description": "the `next` of the previous page",
            "schema": {"type": "string"},
        },
    ],
    responses={
        "200": answer("One page.", ref("Page")),
        "400": problem("A limit or cursor that is not valid."),
        "404": problem("No such collection."),
        "431": problem(CLAIMS_TOO_LARGE),
        "503": problem("The store cannot be reached.", retry_after=True),
    },
    auth=True,
    limit="reads",
)
def list_page(collection: str) -> Response:
    check_collection_exists(collection)
    limit = _limit(request.args.get("limit"))
    cursor = request.args.get("cursor") or None
    check_authorized("list", collection, None, None)
    try:
        page = (
            gateway().stores.for_collection(collection).list(collection, limit, cursor, access_of(collection))
        )
    except ValueError as error:
        raise Problem(400, "Bad Request", f"cursor: {error}.", slug="invalid-parameter") from error
    return json_response({"items": page.items, "next": page.next})

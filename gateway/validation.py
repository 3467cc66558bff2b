"""Checks of names and bodies, before anything is written; each failure is a Problem."""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Request

from gateway.problems import Problem

COLLECTION = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED = frozenset({"commands", "events", "devices"})
JSON_TYPES = frozenset({"application/json"})
MERGE_PATCH_TYPES = frozenset({"application/json", "application/merge-patch+json"})


def check_collection(name: str) -> str:
    if not COLLECTION.match(name) or name in RESERVED:
        raise Problem(404, "Not Found", f"There is no collection {name!r}.", slug="unknown-collection")
    return name


def check_entity_id(entity_id: Any, *, field: str = "id") -> str:
    if (
        not isinstance(entity_id, str)
        or not 1 <= len(entity_id) <= 200
        or "/" in entity_id
        or not entity_id.isprintable()
    ):
        raise invalid(field, "an entity id is a string of 1 to 200 printable characters, without '/'")
    return entity_id


def invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "Unprocessable Content",
        f"{field}: {message}",
        slug="validation",
        errors=[{"field": field, "message": message}],
    )


def json_object(request: Request, accepted: frozenset[str]) -> dict[str, Any]:
    """The request body as a JSON object; 415, 413, 400 or 422 otherwise."""
    if request.mimetype not in accepted:
        raise Problem(
            415,
            "Unsupported Media Type",
            f"Send the body as {' or '.join(sorted(accepted))}.",
            slug="unsupported-media-type",
        )
    raw = request.get_data(cache=False)  # werkzeug answers 413 past MAX_CONTENT_LENGTH
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise Problem(
            400, "Bad Request", f"The body is not valid JSON: {error}.", slug="malformed-json"
        ) from error
    if not isinstance(body, dict):
        raise Problem(
            422,
            "Unprocessable Content",
            "The body must be a JSON object.",
            slug="not-an-object",
            errors=[{"field": "", "message": "must be a JSON object"}],
        )
    return body

"""Checks of names and bodies, before anything is written; each failure is a Problem.

A write's body is read once (orjson) and then held to the limits of `BodyLimits` (nesting depth,
member count) and to integers within 64 bits. The exact integer check reads the body a second
time, only when its bytes hold a run of digits long enough to need it, so a common body costs one
walk over its containers. Strings may hold any Unicode character, NUL included: JSON allows it
and most stores keep it; a store that cannot (PostgreSQL's jsonb) refuses it in its `validate`.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge

from gateway.problems import Problem

JSON_TYPES = frozenset({"application/json"})
MERGE_PATCH_TYPES = frozenset({"application/json", "application/merge-patch+json"})

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# An integer outside 64 bits is written with at least 19 digits; bodies without such a run of
# digits anywhere skip the exact check. orjson reads larger integers as floats, losing digits.
LONG_DIGITS = re.compile(rb"[0-9]{19}")


@dataclass(frozen=True)
class BodyLimits:
    """How large a write's JSON may grow in shape, beside its size in bytes (MAX_BODY_BYTES)."""

    max_depth: int  # nested objects and arrays, the body itself counting as 1
    max_members: int  # object members and array elements in the whole body, at every depth


def unknown_collection(name: str) -> Problem:
    return Problem(404, "Not Found", f"There is no collection {name!r}.", slug="unknown-collection")


def check_entity_id(entity_id: Any, *, field: str = "id") -> str:
    if (
        not isinstance(entity_id, str)
        or not 1 <= len(entity_id) <= 200
        or "/" in entity_id
        or not entity_id.isprintable()
    ):
        raise invalid(field, "an entity id is a string of 1 to 200 printable characters, without '/'")
    return entity_id


def invalid(field: str, message: str, slug: str = "validation") -> Problem:
    return refused([{"field": field, "message": message}], slug)


def refused(errors: list[dict[str, str]], slug: str = "validation") -> Problem:
    """422 listing every error found, each `{"field", "message"}`."""
    first = errors[0]
    detail = f"{first['field'] or 'body'}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return Problem(422, "Unprocessable Content", detail, slug=slug, errors=errors)


def body_bytes(request: Request) -> bytes:
    """The whole body, or 413 past MAX_CONTENT_LENGTH.

    A body with a Content-Length is read straight from the server's stream, once its length is
    known to fit (the server stops at that length; werkzeug's stream wrappers cost more than the
    write route's JSON parsing). werkzeug cuts a chunked body short at the limit without a word:
    read one byte past the limit to tell a body that fits from one that does not."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    environ = request.environ
    length = request.content_length  # None for a chunked body
    if length is not None:
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        return environ["wsgi.input"].read(length) if length else b""
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() != "chunked":
        return request.get_data(cache=False)
    raw = environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise RequestEntityTooLarge()
    return raw


def json_object(
    request: Request, accepted: frozenset[str], limits: BodyLimits | None = None
) -> dict[str, Any]:
    """The request body as a JSON object within `limits` (by default the app's, from
    MAX_JSON_DEPTH and MAX_JSON_MEMBERS); 415, 413, 400 or 422 otherwise."""
    if request.mimetype not in accepted:
        raise Problem(
            415,
            "Unsupported Media Type",
            f"Send the body as {' or '.join(sorted(accepted))}.",
            slug="unsupported-media-type",
        )
    raw = body_bytes(request)
    try:
        body = parse(raw)
    except orjson.JSONDecodeError as error:
        raise Problem(
            400, "Bad Request", f"The body is not valid JSON: {error}.", slug="malformed-json"
        ) from error
    if not isinstance(body, dict):
        raise invalid("", "must be a JSON object", slug="not-an-object")
    check_shape(body, limits or current_app.extensions["body_limits"])
    if LONG_DIGITS.search(raw):
        check_int64(raw)
    return body


def parse(raw: bytes) -> Any:
    """`raw` parsed, with the cycle collector paused meanwhile.

    A 1 MiB body can hold 350,000 arrays or objects; allocating them makes Python run its
    collector hundreds of times over every object of the process (190 ms of the 210 a body of
    empty arrays took to parse in a web process). Parsed JSON holds no cycles, so the pause
    frees nothing late; ordinary counting frees the body as before."""
    if not gc.isenabled():
        return orjson.loads(raw)
    gc.disable()
    try:
        return orjson.loads(raw)
    finally:
        gc.enable()


def check_shape(body: dict[str, Any], limits: BodyLimits) -> None:
    """Nesting depth and member count within `limits`, walked without recursion.

    Array elements count as members, as object members do, and a container's members are
    counted before any of them is looked at: the walk stops after at most `max_members` values,
    so a body's check costs time in proportion to the limit, whatever its size."""
    members = 0
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_depth:
            raise invalid(
                "", f"nests objects and arrays deeper than {limits.max_depth} levels", slug="too-deep"
            )
        members += len(value)
        if members > limits.max_members:
            message = f"has more than {limits.max_members} members (object members and array elements)"
            raise invalid("", message, slug="too-many-members")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def check_int64(raw: bytes) -> None:
    """Every integer within a signed 64-bit integer, read exactly (orjson would round the larger
    ones to floats); stores and most clients hold no more."""
    for path, value in _walk(json.loads(raw)):
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            message = "integers must fit in 64 bits (-2^63 to 2^63-1)"
            raise invalid(field_name(path), message, slug="number-too-large")


def _walk(value: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value in the document with its path, depth first, without recursion."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, current = stack.pop()
        yield path, current
        if isinstance(current, dict):
            stack.extend(((*path, name), child) for name, child in current.items())
        elif isinstance(current, list):
            stack.extend(((*path, index), child) for index, child in enumerate(current))


def field_name(path: tuple[str | int, ...] | list[str | int]) -> str:
    """A member's place in the body as errors name it: names and indexes joined by dots
    (`tags.0.label`); "" is the body itself."""
    return ".".join(str(part) for part in path)

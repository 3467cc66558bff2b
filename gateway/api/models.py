"""The shapes of the API's bodies, as pydantic models: the OpenAPI description is built from them.

The views write their JSON with orjson and never validate through these models (that would cost
time on every request); `tests/test_api_schemathesis.py` holds the answers to them instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.ids import COMMAND_ID

# Printable (Python's str.isprintable) cannot be written as a pattern; this one refuses the
# control characters and '/', and the descriptions say the rest.
ENTITY_ID_PATTERN = r"^[^/\x00-\x1f\x7f-\x9f]{1,200}$"
ENTITY_ID_RULE = (
    "1 to 200 printable characters (no control, format, separator other than space, private-use "
    "or unassigned character), without '/'"
)
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e][\x20-\x7e]{0,254}$"


class Accepted(BaseModel):
    """A write was accepted: follow `status_url` (also the `Location` header) to its outcome."""

    command_id: str = Field(pattern=COMMAND_ID.pattern)
    entity_id: str
    status: Literal["pending"]
    status_url: str


class CommandStatus(BaseModel):
    """Where a command stands. `finished_at` and `error` are null until it ends; a failed
    command's `error` says why, in a stable public message, and `error_type` names the kind
    (a store's own text is never shown)."""

    command_id: str = Field(pattern=COMMAND_ID.pattern)
    status: Literal["pending", "applied", "failed"]
    op: Literal["create", "replace", "patch", "delete"]
    collection: str
    entity_id: str
    attempts: int = Field(ge=0)
    accepted_at: str = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(json_schema_extra={"format": "date-time"})
    error: str | None = Field(description="a public message, never a store's own text")
    error_type: Literal["forbidden", "conflict", "not_found", "invalid", "store_error"] | None = Field(
        default=None, description="the kind of failure, once the command failed"
    )
    next_attempt_at: str | None = Field(
        default=None,
        description="while a failed attempt waits for its retry",
        json_schema_extra={"format": "date-time"},
    )


class Document(BaseModel):
    """A stored document with its `id`; its other members are the collection's own."""

    model_config = ConfigDict(extra="allow")
    id: str


class Page(BaseModel):
    """One page of a collection, in id order; `next` is the cursor of the following page, null
    on the last."""

    items: list[Document]
    next: str | None


class FieldError(BaseModel):
    """One thing wrong with a request: `field` names a body member by its path, names and
    indexes joined by dots (`tags.0.label`; "" is the whole body), or a header or parameter."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: every error answer is one, as `application/problem+json`."""

    type: str = Field(description="`/problems/<slug>`, or `about:blank` for plain HTTP errors")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="with validation problems (422)")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """`checks` has `redis` and `store:<name>` for every store in use: `ok`, or `down` (an
    operator sees the error instead)."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


MODELS: list[type[BaseModel]] = [Accepted, CommandStatus, Document, Page, Problem, Health, Readiness]


def entity_id_schema(description: str = ENTITY_ID_RULE) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "pattern": ENTITY_ID_PATTERN,
        "description": description,
    }

"""A test plugin with access rules: it declares collections and refuses some requests."""

from __future__ import annotations

from typing import Any

from plugins.hookspecs import hookimpl
from plugins.store import Document
from settings import Settings

ASKED: list[dict[str, Any]] = []  # every authorize question, for the tests to look at


@hookimpl
def register_collections(settings: Settings) -> dict[str, str]:
    return {"notes": "owner", "board": "shared", "catalog": "read_only"}


@hookimpl
def authorize(
    user: str,
    claims: dict[str, Any],
    action: str,
    collection: str,
    entity_id: str | None,
    document: Document | None,
) -> bool | None:
    """Refuse writes with a `locked` member, reads of a document marked `secret`, and every
    request of a token whose claims say `banned`."""
    ASKED.append({"user": user, "action": action, "collection": collection, "entity_id": entity_id})
    if claims.get("banned"):
        return False
    if document is not None and (document.get("locked") or (action == "read" and document.get("secret"))):
        return False
    return None

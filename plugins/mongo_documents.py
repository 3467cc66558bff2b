"""The stored form of the MongoDB store's documents (plugins/mongo_store.py): the store's own
fields beside the document's, the checks a document must pass before it is written, and the
server's codes for a document it will never take."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from plugins.mongo_owners import META
from plugins.store import Document, Rejected

STORE_FIELDS = frozenset({"_id", META})  # no document of the API may hold them
MAX_BSON_BYTES = 16 * 1024 * 1024  # MongoDB's limit on one document


# Server error codes of a document MongoDB will never take: BadValue, a document too large
# (BSONObjectTooLarge, and its form in a bulk write), bad field names, nesting past 100 levels.
REFUSED_CODES = frozenset({2, 10334, 17419, 52, 56, 57, 15})


def seq_of(stored: Document | None) -> int:
    """The sequence of the last command applied to a stored document (-1: none, or not ours)."""
    if stored is None or not isinstance(stored.get(META), dict):
        return -1
    return int(stored[META].get("seq", -1))


def document_of(stored: Document | None) -> Document | None:
    """The entity's document, without the store's fields; None when absent or deleted."""
    if stored is None or (isinstance(stored.get(META), dict) and stored[META].get("deleted")):
        return None
    return {k: v for k, v in stored.items() if k not in STORE_FIELDS}


def stored_form(entity_id: str, seq: int, document: Document | None, owner: str | None = None) -> Document:
    if document is None:
        return {"_id": entity_id, META: {"seq": seq, "deleted": True, "at": dt.datetime.now(dt.UTC)}}
    meta: Document = {"seq": seq} if owner is None else {"seq": seq, "owner": owner}
    return {"_id": entity_id, META: meta, **document}


def unchanged(stored: Document) -> Document:
    """The condition that the stored document is still the one read: same sequence, or (a
    document written by someone else) still without one."""
    if isinstance(stored.get(META), dict) and "seq" in stored[META]:
        return {f"{META}.seq": stored[META]["seq"]}
    return {f"{META}.seq": {"$exists": False}}


def check_encodable(collection: str, entity_id: str, body: Document) -> None:
    """Raise Rejected for a document BSON cannot hold (lone surrogates, integers past 64 bits,
    NUL in a key) or MongoDB will not take (over 16 MiB): before anything is written."""
    import bson  # with pymongo: only when the store is used
    from bson.errors import BSONError

    try:
        size = len(bson.encode(body))
    except (BSONError, ValueError, OverflowError) as error:  # UnicodeError is a ValueError
        raise Rejected(f"{collection}/{entity_id} cannot be stored in MongoDB: {error}") from error
    if size > MAX_BSON_BYTES:
        raise Rejected(f"{collection}/{entity_id} is larger than MongoDB's 16 MiB document limit")


def dollar_keys(value: Any, path: str = "") -> Iterable[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).startswith("$"):
                yield where
            yield from dollar_keys(inner, where)
    elif isinstance(value, list):
        for position, inner in enumerate(value):
            yield from dollar_keys(inner, f"{path}[{position}]")

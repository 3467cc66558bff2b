"""How the MongoDB store keeps an entity: the document as it is, with `_id` and the gateway's
field `_gw` (`{"seq", "owner", "refused"}`; a tombstone: `{"seq", "deleted", "at"}`). `refused`
holds the refusals kept for a re-delivery (`plugins.ledger`), as `[seq, error type, message]`
rows; an entity refused before it ever existed is a tombstone of seq -1 that holds them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from plugins.ledger import Refusals, decode_refusals, encode_refusals
from plugins.mongo_owners import META, stored_meta
from plugins.store import Document, Rejected

STORE_FIELDS = frozenset({"_id", META})  # no document of the API may hold them
MAX_BSON_BYTES = 16 * 1024 * 1024  # MongoDB's limit on one document

# Server error codes of a document MongoDB will never take: BadValue, a document too large
# (BSONObjectTooLarge, and its form in a bulk write), bad field names, nesting past 100 levels.
REFUSED_CODES = frozenset({2, 10334, 17419, 52, 56, 57, 15})


def refusals_of(stored: Document | None) -> Refusals:
    """The refusals a stored entity keeps (none for a document the gateway did not write)."""
    rows = stored_meta(stored).get("refused")
    return decode_refusals(rows) if isinstance(rows, list) else {}


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


def stored_form(
    entity_id: str,
    seq: int,
    document: Document | None,
    owner: str | None = None,
    refused: Refusals | None = None,
) -> Document:
    """What is stored for an entity: its document (None: a tombstone), seq, owner and refusals."""
    meta: Document = {"seq": seq}
    if document is None:
        meta.update(deleted=True, at=dt.datetime.now(dt.UTC))
    elif owner is not None:
        meta["owner"] = owner
    if refused:
        meta["refused"] = encode_refusals(refused)
    return {"_id": entity_id, META: meta, **(document or {})}


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

"""Owners in the MongoDB store: a document's owner is kept in the store's field `_gw.owner`
(indexed with `_id`, once per collection and process), or, for a declared existing collection,
in the field its declaration names. Reads filter on it; the check itself is
`Command.owner_after`, run by the ledger fold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from plugins.names import is_well_formed
from plugins.store import Access, Command, Document

META = "_gw"  # the gateway's field in each stored document: {"seq", "deleted", "at", "owner"}
OWNER = f"{META}.owner"  # the creator of a document of a collection with policy `owner` (indexed)


def stored_meta(stored: Document | None) -> Document:
    meta = stored.get(META) if stored is not None else None
    return meta if isinstance(meta, dict) else {}


def owner_of(stored: Document, access: Access | None) -> str | None:
    """A stored document's owner: in its declared owner field, or the store's own field."""
    if access is not None and access.owner_field is not None:
        value = stored.get(access.owner_field)
        return None if value is None else str(value)
    owner = stored_meta(stored).get("owner")
    return owner if isinstance(owner, str) else None


def readable(access: Access | None) -> Document:
    """The query condition of what a reader may see: its own documents under policy `owner`,
    and, undeclared, only documents the store wrote."""
    condition: Document = {}
    if access is not None and not access.declared:
        condition[META] = {"$type": "object"}
    reader = access.reader if access is not None else None
    if reader is not None:
        condition[access.owner_field or OWNER] = reader  # type: ignore[union-attr]
    return condition


def owner_indexes(commands: Sequence[Command], indexed: set[str]) -> Iterator[tuple[str, str]]:
    """The (collection, owner field) pairs of `commands` not indexed yet (a user's list filters
    on them); each is added to `indexed` as it is given."""
    for command in commands:
        access = command.access
        if access is None or not access.owned or command.collection in indexed:
            continue
        indexed.add(command.collection)
        if is_well_formed(command.collection):
            yield command.collection, access.owner_field or OWNER

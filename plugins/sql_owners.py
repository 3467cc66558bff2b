"""Owners in the SQL store: where a document's owner is kept, read and checked.

- A managed table keeps it in its `owner` column (`plugins.sql_documents`), indexed with the id.
  A managed table of an earlier version (`id`, `doc` only) gets the column and its index the
  first time a process meets it (`add_owner_column`); its documents have no owner.
- A declared existing table keeps it in the column its declaration names (`orders:owner(user_id)`):
  a string column the store fills with the creator's user id, whatever the document says. The
  team indexes it with the key for fast lists.
- A team's table that no declaration names (a collection used undeclared in development) is
  never read or written: only tables the store made are reachable undeclared.

The check itself is `Command.owner_after`, run by the ledger fold in the write's transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

from plugins.sql_documents import OWNER, DocumentTable, EntityId, owner_index
from plugins.sql_tables import MappedTable
from plugins.store import Access, Document

Layout = DocumentTable | MappedTable


def add_owner_column(writer: Engine, table: str) -> None:
    """Give an earlier version's managed table its owner column and index (idempotent: a
    process that loses the race finds them made)."""
    column = sa.Column(OWNER, EntityId, nullable=True)
    type_sql = column.type.compile(dialect=writer.dialect)
    preparer = writer.dialect.identifier_preparer
    name, owner = preparer.quote(table), preparer.quote(OWNER)
    try:
        with writer.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {owner} {type_sql}"))
    except exc.DBAPIError:
        if OWNER not in {c["name"] for c in sa.inspect(writer).get_columns(table)}:
            raise
    index = preparer.quote(owner_index(table))
    try:
        with writer.begin() as conn:
            conn.execute(sa.text(f"CREATE INDEX {index} ON {name} ({owner}, {preparer.quote('id')})"))
    except exc.DBAPIError:
        if owner_index(table) not in {i["name"] for i in sa.inspect(writer).get_indexes(table)}:
            raise


def refusal(layout: Layout, access: Access | None) -> str | None:
    """Why no command of this access may write the collection's table at all, if none may."""
    if access is None or not isinstance(layout, MappedTable):
        return None
    if not access.declared:
        return f"{layout.name} is not a declared collection"
    if access.owned and access.owner_field is None:
        return f"{layout.name}: declare its owner column (COLLECTIONS={layout.name}:owner(<column>))"
    if access.owned and access.owner_field not in layout.fields:
        return f"{layout.name} has no owner column {access.owner_field!r}"
    return None


def read_owned(
    conn: Connection, layout: Layout, ids: list[str], access: Access | None
) -> tuple[dict[str, Document], dict[str, str | None]]:
    """The stored documents of `ids` and their owners, locked for the write."""
    if isinstance(layout, DocumentTable):
        return layout.read_owned(conn, ids)
    before = layout.read_for_update(conn, ids)
    field = access.owner_field if access is not None else None
    owners = {k: _owner(doc.get(field)) for k, doc in before.items()} if field else {}
    return before, owners


def visible(layout: Layout, access: Access | None) -> bool:
    """Whether a reader of this access may see anything of the collection's table."""
    return refusal(layout, access) is None or bool(access and access.operator and access.declared)


def reader_of(layout: Layout, access: Access | None) -> str | None:
    """The owner a read filters on (None: every document)."""
    return access.reader if access is not None else None


def owner_column(layout: Layout, access: Access | None) -> str | None:
    """The column a read of a team's table filters on, with `reader_of`."""
    if isinstance(layout, MappedTable) and access is not None:
        return access.owner_field
    return None


def check_visible(document: Document | None, layout: Layout, access: Access | None) -> Document | None:
    """A team's table's document, when the reader may see it."""
    reader = reader_of(layout, access)
    column = owner_column(layout, access)
    if document is None or reader is None or column is None:
        return document
    return document if _owner(document.get(column)) == reader else None


def _owner(value: Any) -> str | None:
    return None if value is None else str(value)

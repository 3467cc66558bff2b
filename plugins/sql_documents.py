"""The SQL store's managed tables: a collection without a table of its own gets one of JSON
documents (`id`, `doc`, `owner`), created on its first write, which takes any JSON object.

`owner` holds the user who created the document, for collections of policy `owner`; an index on
(`owner`, `id`) serves a user's list. A managed table of an earlier version (`id`, `doc`) gets
the column and index when the store first meets it (`plugins.sql_owners`); its documents have no
owner, so that only operators see and change them until one claims them by a replace.

Entity ids compare and sort by code point on every database, so that a list walks the same order
everywhere; the ledger's entity ids use the same column type.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, Engine

from plugins.store import Document, Op

# Entity ids compare and sort by code point: MariaDB's default collations fold case and trailing
# spaces, and PostgreSQL's follow the database's locale (where "a" < "B" < "b").
EntityId = (
    sa.String(200)
    .with_variant(mysql.VARCHAR(200, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
    .with_variant(postgresql.VARCHAR(200, collation="C"), "postgresql")
)
JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OWNER = "owner"  # the owner column of a managed table


INDEX_SUFFIX = "_owner_ix"
KEPT_WHOLE = 48  # a table name up to this long names its index as it is (the name kept since v1)


def owner_index(table: str) -> str:
    """The name of a managed table's (owner, id) index, within every database's identifier limit
    (63). Index names share one namespace per database (SQLite) or schema (PostgreSQL), so a
    longer table name is cut and told apart by a hash of the whole name: two tables that agree on
    their first characters still get an index each."""
    if len(table) <= KEPT_WHOLE:
        return f"{table}{INDEX_SUFFIX}"
    digest = hashlib.blake2b(table.encode(), digest_size=4).hexdigest()
    return f"{table[: KEPT_WHOLE - len(digest) - 1]}_{digest}{INDEX_SUFFIX}"


def document_table(collection: str) -> sa.Table:
    """The managed table of `collection`, as SQLAlchemy describes it (in a MetaData of its own,
    so that a layout the store's bounded cache forgets leaves nothing behind)."""
    table = sa.Table(
        collection,
        sa.MetaData(),
        sa.Column("id", EntityId, primary_key=True),
        sa.Column("doc", JsonDoc, nullable=False),
        sa.Column(OWNER, EntityId, nullable=True),
    )
    sa.Index(owner_index(collection), table.c[OWNER], table.c.id)
    return table


def create_table(writer: Engine, table: sa.Table) -> None:
    """CREATE TABLE if missing, in its own transaction (MariaDB commits DDL implicitly)."""
    try:
        with writer.begin() as conn:
            table.create(conn, checkfirst=True)
    except exc.DBAPIError:
        # Another worker may have created it between the check and the CREATE.
        if not sa.inspect(writer).has_table(table.name):
            raise


class DocumentTable:
    """A managed collection: a table of JSON documents (`id`, `doc`) that the store created."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table

    def validate(self, op: Op, document: Document) -> list[dict[str, str]]:
        return []  # any JSON object fits

    def refuse_id(self, entity_id: str) -> str | None:
        return None

    def refuse_document(self, document: Document) -> str | None:
        return None

    def read_for_update(self, conn: Connection, entity_ids: list[str]) -> dict[str, Document]:
        return self.read_owned(conn, entity_ids)[0]

    def read_owned(
        self, conn: Connection, entity_ids: list[str]
    ) -> tuple[dict[str, Document], dict[str, str | None]]:
        """The documents of `entity_ids` that exist, and their owners, locked for the write."""
        table = self.table
        query = sa.select(table.c.id, table.c.doc, table.c.owner).where(table.c.id.in_(entity_ids))
        rows = conn.execute(query.with_for_update()).all()
        return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}

    def write(
        self,
        conn: Connection,
        before: dict[str, Document],
        after: dict[str, Document | None],
        owners: dict[str, str | None] | None = None,
    ) -> None:
        """Write what changed; `owners` (collections of policy `owner`): each one's owner after."""
        # Every changed entity is written: comparing documents would take {"a": 1} for {"a": true}.
        table = self.table
        owner = (lambda _: None) if owners is None else owners.get
        inserts = [
            _row("id", k, v, owner(k), owners) for k, v in after.items() if k not in before and v is not None
        ]
        updates = [
            _row("_id", k, v, owner(k), owners) for k, v in after.items() if k in before and v is not None
        ]
        deletes = [{"_id": k} for k, v in after.items() if k in before and v is None]
        if inserts:
            conn.execute(table.insert(), inserts)
        if updates:
            conn.execute(table.update().where(table.c.id == sa.bindparam("_id")), updates)
        if deletes:
            conn.execute(table.delete().where(table.c.id == sa.bindparam("_id")), deletes)

    def get(self, conn: Connection, entity_id: str, owner: str | None = None) -> Document | None:
        """The document, or None; with `owner`, only when that user owns it."""
        query = sa.select(self.table.c.doc).where(self.table.c.id == entity_id)
        if owner is not None:
            query = query.where(self.table.c.owner == owner)
        return conn.execute(query).scalar()

    def page(
        self, conn: Connection, after: str | None, limit: int, owner: str | None = None
    ) -> list[tuple[str, Document]]:
        """Up to `limit` documents after the id `after`; with `owner`, only that user's (indexed)."""
        table = self.table
        query = sa.select(table.c.id, table.c.doc).order_by(table.c.id).limit(limit)
        if after is not None:
            query = query.where(table.c.id > after)
        if owner is not None:
            query = query.where(table.c.owner == owner)
        return [(entity_id, doc) for entity_id, doc in conn.execute(query)]


def _row(
    key: str, entity_id: str, document: Document, owner: str | None, owners: object
) -> dict[str, object]:
    """A row to write: its key, its document and, for an owned collection (`owners` given), its owner."""
    row: dict[str, object] = {key: entity_id, "doc": document}
    if owners is not None:
        row[OWNER] = owner
    return row

"""The SQL store's managed tables: a collection without a table of its own gets one of JSON
documents (`id`, `doc`), created on its first write, which takes any JSON object.

Entity ids compare and sort by code point on every database, so that a list walks the same order
everywhere; the ledger's entity ids use the same column type.
"""

from __future__ import annotations

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


def document_table(collection: str) -> sa.Table:
    """The managed table of `collection`, as SQLAlchemy describes it (in a MetaData of its own,
    so that a layout the store's bounded cache forgets leaves nothing behind)."""
    return sa.Table(
        collection,
        sa.MetaData(),
        sa.Column("id", EntityId, primary_key=True),
        sa.Column("doc", JsonDoc, nullable=False),
    )


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
        table = self.table
        query = sa.select(table.c.id, table.c.doc).where(table.c.id.in_(entity_ids)).with_for_update()
        return dict(conn.execute(query).all())

    def write(self, conn: Connection, before: dict[str, Document], after: dict[str, Document | None]) -> None:
        # Every changed entity is written: comparing documents would take {"a": 1} for {"a": true}.
        table = self.table
        inserts = [{"id": k, "doc": v} for k, v in after.items() if k not in before and v is not None]
        updates = [{"_id": k, "doc": v} for k, v in after.items() if k in before and v is not None]
        deletes = [{"_id": k} for k, v in after.items() if k in before and v is None]
        if inserts:
            conn.execute(table.insert(), inserts)
        if updates:
            conn.execute(table.update().where(table.c.id == sa.bindparam("_id")), updates)
        if deletes:
            conn.execute(table.delete().where(table.c.id == sa.bindparam("_id")), deletes)

    def get(self, conn: Connection, entity_id: str) -> Document | None:
        return conn.execute(sa.select(self.table.c.doc).where(self.table.c.id == entity_id)).scalar()

    def page(self, conn: Connection, after: str | None, limit: int) -> list[tuple[str, Document]]:
        table = self.table
        query = sa.select(table.c.id, table.c.doc).order_by(table.c.id).limit(limit)
        if after is not None:
            query = query.where(table.c.id > after)
        return [(entity_id, doc) for entity_id, doc in conn.execute(query)]

"""Collection names a SQL database cannot make a table of, found before a write is accepted.

A well-formed collection name (plugins.names) may still be refused by the database: SQLite keeps
every name starting with `sqlite_` for itself (`sqlite_stat1`, `sqlite_sequence`), and
PostgreSQL keeps tables, indexes, sequences and views in one namespace per schema, so a name an
index has (`users_pkey`) cannot be a table's. Such a collection is refused at accept (422) and,
should a command reach a worker anyway, fails alone without a retry.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


class Uncreatable(Exception):
    """The database cannot make a table of this collection's name; the message says why."""


def uncreatable(conn: Connection, name: str) -> str | None:
    """Why the database of `conn` cannot create a table `name` that it does not have; None when it can."""
    dialect = conn.dialect.name
    if dialect == "sqlite" and name.startswith("sqlite_"):
        return f"{name!r} is a name SQLite keeps for itself"
    if dialect == "postgresql":
        kind = conn.execute(
            sa.text(
                "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = :name AND n.nspname = current_schema()"
            ),
            {"name": name},
        ).scalar()
        if kind is not None:
            return f"{name!r} is the name of another kind of relation ({RELATION_KINDS.get(kind, kind)})"
    return None


RELATION_KINDS = {
    "i": "an index",
    "I": "a partitioned index",
    "S": "a sequence",
    "v": "a view",
    "m": "a materialized view",
    "c": "a composite type",
    "f": "a foreign table",
}

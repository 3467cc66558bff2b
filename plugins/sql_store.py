"""The built-in SQL store: PostgreSQL, SQLite and MariaDB/MySQL through SQLAlchemy Core.

Each collection is a table of JSON documents (`id`, `doc`), created on first write. A ledger
table keeps, per entity, the sequence of the last command applied: the store's idempotency and
fencing record, written in the same transaction as the documents.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, Engine

from plugins.hookspecs import hookimpl
from plugins.store import Command, Document, Outcome, Page, Rejected, Store, StoreUnavailable
from settings import Settings

log = logging.getLogger("gateway.sql_store")

LEDGER = "_gateway_applied"  # no collection can take this name: collections start with a letter

# Entity ids compare byte for byte: MariaDB's default collations fold case and trailing spaces.
EntityId = sa.String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str) -> Engine:
    """An engine with the per-dialect settings that concurrent writers need."""
    engine = sa.create_engine(
        url, pool_pre_ping=True, json_serializer=_dumps, json_deserializer=orjson.loads
    )
    if engine.dialect.name == "sqlite":
        _serialize_sqlite_writers(engine)
    return engine


def _serialize_sqlite_writers(engine: Engine) -> None:
    """WAL for readers beside a writer; BEGIN IMMEDIATE so that writers queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get("writer", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


class SqlStore(Store):
    """JSON documents in one table per collection, on any SQLAlchemy database."""

    name = "sql"

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.writer = self.engine.execution_options(writer=True)  # SQLite: take the write lock first
        self.metadata = sa.MetaData()
        self.ledger = sa.Table(
            LEDGER,
            self.metadata,
            sa.Column("collection", sa.String(63), primary_key=True),
            sa.Column("entity_id", EntityId, primary_key=True),
            sa.Column("seq", sa.BigInteger, nullable=False),
        )
        self._tables: dict[str, sa.Table] = {}
        self._lock = threading.Lock()
        self._ledger_ready = False

    # -- schema ------------------------------------------------------------------------------

    def setup(self) -> None:
        self._create(self.ledger)
        self._ledger_ready = True

    def _document_table(self, collection: str) -> sa.Table:
        with self._lock:
            table = self._tables.get(collection)
            if table is None:
                table = sa.Table(
                    collection,
                    self.metadata,
                    sa.Column("id", EntityId, primary_key=True),
                    sa.Column("doc", JsonDoc, nullable=False),
                )
                self._tables[collection] = table
            return table

    def _create(self, table: sa.Table) -> None:
        """CREATE TABLE if missing, in its own transaction (MariaDB commits DDL implicitly)."""
        try:
            with self.writer.begin() as conn:
                table.create(conn, checkfirst=True)
        except exc.DBAPIError as error:
            # Another worker may have created it between the check and the CREATE.
            if not sa.inspect(self.engine).has_table(table.name):
                raise self._translate(error) from error

    def _writable(self, collection: str) -> sa.Table:
        if not self._ledger_ready:
            self.setup()
        table = self._document_table(collection)
        if not table.info.get("created"):
            self._create(table)
            table.info["created"] = True
        return table

    def _readable(self, collection: str) -> sa.Table | None:
        table = self._document_table(collection)
        if table.info.get("created") or sa.inspect(self.engine).has_table(collection):
            table.info["created"] = True
            return table
        return None

    # -- writes ------------------------------------------------------------------------------

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(commands)
        by_collection: dict[str, list[int]] = {}
        for index, command in enumerate(commands):
            by_collection.setdefault(command.collection, []).append(index)
        try:
            tables = {c: self._writable(c) for c in by_collection}
            with self.writer.begin() as conn:
                for collection, indexes in by_collection.items():
                    batch = [commands[i] for i in indexes]
                    for i, outcome in zip(indexes, self._apply_collection(conn, tables[collection], batch)):
                        outcomes[i] = outcome
        except exc.DBAPIError as error:
            raise self._translate(error) from error
        return outcomes

    def _apply_collection(self, conn: Connection, table: sa.Table, batch: list[Command]) -> list[Outcome]:
        collection = batch[0].collection
        ids = sorted({c.entity_id for c in batch})
        ledger = self.ledger
        seqs: dict[str, int] = dict(
            conn.execute(  # type: ignore[arg-type]
                sa.select(ledger.c.entity_id, ledger.c.seq)
                .where(ledger.c.collection == collection, ledger.c.entity_id.in_(ids))
                .with_for_update()
            ).all()
        )
        before: dict[str, Document] = dict(
            conn.execute(  # type: ignore[arg-type]
                sa.select(table.c.id, table.c.doc).where(table.c.id.in_(ids)).with_for_update()
            ).all()
        )
        after: dict[str, Document | None] = dict(before)
        applied_seq: dict[str, int] = {}
        outcomes: list[Outcome] = []
        for command in batch:
            entity = command.entity_id
            last = applied_seq.get(entity, seqs.get(entity, -1))
            if command.seq <= last:
                outcomes.append(None)  # applied before: a re-delivery, or a stale worker
                continue
            try:
                after[entity] = command.apply_to(after.get(entity))
            except Rejected as reason:
                outcomes.append(str(reason))
                continue
            applied_seq[entity] = command.seq
            outcomes.append(None)
        self._write_documents(conn, table, before, after)
        self._write_ledger(conn, collection, seqs, applied_seq)
        return outcomes

    def _write_documents(
        self, conn: Connection, table: sa.Table, before: dict[str, Document], after: dict[str, Document | None]
    ) -> None:
        inserts = [{"id": k, "doc": v} for k, v in after.items() if k not in before and v is not None]
        updates = [{"_id": k, "doc": v} for k, v in after.items() if k in before and v is not None and v != before[k]]
        deletes = [{"_id": k} for k, v in after.items() if k in before and v is None]
        if inserts:
            conn.execute(table.insert(), inserts)
        if updates:
            conn.execute(table.update().where(table.c.id == sa.bindparam("_id")), updates)
        if deletes:
            conn.execute(table.delete().where(table.c.id == sa.bindparam("_id")), deletes)

    def _write_ledger(self, conn: Connection, collection: str, seqs: dict[str, int], applied: dict[str, int]) -> None:
        ledger = self.ledger
        inserts = [{"collection": collection, "entity_id": k, "seq": v} for k, v in applied.items() if k not in seqs]
        updates = [{"_id": k, "seq": v} for k, v in applied.items() if k in seqs]
        if inserts:
            conn.execute(ledger.insert(), inserts)
        if updates:
            conn.execute(
                ledger.update().where(
                    ledger.c.collection == collection, ledger.c.entity_id == sa.bindparam("_id")
                ),
                updates,
            )

    def _translate(self, error: exc.DBAPIError) -> Exception:
        """Unreachable database: StoreUnavailable; data it refuses: Rejected; else as it is."""
        if error.connection_invalidated or isinstance(error, (exc.OperationalError, exc.InterfaceError)):
            try:
                self.ping()
            except Exception:
                return StoreUnavailable(str(error.orig))
        if isinstance(error, exc.DataError):
            return Rejected(f"the database refused the document: {str(error.orig).splitlines()[0]}")
        return error

    # -- reads -------------------------------------------------------------------------------

    def get(self, collection: str, entity_id: str) -> Document | None:
        table = self._readable(collection)
        if table is None:
            return None
        with self.engine.connect() as conn:
            return conn.execute(sa.select(table.c.doc).where(table.c.id == entity_id)).scalar()

    def list(self, collection: str, limit: int, cursor: str | None) -> Page:
        table = self._readable(collection)
        if table is None:
            return Page(items=[], next=None)
        query = sa.select(table.c.id, table.c.doc).order_by(table.c.id).limit(limit + 1)
        if cursor is not None:
            query = query.where(table.c.id > decode_cursor(cursor))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        items = [{**doc, "id": entity_id} for entity_id, doc in rows[:limit]]
        more = len(rows) > limit
        return Page(items=items, next=encode_cursor(rows[limit - 1][0]) if more else None)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def encode_cursor(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor points after; ValueError for a cursor this store never gave."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("invalid cursor") from error


@hookimpl
def register_stores(settings: Settings) -> Iterable[Store]:
    return [SqlStore(settings.database_url)]

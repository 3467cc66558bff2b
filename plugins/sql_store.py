"""The built-in SQL store: PostgreSQL, SQLite and MariaDB/MySQL through SQLAlchemy Core.

Each collection is a table of JSON documents (`id`, `doc`), created on first write. A ledger
table keeps, per entity, the sequence of the last command applied: the store's idempotency and
fencing record, written in the same transaction as the documents.

Ids compare and sort by code point on every database (PostgreSQL's `C` collation, MariaDB's
binary one), so that a list walks the same order everywhere. MariaDB refuses JSON nested 32 or
more levels deep; the store answers such a document with `Rejected`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
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
# The collections this store keeps: the gateway's names, which are also safe table names that no
# database truncates (PostgreSQL cuts identifiers at 63 bytes).
COLLECTION = re.compile(r"[a-z][a-z0-9_]{0,62}")

# Entity ids compare and sort by code point: MariaDB's default collations fold case and trailing
# spaces, and PostgreSQL's follow the database's locale (where "a" < "B" < "b").
EntityId = (
    sa.String(200)
    .with_variant(mysql.VARCHAR(200, collation="utf8mb4_nopad_bin"), "mysql", "mariadb")
    .with_variant(postgresql.VARCHAR(200, collation="C"), "postgresql")
)
JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as error:  # a lone surrogate, an int past 64 bits
        raise Rejected(f"the document cannot be encoded as JSON: {error}") from error


# MySQL/MariaDB error codes of a document the database refuses: a failed CHECK (MariaDB's JSON
# column checks JSON_VALID, which refuses nesting of 32 levels or more), invalid JSON text and too
# deep a document (MySQL's JSON type).
REFUSED_BY_MYSQL = frozenset({4025, 3140, 3157})


def make_engine(url: str) -> Engine:
    """An engine with the per-dialect settings that concurrent writers need."""
    options: dict[str, Any] = {}
    if sa.make_url(url).get_backend_name() in ("mysql", "mariadb"):
        # InnoDB's default REPEATABLE READ takes gap locks on the missing rows that `apply` reads
        # FOR UPDATE, and concurrent inserts of neighbouring new ids then deadlock.
        options["isolation_level"] = "READ COMMITTED"
    engine = sa.create_engine(
        url, pool_pre_ping=True, json_serializer=_dumps, json_deserializer=orjson.loads, **options
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
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        _switch_to_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get("writer", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


SQLITE_BUSY_SECONDS = 30  # how long an SQLite connection waits for another one's lock


def _switch_to_wal(cursor: Any) -> None:
    """PRAGMA journal_mode=WAL, retried while busy.

    Connections that open a new database file at once (a web and a worker process starting)
    all switch it to WAL; SQLite answers SQLITE_BUSY at once to all but one, without waiting
    for the busy timeout, since the switch upgrades a shared lock. Once the file is in WAL mode
    (it stays so), the pragma changes nothing and takes no lock.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            busy = getattr(error, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


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
        with self._translated():
            self._create(self.ledger)
        self._ledger_ready = True

    def _document_table(self, collection: str) -> sa.Table:
        if not is_collection(collection):
            raise ValueError(f"{collection!r} is not a collection name")
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
        except exc.DBAPIError:
            # Another worker may have created it between the check and the CREATE.
            if not sa.inspect(self.engine).has_table(table.name):
                raise

    def _writable(self, collection: str) -> sa.Table:
        if not self._ledger_ready:
            self.setup()
        table = self._document_table(collection)
        if not table.info.get("created"):
            self._create(table)
            table.info["created"] = True
        return table

    def _readable(self, collection: str) -> sa.Table | None:
        if not is_collection(collection):
            return None
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
            if is_collection(command.collection):
                by_collection.setdefault(command.collection, []).append(index)
            else:
                outcomes[index] = f"{command.collection!r} is not a collection name"
        if not by_collection:
            return outcomes
        with self._translated(writing=True):
            tables = {c: self._writable(c) for c in by_collection}
            with self.writer.begin() as conn:
                for collection, indexes in by_collection.items():
                    batch = [commands[i] for i in indexes]
                    applied = self._apply_collection(conn, tables[collection], batch)
                    for i, outcome in zip(indexes, applied, strict=True):
                        outcomes[i] = outcome
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
        after: dict[str, Document | None] = {}  # the entities a command changed: their new state
        applied_seq: dict[str, int] = {}
        outcomes: list[Outcome] = []
        for command in batch:
            entity = command.entity_id
            last = applied_seq.get(entity, seqs.get(entity, -1))
            if command.seq <= last:
                outcomes.append(None)  # applied before: a re-delivery, or a stale worker
                continue
            current = after[entity] if entity in after else before.get(entity)
            try:
                after[entity] = command.apply_to(current)
            except Rejected as reason:
                outcomes.append(str(reason))
                continue
            applied_seq[entity] = command.seq
            outcomes.append(None)
        self._write_documents(conn, table, before, after)
        self._write_ledger(conn, collection, seqs, applied_seq)
        return outcomes

    def _write_documents(
        self,
        conn: Connection,
        table: sa.Table,
        before: dict[str, Document],
        after: dict[str, Document | None],
    ) -> None:
        # Every changed entity is written: comparing documents would take {"a": 1} for {"a": true}.
        inserts = [{"id": k, "doc": v} for k, v in after.items() if k not in before and v is not None]
        updates = [{"_id": k, "doc": v} for k, v in after.items() if k in before and v is not None]
        deletes = [{"_id": k} for k, v in after.items() if k in before and v is None]
        if inserts:
            conn.execute(table.insert(), inserts)
        if updates:
            conn.execute(table.update().where(table.c.id == sa.bindparam("_id")), updates)
        if deletes:
            conn.execute(table.delete().where(table.c.id == sa.bindparam("_id")), deletes)

    def _write_ledger(
        self, conn: Connection, collection: str, seqs: dict[str, int], applied: dict[str, int]
    ) -> None:
        ledger = self.ledger
        inserts = [
            {"collection": collection, "entity_id": k, "seq": v} for k, v in applied.items() if k not in seqs
        ]
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

    @contextlib.contextmanager
    def _translated(self, *, writing: bool = False) -> Iterator[None]:
        """Raise StoreUnavailable for an unreachable database and, when `writing`, Rejected for
        a document that cannot be stored; let any other error through as it is."""
        try:
            yield
        except exc.DBAPIError as error:
            translated = self._translate(error, writing)
            if translated is error:
                raise
            raise translated from error
        except exc.StatementError as error:
            # `_dumps` refused a document: psycopg lets its Rejected through as it is, the
            # other drivers wrap it in SQLAlchemy's StatementError.
            if isinstance(error.orig, Rejected):
                raise error.orig from error
            raise

    def _translate(self, error: exc.DBAPIError, writing: bool = False) -> Exception:
        """Unreachable database: StoreUnavailable; data it refuses: Rejected; else as it is."""
        if error.connection_invalidated or isinstance(error, (exc.OperationalError, exc.InterfaceError)):
            try:
                self._select_one()
            except Exception:  # noqa: BLE001 - whatever the cause, the database does not answer
                return StoreUnavailable(str(error.orig))
        if writing and (isinstance(error, exc.DataError) or _mysql_code(error) in REFUSED_BY_MYSQL):
            return Rejected(f"the database refused the document: {str(error.orig).splitlines()[0]}")
        return error

    # -- reads -------------------------------------------------------------------------------

    def get(self, collection: str, entity_id: str) -> Document | None:
        with self._translated():
            table = self._readable(collection)
            if table is None:
                return None
            with self.engine.connect() as conn:
                return conn.execute(sa.select(table.c.doc).where(table.c.id == entity_id)).scalar()

    def list(self, collection: str, limit: int, cursor: str | None) -> Page:
        after = decode_cursor(cursor) if cursor is not None else None
        with self._translated():
            table = self._readable(collection)
            if table is None:
                return Page(items=[], next=None)
            query = sa.select(table.c.id, table.c.doc).order_by(table.c.id).limit(limit + 1)
            if after is not None:
                query = query.where(table.c.id > after)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        items = [{**doc, "id": entity_id} for entity_id, doc in rows[:limit]]
        more = len(rows) > limit
        return Page(items=items, next=encode_cursor(rows[limit - 1][0]) if more else None)

    def ping(self) -> None:
        with self._translated():
            self._select_one()

    def _select_one(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def is_collection(name: str) -> bool:
    """Whether `name` can be a collection of this store (the ledger's name cannot)."""
    return COLLECTION.fullmatch(name) is not None


def _mysql_code(error: exc.DBAPIError) -> int | None:
    args = getattr(error.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def encode_cursor(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor points after; ValueError for a cursor this store never gave."""
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except ValueError as error:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ValueError("invalid cursor") from error


@hookimpl
def register_stores(settings: Settings) -> Iterable[Store]:
    return [SqlStore(settings.database_url)]

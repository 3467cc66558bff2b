"""The built-in SQL store: PostgreSQL, SQLite and MariaDB/MySQL through SQLAlchemy Core.

Each collection is a table of JSON documents (`id`, `doc`), created on first write. A ledger
table keeps, per entity, the sequence of the last command applied: the store's idempotency and
fencing record, written in the same transaction as the documents.

Ids compare and sort by code point on every database (PostgreSQL's `C` collation, MariaDB's
binary one), so that a list walks the same order everywhere. MariaDB refuses JSON nested 32 or
more levels deep; the store answers such a document with `Rejected`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, Engine

from plugins.hookspecs import hookimpl
from plugins.ledger import by_collection, fold
from plugins.lookups import BoundedLookups
from plugins.names import is_well_formed
from plugins.sql_tables import MappedTable, json_checked_columns
from plugins.store import (
    Command,
    Document,
    Op,
    Outcome,
    Page,
    Rejected,
    Store,
    StoreUnavailable,
    list_page,
)
from settings import Settings

log = logging.getLogger("gateway.sql_store")

T = TypeVar("T")

LEDGER = "_gateway_applied"  # no collection can take this name: collections start with a letter

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


CONNECT_TIMEOUT_SECONDS = 5
# How soon a database connection that stopped answering mid-statement is given up (see
# make_engine); far above what any statement of the store takes.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 30_000
READ_TIMEOUT_SECONDS = 60  # MariaDB: above InnoDB's 50 s lock wait, which fails on its own
# How long the answer "this collection has no table (yet)" is trusted before the database is
# asked again: writes to a new collection check its table once in a while, not on every request.
ABSENT_TABLE_SECONDS = 2.0
# How long a write waits for its collection's table to be looked up (once per process), before it
# is accepted without the store's check; and, while the database does not answer, how often the
# lookup is retried in the background (writes do not wait for it then). See plugins.lookups.
LOOKUP_WAIT_SECONDS = 1.0
LOOKUP_RETRY_SECONDS = 2.0


def make_engine(url: str) -> Engine:
    """An engine with the per-dialect settings that concurrent writers need."""
    options: dict[str, Any] = {}
    backend = sa.make_url(url).get_backend_name()
    if backend == "postgresql":
        # A database that does not answer fails a connection in seconds instead of holding it,
        # and one that vanishes mid-statement (a network partition, a host gone) fails it within
        # about half a minute: TCP keepalives for a connection waiting on a reply, a limit on
        # unacknowledged data for one sending. Without them a statement waits for good.
        options["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
            "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
            "keepalives_count": KEEPALIVE_COUNT,
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        }
    if backend in ("mysql", "mariadb"):
        # PyMySQL's own socket timeouts: a statement without a reply for this long fails.
        options["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "read_timeout": READ_TIMEOUT_SECONDS,
            "write_timeout": READ_TIMEOUT_SECONDS,
        }
        # InnoDB's default REPEATABLE READ takes gap locks on the missing rows that `apply` reads
        # FOR UPDATE, and concurrent inserts of neighbouring new ids then deadlock.
        options["isolation_level"] = "READ COMMITTED"
    engine = sa.create_engine(url, json_serializer=_dumps, json_deserializer=orjson.loads, **options)
    _ping_idle_connections(engine)
    if engine.dialect.name == "sqlite":
        _serialize_sqlite_writers(engine)
    return engine


# A pooled connection unused for longer than this is checked (a round trip) before it is used.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle for a while (a restarted
    database, a server or proxy timeout): a worker's pass and a busy web process's reads then
    skip the round trip that checking every checkout (`pool_pre_ping`) costs. A connection that
    died while in use is caught by `SqlStore._retried` instead."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:  # noqa: BLE001 - any failure: the pool opens a new connection
            raise exc.DisconnectionError(f"a pooled connection is dead: {error}") from error


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
        return dict(conn.execute(query).all())  # type: ignore[arg-type]

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


Layout = DocumentTable | MappedTable


class SqlStore(Store):
    """One table per collection, on any SQLAlchemy database: a team's own table when one exists
    (`plugins.sql_tables`), else a managed table of JSON documents created on first write."""

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
        self._layouts: dict[str, Layout] = {}  # collections whose table exists, found once
        self._absent: dict[str, float] = {}  # collections without a table: when that was seen
        self._lock = threading.Lock()
        self._table_lock = threading.Lock()
        self._ledger_ready = False
        self._lookups = BoundedLookups(self._looked_up, wait=LOOKUP_WAIT_SECONDS, retry=LOOKUP_RETRY_SECONDS)

    # -- schema ------------------------------------------------------------------------------

    def setup(self) -> None:
        with self._translated():
            self._retried(lambda: self._create(self.ledger))
        self._ledger_ready = True

    def _layout(self, collection: str) -> Layout | None:
        """How `collection` is stored, when its table exists; None when it does not (yet).

        A table of exactly the columns `id` (primary key) and `doc` is a managed one; any other
        is a team's table, reflected once per process and mapped column by column.
        """
        layout = self._layouts.get(collection)
        if layout is not None or not is_well_formed(collection):
            return layout
        with self._lock:
            if collection in self._layouts:
                return self._layouts[collection]
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                if not inspector.has_table(collection):
                    self._absent[collection] = time.monotonic()
                    return None
                self._absent.pop(collection, None)
                columns = inspector.get_columns(collection)
                keys = inspector.get_pk_constraint(collection)["constrained_columns"]
                if {c["name"] for c in columns} == {"id", "doc"} and keys == ["id"]:
                    layout = DocumentTable(self._document_table(collection))
                else:
                    layout = self._reflect(conn, collection)
            self._layouts[collection] = layout
            return layout

    def _recently_absent(self, collection: str) -> bool:
        """Whether "no table" was seen less than ABSENT_TABLE_SECONDS ago (and is trusted)."""
        seen_absent = self._absent.get(collection)
        return seen_absent is not None and time.monotonic() - seen_absent < ABSENT_TABLE_SECONDS

    def _reflect(self, conn: Connection, collection: str) -> MappedTable:
        table = sa.Table(collection, sa.MetaData(), autoload_with=conn)
        dialect = self.engine.dialect.name
        json_columns = json_checked_columns(conn, collection) if dialect in ("mysql", "mariadb") else set()
        mapped = MappedTable(table, dialect, json_columns)
        if mapped.unusable:
            log.warning("collection %s cannot be written: %s", collection, mapped.unusable)
        return mapped

    def _document_table(self, collection: str) -> sa.Table:
        """The managed table of `collection`, as SQLAlchemy describes it (once per name)."""
        with self._table_lock:
            table = self.metadata.tables.get(collection)
            if table is None:
                table = sa.Table(
                    collection,
                    self.metadata,
                    sa.Column("id", EntityId, primary_key=True),
                    sa.Column("doc", JsonDoc, nullable=False),
                )
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

    def _writable(self, collection: str) -> Layout:
        """The collection's layout, creating a managed table when it has no table yet."""
        if not self._ledger_ready:
            self.setup()
        layout = self._layout(collection)
        if layout is None:
            self._create(self._document_table(collection))
            self._absent.pop(collection, None)
            layout = self._layout(collection)  # a team's table created meanwhile wins
            assert layout is not None
        return layout

    def validate(self, collection: str, op: Op, document: Document) -> list[dict[str, str]]:
        """A team's table refuses unknown fields, wrong types and missing required columns;
        a managed table (or a collection without a table yet) takes any document.

        The layout is known after the first write of a process; that first one waits for the
        database at most LOOKUP_WAIT_SECONDS (StoreUnavailable past it), and none waits while
        the database does not answer."""
        layout = self._layouts.get(collection)
        if layout is None and (not is_well_formed(collection) or self._recently_absent(collection)):
            return []  # the database is asked about a collection without a table every 2 s at most
        if layout is None:
            layout = self._lookups.get(collection)
        return [] if layout is None else layout.validate(op, document)

    def _looked_up(self, collection: str) -> Layout | None:
        with self._translated():
            return self._retried(lambda: self._layout(collection))

    # -- writes ------------------------------------------------------------------------------

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(commands)
        groups = by_collection(commands)
        for collection in [c for c in groups if not is_well_formed(c)]:
            for index in groups.pop(collection):
                outcomes[index] = f"{collection!r} is not a collection name"
        if not groups:
            return outcomes
        with self._translated(writing=True):
            # Run again after a lost connection: the ledger makes a command committed before
            # the loss an "applied before" the second time.
            return self._retried(lambda: self._apply_grouped(commands, groups, list(outcomes)))

    def _apply_grouped(
        self, commands: Sequence[Command], groups: dict[str, list[int]], outcomes: list[Outcome]
    ) -> list[Outcome]:
        layouts = {c: self._writable(c) for c in groups}
        with self.writer.begin() as conn:
            for collection, indexes in groups.items():
                batch = [commands[i] for i in indexes]
                applied = self._apply_collection(conn, layouts[collection], batch)
                for i, outcome in zip(indexes, applied, strict=True):
                    outcomes[i] = outcome
        return outcomes

    def _apply_collection(self, conn: Connection, layout: Layout, batch: list[Command]) -> list[Outcome]:
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
        before = layout.read_for_update(conn, ids)
        folded = fold(batch, seqs, before, functools.partial(_apply_to_table, layout))
        layout.write(conn, before, folded.documents)
        self._write_ledger(conn, collection, seqs, folded.seqs)
        return folded.outcomes

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
        refused = isinstance(error, exc.DataError | exc.IntegrityError)  # a team's constraints too
        if writing and _duplicate_key(error):
            # Another transaction inserted the same new row first: a worker that lost its lease
            # finishing the same command. Not the document's fault: the retry finds it applied.
            return error
        if writing and (refused or _mysql_code(error) in REFUSED_BY_MYSQL):
            return Rejected(f"the database refused the document: {str(error.orig).splitlines()[0]}")
        return error

    # -- reads -------------------------------------------------------------------------------

    def get(self, collection: str, entity_id: str) -> Document | None:
        with self._translated():
            return self._retried(lambda: self._get(collection, entity_id))

    def _get(self, collection: str, entity_id: str) -> Document | None:
        layout = self._layout(collection)
        if layout is None:
            return None
        with self.engine.connect() as conn:
            return layout.get(conn, entity_id)

    def list(self, collection: str, limit: int, cursor: str | None) -> Page:
        return list_page(self._fetch_page, collection, limit, cursor)

    def _fetch_page(self, collection: str, after: str | None, count: int) -> list[tuple[str, Document]]:
        with self._translated():
            return self._retried(lambda: self._page(collection, after, count))

    def _page(self, collection: str, after: str | None, count: int) -> list[tuple[str, Document]]:
        layout = self._layout(collection)
        if layout is None:
            return []
        with self.engine.connect() as conn:
            return layout.page(conn, after, count)

    def ping(self) -> None:
        with self._translated():
            self._retried(self._select_one)

    def _retried(self, operation: Callable[[], T]) -> T:
        """`operation()`, and once more if the database dropped the connection it ran on (a
        restart, a connection killed in the pool): SQLAlchemy then replaces every connection the
        pool held before, so the second run gets a live one. Anything else is raised as it is."""
        try:
            return operation()
        except exc.DBAPIError as error:
            if not error.connection_invalidated:
                raise
            log.info("the database dropped a connection (%s): once more on a new one", error.orig)
        return operation()

    def _select_one(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def _apply_to_table(layout: Layout, command: Command, current: Document | None) -> Document | None:
    """`Command.apply_to`, refusing what the collection's table cannot hold (an id, a document)."""
    refused = layout.refuse_id(command.entity_id)
    if refused:
        raise Rejected(refused)
    document = command.apply_to(current)
    refused = layout.refuse_document(document) if document is not None else None
    if refused:
        raise Rejected(f"{command.collection}/{command.entity_id}: {refused}")
    return document


def _duplicate_key(error: exc.DBAPIError) -> bool:
    """A unique or primary key violation (PostgreSQL 23505, MySQL/MariaDB 1062, SQLite)."""
    if not isinstance(error, exc.IntegrityError):
        return False
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code == "23505" or _mysql_code(error) == 1062 or "UNIQUE constraint failed" in str(error.orig)


def _mysql_code(error: exc.DBAPIError) -> int | None:
    args = getattr(error.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


@hookimpl
def register_stores(settings: Settings) -> Iterable[Store]:
    return [SqlStore(settings.database_url)]

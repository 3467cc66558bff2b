"""The built-in SQL store: PostgreSQL, SQLite and MariaDB/MySQL through SQLAlchemy Core.

Each collection is a table: a team's own (`plugins.sql_tables`), or one of JSON documents
(`id`, `doc`) created on first write (`plugins.sql_documents`), on an engine set up for
concurrent writers (`plugins.sql_engine`). A ledger keeps, per entity, the sequence of the last
command applied and the refusals a re-delivery must get again (`plugins.sql_ledger`): the
store's idempotency and fencing record, written in the same transaction as the documents.

Ids compare and sort by code point on every database (PostgreSQL's `C` collation, MariaDB's
binary one), so that a list walks the same order everywhere. MariaDB refuses JSON nested 32 or
more levels deep; the store answers such a document with `Rejected`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from plugins import sql_owners
from plugins.hookspecs import hookimpl
from plugins.ledger import by_collection, fold
from plugins.lookups import BoundedDict, BoundedLookups
from plugins.names import is_well_formed
from plugins.sql_documents import OWNER, DocumentTable, create_table, document_table
from plugins.sql_engine import duplicate_key, json_checked_columns, make_engine, mysql_code
from plugins.sql_ledger import SqlLedger
from plugins.sql_names import Uncreatable, uncreatable
from plugins.sql_tables import MappedTable
from plugins.store import (
    Access,
    Command,
    Document,
    FieldErrors,
    Op,
    Outcome,
    Page,
    Rejected,
    Rows,
    Store,
    StoreUnavailable,
    list_page,
)
from settings import Settings

log = logging.getLogger("gateway.sql_store")

T = TypeVar("T")

# MySQL/MariaDB error codes of a document the database refuses: a failed CHECK (MariaDB's JSON
# column checks JSON_VALID, which refuses nesting of 32 levels or more), invalid JSON text and too
# deep a document (MySQL's JSON type).
REFUSED_BY_MYSQL = frozenset({4025, 3140, 3157})


# How long the answer "this collection has no table (yet)" is trusted before the database is
# asked again: writes to a new collection check its table once in a while, not on every request.
ABSENT_TABLE_SECONDS = 2.0
# How long a write waits for its collection's table to be looked up (once per process), before it
# is accepted without the store's check; and, while the database does not answer, how often the
# lookup is retried in the background (writes do not wait for it then). See plugins.lookups.
LOOKUP_WAIT_SECONDS = 1.0
LOOKUP_RETRY_SECONDS = 2.0
# Collections whose layout a process keeps, and those it remembers have no table: any user may
# name any number of collections, so both are bounded (the least recently used are forgotten
# and looked up again when they come back).
KNOWN_TABLES = 1000
ABSENT_TABLES = 10_000


Layout = DocumentTable | MappedTable


class SqlStore(Store):
    """One table per collection, on any SQLAlchemy database: a team's own table when one exists
    (`plugins.sql_tables`), else a managed table of JSON documents created on first write."""

    name = "sql"

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.writer = self.engine.execution_options(writer=True)  # SQLite: take the write lock first
        self.metadata = sa.MetaData()
        self.ledger = SqlLedger(self.metadata)
        # Collections whose table exists, found once; those without one: when that was seen,
        # and why the database cannot create it, if it cannot.
        self._layouts: BoundedDict[str, Layout] = BoundedDict(KNOWN_TABLES)
        self._absent: BoundedDict[str, tuple[float, str | None]] = BoundedDict(ABSENT_TABLES)
        self._lock = threading.Lock()
        self._ledger_ready = False
        self._lookups = BoundedLookups(self._looked_up, wait=LOOKUP_WAIT_SECONDS, retry=LOOKUP_RETRY_SECONDS)

    # -- schema ------------------------------------------------------------------------------

    def setup(self) -> None:
        with self._translated():
            self._retried(lambda: self.ledger.create(self.writer))
        self._ledger_ready = True

    def _layout(self, collection: str) -> Layout | None:
        """How `collection` is stored, when its table exists; None when it does not (yet).

        A table of exactly the columns `id` (primary key), `doc` and `owner` is a managed one
        (one of `id` and `doc` only, an earlier version's, gets its `owner` column now); any
        other is a team's table, reflected once per process and mapped column by column.
        """
        layout = self._layouts.get(collection)
        if layout is not None or not is_well_formed(collection):
            return layout
        with self._lock:
            if collection in self._layouts:
                return self._layouts[collection]
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                reserved = uncreatable(conn, collection) if conn.dialect.name == "sqlite" else None
                if reserved or not inspector.has_table(collection):
                    self._absent[collection] = (time.monotonic(), reserved or uncreatable(conn, collection))
                    return None
                self._absent.pop(collection, None)
                columns = inspector.get_columns(collection)
                keys = inspector.get_pk_constraint(collection)["constrained_columns"]
                names = {c["name"] for c in columns}
                if names in ({"id", "doc"}, {"id", "doc", OWNER}) and keys == ["id"]:
                    if OWNER not in names:
                        sql_owners.add_owner_column(self.writer, collection)
                    layout = DocumentTable(document_table(collection))
                else:
                    layout = self._reflect(conn, collection)
            self._layouts[collection] = layout
            return layout

    def _recently_absent(self, collection: str) -> bool:
        """Whether "no table" was seen less than ABSENT_TABLE_SECONDS ago (and is trusted)."""
        seen_absent = self._absent.get(collection)
        return seen_absent is not None and time.monotonic() - seen_absent[0] < ABSENT_TABLE_SECONDS

    def _uncreatable(self, collection: str) -> str | None:
        """Why the collection's table cannot be created, as last seen (None: it can, or unknown)."""
        seen_absent = self._absent.get(collection)
        return seen_absent[1] if seen_absent else None

    def _reflect(self, conn: Connection, collection: str) -> MappedTable:
        table = sa.Table(collection, sa.MetaData(), autoload_with=conn)
        dialect = self.engine.dialect.name
        json_columns = json_checked_columns(conn, collection) if dialect in ("mysql", "mariadb") else set()
        mapped = MappedTable(table, dialect, json_columns)
        if mapped.unusable:
            log.warning("collection %s cannot be written: %s", collection, mapped.unusable)
        return mapped

    def _writable(self, collection: str) -> Layout:
        """The collection's layout, creating a managed table when it has no table yet."""
        if not self._ledger_ready:
            self.setup()
        layout = self._layout(collection)
        if layout is None:
            reason = self._uncreatable(collection)
            if reason:
                raise Uncreatable(reason)
            try:
                create_table(self.writer, document_table(collection))
            except exc.DBAPIError as error:
                if isinstance(self._translate(error), StoreUnavailable):
                    raise
                cause = str(error.orig).splitlines()[0]
                raise Uncreatable(f"the database cannot create a table {collection!r}: {cause}") from error
            self._absent.pop(collection, None)
            layout = self._layout(collection)  # a team's table created meanwhile wins
            assert layout is not None
        return layout

    def validate(self, collection: str, op: Op, document: Document) -> FieldErrors:
        """A team's table refuses unknown fields, wrong types and missing required columns;
        a managed table (or a collection without a table yet) takes any document.

        The layout is known after the first write of a process; that first one waits for the
        database at most LOOKUP_WAIT_SECONDS (StoreUnavailable past it), and none waits while
        the database does not answer."""
        layout = self._layouts.get(collection)
        # The database is asked about a collection without a table every 2 s at most.
        if layout is None and is_well_formed(collection) and not self._recently_absent(collection):
            layout = self._lookups.get(collection)
        if layout is None:
            reason = self._uncreatable(collection)
            return (
                [{"field": "", "message": f"not a collection this store holds: {reason}"}] if reason else []
            )
        return layout.validate(op, document)

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
        layouts = {}
        for collection in groups:  # a collection that cannot be made fails its commands alone
            try:
                layouts[collection] = self._writable(collection)
            except Uncreatable as error:
                for index in groups[collection]:
                    outcomes[index] = str(error)
        with self.writer.begin() as conn:
            for collection, indexes in groups.items():
                if collection not in layouts:
                    continue
                batch = [commands[i] for i in indexes]
                applied = self._apply_collection(conn, layouts[collection], batch)
                for i, outcome in zip(indexes, applied, strict=True):
                    outcomes[i] = outcome
        return outcomes

    def _apply_collection(self, conn: Connection, layout: Layout, batch: list[Command]) -> list[Outcome]:
        collection = batch[0].collection
        ids = sorted({c.entity_id for c in batch})
        seqs, refusals = self.ledger.read(conn, collection, ids)
        access = batch[0].access  # one collection: one policy, one owner column
        refused = sql_owners.refusal(layout, access)
        if refused:
            return [Rejected(refused, "forbidden") for _ in batch]
        before, owners = sql_owners.read_owned(conn, layout, ids, access)
        folded = fold(batch, seqs, before, functools.partial(_apply_to_table, layout), owners, refusals)
        if isinstance(layout, DocumentTable):
            layout.write(conn, before, folded.documents, folded.owners if access and access.owned else None)
        else:
            layout.write(conn, before, folded.documents)
        self.ledger.write(conn, collection, seqs, refusals, folded)
        return folded.outcomes

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
        if writing and duplicate_key(error):
            # Another transaction inserted the same new row first: a worker that lost its lease
            # finishing the same command. Not the document's fault: the retry finds it applied.
            return error
        if writing and (refused or mysql_code(error) in REFUSED_BY_MYSQL):
            return Rejected(f"the database refused the document: {str(error.orig).splitlines()[0]}")
        return error

    # -- reads -------------------------------------------------------------------------------

    def get(self, collection: str, entity_id: str, access: Access | None = None) -> Document | None:
        with self._translated():
            return self._retried(lambda: self._get(collection, entity_id, access))

    def _get(self, collection: str, entity_id: str, access: Access | None) -> Document | None:
        layout = self._layout(collection)
        if layout is None or not sql_owners.visible(layout, access):
            return None
        with self.engine.connect() as conn:
            if isinstance(layout, DocumentTable):
                return layout.get(conn, entity_id, access.reader if access else None)
            return sql_owners.check_visible(layout.get(conn, entity_id), layout, access)

    def list(self, collection: str, limit: int, cursor: str | None, access: Access | None = None) -> Page:
        fetch = functools.partial(self._fetch_page, access=access)
        return list_page(fetch, collection, limit, cursor)

    def _fetch_page(
        self, collection: str, after: str | None, count: int, access: Access | None = None
    ) -> Rows:
        with self._translated():
            return self._retried(lambda: self._page(collection, after, count, access))

    def _page(self, collection: str, after: str | None, count: int, access: Access | None) -> Rows:
        layout = self._layout(collection)
        if layout is None or not sql_owners.visible(layout, access):
            return []
        reader, column = (access.reader, access.owner_field) if access else (None, None)
        with self.engine.connect() as conn:
            if isinstance(layout, DocumentTable):
                return layout.page(conn, after, count, reader)
            return layout.page(conn, after, count, (column, reader) if column and reader else None)

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
    if document is not None:
        document = command.stamp_owner(current, document)
    refused = layout.refuse_document(document) if document is not None else None
    if refused:
        raise Rejected(f"{command.collection}/{command.entity_id}: {refused}")
    return document


@hookimpl
def register_stores(settings: Settings) -> Iterable[Store]:
    return [SqlStore(settings.database_url)]

"""SQLAlchemy engines for the SQL store: the per-dialect settings that concurrent writers need.

Connections fail fast on a database that does not answer (connect timeouts, TCP keepalives, a
limit on unacknowledged data) instead of holding a write; a pooled connection is checked only
after it sat idle; SQLite runs in WAL mode with writers queueing on BEGIN IMMEDIATE; MariaDB and
MySQL read committed, so that concurrent inserts of neighbouring ids do not deadlock.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from plugins.store import Rejected

CONNECT_TIMEOUT_SECONDS = 5
# How soon a database connection that stopped answering mid-statement is given up (see
# make_engine); far above what any statement of the store takes.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 30_000
READ_TIMEOUT_SECONDS = 60  # MariaDB: above InnoDB's 50 s lock wait, which fails on its own


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as error:  # a lone surrogate, an int past 64 bits
        raise Rejected(f"the document cannot be encoded as JSON: {error}") from error


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


JSON_VALID = re.compile(r"json_valid\(`([^`]+)`\)", re.IGNORECASE)  # MariaDB's check of a JSON column


def json_checked_columns(conn: Connection, table_name: str) -> set[str]:
    """MariaDB's JSON columns: LONGTEXT with a column-level `json_valid(column)` CHECK.

    MySQL has a JSON type of its own, and no such rows: its JSON columns reflect as JSON.
    """
    query = sa.text(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :table"
    )
    try:
        clauses = conn.execute(query, {"table": table_name}).scalars().all()
    except sa.exc.DBAPIError:  # a MySQL before 8.0.16 has no such view
        conn.rollback()
        return set()
    found = set()
    for clause in clauses:
        match = JSON_VALID.fullmatch(clause.strip())
        if match:
            found.add(match.group(1))
    return found


def duplicate_key(error: exc.DBAPIError) -> bool:
    """A unique or primary key violation (PostgreSQL 23505, MySQL/MariaDB 1062, SQLite)."""
    if not isinstance(error, exc.IntegrityError):
        return False
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code == "23505" or mysql_code(error) == 1062 or "UNIQUE constraint failed" in str(error.orig)


def mysql_code(error: exc.DBAPIError) -> int | None:
    args = getattr(error.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None

"""The SQL store on real SQLite, PostgreSQL and MariaDB: the conformance kit, then what is SQL's own."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

import settings
from gateway.schemas import Collections
from plugins import sql_engine
from plugins.conformance import StoreConformance, cmd, walk
from plugins.sql_engine import CONNECT_TIMEOUT_SECONDS
from plugins.sql_ledger import LEDGER
from plugins.sql_store import SqlStore
from plugins.store import Command, Outcome, Rejected, StoreUnavailable
from tests.support.netns import PartitionableRoute
from tests.support.services import wait_until
from tests.support.tcp_proxy import SilentServer, TcpProxy

pytestmark = pytest.mark.integration


def open_store(url: str) -> Iterator[SqlStore]:
    store = SqlStore(url)
    store.setup()
    yield store
    store.close()


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def store(self, sqlite_url: str) -> Iterator[SqlStore]:
        yield from open_store(sqlite_url)


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[SqlStore]:
        yield from open_store(postgres_url)


class TestMariadbStore(StoreConformance):
    @pytest.fixture
    def store(self, mariadb_url: str) -> Iterator[SqlStore]:
        yield from open_store(mariadb_url)


@pytest.fixture(params=["sqlite_url", "postgres_url", "mariadb_url"], ids=["sqlite", "postgres", "mariadb"])
def url(request: pytest.FixtureRequest) -> str:
    """Each of the three databases in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    yield from open_store(url)


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[SqlStore]:
    yield from open_store(postgres_url)


@pytest.fixture
def mariadb_store(mariadb_url: str) -> Iterator[SqlStore]:
    yield from open_store(mariadb_url)


@pytest.fixture
def collection() -> str:
    return "c_" + secrets.token_hex(6)


def nested(depth: int) -> dict[str, object]:
    """A document of `depth` objects, each inside the one before."""
    doc: dict[str, object] = {}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


# -- documents the database refuses ------------------------------------------------------------


def test_postgres_refuses_nul_as_rejected(postgres_store: SqlStore, collection: str) -> None:
    store = postgres_store
    with pytest.raises(Rejected, match="refused"):
        store.apply([cmd(1, "create", collection, "a", {"s": "a\u0000b"})])
    assert store.get(collection, "a") is None


def test_postgres_commits_nothing_of_a_batch_holding_nul(postgres_store: SqlStore, collection: str) -> None:
    store = postgres_store
    with pytest.raises(Rejected):
        store.apply(
            [cmd(1, "create", collection, "b", {"v": 1}), cmd(2, "create", collection, "a", {"\u0000": 1})]
        )
    assert store.get(collection, "b") is None
    assert store.apply([cmd(1, "create", collection, "b", {"v": 1})]) == [None]


def test_mariadb_refuses_json_nested_too_deep_as_rejected(mariadb_store: SqlStore, collection: str) -> None:
    store = mariadb_store
    assert store.apply([cmd(1, "create", collection, "ok", nested(20))]) == [None]
    with pytest.raises(Rejected, match="refused"):
        store.apply([cmd(2, "create", collection, "deep", nested(40))])
    assert store.get(collection, "ok") == nested(20)
    assert store.get(collection, "deep") is None


@pytest.mark.parametrize("value", ["lone surrogate \ud800", 2**64], ids=["surrogate", "int65"])
def test_a_value_json_cannot_encode_is_rejected(store: SqlStore, collection: str, value: object) -> None:
    with pytest.raises(Rejected, match="encoded"):
        store.apply([cmd(1, "create", collection, "ok", {}), cmd(2, "create", collection, "a", {"v": value})])
    assert store.get(collection, "ok") is None


# -- an unreachable database -------------------------------------------------------------------

UNREACHABLE = {
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:1/gateway",
    "mariadb": "mysql+pymysql://root@127.0.0.1:1/gateway",
    "sqlite": "sqlite:////nonexistent-directory/store.db",
}
CALLS: dict[str, Callable[[SqlStore], object]] = {
    "apply": lambda s: s.apply([cmd(1, "create", "things", "a", {})]),
    "get": lambda s: s.get("things", "a"),
    "list": lambda s: s.list("things", 10, None),
    "ping": lambda s: s.ping(),
    "setup": lambda s: s.setup(),
    "validate": lambda s: s.validate("things", "create", {}),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("database", UNREACHABLE)
def test_an_unreachable_database_raises_store_unavailable(database: str, call: str) -> None:
    store = SqlStore(UNREACHABLE[database])
    with pytest.raises(StoreUnavailable):
        CALLS[call](store)
    store.close()


def test_validate_does_not_wait_on_a_database_that_never_answers() -> None:
    """A write's check waits for a hung database at most the lookup's wait, once, instead of the
    connect timeout on every write; the lookup goes on in the background, alone."""
    silent = SilentServer()
    store = SqlStore(f"postgresql+psycopg://postgres@127.0.0.1:{silent.port}/test")
    store._lookups.wait = 0.3
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="did not answer within 0.3 s"):
            store.validate("things", "create", {"a": 1})
        assert time.monotonic() - started < CONNECT_TIMEOUT_SECONDS / 2
        started = time.monotonic()
        for collection in ["things", "others"] * 20:
            with pytest.raises(StoreUnavailable):
                store.validate(collection, "create", {"a": 1})
        assert time.monotonic() - started < 0.3  # no write waited for the database
        assert silent.connections == 1
    finally:
        silent.close()
        store.close()


def test_validate_learns_a_tables_layout_once_the_database_is_back(postgres_url: str) -> None:
    proxy = TcpProxy("127.0.0.1", sa.make_url(postgres_url).port or 5432).start()
    store = SqlStore(sa.make_url(postgres_url).set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    store._lookups.retry = 0.2
    table = f"t_{secrets.token_hex(4)}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id varchar(20) PRIMARY KEY, title text NOT NULL)"))
    try:
        proxy.cut()
        with pytest.raises(StoreUnavailable):
            store.validate(table, "create", {"nope": 1})
        proxy.restore()
        time.sleep(0.2)
        wait_until(lambda: _refuses(store, table), timeout=10, message="the layout was never learnt")
        assert [e["field"] for e in store.validate(table, "create", {"nope": 1})] == ["nope", "title"]
    finally:
        proxy.cut()
        store.close()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        engine.dispose()


def _refuses(store: SqlStore, table: str) -> bool:
    try:
        return bool(store.validate(table, "create", {"nope": 1}))
    except StoreUnavailable:
        return False


KILL = {
    "postgresql": ("SELECT pg_backend_pid()", "SELECT pg_terminate_backend({})"),
    "mysql": ("SELECT CONNECTION_ID()", "KILL {}"),
}


@pytest.mark.parametrize("ping_after", [0.0, 1000.0], ids=["pinged-when-idle", "dropped-in-use"])
@pytest.mark.parametrize("call", ["apply", "get", "list", "ping"])
@pytest.mark.parametrize("database", ["postgres_url", "mariadb_url"])
def test_a_pooled_connection_the_database_killed_costs_no_error(
    request: pytest.FixtureRequest,
    database: str,
    call: str,
    ping_after: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checked before use when it sat idle past PING_AFTER_IDLE_SECONDS, or found dead by the
    statement and run once more on a new connection: either way the caller sees nothing."""
    monkeypatch.setattr(sql_engine, "PING_AFTER_IDLE_SECONDS", ping_after)
    url = request.getfixturevalue(database)
    store = SqlStore(url)
    store.setup()
    things = f"things_{secrets.token_hex(4)}"
    store.apply([cmd(1, "create", things, "a", {"v": 1})])
    which, kill = KILL[store.engine.dialect.name]
    with store.engine.connect() as conn:  # the pool's one connection, back in the pool after
        backend = conn.execute(sa.text(which)).scalar()
    killer = sa.create_engine(url)
    with killer.connect() as conn:
        conn.execute(sa.text(kill.format(backend)))
    killer.dispose()
    try:
        if call == "apply":
            assert store.apply([cmd(2, "replace", things, "a", {"v": 2})]) == [None]
            assert store.get(things, "a") == {"v": 2}
        elif call == "get":
            assert store.get(things, "a") == {"v": 1}
        elif call == "list":
            assert store.list(things, 10, None).items == [{"v": 1, "id": "a"}]
        else:
            store.ping()
    finally:
        store.close()


# -- settings and names ------------------------------------------------------------------------


def test_settings_take_a_heroku_postgres_url() -> None:
    assert settings.load(database_url="postgres://u@h/db").database_url == "postgresql+psycopg://u@h/db"
    assert settings.load(database_url="postgresql://u@h/db").database_url == "postgresql+psycopg://u@h/db"


def test_a_heroku_postgres_url_reaches_the_database(postgres_url: str) -> None:
    heroku_style = postgres_url.replace("postgresql+psycopg://", "postgres://", 1)
    store = SqlStore(settings.load(database_url=heroku_style).database_url)
    store.ping()
    assert store.engine.dialect.driver == "psycopg"
    store.close()


def test_the_gateway_refuses_the_ledger_as_a_collection() -> None:
    assert not Collections(None, {}).exists(LEDGER)  # the API's check, with any name allowed


def test_the_ledger_is_not_a_collection_of_the_store(store: SqlStore, collection: str) -> None:
    store.apply([cmd(1, "create", collection, "a", {"v": 1})])
    outcomes = store.apply([cmd(2, "create", LEDGER, "x", {}), cmd(3, "create", collection, "b", {})])
    assert isinstance(outcomes[0], str | Rejected) and outcomes[1] is None
    assert store.get(LEDGER, "a") is None
    assert store.list(LEDGER, 10, None).items == []
    assert store.apply([cmd(1, "create", collection, "a", {"v": 1})]) == [None]  # the ledger still works


# -- concurrency -------------------------------------------------------------------------------


class HeldStore(SqlStore):
    """Keeps its write transaction open, after writing, until `release` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.writing = threading.Event()
        self.release = threading.Event()

    def _apply_collection(self, conn: Connection, table: sa.Table, batch: list[Command]) -> list[Outcome]:
        outcomes = super()._apply_collection(conn, table, batch)
        self.writing.set()
        self.release.wait(10)
        return outcomes


def test_reads_do_not_wait_for_an_open_write_transaction(url: str, collection: str) -> None:
    reader, writer = SqlStore(url), HeldStore(url)
    reader.apply([cmd(1, "create", collection, "a", {"v": 1})])
    with ThreadPoolExecutor(2) as pool:
        try:
            held = pool.submit(
                writer.apply,
                [cmd(2, "replace", collection, "a", {"v": 2}), cmd(3, "create", collection, "b", {})],
            )
            assert writer.writing.wait(10)
            started = time.monotonic()
            assert reader.get(collection, "a") == {"v": 1}
            assert reader.get(collection, "b") is None
            assert reader.list(collection, 10, None).items == [{"v": 1, "id": "a"}]
            reader.ping()
            reads_took = time.monotonic() - started
            other_writer = pool.submit(reader.apply, [cmd(1, "create", collection, "c", {})])
        finally:
            writer.release.set()
        assert held.result(10) == [None, None]
        assert other_writer.result(30) == [None]  # SQLite: it waited for the lock instead of failing
    assert reads_took < 2
    assert reader.get(collection, "a") == {"v": 2}
    reader.close()
    writer.close()


def test_concurrent_writers_of_neighbouring_new_ids_all_apply(url: str, collection: str) -> None:
    workers, batches = 6, 40

    def write(worker: int) -> None:
        store = SqlStore(url)
        for n in range(batches):
            ids = [f"e{n:04d}-{k}-{worker}" for k in range(3)]
            assert store.apply([cmd(1, "create", collection, i, {}) for i in ids]) == [None] * 3
        store.close()

    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(write, w) for w in range(workers)]:
            done.result(60)  # MariaDB's gap locks under REPEATABLE READ made some of these deadlock
    reader = SqlStore(url)
    assert sum(len(page) for page in walk(reader, collection, 500)) == workers * batches * 3
    reader.close()


def first_call(store: SqlStore, together: threading.Barrier, n: int) -> None:
    together.wait(5)
    if n % 2:
        assert store.get("things", "a") is None
    else:
        assert store.apply([cmd(1, "create", "things", f"e{n}", {})]) == [None]


def test_connections_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Each switches the new file to WAL; SQLite answers "busy" to the others without waiting."""
    for attempt in range(40):
        stores = [SqlStore(f"sqlite:///{tmp_path / f'new-{attempt}.db'}") for _ in range(8)]
        together = threading.Barrier(len(stores))
        with ThreadPoolExecutor(len(stores)) as pool:
            for done in [pool.submit(first_call, s, together, n) for n, s in enumerate(stores)]:
                done.result(60)
        for store in stores:
            store.close()


# -- id order ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_icu_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database whose default collation is ICU's en-US, where "a" < "B" < "b"."""
    import psycopg

    admin = os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = "gwtest_icu_" + secrets.token_hex(4)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' "
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        )
    try:
        yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_postgres_lists_ids_by_code_point_whatever_the_database_locale(
    postgres_icu_url: str, collection: str
) -> None:
    store = SqlStore(postgres_icu_url)
    ids = ["b", "B", "a", "A", "ä"]
    store.apply([cmd(n, "create", collection, i, {}) for n, i in enumerate(ids, 1)])
    assert [d["id"] for page in walk(store, collection, 2) for d in page] == ["A", "B", "a", "b", "ä"]
    store.close()


def test_list_refuses_a_cursor_of_characters_base64_lacks(store: SqlStore, collection: str) -> None:
    store.apply([cmd(1, "create", collection, "a", {})])
    with pytest.raises(ValueError):
        store.list(collection, 10, "****")  # a lenient decoder reads "": the first page again


def test_validate_asks_the_database_about_a_missing_table_at_most_every_two_seconds(
    sqlite_url: str,
) -> None:
    store = SqlStore(sqlite_url)
    queries: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
    for _ in range(50):
        assert store.validate("fresh", "create", {"a": 1}) == []
    looks = len(queries)
    assert 0 < looks <= 3, queries  # one look: BEGIN and SQLite's two table_info statements
    assert store.get("fresh", "x") is None  # reads always look again
    assert len(queries) > looks
    store.close()


def test_a_row_inserted_first_by_another_transaction_is_not_a_refused_document(postgres_url: str) -> None:
    """A worker that lost its lease may be inserting the same new entity: the loser of that race
    must retry (and then find the command applied), not fail the command as refused."""
    store = SqlStore(postgres_url)
    collection = "race_" + secrets.token_hex(3)
    store.apply([Command("0-" + "a" * 16, 1, "create", collection, "warm", {})])  # the table exists
    other = sa.create_engine(postgres_url)
    with other.connect() as conn:
        conn.execute(sa.text(f"INSERT INTO {collection} (id, doc) VALUES ('x', '{{}}')"))  # not committed
        with ThreadPoolExecutor(1) as pool:
            racing = pool.submit(store.apply, [Command("0-" + "b" * 16, 2, "create", collection, "x", {})])
            time.sleep(0.5)  # the store's insert now waits on the open transaction's row
            conn.commit()
            with pytest.raises(sa.exc.IntegrityError):
                racing.result(10)
    other.dispose()
    store.close()


@pytest.mark.parametrize("database", ["postgres_url", "mariadb_url"])
def test_a_database_cut_off_mid_use_fails_the_call_instead_of_holding_it(
    request: pytest.FixtureRequest, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network partition drops packets without an error: only the connection's own timeouts
    notice (TCP's on PostgreSQL, PyMySQL's on MariaDB). The store's call fails with
    StoreUnavailable after them instead of waiting for good."""
    monkeypatch.setattr(sql_engine, "READ_TIMEOUT_SECONDS", 2)
    monkeypatch.setattr(sql_engine, "KEEPALIVE_IDLE_SECONDS", 1)
    monkeypatch.setattr(sql_engine, "KEEPALIVE_INTERVAL_SECONDS", 1)
    monkeypatch.setattr(sql_engine, "KEEPALIVE_COUNT", 2)
    monkeypatch.setattr(sql_engine, "TCP_USER_TIMEOUT_MS", 2000)
    monkeypatch.setattr(sql_engine, "CONNECT_TIMEOUT_SECONDS", 2)
    target = sa.make_url(request.getfixturevalue(database))
    default_port = 5432 if target.get_backend_name() == "postgresql" else 3306
    route = PartitionableRoute(target.host or "127.0.0.1", target.port or default_port)
    store = SqlStore(target.set(host=route.host, port=route.port).render_as_string(False))
    outcome: list[object] = []
    try:
        store.setup()
        things = f"things_{secrets.token_hex(4)}"
        assert store.apply([cmd(1, "create", things, "a", {"v": 1})]) == [None]
        route.partition()
        call = threading.Thread(target=lambda: outcome.append(_outcome(lambda: store.get(things, "a"))))
        call.start()
        call.join(30)  # without the timeouts: TCP's own retries, ~15 minutes
        assert outcome and isinstance(outcome[0], StoreUnavailable), outcome
    finally:
        route.close()
        if outcome:
            store.close()


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - the test looks at it
        return error


def test_long_collection_names_sharing_a_prefix_get_tables_with_their_own_owner_index(url: str) -> None:
    """Index names live in one namespace per database (SQLite, PostgreSQL schema): two managed
    tables whose names agree on their first 48 characters still each get their owner index."""
    prefix = "c_" + secrets.token_hex(6) + "_" + "x" * 40  # 55 characters, the same for both
    first, second = prefix + "_first", prefix + "_second"
    store = SqlStore(url)
    try:
        for name in (first, second):
            outcomes = store.apply([cmd(1, "create", name, "d1", {"n": 1})])
            assert outcomes == [None]
        engine = sa.create_engine(url)
        names = [{i["name"] for i in sa.inspect(engine).get_indexes(t)} for t in (first, second)]
        engine.dispose()
        assert all(len(found) == 1 for found in names), names
        assert names[0] != names[1]
        assert all(len(n) <= 63 for found in names for n in found)
    finally:
        store.close()

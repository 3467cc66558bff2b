"""The SQL store on a team's own tables (`plugins.sql_tables`), on real SQLite, PostgreSQL and
MariaDB: reflection, accept-time refusals, writes into the columns, reads, and the ledger."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from plugins.conformance import cmd, walk
from plugins.sql_store import SqlStore
from plugins.store import Rejected
from tests.support.api import assert_problem
from tests.support.services import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite_url", "postgres_url", "mariadb_url"], ids=["sqlite", "postgres", "mariadb"])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(request.param)


@pytest.fixture
def name() -> str:
    """The collection (and table) name of one test."""
    return "t_" + secrets.token_hex(6)


def products(metadata: sa.MetaData, name: str) -> sa.Table:
    """A team's table of products: one column of each kind the store maps."""
    return sa.Table(
        name,
        metadata,
        sa.Column("sku", sa.String(20), primary_key=True),
        sa.Column("title", sa.String(40), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False, server_default="0"),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("weight", sa.Float),
        sa.Column("active", sa.Boolean),
        sa.Column("released", sa.Date),
        sa.Column("updated_at", sa.DateTime),
        sa.Column("notes", sa.Text),
        sa.Column("meta", sa.JSON),
        sa.Column("size", sa.Enum("s", "m", "l", name=f"{name}_size")),
    )


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def table(engine: sa.Engine, name: str) -> sa.Table:
    """The products table, created in the database before the store sees it."""
    table = products(sa.MetaData(), name)
    table.create(engine)
    return table


@pytest.fixture
def store(url: str, table: sa.Table) -> Iterator[SqlStore]:
    store = SqlStore(url)
    store.setup()
    yield store
    store.close()


def rows(engine: sa.Engine, table: sa.Table) -> dict[str, dict[str, Any]]:
    """The table's rows as the database holds them, by primary key."""
    with engine.connect() as conn:
        return {row.sku: dict(row._mapping) for row in conn.execute(sa.select(table))}


GOOD = {
    "title": "Lamp",
    "qty": 3,
    "price": 9.99,
    "weight": 1.5,
    "active": True,
    "released": "2024-05-01",
    "updated_at": "2024-05-01T10:20:30",
    "notes": "héllo 世界",
    "meta": {"tags": ["a", "b"], "dims": {"w": 10}},
    "size": "m",
}


# -- accept-time refusals ----------------------------------------------------------------------


def test_a_document_that_fits_the_table_has_no_problems(store: SqlStore, name: str) -> None:
    for op in ("create", "replace", "patch"):
        assert store.validate(name, op, GOOD) == []
    assert store.validate(name, "create", {"title": "only the required column"}) == []


WRONG = [
    ("colour", "red", "unknown field"),
    ("title", 7, "must be a string"),
    ("title", "x" * 41, "at most 40 characters"),
    ("title", None, "must not be null"),
    ("qty", "3", "must be an integer"),
    ("qty", 2.5, "must be an integer"),
    ("qty", True, "must be an integer"),
    ("qty", 2**63, "must be from"),
    ("price", "9.99", "must be a number"),
    ("weight", False, "must be a number"),
    ("active", 1, "must be true or false"),
    ("released", "May 1st", "ISO 8601 date"),
    ("released", "20240501", "ISO 8601 date"),
    ("updated_at", 1714558830, "ISO 8601 date and time"),
    ("notes", ["a"], "must be a string"),
    ("size", "xl", "must be one of|at most 1 char"),  # SQLite has no enum type: a VARCHAR(1)
    ("sku", "A-1", "primary key"),
]


@pytest.mark.parametrize(("field", "value", "message"), WRONG, ids=[f"{f}={v!r}"[:40] for f, v, _ in WRONG])
def test_a_field_the_table_cannot_hold_is_refused(
    store: SqlStore, name: str, field: str, value: object, message: str
) -> None:
    for op in ("create", "replace", "patch"):
        errors = store.validate(name, op, {**GOOD, field: value})
        assert [e["field"] for e in errors] == [field]
        assert re.search(message, errors[0]["message"])


def test_required_columns_are_asked_of_creates_and_replaces_not_patches(store: SqlStore, name: str) -> None:
    for op in ("create", "replace"):
        assert store.validate(name, op, {"qty": 1}) == [
            {"field": "title", "message": "is required (NOT NULL without a default)"}
        ]
    assert store.validate(name, "patch", {"qty": 1}) == []
    assert store.validate(name, "patch", {"notes": None, "meta": {"dims": None}}) == []


def test_every_problem_of_a_document_is_named(store: SqlStore, name: str) -> None:
    errors = store.validate(name, "create", {"colour": "red", "qty": "many"})
    assert sorted(e["field"] for e in errors) == ["colour", "qty", "title"]


def test_validate_reflects_the_table_once_then_runs_no_sql(store: SqlStore, name: str) -> None:
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert store.validate(name, "create", GOOD) == []
    assert statements  # the reflection
    statements.clear()
    for _ in range(100):
        store.validate(name, "patch", {"qty": "x"})
    assert statements == []


# -- writes into the columns -------------------------------------------------------------------


def test_a_created_document_is_a_row_of_typed_columns(
    store: SqlStore, engine: sa.Engine, table: sa.Table, name: str
) -> None:
    assert store.apply([cmd(1, "create", name, "A-1", GOOD)]) == [None]
    row = rows(engine, table)["A-1"]
    assert (row["title"], row["qty"], row["active"], row["notes"]) == ("Lamp", 3, True, "héllo 世界")
    assert float(row["price"]) == 9.99
    assert str(row["released"]) == "2024-05-01"
    assert str(row["updated_at"]) == "2024-05-01 10:20:30"
    assert store.get(name, "A-1") == GOOD


def test_null_columns_are_absent_and_defaults_apply(store: SqlStore, name: str) -> None:
    store.apply([cmd(1, "create", name, "A-1", {"title": "Bare"})])
    assert store.get(name, "A-1") == {"title": "Bare", "qty": 0}


def test_an_aware_time_is_stored_in_utc_in_a_naive_column(store: SqlStore, name: str) -> None:
    store.apply([cmd(1, "create", name, "A-1", {"title": "t", "updated_at": "2024-05-01T10:20:30+02:00"})])
    assert store.get(name, "A-1")["updated_at"] == "2024-05-01T08:20:30"  # type: ignore[index]


def test_replace_nulls_what_it_leaves_out_but_keeps_not_null_columns(store: SqlStore, name: str) -> None:
    store.apply([cmd(1, "create", name, "A-1", GOOD)])
    assert store.apply([cmd(2, "replace", name, "A-1", {"title": "New", "weight": 2.0})]) == [None]
    assert store.get(name, "A-1") == {"title": "New", "qty": 3, "weight": 2.0}


def test_patch_merges_into_the_columns_and_null_clears_one(store: SqlStore, name: str) -> None:
    store.apply([cmd(1, "create", name, "A-1", GOOD)])
    patch = {"qty": 4, "notes": None, "meta": {"dims": {"h": 2}, "tags": None}}
    assert store.apply([cmd(2, "patch", name, "A-1", patch)]) == [None]
    expected = {**GOOD, "qty": 4, "meta": {"dims": {"w": 10, "h": 2}}}
    del expected["notes"]
    assert store.get(name, "A-1") == expected


def test_delete_removes_the_row(store: SqlStore, engine: sa.Engine, table: sa.Table, name: str) -> None:
    store.apply([cmd(1, "create", name, "A-1", GOOD), cmd(2, "create", name, "B-2", {"title": "b"})])
    assert store.apply([cmd(3, "delete", name, "A-1")]) == [None]
    assert list(rows(engine, table)) == ["B-2"]
    assert store.get(name, "A-1") is None


def test_reapplying_and_stale_commands_change_nothing(store: SqlStore, name: str) -> None:
    batch = [cmd(1, "create", name, "A-1", {"title": "a"}), cmd(2, "patch", name, "A-1", {"qty": 2})]
    assert store.apply(batch) == [None, None]
    assert store.apply(batch) == [None, None]  # the create would be refused if it ran again
    store.apply([cmd(5, "replace", name, "A-1", {"title": "five"}), cmd(6, "delete", name, "B")])
    stale = [cmd(4, "replace", name, "A-1", {"title": "four"}), cmd(3, "delete", name, "A-1")]
    assert store.apply(stale) == [None, None]
    assert store.get(name, "A-1") == {"title": "five", "qty": 2}


def test_commands_on_one_row_apply_in_batch_order(store: SqlStore, name: str) -> None:
    batch = [
        cmd(1, "create", name, "A-1", {"title": "one"}),
        cmd(2, "patch", name, "A-1", {"qty": 2}),
        cmd(3, "delete", name, "A-1"),
        cmd(4, "create", name, "A-1", {"title": "four"}),
        cmd(5, "patch", name, "A-1", {"notes": "five"}),
    ]
    assert store.apply(batch) == [None] * 5
    assert store.get(name, "A-1") == {"title": "four", "qty": 0, "notes": "five"}


def test_a_document_the_table_cannot_hold_fails_alone_at_apply(store: SqlStore, name: str) -> None:
    """What validation at accept time would have refused (a command accepted before the table
    existed, a replayed dead letter) fails as its command's outcome; its batch mates commit."""
    outcomes = store.apply(
        [
            cmd(1, "create", name, "ok", {"title": "fine"}),
            cmd(2, "create", name, "bad", {"title": "x", "colour": "red"}),
            cmd(3, "create", name, "missing", {"qty": 1}),
            cmd(4, "patch", name, "ok", {"title": None}),
            cmd(5, "patch", name, "ok", {"qty": 9}),
        ]
    )
    assert outcomes[0] is None and outcomes[4] is None
    assert "colour" in str(outcomes[1]) and "title" in str(outcomes[2]) and "title" in str(outcomes[3])
    assert store.get(name, "ok") == {"title": "fine", "qty": 9}
    assert store.get(name, "bad") is None and store.get(name, "missing") is None


def test_a_batch_is_written_with_one_statement_per_kind_of_change(store: SqlStore, name: str) -> None:
    store.apply([cmd(n, "create", name, f"u{n:03d}", {"title": "old"}) for n in range(100)])
    statements: list[tuple[str, bool]] = []

    def count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if name in statement:
            statements.append((statement.split()[0].upper(), many))

    event.listen(store.engine, "before_cursor_execute", count)
    batch = [cmd(200 + n, "create", name, f"n{n:03d}", {"title": "new", "qty": n}) for n in range(100)]
    batch += [cmd(300 + n, "patch", name, f"u{n:03d}", {"qty": n}) for n in range(50)]
    batch += [cmd(400 + n, "delete", name, f"u{n:03d}") for n in range(50, 100)]
    assert store.apply(batch) == [None] * 200
    kinds = [kind for kind, _ in statements]
    assert kinds.count("SELECT") == 1  # the rows, read once for the batch
    assert 1 <= kinds.count("INSERT") <= 2  # insertmanyvalues may split a large batch
    assert kinds.count("UPDATE") == 1 and kinds.count("DELETE") == 1
    assert len(walk(store, name, 500)[0]) == 150


# -- reads -------------------------------------------------------------------------------------


def test_list_pages_through_the_rows_in_key_order(store: SqlStore, name: str) -> None:
    ids = [f"k{n:02d}" for n in range(7)]
    store.apply([cmd(n, "create", name, i, {"title": i}) for n, i in enumerate(reversed(ids), 1)])
    pages = walk(store, name, 3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [d["id"] for p in pages for d in p] == ids
    assert pages[0][0] == {"title": "k00", "qty": 0, "id": "k00"}


def test_rows_written_by_others_are_read_as_documents(
    store: SqlStore, engine: sa.Engine, table: sa.Table, name: str
) -> None:
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"sku": "X", "title": "theirs", "qty": 5, "active": False}])
    assert store.get(name, "X") == {"title": "theirs", "qty": 5, "active": False}
    assert store.apply([cmd(1, "patch", name, "X", {"qty": 6})]) == [None]  # no ledger row yet: applies
    assert rows(engine, table)["X"]["qty"] == 6


# -- other keys and tables ---------------------------------------------------------------------


def test_an_integer_key_takes_integer_ids(url: str, engine: sa.Engine, name: str) -> None:
    sa.Table(
        name,
        (metadata := sa.MetaData()),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("label", sa.String(10)),
    )
    metadata.create_all(engine)
    store = SqlStore(url)
    outcomes = store.apply(
        [cmd(k, "create", name, i, {"label": i}) for k, i in enumerate(["10", "9", "x", "010", "-3"], 1)]
    )
    assert [o is None for o in outcomes] == [True, True, False, False, True]
    assert "does not fit" in str(outcomes[2])
    assert [d["id"] for p in walk(store, name, 2) for d in p] == ["-3", "9", "10"]  # numeric order
    assert store.get(name, "9") == {"label": "9"}
    assert store.get(name, "nine") is None
    store.close()


def test_a_table_without_a_primary_key_is_refused(url: str, engine: sa.Engine, name: str) -> None:
    sa.Table(name, (metadata := sa.MetaData()), sa.Column("a", sa.String(10)))
    metadata.create_all(engine)
    store = SqlStore(url)
    [error] = store.validate(name, "create", {"a": "x"})
    assert "primary key" in error["message"]
    [outcome] = store.apply([cmd(1, "create", name, "e", {"a": "x"})])
    assert outcome and "primary key" in str(outcome)
    assert store.get(name, "e") is None and store.list(name, 10, None).items == []
    store.close()


def test_a_managed_table_is_recognised_as_managed_by_another_process(url: str, name: str) -> None:
    first = SqlStore(url)
    first.apply([cmd(1, "create", name, "a", {"any": {"shape": [1]}})])
    first.close()
    second = SqlStore(url)  # as a web process started later sees the table
    assert second.validate(name, "create", {"whatever": 1, "nested": {"x": None}}) == []
    assert second.get(name, "a") == {"any": {"shape": [1]}}
    assert second.apply([cmd(2, "patch", name, "a", {"more": True})]) == [None]
    assert second.get(name, "a") == {"any": {"shape": [1]}, "more": True}
    assert second.apply([cmd(1, "create", name, "a", {})]) == [None]  # the ledger is shared
    second.close()


def test_a_collection_without_a_table_validates_nothing_and_gets_a_managed_table(
    url: str, engine: sa.Engine, name: str
) -> None:
    store = SqlStore(url)
    assert store.validate(name, "create", {"any": 1}) == []
    store.apply([cmd(1, "create", name, "a", {"any": 1})])
    assert {c["name"] for c in sa.inspect(engine).get_columns(name)} == {"id", "doc", "owner"}
    store.close()


# -- what only one database has ----------------------------------------------------------------


def test_postgres_uuid_key_timestamptz_and_jsonb(postgres_url: str, name: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {name} (id uuid PRIMARY KEY, at timestamptz NOT NULL, "
            "data jsonb, tags text[], score integer CHECK (score >= 0))"
        )
    store = SqlStore(postgres_url)
    key = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    doc = {"at": "2024-05-01T10:20:30+02:00", "data": {"k": [1, None]}, "tags": ["a", "b"]}
    assert store.validate(name, "create", doc) == []
    assert store.validate(name, "create", {"at": "now"})[0]["field"] == "at"
    assert store.apply([cmd(1, "create", name, key, doc)]) == [None]
    assert store.get(name, key) == {**doc, "at": "2024-05-01T08:20:30+00:00"}
    assert store.apply([cmd(2, "create", name, "not-a-uuid", doc)])[0]
    with pytest.raises(Rejected, match="refused"):  # the team's CHECK constraint
        store.apply([cmd(3, "patch", name, key, {"score": -1})])
    store.close()
    engine.dispose()


def test_mariadb_json_column_and_unsigned_range(mariadb_url: str, name: str) -> None:
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {name} (id varchar(50) PRIMARY KEY, data JSON, n int unsigned, flag bool)"
        )
    store = SqlStore(mariadb_url)
    assert store.validate(name, "create", {"n": -1})[0]["message"] == "must be from 0 to 4294967295"
    assert store.validate(name, "create", {"flag": 1})[0]["message"] == "must be true or false"
    doc = {"data": {"deep": {"list": [1, "two", None]}}, "n": 4294967295, "flag": True}
    assert store.apply([cmd(1, "create", name, "a", doc)]) == [None]
    assert store.get(name, "a") == doc
    store.close()
    engine.dispose()


# -- over HTTP, with a real worker -------------------------------------------------------------


@pytest.fixture
def sqlite_products(sqlite_url: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """The products table in the SQLite database of this test's app and workers."""
    engine = sa.create_engine(sqlite_url)
    table = products(sa.MetaData(), "products")
    table.create(engine)
    yield engine, table
    engine.dispose()


@pytest.fixture
def products_client(settings_env: dict[str, str]) -> Iterator[Any]:
    """A client of an app that declares the team's `products` table (policy shared)."""
    from app import create_app

    application = create_app(
        {k.lower(): v for k, v in settings_env.items()} | {"collections": "products:shared"}
    )
    yield application.test_client()
    application.extensions["gateway"].close()


def test_over_http_a_bad_document_is_refused_at_accept_and_a_good_one_lands_in_the_columns(
    sqlite_products: tuple[sa.Engine, sa.Table], products_client: Any, redis_keys: Any, start_worker: Any
) -> None:
    client = products_client
    engine, table = sqlite_products
    refused = client.post("/api/products", json={"id": "A-1", "title": "Lamp", "colour": "red", "qty": "3"})
    body = assert_problem(refused, 422)
    assert sorted(e["field"] for e in body["errors"]) == ["colour", "qty"]
    refused = client.patch("/api/products/A-1", json={"title": None})
    assert [e["field"] for e in assert_problem(refused, 422)["errors"]] == ["title"]
    assert redis_keys.all() == set()  # nothing of the refused commands was written

    start_worker(COLLECTIONS="products:shared")
    accepted = client.post("/api/products", json={"id": "A-1", "title": "Lamp", "qty": 3, "active": True})
    assert accepted.status_code == 202, accepted.json
    status_url = accepted.json["status_url"]
    wait_until(lambda: client.get(status_url).json["status"] != "pending")
    assert client.get(status_url).json["status"] == "applied"
    assert rows(engine, table)["A-1"]["qty"] == 3
    assert client.get("/api/products/A-1").json == {"id": "A-1", "title": "Lamp", "qty": 3, "active": True}

"""Collection names the database cannot make a table of (plugins/sql_names.py): refused by the
store's `validate` (so at accept, 422), and failing alone, at once, if a command reaches `apply`;
and the store's caches of known and absent tables bounded."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa

from plugins import sql_store
from plugins.lookups import BoundedDict
from plugins.sql_store import SqlStore
from tests.stores.test_sql import cmd

pytestmark = pytest.mark.integration


def test_sqlite_names_are_refused_before_accept_and_fail_alone(sqlite_store: SqlStore) -> None:
    store = sqlite_store
    [error] = store.validate("sqlite_stat1", "create", {"a": 1})
    assert "SQLite keeps for itself" in error["message"]
    good = "c_" + secrets.token_hex(4)
    outcomes = store.apply(
        [cmd(1, "create", good, "a", {"v": 1}), cmd(2, "create", "sqlite_stat1", "x", {"v": 1})]
    )
    assert outcomes[0] is None
    assert outcomes[1] is not None and "SQLite keeps for itself" in outcomes[1]
    assert store.get(good, "a") == {"v": 1}


def test_postgres_names_of_indexes_are_refused_and_fail_alone(postgres_store: SqlStore) -> None:
    store = postgres_store
    owner = "u_" + secrets.token_hex(4)
    store.apply([cmd(1, "create", owner, "a", {"v": 1})])  # its primary key index: <owner>_pkey
    index = f"{owner}_pkey"
    [error] = store.validate(index, "create", {"a": 1})
    assert "an index" in error["message"]
    good = "c_" + secrets.token_hex(4)
    outcomes = store.apply([cmd(2, "create", index, "x", {"v": 1}), cmd(3, "create", good, "b", {"v": 2})])
    assert outcomes[0] is not None and "an index" in outcomes[0]
    assert outcomes[1] is None


def test_a_name_taken_after_the_check_still_fails_alone(postgres_store: SqlStore) -> None:
    store = postgres_store
    name = "s_" + secrets.token_hex(4)
    assert store.validate(name, "create", {}) == []  # no table, creatable: remembered absent
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SEQUENCE {name}"))
    good = "c_" + secrets.token_hex(4)
    outcomes = store.apply([cmd(1, "create", name, "x", {}), cmd(2, "create", good, "y", {})])
    assert outcomes[0] is not None and "a sequence" in outcomes[0]
    assert outcomes[1] is None


def test_the_table_caches_are_bounded(sqlite_store: SqlStore) -> None:
    store = sqlite_store
    store._layouts = BoundedDict(3)
    store._absent = BoundedDict(3)
    for i in range(10):
        store.validate(f"absent_{i}", "create", {})
        store.apply([cmd(i + 1, "create", f"made_{i}", "a", {})])
    assert len(store._layouts) == 3 and len(store._absent) <= 3
    assert store.get("made_0", "a") == {}  # a forgotten layout is looked up again
    assert sql_store.KNOWN_TABLES >= 100 and sql_store.ABSENT_TABLES >= 1000

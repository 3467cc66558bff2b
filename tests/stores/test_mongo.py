"""The MongoDB store: the conformance kit and what is MongoDB's own, on mongomock, and on a real
server too when MONGO_URL is set (then both with and without multi-document transactions).

Without MONGO_URL the real-server variants are not generated at all, so nothing is skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import pytest

import settings
from plugins.conformance import StoreConformance, cmd
from plugins.mongo_store import META, MongoStore
from plugins.mongo_store import register_stores as mongo_register_stores
from plugins.store import Rejected, StoreUnavailable
from tests.plugins.mongomock_store import mongomock_client, with_stand_in_sessions

MONGO_URL = os.environ.get("MONGO_URL")
# "mongomock-transaction-path": the transaction path's code, on a stand-in session (mongomock has
# no transactions, so not their atomicity).
TARGETS = ["mongomock", "mongomock-transaction-path"]
TARGETS += ["server", "server-without-transactions"] if MONGO_URL else []


def open_store(target: str) -> Iterator[MongoStore]:
    """A store on a database of its own, dropped afterwards."""
    database = "gwtest_" + secrets.token_hex(4)
    if target.startswith("mongomock"):
        client = mongomock_client()
        transactions = target == "mongomock-transaction-path"
        if transactions:
            with_stand_in_sessions(client)
        store = MongoStore("mongodb://mongomock", database=database, client=client, transactions=transactions)
    else:
        transactions = None if target == "server" else False
        store = MongoStore(MONGO_URL or "", database=database, transactions=transactions)
    store.setup()
    yield store
    store.client.drop_database(database)
    store.close()


@pytest.fixture(params=TARGETS)
def mongo_store(request: pytest.FixtureRequest) -> Iterator[MongoStore]:
    yield from open_store(request.param)


class TestMongoStore(StoreConformance):
    @pytest.fixture
    def store(self, mongo_store: MongoStore) -> MongoStore:
        return mongo_store

    @pytest.fixture
    def refused_document(self) -> tuple[str, dict[str, Any], str]:
        return ("replace", {"_gw": {"seq": 10**12}}, "_gw")


@pytest.fixture
def store(mongo_store: MongoStore) -> MongoStore:
    return mongo_store


def raw(store: MongoStore, collection: str, entity_id: str) -> dict[str, Any] | None:
    """The stored MongoDB document, as the database holds it."""
    return store.db[collection].find_one({"_id": entity_id})


# -- how documents are stored ------------------------------------------------------------------


def test_a_document_is_stored_as_it_is_with_its_sequence(store: MongoStore, collection: str) -> None:
    store.apply([cmd(7, "create", collection, "a", {"name": "Ada", "tags": ["x"]})])
    assert raw(store, collection, "a") == {"_id": "a", META: {"seq": 7}, "name": "Ada", "tags": ["x"]}


def test_a_deleted_entity_keeps_its_sequence_as_a_tombstone(store: MongoStore, collection: str) -> None:
    store.apply([cmd(1, "create", collection, "a", {"v": 1}), cmd(2, "delete", collection, "a")])
    tombstone = raw(store, collection, "a")
    assert tombstone is not None and set(tombstone) == {"_id", META}
    assert tombstone[META]["seq"] == 2 and tombstone[META]["deleted"] is True
    assert store.apply([cmd(1, "create", collection, "a", {"v": 1})]) == [None]  # late re-delivery
    assert store.get(collection, "a") is None
    assert store.list(collection, 10, None).items == []


def test_documents_written_by_others_are_read_and_updated(store: MongoStore, collection: str) -> None:
    store.db[collection].insert_many([{"_id": "theirs", "v": 1}, {"_id": pymongo.collection.ObjectId()}])
    assert store.get(collection, "theirs") == {"v": 1}
    assert [d["id"] for d in store.list(collection, 10, None).items] == ["theirs"]  # string ids only
    assert store.apply([cmd(5, "patch", collection, "theirs", {"w": 2})]) == [None]
    assert raw(store, collection, "theirs") == {"_id": "theirs", "v": 1, META: {"seq": 5}, "w": 2}


# -- refusals ----------------------------------------------------------------------------------


def test_reserved_and_dollar_field_names_are_refused_at_accept(store: MongoStore, collection: str) -> None:
    assert store.validate(collection, "create", {"name": "ok", "nested": {"a.b": 1}}) == []
    errors = store.validate(collection, "patch", {"_id": 1, "_gw": 2, "x": [{"$set": 1}], "$where": 0})
    assert sorted(e["field"] for e in errors) == ["$where", "_gw", "_id", "x[0].$set"]


def test_a_refused_field_name_fails_its_command_alone(store: MongoStore, collection: str) -> None:
    outcomes = store.apply(
        [cmd(1, "create", collection, "a", {"_gw": {"seq": 99}}), cmd(2, "create", collection, "b", {})]
    )
    assert "reserved" in str(outcomes[0]) and outcomes[1] is None
    assert store.get(collection, "a") is None and store.get(collection, "b") == {}


@pytest.mark.parametrize(
    "document",
    [{"n": 2**64}, {"text": "x" * (17 * 1024 * 1024)}, {"key\u0000": 1}],
    ids=["int65", "over-16MiB", "nul-in-key"],
)
def test_a_document_mongodb_cannot_hold_rejects_the_batch_before_any_write(
    store: MongoStore, collection: str, document: dict[str, Any]
) -> None:
    with pytest.raises(Rejected, match="MongoDB"):
        store.apply([cmd(1, "create", collection, "ok", {}), cmd(2, "create", collection, "bad", document)])
    assert raw(store, collection, "ok") is None


# -- races -------------------------------------------------------------------------------------


class RacedStore(MongoStore):
    """Lets `meanwhile` change the stored documents between the read and the first write."""

    meanwhile: Callable[[], None] = staticmethod(lambda: None)

    def _write(self, plan: Any, session: Any) -> None:
        meanwhile, self.meanwhile = self.meanwhile, lambda: None
        meanwhile()
        super()._write(plan, session)


@pytest.fixture
def raced(store: MongoStore) -> RacedStore:
    """A second store on the same database, writing as `store` does (with or without
    transactions)."""
    return RacedStore(
        store.url, database=store.db.name, client=store.client, transactions=store.transactions()
    )


def test_a_write_that_loses_a_race_to_a_newer_command_is_skipped(
    store: MongoStore, raced: RacedStore, collection: str
) -> None:
    store.apply([cmd(1, "create", collection, "a", {"v": 1})])
    raced.meanwhile = lambda: store.apply([cmd(9, "replace", collection, "a", {"v": 9})])
    assert raced.apply([cmd(5, "replace", collection, "a", {"v": 5})]) == [None]
    assert raw(store, collection, "a") == {"_id": "a", META: {"seq": 9}, "v": 9}


def test_a_write_that_loses_a_race_to_an_older_command_applies_on_top(
    store: MongoStore, raced: RacedStore, collection: str
) -> None:
    store.apply([cmd(1, "create", collection, "a", {"v": 1})])
    raced.meanwhile = lambda: store.apply([cmd(2, "patch", collection, "a", {"w": 2})])
    assert raced.apply(
        [cmd(5, "patch", collection, "a", {"x": 5}), cmd(6, "create", collection, "b", {})]
    ) == [
        None,
        None,
    ]
    assert store.get(collection, "a") == {"v": 1, "w": 2, "x": 5}
    assert store.get(collection, "b") == {}


def test_a_create_that_loses_a_race_is_planned_again(
    store: MongoStore, raced: RacedStore, collection: str
) -> None:
    raced.meanwhile = lambda: store.apply([cmd(1, "create", collection, "a", {"first": True})])
    [outcome] = raced.apply([cmd(2, "create", collection, "a", {"second": True})])
    assert outcome and "already exists" in str(outcome)
    assert store.get(collection, "a") == {"first": True}


def test_the_rest_of_a_partly_written_batch_is_written_by_its_reapply(
    store: MongoStore, collection: str
) -> None:
    batch = [
        cmd(1, "create", collection, "a", {"n": 1}),
        cmd(2, "create", collection, "b", {"n": 2}),
        cmd(3, "patch", collection, "a", {"m": 3}),
        cmd(4, "delete", collection, "b"),
    ]
    store.apply(batch[:2])  # as if a standalone server's bulk write stopped after two entities
    assert store.apply(batch) == [None] * 4
    assert store.get(collection, "a") == {"n": 1, "m": 3} and store.get(collection, "b") is None


# -- the server --------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["apply", "get", "list", "ping", "setup"])
def test_an_unreachable_server_raises_store_unavailable(call: str) -> None:
    store = MongoStore("mongodb://127.0.0.1:1/gateway", timeout_ms=100)
    calls: dict[str, Callable[[], object]] = {
        "apply": lambda: store.apply([cmd(1, "create", "things", "a", {})]),
        "get": lambda: store.get("things", "a"),
        "list": lambda: store.list("things", 10, None),
        "ping": store.ping,
        "setup": store.setup,
    }
    with pytest.raises(StoreUnavailable):
        calls[call]()
    store.close()


def test_mongomock_has_no_transactions_and_the_store_writes_without() -> None:
    store = MongoStore("mongodb://mongomock", client=mongomock_client())
    assert store.transactions() is False
    assert store.apply([cmd(1, "create", "things", "a", {})]) == [None]


def test_the_store_is_registered_only_with_a_mongo_url() -> None:
    assert mongo_register_stores(settings.load(mongo_url=None)) == []
    [store] = mongo_register_stores(settings.load(mongo_url="mongodb://db.example:27017/app"))
    assert isinstance(store, MongoStore) and store.name == "mongo"
    assert "client" not in store.__dict__  # nothing connects before the first use
    assert store.db.name == "app"
    store.close()


def test_a_transaction_whose_write_lost_a_race_runs_again_from_the_start(collection: str) -> None:
    client = mongomock_client()
    runs = with_stand_in_sessions(client)
    store = MongoStore("mongodb://mongomock", client=client, transactions=True)
    raced = RacedStore("mongodb://mongomock", client=client, transactions=True)
    store.apply([cmd(1, "create", collection, "a", {"v": 1})])
    raced.meanwhile = lambda: store.apply([cmd(2, "patch", collection, "a", {"w": 2})])
    runs.clear()
    batch = [cmd(3, "create", collection, "b", {}), cmd(4, "patch", collection, "a", {"x": 4})]
    assert raced.apply(batch) == [None, None]
    assert len(runs) == 3  # raced's first transaction, store's inside it, raced's second
    assert store.get(collection, "a") == {"v": 1, "w": 2, "x": 4}
    assert store.get(collection, "b") == {}

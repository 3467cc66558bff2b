"""The apply stage (workers/apply.py) on the in-memory store: one transaction per store for a
pass, and a bad command failing alone. Unit tests: no Redis, no database."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.stores import StoreRouter
from plugins.store import Command
from tests.support.memory_store import MemoryStore
from workers.apply import Result, apply_ready
from workers.stream import Entry


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def stores(store: MemoryStore) -> StoreRouter:
    return StoreRouter({"memory": store}, "memory", {})


def entry(seq: int, op: str, entity_id: str, payload: Any = None, collection: str = "things") -> Entry:
    """A due stream entry of command `c<seq>`, accepted `seq`-th."""
    command = Command(f"c{seq}", seq, op, collection, entity_id, payload)  # type: ignore[arg-type]
    return Entry(entry_id=f"{seq}-0", command=command, user="alice", attempts=0)


def kinds(results: dict[Entry, Result]) -> dict[str, str]:
    return {e.command.command_id: r.kind for e, r in results.items()}


def test_a_pass_is_one_transaction(stores: StoreRouter, store: MemoryStore) -> None:
    ready = [
        entry(1, "create", "a", {"v": 1}),
        entry(2, "create", "b", {"v": 2}),
        entry(3, "patch", "a", {"w": 3}),
    ]
    assert kinds(apply_ready(stores, ready)) == {"c1": "applied", "c2": "applied", "c3": "applied"}
    assert store.batches == [["c1", "c2", "c3"]]
    assert store.get("things", "a") == {"v": 1, "w": 3}


def test_a_pass_is_one_transaction_per_store() -> None:
    first, second = MemoryStore(), MemoryStore()
    stores = StoreRouter({"first": first, "second": second}, "first", {"others": "second"})
    ready = [entry(1, "create", "a", {}), entry(2, "create", "b", {}, "others"), entry(3, "create", "c", {})]
    assert set(kinds(apply_ready(stores, ready)).values()) == {"applied"}
    assert (first.batches, second.batches) == ([["c1", "c3"]], [["c2"]])


def test_a_command_the_store_rejects_in_its_outcome_fails_and_its_batch_mates_commit(
    stores: StoreRouter, store: MemoryStore
) -> None:
    ready = [entry(1, "patch", "missing", {"v": 1}), entry(2, "create", "b", {"v": 2})]
    results = apply_ready(stores, ready)
    assert kinds(results) == {"c1": "failed", "c2": "applied"}
    assert "does not exist" in results[ready[0]].error
    assert store.batches == [["c1", "c2"]]  # no one-by-one: the batch committed


def test_a_poison_command_fails_alone_and_the_others_apply(stores: StoreRouter, store: MemoryStore) -> None:
    store.refuse = "poison"
    ready = [
        entry(1, "create", "a", {}),
        entry(2, "create", "b", {"poison": True}),
        entry(3, "create", "c", {}),
    ]
    results = apply_ready(stores, ready)
    assert kinds(results) == {"c1": "applied", "c2": "failed", "c3": "applied"}
    assert results[ready[1]].error == "memory store: refuses poison"
    assert store.batches == [["c1"], ["c3"]]  # the batch was refused whole, then one by one
    assert [store.get("things", e) for e in "abc"] == [{}, None, {}]


def test_a_command_refused_by_a_raise_holds_back_its_entity_until_its_failure_is_recorded(
    stores: StoreRouter, store: MemoryStore
) -> None:
    """The store kept no trace of the refusal: were b's next command committed before the failure
    is recorded, a re-delivery of both would find b's seq past the refused one (applied before)."""
    store.refuse = "poison"
    ready = [
        entry(1, "replace", "b", {"poison": True}),
        entry(2, "replace", "b", {"v": 2}),
        entry(3, "create", "c", {}),
    ]
    results = apply_ready(stores, ready)
    assert kinds(results) == {"c1": "failed", "c3": "applied"}  # c2: no result, pending
    assert results[ready[0]].raised and not results[ready[2]].raised
    assert store.get("things", "b") is None
    assert kinds(apply_ready(stores, ready[1:2])) == {"c2": "applied"}  # the next pass


def test_a_transient_failure_holds_back_its_entity_only(stores: StoreRouter, store: MemoryStore) -> None:
    store.transient = {"b": 2}  # the batch, then b's command alone
    ready = [
        entry(1, "create", "b", {"v": 1}),
        entry(2, "create", "a", {"v": 2}),
        entry(3, "patch", "b", {"v": 3}),  # after b's failed command: must not overtake it
        entry(4, "create", "c", {"v": 4}),
    ]
    results = apply_ready(stores, ready)
    assert kinds(results) == {"c1": "retry", "c2": "applied", "c4": "applied"}  # c3: no result, pending
    assert "transient failure on b" in results[ready[0]].error
    assert store.get("things", "b") is None


def test_a_store_that_is_down_leaves_every_command_unavailable(
    stores: StoreRouter, store: MemoryStore
) -> None:
    store.down = True
    ready = [entry(1, "create", "a", {}), entry(2, "create", "b", {})]
    results = apply_ready(stores, ready)
    assert kinds(results) == {"c1": "unavailable", "c2": "unavailable"}
    assert results[ready[0]].error == "StoreUnavailable: memory store: down"


def test_a_failure_when_the_store_stops_answering_is_an_outage_not_the_commands_fault(
    stores: StoreRouter, store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.transient = {"a": 1}

    def no_answer() -> None:
        raise ConnectionError("no route to host")

    monkeypatch.setattr(store, "ping", no_answer)
    results = apply_ready(stores, [entry(1, "create", "a", {}), entry(2, "create", "b", {})])
    assert kinds(results) == {"c1": "unavailable", "c2": "unavailable"}


def test_a_store_lost_part_way_through_one_by_one_leaves_the_rest_unavailable(
    stores: StoreRouter, store: MemoryStore
) -> None:
    store.refuse = "poison"
    ready = [
        entry(1, "create", "a", {}),
        entry(2, "create", "b", {"poison": True}),
        entry(3, "create", "c", {}),
    ]
    real_apply = store.apply

    def down_after_the_first(commands: Any) -> Any:
        if store.batches:
            store.down = True
        return real_apply(commands)

    store.apply = down_after_the_first  # type: ignore[method-assign]
    assert kinds(apply_ready(stores, ready)) == {"c1": "applied", "c2": "unavailable", "c3": "unavailable"}


def test_applying_again_is_harmless(stores: StoreRouter, store: MemoryStore) -> None:
    ready = [entry(1, "create", "a", {"v": 1}), entry(2, "patch", "a", {"w": 2})]
    apply_ready(stores, ready)
    again = apply_ready(stores, ready)  # a re-delivery after a commit the worker did not record
    assert kinds(again) == {"c1": "applied", "c2": "applied"}  # not "already exists"
    assert store.get("things", "a") == {"v": 1, "w": 2}

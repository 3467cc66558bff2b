"""The in-memory store of the unit tests keeps the store contract: the conformance kit, and its
faults as the drain tests use them."""

from __future__ import annotations

import pytest

from plugins.conformance import StoreConformance, cmd
from plugins.store import Rejected, StoreUnavailable
from tests.support.memory_store import MemoryStore


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()


def test_a_store_that_is_down_refuses_everything_as_unavailable() -> None:
    store = MemoryStore()
    store.down = True
    with pytest.raises(StoreUnavailable):
        store.apply([cmd(1, "create", "c", "a", {})])
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_a_refused_document_fails_its_whole_batch() -> None:
    store = MemoryStore()
    store.refuse = "poison"
    with pytest.raises(Rejected):
        store.apply([cmd(1, "create", "c", "a", {}), cmd(2, "create", "c", "b", {"poison": True})])
    assert store.get("c", "a") is None and store.batches == []


def test_a_transient_failure_fails_as_many_batches_as_asked() -> None:
    store = MemoryStore()
    store.transient = {"a": 1}
    with pytest.raises(RuntimeError):
        store.apply([cmd(1, "create", "c", "a", {})])
    store.ping()  # the store still answers
    assert store.apply([cmd(1, "create", "c", "a", {})]) == [None]

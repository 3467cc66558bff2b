"""The LMDB store passes the gateway's store conformance kit, and keeps LMDB's own limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_lmdb_store import LmdbStore, register_stores

from plugins.conformance import StoreConformance, cmd
from plugins.store import StoreUnavailable


@pytest.fixture
def lmdb_store(tmp_path: Path) -> Iterator[LmdbStore]:
    store = LmdbStore(tmp_path / "lmdb", map_size=64 << 20)
    store.setup()
    yield store
    store.close()


class TestLmdbStore(StoreConformance):
    """Every test of the kit, against an LMDB environment of its own."""

    @pytest.fixture
    def store(self, lmdb_store: LmdbStore) -> LmdbStore:
        return lmdb_store


def test_an_id_too_long_for_an_lmdb_key_fails_alone(lmdb_store: LmdbStore) -> None:
    too_long = "😀" * 200  # 800 bytes of UTF-8; LMDB keys hold 511
    batch = [cmd(1, "create", "notes", too_long, {}), cmd(2, "create", "notes", "ok", {})]
    outcomes = lmdb_store.apply(batch)
    assert outcomes[0] is not None and "too long" in str(outcomes[0])
    assert outcomes[1] is None
    assert lmdb_store.get("notes", too_long) is None


def test_documents_outlive_the_store_object(tmp_path: Path) -> None:
    first = LmdbStore(tmp_path / "lmdb")
    first.apply([cmd(1, "create", "notes", "a", {"v": 1})])
    first.close()
    second = LmdbStore(tmp_path / "lmdb")
    assert second.get("notes", "a") == {"v": 1}
    assert second.apply([cmd(1, "create", "notes", "a", {"v": 1})]) == [None]  # the ledger too
    second.close()


def test_an_unusable_path_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = LmdbStore(tmp_path / "file" / "lmdb")
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_the_store_is_registered_only_with_a_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LMDB_STORE_PATH", raising=False)
    assert register_stores(settings=None) == []
    monkeypatch.setenv("LMDB_STORE_PATH", str(tmp_path / "lmdb"))
    [store] = register_stores(settings=None)
    assert isinstance(store, LmdbStore) and store.name == "lmdb"
    assert not (tmp_path / "lmdb").exists()  # nothing is opened before the first use

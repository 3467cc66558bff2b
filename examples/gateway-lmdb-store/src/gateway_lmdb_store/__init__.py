"""An LMDB store for the command gateway: documents in a local LMDB environment, no server.

Enabled by `LMDB_STORE_PATH` (a directory; created if missing). `LMDB_STORE_MAP_SIZE` is the
largest the data may grow, in bytes (default 1 GiB; LMDB reserves it as address space, not
disk). The web and worker processes of one machine share the environment; LMDB is not for a
directory shared between machines.

The store keeps the gateway's contract with LMDB's own transactions: a batch is one write
transaction (all of it commits, or none), and a second database of the environment, `applied`,
holds per entity the sequence of the last command applied, and a third, `refused`, the refusals a
re-delivered batch must get again (`plugins.ledger`), both written in the same transaction.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lmdb
import orjson
import pluggy

from plugins.ledger import by_collection, decode_refusals, encode_refusals, fold
from plugins.names import is_well_formed
from plugins.store import (
    Access,
    Command,
    Document,
    Outcome,
    Page,
    Rejected,
    Store,
    StoreUnavailable,
    list_page,
)

# The gateway's marker, by project name: the plugin needs no import of the gateway's hookspecs.
hookimpl = pluggy.HookimplMarker("gateway")

DEFAULT_MAP_SIZE = 1 << 30
SEPARATOR = b"\x00"  # between collection and id in a key: no collection or entity id holds it


class LmdbStore(Store):
    """One LMDB environment: database `documents` (key: collection NUL id; value: JSON),
    database `applied` (same key; value: the last applied sequence, in decimal) and database
    `owners` (same key; value: the user who created the document, under policy `owner`) and
    database `refused` (same key; value: the refusals kept, as JSON). A
    user's list scans the collection and skips other owners' documents: fine for an example,
    where a production store would index the owner."""

    name = "lmdb"

    def __init__(self, path: str | os.PathLike[str], map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.path = Path(path)
        self.map_size = map_size
        self._lock = threading.Lock()
        self._opened: tuple[int, lmdb.Environment, Any, Any, Any, Any] | None = None  # (pid, env, dbs)

    def _open(self) -> tuple[lmdb.Environment, Any, Any]:
        """The environment and two of its databases (`_owners` has the third)"""
        env, documents, applied, _, _ = self._open_all()
        return env, documents, applied

    def _owners(self) -> Any:
        return self._open_all()[3]

    def _open_all(self) -> tuple[lmdb.Environment, Any, Any, Any, Any]:
        """The environment and its four databases, opened once per process (LMDB handles do not
        survive a fork, and a process must not open one environment twice)."""
        with self._lock:
            if self._opened is None or self._opened[0] != os.getpid():
                try:
                    self.path.mkdir(parents=True, exist_ok=True)
                    env = lmdb.open(str(self.path), map_size=self.map_size, max_dbs=4)
                    documents, applied = env.open_db(b"documents"), env.open_db(b"applied")
                    owners, refused = env.open_db(b"owners"), env.open_db(b"refused")
                except (OSError, lmdb.Error) as error:
                    raise StoreUnavailable(f"cannot open LMDB at {self.path}: {error}") from error
                self._opened = (os.getpid(), env, documents, applied, owners, refused)
            _, env, documents, applied, owners, refused = self._opened
            return env, documents, applied, owners, refused

    def _key(self, env: lmdb.Environment, collection: str, entity_id: str) -> bytes:
        """The key of an entity; Rejected when LMDB cannot hold it (511 bytes at most)."""
        if not is_well_formed(collection):
            raise Rejected(f"{collection!r} is not a collection name")
        key = collection.encode() + SEPARATOR + entity_id.encode()
        if len(key) > env.max_key_size():
            raise Rejected(f"the id of {collection}/{entity_id[:20]}... is too long for an LMDB key")
        return key

    # -- writes ------------------------------------------------------------------------------

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        env, documents, applied = self._open()
        outcomes: list[Outcome] = [None] * len(commands)
        try:
            with env.begin(write=True) as txn:  # commits at the end, aborts on any exception
                for collection, indexes in by_collection(commands).items():
                    folded = self._apply_collection(txn, collection, [commands[i] for i in indexes])
                    for index, outcome in zip(indexes, folded, strict=True):
                        outcomes[index] = outcome
        except orjson.JSONEncodeError as error:
            raise Rejected(f"the document cannot be encoded as JSON: {error}") from error
        return outcomes

    def _apply_collection(self, txn: Any, collection: str, batch: list[Command]) -> list[Outcome]:
        """Fold `batch` into its entities as the ledger and the documents hold them, and write."""
        env, documents, applied, owners, refused = self._open_all()
        keys = self._keys(env, collection, batch)
        seqs, stored, stored_owners, refusals = {}, {}, {}, {}
        for entity_id, key in keys.items():
            if (seq := txn.get(key, db=applied)) is not None:
                seqs[entity_id] = int(seq)
            if (document := txn.get(key, db=documents)) is not None:
                stored[entity_id] = orjson.loads(document)
            if (owner := txn.get(key, db=owners)) is not None:
                stored_owners[entity_id] = owner.decode()
            if (kept := txn.get(key, db=refused)) is not None:
                refusals[entity_id] = decode_refusals(orjson.loads(kept))
        apply_to = functools.partial(self._apply_to, env)
        folded = fold(batch, seqs, stored, apply_to, stored_owners, refusals)
        for entity_id, kept_now in folded.refusals.items():
            if entity_id not in keys:
                continue  # an id LMDB cannot hold is refused again by `_apply_to`
            if kept_now:
                txn.put(keys[entity_id], orjson.dumps(encode_refusals(kept_now)), db=refused)
            else:
                txn.delete(keys[entity_id], db=refused)
        for entity_id, document in folded.documents.items():
            if document is None:
                txn.delete(keys[entity_id], db=documents)
            else:
                txn.put(keys[entity_id], orjson.dumps(document), db=documents)
            owner = folded.owners.get(entity_id)
            if owner is None:
                txn.delete(keys[entity_id], db=owners)
            else:
                txn.put(keys[entity_id], owner.encode(), db=owners)
            txn.put(keys[entity_id], str(folded.seqs[entity_id]).encode(), db=applied)
        return folded.outcomes

    def _keys(self, env: lmdb.Environment, collection: str, batch: list[Command]) -> dict[str, bytes]:
        """The key of each entity of `batch` that LMDB can hold (`_apply_to` refuses the others)."""
        keys = {}
        for entity_id in {command.entity_id for command in batch}:
            try:
                keys[entity_id] = self._key(env, collection, entity_id)
            except Rejected:
                continue
        return keys

    def _apply_to(self, env: lmdb.Environment, command: Command, current: Document | None) -> Document | None:
        """`Command.apply_to`, refusing an entity whose key LMDB cannot hold."""
        self._key(env, command.collection, command.entity_id)
        document = command.apply_to(current)
        return None if document is None else command.stamp_owner(current, document)

    # -- reads -------------------------------------------------------------------------------

    def get(self, collection: str, entity_id: str, access: Access | None = None) -> Document | None:
        env, documents, _, owners, _ = self._open_all()
        try:
            key = self._key(env, collection, entity_id)
        except Rejected:
            return None
        with env.begin() as txn:
            stored = txn.get(key, db=documents)
            if stored is not None and not _may_see(txn.get(key, db=owners), access):
                return None
        return orjson.loads(stored) if stored is not None else None

    def list(self, collection: str, limit: int, cursor: str | None, access: Access | None = None) -> Page:
        return list_page(functools.partial(self._fetch_page, access=access), collection, limit, cursor)

    def _fetch_page(
        self, collection: str, after: str | None, count: int, access: Access | None = None
    ) -> list[tuple[str, Document]]:
        env, documents, _, owners, _ = self._open_all()
        if not is_well_formed(collection):
            return []
        prefix = collection.encode() + SEPARATOR
        found: list[tuple[str, Document]] = []
        with env.begin(db=documents) as txn:
            for key, value in _scan(txn.cursor(), prefix, after):
                if not _may_see(txn.get(key, db=owners), access):
                    continue
                found.append((key[len(prefix) :].decode(), orjson.loads(value)))
                if len(found) == count:
                    break
        return found

    def ping(self) -> None:
        env, _, _ = self._open()
        env.stat()

    def setup(self) -> None:
        self._open()

    def close(self) -> None:
        with self._lock:
            if self._opened is not None and self._opened[0] == os.getpid():
                self._opened[1].close()
            self._opened = None


def _may_see(owner: bytes | None, access: Access | None) -> bool:
    return access is None or access.may_see(owner.decode() if owner is not None else None)


def _scan(cursor: Any, prefix: bytes, after: str | None) -> Iterator[tuple[bytes, bytes]]:
    """The entries under `prefix` in key order (UTF-8 bytes: code point order), after `after`."""
    start = prefix + after.encode() if after is not None else prefix
    if not cursor.set_range(start):
        return
    for key, value in cursor:
        if not key.startswith(prefix):
            return
        if after is not None and key == start:
            continue
        yield key, value


@hookimpl
def register_stores(settings: Any) -> list[Store]:
    """The `lmdb` store, when LMDB_STORE_PATH is set."""
    path = os.environ.get("LMDB_STORE_PATH")
    if not path:
        return []
    return [LmdbStore(path, int(os.environ.get("LMDB_STORE_MAP_SIZE", DEFAULT_MAP_SIZE)))]

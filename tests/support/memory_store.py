"""An in-memory store for fast unit tests of the drain stages, which keeps the store contract
(`plugins.store`; `tests/pipeline/test_memory_store.py` runs the conformance kit against it).

A batch works on copies and replaces the store's state only once every command went through,
so a batch that raises leaves nothing behind. The per-entity ledger (the `seq` of the last
command applied, kept after a delete, and the refusals kept, `plugins.ledger.fold`) makes a
re-delivered or stale command a no-op, and a re-delivered refusal the same refusal. Documents
are stored as JSON, so a document that has no JSON form makes its batch raise.

Faults, set by a test:
- `down`: the store cannot be reached; `apply` and `ping` raise `StoreUnavailable`.
- `refuse`: a key; a batch holding a document with it is refused whole (`Rejected`), as
  PostgreSQL refuses a NUL character and rolls the transaction back.
- `transient`: entity id -> how many more batches holding a command on that entity fail with
  a plain error (the store still answers pings).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from plugins.ledger import Refusals, by_collection, fold
from plugins.store import (
    Access,
    Command,
    Document,
    Outcome,
    Page,
    Rejected,
    Store,
    StoreUnavailable,
    decode_cursor,
    encode_cursor,
)


class MemoryStore(Store):
    name = "memory"

    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], bytes] = {}  # (collection, entity id) -> JSON
        self.ledger: dict[tuple[str, str], int] = {}  # (collection, entity id) -> last seq applied
        self.owners: dict[tuple[str, str], str] = {}  # (collection, entity id) -> owner, when recorded
        self.refusals: dict[tuple[str, str], Refusals] = {}  # -> refusals kept for a re-delivery
        self.batches: list[list[str]] = []  # the command ids of every batch committed
        self.down = False
        self.refuse: str | None = None
        self.transient: dict[str, int] = {}

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        self._check_faults(commands)
        documents, ledger, owners = dict(self.documents), dict(self.ledger), dict(self.owners)
        refusals = dict(self.refusals)
        outcomes: list[Outcome] = [None] * len(commands)
        for collection, indexes in by_collection(commands).items():
            batch = [commands[i] for i in indexes]
            keys = {c.entity_id: (collection, c.entity_id) for c in batch}
            folded = fold(
                batch,
                {e: ledger[k] for e, k in keys.items() if k in ledger},
                {e: orjson.loads(documents[k]) for e, k in keys.items() if k in documents},
                owners={e: owners[k] for e, k in keys.items() if k in owners},
                refusals={e: refusals[k] for e, k in keys.items() if k in refusals},
            )
            for index, outcome in zip(indexes, folded.outcomes, strict=True):
                outcomes[index] = outcome
            for entity, document in folded.documents.items():
                key = keys[entity]
                owners.pop(key, None)
                documents.pop(key, None)
                if document is not None:
                    documents[key] = orjson.dumps(document)  # raises for a document without a JSON form
                    if (owner := folded.owners.get(entity)) is not None:
                        owners[key] = owner
                ledger[key] = folded.seqs[entity]
            for entity, kept in folded.refusals.items():
                refusals[keys[entity]] = kept
        self.documents, self.ledger, self.owners, self.refusals = documents, ledger, owners, refusals
        self.batches.append([c.command_id for c in commands])
        return outcomes

    def _check_faults(self, commands: Sequence[Command]) -> None:
        if self.down:
            raise StoreUnavailable("memory store: down")
        if self.refuse is not None and any(self.refuse in (c.payload or {}) for c in commands):
            raise Rejected(f"memory store: refuses {self.refuse}")
        for command in commands:
            if self.transient.get(command.entity_id, 0) > 0:
                self.transient[command.entity_id] -= 1
                raise RuntimeError(f"memory store: transient failure on {command.entity_id}")

    def get(self, collection: str, entity_id: str, access: Access | None = None) -> Document | None:
        if self.down:
            raise StoreUnavailable("memory store: down")
        found = self.documents.get((collection, entity_id))
        if found is None or (
            access is not None and not access.may_see(self.owners.get((collection, entity_id)))
        ):
            return None
        return orjson.loads(found)

    def list(self, collection: str, limit: int, cursor: str | None, access: Access | None = None) -> Page:
        after = decode_cursor(cursor) if cursor is not None else None
        ids = sorted(
            i
            for c, i in self.documents
            if c == collection
            and (after is None or i > after)
            and (access is None or access.may_see(self.owners.get((c, i))))
        )
        items = [{**orjson.loads(self.documents[(collection, i)]), "id": i} for i in ids[:limit]]
        return Page(items, encode_cursor(ids[limit - 1]) if len(ids) > limit else None)

    def ping(self) -> None:
        if self.down:
            raise StoreUnavailable("memory store: down")

"""The built-in MongoDB store (pymongo), enabled by `MONGO_URL`.

Each collection is a MongoDB collection of the same name in the URL's database (default
`gateway`); a document is stored as it is, with the entity id as `_id` and the gateway's
bookkeeping in one field `_gw`: `{"seq": <last applied command's sequence>}`, with the refusals
kept for a re-delivery (`plugins.mongo_form`). A deleted entity stays as a tombstone `{"_id",
"_gw": {"seq", "deleted": true, "at"}}`, so that the sequence outlives the document and a late
re-delivery of an older command cannot bring it back. Reads skip tombstones; `_id` and `_gw`
are reserved field names.

How the guarantees hold:

- Per entity, always: the document and its sequence are one MongoDB document, and every write is
  conditional on the sequence read before it (compare-and-set on `_gw.seq`; an insert where
  nothing was stored). A command whose sequence is not above the stored one is skipped, so a
  re-applied batch changes nothing, and a stale worker's write loses the race instead of
  overwriting newer state. A write that loses a race is planned again from what is now stored.
- Per batch: on a replica set or a sharded cluster, the whole batch is one multi-document
  transaction. A standalone server has no transactions: the batch is written as one unordered
  bulk write, entity by entity, so a failure part-way leaves some entities written and others
  not. Re-applying the batch (which is what the gateway does with a batch that raised) then
  writes the rest and skips what was written, so the effect is the same as one transaction's.
  Documents that can never be stored (not encodable as BSON, over 16 MiB) are found before
  anything is written, and the batch raises `Rejected` as a whole.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from plugins.hookspecs import hookimpl
from plugins.ledger import by_collection, fold
from plugins.mongo_form import (
    REFUSED_CODES,
    STORE_FIELDS,
    check_encodable,
    document_of,
    dollar_keys,
    refusals_of,
    seq_of,
    stored_form,
    unchanged,
)
from plugins.mongo_owners import META, owner_indexes, owner_of, readable, stored_meta
from plugins.names import is_well_formed
from plugins.store import (
    Access,
    Command,
    Document,
    FieldErrors,
    Op,
    Outcome,
    Page,
    Rejected,
    Rows,
    Store,
    StoreUnavailable,
    list_page,
)
from settings import Settings

if TYPE_CHECKING:  # pymongo is imported when the store is first used (MONGO_URL set)
    import pymongo
    from pymongo import InsertOne, ReplaceOne
    from pymongo.client_session import ClientSession
    from pymongo.collection import Collection

log = logging.getLogger("gateway.mongo_store")

DEFAULT_DATABASE = "gateway"  # when MONGO_URL names none
DUPLICATE_KEY = 11000
CONFLICT_ROUNDS = 5  # re-plans of entities whose write lost a race, before the batch fails
LIVE = {f"{META}.deleted": {"$ne": True}}  # not a tombstone


class Conflict(Exception):
    """Entities changed between the read and the write (another writer); plan them again."""

    def __init__(self, entity_ids: set[str]) -> None:
        super().__init__(f"{len(entity_ids)} entities changed while being written")
        self.entity_ids = entity_ids


@dataclass
class Plan:
    """One collection's part of a batch: the outcomes and the conditional writes."""

    collection: str
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # by index in the whole batch
    writes: list[InsertOne | ReplaceOne] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)  # entity -> the seq its write stores


class MongoStore(Store):
    """Documents in one MongoDB collection per gateway collection."""

    name = "mongo"

    def __init__(
        self,
        url: str,
        *,
        database: str | None = None,
        client: pymongo.MongoClient[Document] | None = None,
        transactions: bool | None = None,
        timeout_ms: int = 5000,
    ) -> None:
        """`database`: instead of the URL's; `client`: an already built client (tests pass
        mongomock's); `transactions`: force multi-document transactions on or off (None: use
        them when the server has them); `timeout_ms`: how long an unreachable server is waited
        for before `StoreUnavailable`, unless the URL sets `serverSelectionTimeoutMS`."""
        self.url = url
        self.database = database
        self.timeout_ms = timeout_ms
        self._client = client
        self._transactions = transactions
        self._indexed: set[str] = set()  # collections whose owner index exists

    @functools.cached_property
    def client(self) -> pymongo.MongoClient[Document]:
        """Opened on first use: in the process that uses it (pymongo is not fork-safe)."""
        if self._client is not None:
            return self._client
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": self.timeout_ms,
            "connectTimeoutMS": min(self.timeout_ms, 3000),
        }
        given = {name.lower() for name in parse_qs(urlsplit(self.url).query)}
        options = {k: v for k, v in options.items() if k.lower() not in given}  # the URL's win
        import pymongo

        return pymongo.MongoClient(self.url, tz_aware=True, **options)

    @functools.cached_property
    def db(self) -> pymongo.database.Database[Document]:
        if self.database:
            return self.client[self.database]
        return self.client.get_default_database(default=DEFAULT_DATABASE)

    def _collection(self, name: str) -> Collection[Document]:
        return self.db[name]

    def transactions(self) -> bool:
        """Whether batches run in multi-document transactions (replica set or mongos)."""
        if self._transactions is None:
            from pymongo.errors import OperationFailure

            with self._translated():
                try:
                    hello = self.client.admin.command("hello")
                except (NotImplementedError, OperationFailure):  # mongomock; a very old server
                    hello = {}
            self._transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
        return self._transactions

    # -- checks ------------------------------------------------------------------------------

    def validate(self, collection: str, op: Op, document: Document) -> FieldErrors:
        """`_id` and `_gw` are the store's; MongoDB field names do not start with `$`."""
        errors = []
        for name in document:
            if name in STORE_FIELDS:
                errors.append({"field": name, "message": "is reserved by the MongoDB store"})
        for path in dollar_keys(document):
            errors.append({"field": path, "message": "a MongoDB field name cannot start with '$'"})
        return errors

    # -- writes ------------------------------------------------------------------------------

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(commands)
        if not commands:
            return outcomes
        groups = by_collection(commands)
        with self._translated(writing=True):
            self._index_owners(commands)
            if self.transactions():
                plans = self._apply_in_transaction(commands, groups)
            else:
                plans = self._apply_without_transaction(commands, groups)
        for plan in plans:
            for index, outcome in plan.outcomes.items():
                outcomes[index] = outcome
        return outcomes

    def _apply_in_transaction(self, commands: Sequence[Command], groups: dict[str, list[int]]) -> list[Plan]:
        """Plan and write everything in one transaction. The driver runs the transaction again
        after a transient error (a write conflict with another transaction); a write that
        found its entity changed since it was read (Conflict) aborts it, and it starts over."""

        def attempt(session: ClientSession) -> list[Plan]:
            plans = [self._plan(c, commands, indexes, session) for c, indexes in groups.items()]
            for plan in plans:
                self._write(plan, session)
            return plans

        for _ in range(CONFLICT_ROUNDS):
            with self.client.start_session() as session:
                try:
                    return session.with_transaction(attempt)
                except Conflict:
                    continue
        raise RuntimeError("entities kept changing while being written")

    def _apply_without_transaction(
        self, commands: Sequence[Command], groups: dict[str, list[int]]
    ) -> list[Plan]:
        """Without transactions: plan every collection (refusing the batch before any write),
        then write; the entities whose write lost a race are planned and written again."""
        plans = [self._plan(c, commands, indexes, None) for c, indexes in groups.items()]
        done: list[Plan] = []
        for plan in plans:
            for _ in range(CONFLICT_ROUNDS):
                try:
                    self._write(plan, None)
                    break
                except Conflict as conflict:
                    again = [i for i in plan.outcomes if commands[i].entity_id in conflict.entity_ids]
                    retry = self._plan(plan.collection, commands, again, None)
                    plan.outcomes.update(retry.outcomes)
                    plan.writes, plan.seqs = retry.writes, retry.seqs
            else:
                raise RuntimeError(f"{plan.collection}: entities kept changing while being written")
            done.append(plan)
        return done

    def _plan(
        self, collection: str, commands: Sequence[Command], indexes: list[int], session: ClientSession | None
    ) -> Plan:
        """Fold the commands at `indexes` into the stored state: outcomes and writes."""
        from pymongo import InsertOne, ReplaceOne

        plan = Plan(collection)
        if not is_well_formed(collection):
            plan.outcomes = {i: f"{collection!r} is not a collection name" for i in indexes}
            return plan
        ids = sorted({commands[i].entity_id for i in indexes})
        found = self._collection(collection).find({"_id": {"$in": ids}}, session=session)
        stored = {d["_id"]: d for d in found}
        seqs = {entity: seq_of(document) for entity, document in stored.items()}
        documents = {entity: document_of(document) for entity, document in stored.items()}
        access = commands[indexes[0]].access  # one collection: one policy, one owner field
        owners = {entity: owner_of(document, access) for entity, document in stored.items()}
        batch = [commands[i] for i in indexes]
        refusals = {entity: refusals_of(document) for entity, document in stored.items()}
        folded = fold(batch, seqs, documents, self._apply_valid, owners, refusals)
        plan.outcomes = dict(zip(indexes, folded.outcomes, strict=True))
        plan.seqs = {**{e: seqs.get(e, -1) for e in folded.refusals}, **folded.seqs}
        owned = access is not None and access.owned and access.owner_field is None
        for entity in plan.seqs:  # changed: a document, or only the refusals it keeps
            document = folded.documents[entity] if entity in folded.documents else documents.get(entity)
            kept = stored_meta(stored.get(entity)).get("owner")
            owner = folded.owners.get(entity) if owned and entity in folded.documents else kept
            refused = folded.refusals.get(entity, refusals.get(entity))
            body = stored_form(entity, plan.seqs[entity], document, owner, refused)
            check_encodable(collection, entity, body)
            if entity in stored:
                plan.writes.append(ReplaceOne({"_id": entity, **unchanged(stored[entity])}, body))
            else:
                plan.writes.append(InsertOne(body))
        return plan

    def _apply_valid(self, command: Command, current: Document | None) -> Document | None:
        """`Command.apply_to`, refusing a payload `validate` finds fault with (a replayed command)."""
        problems = self.validate(command.collection, command.op, command.payload or {})
        if problems:
            raise Rejected("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        document = command.apply_to(current)
        return None if document is None else command.stamp_owner(current, document)

    def _index_owners(self, commands: Sequence[Command]) -> None:
        """Index the owners of each collection of policy `owner`, once per process."""
        for collection, owner_field in owner_indexes(commands, self._indexed):
            self._collection(collection).create_index([(owner_field, 1), ("_id", 1)])

    def _write(self, plan: Plan, session: ClientSession | None) -> None:
        """One unordered bulk write; raise Conflict naming the entities whose write lost a race."""
        from pymongo import ReplaceOne
        from pymongo.errors import BulkWriteError

        if not plan.writes:
            return
        collection = self._collection(plan.collection)
        try:
            result = collection.bulk_write(plan.writes, ordered=False, session=session)
            matched, errors = result.matched_count, []
        except BulkWriteError as error:
            matched, errors = error.details["nMatched"], error.details["writeErrors"]
        refused = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if refused:
            raise Rejected(f"MongoDB refused the document: {refused[0].get('errmsg')}")
        replaces = sum(isinstance(w, ReplaceOne) for w in plan.writes)
        if not errors and matched == replaces:
            return
        if session is not None:
            raise Conflict(set(plan.seqs))  # the transaction is void: everything is planned again
        written = collection.find({"_id": {"$in": list(plan.seqs)}}, {META: 1}, session=session)
        now = {d["_id"]: seq_of(d) for d in written}
        lost = {entity for entity, seq in plan.seqs.items() if now.get(entity) != seq}
        raise Conflict(lost)

    @contextlib.contextmanager
    def _translated(self, *, writing: bool = False) -> Iterator[None]:
        """StoreUnavailable for an unreachable server; Rejected for a document it refuses."""
        from pymongo.errors import ConnectionFailure, OperationFailure

        try:
            yield
        except ConnectionFailure as error:
            raise StoreUnavailable(str(error)) from error
        except OperationFailure as error:
            if writing and error.code in REFUSED_CODES:
                raise Rejected(f"MongoDB refused the document: {error}") from error
            raise

    # -- reads -------------------------------------------------------------------------------

    def get(self, collection: str, entity_id: str, access: Access | None = None) -> Document | None:
        if not is_well_formed(collection):
            return None
        with self._translated():
            found = self._collection(collection).find_one({"_id": entity_id, **LIVE, **readable(access)})
        return document_of(found)

    def list(self, collection: str, limit: int, cursor: str | None, access: Access | None = None) -> Page:
        return list_page(functools.partial(self._fetch_page, access=access), collection, limit, cursor)

    def _fetch_page(
        self, collection: str, after: str | None, count: int, access: Access | None = None
    ) -> Rows:
        if not is_well_formed(collection):
            return []
        # `$gte: ""` keeps to string ids: documents a team stored with ObjectIds are not entities.
        query = {"_id": {"$gt": after} if after is not None else {"$gte": ""}, **LIVE, **readable(access)}
        with self._translated():
            found = self._collection(collection).find(query).sort("_id", 1).limit(count)
            return [(d["_id"], document_of(d)) for d in found]  # type: ignore[misc]

    def ping(self) -> None:
        from pymongo.errors import PyMongoError

        with self._translated():
            try:
                self.client.admin.command("ping")
            except PyMongoError as error:
                raise StoreUnavailable(str(error)) from error

    def setup(self) -> None:
        """Nothing to create: collections appear on first write, `_id` is always indexed."""
        self.ping()

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()


@hookimpl
def register_stores(settings: Settings) -> list[Store]:
    """The `mongo` store, when MONGO_URL is set (pymongo is imported on its first use only)."""
    return [MongoStore(settings.mongo_url)] if settings.mongo_url else []

"""Test plugin: the `mongo` store on mongomock, an in-memory MongoDB of this process.

`mongomock_client()` builds the clients of the Mongo tests. mongomock 4.3 predates pymongo 4.11's
`sort` argument of bulk replaces and updates, which pymongo now passes (as None) to the bulk
builder; the builder here accepts it, and refuses a real sort, which the store never asks for.
"""

from __future__ import annotations

import functools
from typing import Any

import mongomock
from mongomock.collection import BulkOperationBuilder

from plugins.hookspecs import hookimpl
from plugins.mongo_store import MongoStore
from settings import Settings


def _accepting_no_sort(method: Any) -> Any:
    if getattr(method, "accepts_sort", False):
        return method

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        assert sort is None, "mongomock cannot sort a bulk write"
        return method(self, *args, **kwargs)

    wrapper.accepts_sort = True  # type: ignore[attr-defined]
    return wrapper


def mongomock_client() -> mongomock.MongoClient:
    """A fresh in-memory MongoDB that pymongo's bulk operations can write to."""
    BulkOperationBuilder.add_replace = _accepting_no_sort(BulkOperationBuilder.add_replace)
    BulkOperationBuilder.add_update = _accepting_no_sort(BulkOperationBuilder.add_update)
    return mongomock.MongoClient()


class StandInSession:
    """What the store's transaction path needs of a session, for mongomock, which has none:
    `with_transaction` runs the callback once (without atomicity) and counts the runs. It is
    falsy, so that mongomock, which refuses any true session, takes it for none."""

    def __init__(self, runs: list[int]) -> None:
        self.runs = runs

    def __bool__(self) -> bool:
        return False

    def __enter__(self) -> StandInSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def with_transaction(self, callback: Any) -> Any:
        self.runs.append(1)
        return callback(self)


def with_stand_in_sessions(client: mongomock.MongoClient) -> list[int]:
    """Give `client` stand-in sessions; returns the list that counts transaction runs."""
    runs: list[int] = []
    client.start_session = lambda: StandInSession(runs)
    return runs


@functools.cache
def shared_client() -> mongomock.MongoClient:
    return mongomock_client()


@hookimpl
def register_stores(settings: Settings) -> list[MongoStore]:
    return [MongoStore("mongodb://mongomock/gateway", client=shared_client())]

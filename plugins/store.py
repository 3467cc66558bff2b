"""The store contract: what a storage backend implements to receive the gateway's writes.

A store applies commands that the gateway has already accepted and validated. Its promise:

- `apply` is one transaction: every command of the batch takes effect, in the order given, or
  none does.
- Re-applying is harmless. Each command carries `seq`, its acceptance order; a store keeps, per
  entity, the `seq` of the last command it applied and skips any command whose `seq` is not
  greater. A re-delivered command, or a late one from a worker that lost its lease, is a no-op.
- Unreachable is not wrong: raise `StoreUnavailable` when the backend cannot be reached; the
  gateway then waits and retries without counting an attempt against the command.
- Refused is final: raise `Rejected` when the backend refuses a document (PostgreSQL's jsonb
  refuses the NUL character); the gateway then fails the command instead of retrying it.

`plugins.conformance.StoreConformance` holds the tests every store passes.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from plugins.merge_patch import merge_patch

Op = Literal["create", "replace", "patch", "delete"]
Document = dict[str, Any]
# Named here, outside the classes: inside a store class `list` is the method of that name.
FieldErrors = list[dict[str, str]]  # one `{"field", "message"}` per problem found
Rows = list[tuple[str, Document]]  # (entity id, document) pairs, as a page is fetched


class StoreUnavailable(Exception):
    """The backend cannot be reached now; the same batch will be retried later."""


class Rejected(Exception):
    """This command can never apply (create of an existing entity, patch of a missing one, a
    document the backend refuses)."""


@dataclass(frozen=True)
class Command:
    """One accepted write, as a store receives it."""

    command_id: str
    seq: int
    op: Op
    collection: str
    entity_id: str
    payload: Document | None  # the document (create, replace), the merge patch, or None (delete)

    def apply_to(self, current: Document | None) -> Document | None:
        """The entity's document after this command, given the one before (None: absent).

        Raises `Rejected` when the command cannot apply to that state.
        """
        if self.op == "create":
            if current is not None:
                raise Rejected(f"{self.collection}/{self.entity_id} already exists")
            return dict(self.payload or {})
        if self.op == "replace":
            return dict(self.payload or {})
        if self.op == "patch":
            if current is None:
                raise Rejected(f"{self.collection}/{self.entity_id} does not exist")
            return merge_patch(current, self.payload)
        if self.op == "delete":
            return None  # absent afterwards, whether it was there or not
        raise Rejected(f"unknown op {self.op!r}")


@dataclass(frozen=True)
class Page:
    """One page of a collection, in a stable order; `next` is the cursor of the following page."""

    items: list[Document]
    next: str | None


Outcome = str | None  # None: applied (or already applied); a string: the command was rejected


class Store(abc.ABC):
    """Base class of every storage backend. Subclasses are registered by a plugin hook."""

    #: The name settings use to route collections to this store (`DEFAULT_STORE`, `COLLECTION_STORES`).
    name: ClassVar[str]

    @abc.abstractmethod
    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        """Apply `commands`, in order, atomically; one outcome per command, in the same order.

        A command that `Command.apply_to` rejects changes nothing and gets its reason as outcome;
        the others still commit. A command whose `seq` is not greater than the last one applied to
        its entity is skipped, with outcome None. Any exception means nothing was committed:
        `StoreUnavailable` (unreachable), `Rejected` (a document refused), or any other.
        """

    @abc.abstractmethod
    def get(self, collection: str, entity_id: str) -> Document | None:
        """The stored document (without its id), or None; `StoreUnavailable` when unreachable."""

    @abc.abstractmethod
    def list(self, collection: str, limit: int, cursor: str | None) -> Page:
        """Up to `limit` documents, each with its `id`, after `cursor` (None: from the start).

        Documents come in id order, by code point; `next` is None on the last page. A cursor
        this store never gave raises ValueError; an unreachable backend, `StoreUnavailable`.
        """

    @abc.abstractmethod
    def ping(self) -> None:
        """Return if the backend answers; raise (`StoreUnavailable`) otherwise."""

    def validate(self, collection: str, op: Op, document: Document) -> FieldErrors:
        """Problems the store would have with `document` (the body of a create or replace, or
        a merge patch), found before the command is accepted: one `{"field", "message"}` each.

        Called by the web process on every write; it must be fast and must not write. The
        default finds none: a store with a fixed schema overrides it (unknown fields, types).
        """
        return []

    def setup(self) -> None:  # noqa: B027 - optional, most stores create what they need lazily
        """Create what the store needs (tables, indexes). Idempotent; run by `flask setup`."""

    def close(self) -> None:  # noqa: B027
        """Release connections."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def encode_cursor(entity_id: str) -> str:
    """A list cursor that points after `entity_id` (URL-safe base64 of the id)."""
    return base64.urlsafe_b64encode(entity_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor of `encode_cursor` points after; ValueError for any other string."""
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except ValueError as error:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ValueError("invalid cursor") from error


#: How a store reads a page: `(collection, after, count)` to at most `count` (id, document) pairs
#: in id order, the first after the id `after` (None: from the start).
FetchPage = Callable[[str, str | None, int], Sequence[tuple[str, Document]]]


def list_page(fetch: FetchPage, collection: str, limit: int, cursor: str | None) -> Page:
    """`Store.list` from a store's `fetch`: the cursor decoded (ValueError when it is not one),
    `limit + 1` documents asked for, and `next` after the last one shown when there are more."""
    after = decode_cursor(cursor) if cursor is not None else None
    rows = fetch(collection, after, limit + 1)
    items = [{**document, "id": entity_id} for entity_id, document in rows[:limit]]
    return Page(items=items, next=encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None)

"""The store contract: what a storage backend implements to receive the gateway's writes.

A store applies commands that the gateway has already accepted and validated. Its promise:

- `apply` is one transaction: every command of the batch takes effect, in the order given, or
  none does.
- Re-applying is harmless. Each command carries `seq`, its acceptance order; a store keeps, per
  entity, the `seq` of the last command it applied and skips any command whose `seq` is not
  greater. A re-delivered command, or a late one from a worker that lost its lease, is a no-op.
- A refusal is answered again: a store keeps, with its ledger, the refusals of the commands it
  refused (`plugins.ledger`), so that a batch delivered again after its commit gets each refused
  command's refusal again, not "applied before".
- Unreachable is not wrong: raise `StoreUnavailable` when the backend cannot be reached; the
  gateway then waits and retries without counting an attempt against the command.
- Refused is final: raise `Rejected` when the backend refuses a document (PostgreSQL's jsonb
  refuses the NUL character); the gateway then fails the command instead of retrying it.
- Ownership is checked where the write is applied. A command of a collection with policy `owner`
  carries an `Access` (`Command.access`): the store records the command's user as the owner of a
  document the command creates, and refuses (`Forbidden`, as the command's outcome) another user's
  write to an existing document, in the same transaction as the write and the ledger, so that no
  race slips past. `get` and `list` with an `Access` of policy `owner` show only the user's own
  documents (an operator's: every one). `Command.owner_after` holds the rule.
- Claims are for a store's own rules. `Access.claims` holds the claims of the sender's token that
  the deployment carries with each command (COMMAND_CLAIMS and the roles claim, read back from
  the command's record however late it is applied); a store may refuse a write on them
  (`Forbidden`, as the command's outcome, in its transaction), never stores them in a document,
  and takes no claim for operator rights: `Access.operator` alone grants those.

`plugins.conformance.StoreConformance` holds the tests every store passes.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from plugins.merge_patch import merge_patch

Op = Literal["create", "replace", "patch", "delete"]
Document = dict[str, Any]
Policy = Literal["owner", "shared", "read_only"]
#: What kind of failure a command's error is, as users see it (`gateway.public_errors`).
ErrorType = Literal["forbidden", "conflict", "not_found", "invalid", "store_error"]
# Named here, outside the classes: inside a store class `list` is the method of that name.
FieldErrors = list[dict[str, str]]  # one `{"field", "message"}` per problem found
Rows = list[tuple[str, Document]]  # (entity id, document) pairs, as a page is fetched


class StoreUnavailable(Exception):
    """The backend cannot be reached now; the same batch will be retried later."""


class Rejected(Exception):
    """This command can never apply (create of an existing entity, patch of a missing one, a
    document the backend refuses). `error_type` says which kind of refusal it is; the message is
    for logs and dead letters (users see a public one of the type)."""

    def __init__(self, message: str = "", error_type: ErrorType = "invalid") -> None:
        super().__init__(message)
        self.error_type: ErrorType = error_type


class Forbidden(Rejected):
    """The command's user may not change this document (another user owns it)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message, "forbidden")


@dataclass(frozen=True)
class Access:
    """Who a write or read is for, and what the collection's declaration asks of the store.

    - `user`: the user the command or read is for (a command's author).
    - `operator`: the user may read and change every document (an owner is still recorded
      when an operator creates one).
    - `policy`: the collection's policy. Only `owner` asks anything of a store: record the owner
      of a new document, refuse another user's write (`Forbidden`), and show a reader only the
      documents the reader owns. `shared` and `read_only` are decided by the gateway.
    - `owner_field`: for a declared existing table, the column (field) that holds the owner;
      None: the store's own place (a managed table's owner column, a document's hidden field).
    - `declared`: False for a collection that no declaration names (development only): a store
      may then use only a table or collection of its own making, never one it merely finds.
    - `claims`: the claims of the user's token that the deployment carries with each command
      (`COMMAND_CLAIMS`, and always the roles claim `JWT_ROLES_CLAIM` names), for a store's own
      rules; empty when none are carried (open dev mode, a trusted caller, a token without
      them). Whether the user is an operator is `operator`, already decided from the roles.
    """

    user: str
    operator: bool = False
    policy: Policy = "owner"
    owner_field: str | None = None
    declared: bool = True
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def owned(self) -> bool:
        """Whether the store records and checks owners for this access."""
        return self.policy == "owner"

    def may_see(self, owner: str | None) -> bool:
        """Whether a document of this owner (None: none recorded) may be read."""
        return not self.owned or self.operator or owner == self.user

    @property
    def reader(self) -> str | None:
        """The owner a read filters on; None: every document."""
        return self.user if self.owned and not self.operator else None


@dataclass(frozen=True)
class Command:
    """One accepted write, as a store receives it."""

    command_id: str
    seq: int
    op: Op
    collection: str
    entity_id: str
    payload: Document | None  # the document (create, replace), the merge patch, or None (delete)
    access: Access | None = None  # who sent it; None: a trusted caller, no owner recorded or checked

    @property
    def user(self) -> str | None:
        """The user who sent the command; None for a trusted caller."""
        return self.access.user if self.access is not None else None

    @property
    def claims(self) -> Mapping[str, Any]:
        """The claims of the sender's token carried with the command (`Access.claims`)."""
        return self.access.claims if self.access is not None else {}

    def owner_after(self, current: Document | None, owner: str | None) -> str | None:
        """The entity's owner after this command, given its document and owner before.

        Raises `Forbidden` when the collection's policy is `owner`, the document exists and the
        command's user neither owns it nor is an operator. A document created by the command
        belongs to its user; an existing one keeps its owner; without an owner policy, None.
        """
        access = self.access
        if access is None or not access.owned:
            return owner
        if current is None:
            return access.user if self.op in ("create", "replace") else None
        if owner != access.user and not access.operator:
            raise Forbidden(f"{self.collection}/{self.entity_id} belongs to another user")
        return owner

    def stamp_owner(self, current: Document | None, document: Document) -> Document:
        """`document` with the owner in its declared owner field (`Access.owner_field`): the
        creator's user id for a new document, the stored owner for an existing one, whatever the
        command's payload says. Unchanged without an owner field."""
        access = self.access
        if access is None or not access.owned or access.owner_field is None:
            return document
        owner = current.get(access.owner_field) if current is not None else access.user
        return {**document, access.owner_field: owner}

    def apply_to(self, current: Document | None) -> Document | None:
        """The entity's document after this command, given the one before (None: absent).

        Raises `Rejected` when the command cannot apply to that state.
        """
        if self.op == "create":
            if current is not None:
                raise Rejected(f"{self.collection}/{self.entity_id} already exists", "conflict")
            return dict(self.payload or {})
        if self.op == "replace":
            return dict(self.payload or {})
        if self.op == "patch":
            if current is None:
                raise Rejected(f"{self.collection}/{self.entity_id} does not exist", "not_found")
            return merge_patch(current, self.payload)
        if self.op == "delete":
            return None  # absent afterwards, whether it was there or not
        raise Rejected(f"unknown op {self.op!r}")


@dataclass(frozen=True)
class Page:
    """One page of a collection, in a stable order; `next` is the cursor of the following page."""

    items: list[Document]
    next: str | None


#: None: applied (or applied before); a `Rejected`: the command was refused, of its error type; a
#: string: refused, of type `invalid` (the form of stores written before error types).
Outcome = Rejected | str | None


class Store(abc.ABC):
    """Base class of every storage backend. Subclasses are registered by a plugin hook."""

    #: The name settings use to route collections to this store (`DEFAULT_STORE`, `COLLECTION_STORES`).
    name: ClassVar[str]

    @abc.abstractmethod
    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        """Apply `commands`, in order, atomically; one outcome per command, in the same order.

        A command that `Command.apply_to` or `Command.owner_after` rejects changes nothing and
        gets the `Rejected` as outcome; the others still commit. A command refused before (a
        re-delivery) gets its kept refusal again; any other whose `seq` is not greater than the
        last one applied to its entity is skipped, with outcome None. Any
        exception means nothing was committed: `StoreUnavailable` (unreachable), `Rejected`
        (a document refused), or any other.
        """

    @abc.abstractmethod
    def get(self, collection: str, entity_id: str, access: Access | None = None) -> Document | None:
        """The stored document (without its id), or None; `StoreUnavailable` when unreachable.

        With an `access` whose `reader` is set, None also for a document of another owner."""

    @abc.abstractmethod
    def list(self, collection: str, limit: int, cursor: str | None, access: Access | None = None) -> Page:
        """Up to `limit` documents, each with its `id`, after `cursor` (None: from the start).

        With an `access` whose `reader` is set, only that user's documents (filtered in the
        query, so that a page is as full as before).

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

"""Conformance tests of ownership (`plugins.store.Access`), part of `StoreConformance`.

A collection with policy `owner` has its writes checked where they are applied: the store records
the owner of a document its command creates, refuses another user's write with `Forbidden` (as
the command's outcome, changing nothing), and shows a reader only the documents it owns. A store
that ignores `Command.access` or the `access` of `get` and `list` fails these tests. The claims
an `Access` carries (`Access.claims`) are for a store's own rules: they change nothing of the
above, and never end up in a document.
"""

from __future__ import annotations

import secrets

import pytest

from plugins.store import Access, Command, Document, Forbidden, Op, Store

ALICE = Access("alice")
BOB = Access("bob")
ADMIN = Access("root", operator=True)
SHARED_BOB = Access("bob", policy="shared")
CLAIMED_ALICE = Access("alice", claims={"plan": "pro", "roles": ["editor"], "tenant": {"id": 7}})
CLAIMED_BOB = Access("bob", claims={"plan": "pro", "roles": ["admin"]})  # roles are not `operator`


def write(
    seq: int, op: Op, collection: str, entity_id: str, payload: Document | None, access: Access
) -> Command:
    """A command of the user of `access`."""
    return Command(f"cmd-{seq}", seq, op, collection, entity_id, payload, access)


def forbidden(outcome: object) -> bool:
    return isinstance(outcome, Forbidden) and outcome.error_type == "forbidden"


class OwnershipConformance:
    """Ownership as tests; mixed into `plugins.conformance.StoreConformance`."""

    @pytest.fixture
    def owned(self) -> str:
        """A fresh collection name for one ownership test."""
        return "o_" + secrets.token_hex(6)

    def test_another_users_writes_are_forbidden_and_change_nothing(self, store: Store, owned: str) -> None:
        assert store.apply([write(1, "create", owned, "a", {"v": 1}, ALICE)]) == [None]
        outcomes = store.apply(
            [
                write(2, "patch", owned, "a", {"v": 2}, BOB),
                write(3, "replace", owned, "a", {"v": 3}, BOB),
                write(4, "delete", owned, "a", None, BOB),
            ]
        )
        assert all(forbidden(o) for o in outcomes), outcomes
        assert store.get(owned, "a") == {"v": 1}
        assert store.get(owned, "a", ALICE) == {"v": 1}

    def test_the_owner_and_an_operator_may_write(self, store: Store, owned: str) -> None:
        store.apply([write(1, "create", owned, "a", {"v": 1}, ALICE)])
        assert store.apply([write(2, "patch", owned, "a", {"w": 2}, ALICE)]) == [None]
        assert store.apply([write(3, "patch", owned, "a", {"x": 3}, ADMIN)]) == [None]
        assert store.get(owned, "a", ALICE) == {"v": 1, "w": 2, "x": 3}  # still alice's
        assert store.apply([write(4, "delete", owned, "a", None, ALICE)]) == [None]
        assert store.get(owned, "a") is None

    def test_a_replace_that_creates_records_its_user_as_owner(self, store: Store, owned: str) -> None:
        store.apply([write(1, "replace", owned, "a", {"v": 1}, BOB)])
        assert store.get(owned, "a", BOB) == {"v": 1}
        assert store.get(owned, "a", ALICE) is None
        [outcome] = store.apply([write(2, "replace", owned, "a", {"v": 2}, ALICE)])
        assert forbidden(outcome)

    def test_a_deleted_document_may_be_created_by_another_user(self, store: Store, owned: str) -> None:
        store.apply(
            [write(1, "create", owned, "a", {"v": 1}, ALICE), write(2, "delete", owned, "a", None, ALICE)]
        )
        assert store.apply([write(3, "create", owned, "a", {"v": 2}, BOB)]) == [None]
        assert store.get(owned, "a", BOB) == {"v": 2}
        assert store.get(owned, "a", ALICE) is None

    def test_ownership_is_checked_within_one_batch(self, store: Store, owned: str) -> None:
        outcomes = store.apply(
            [write(1, "create", owned, "a", {"v": 1}, ALICE), write(2, "patch", owned, "a", {"v": 2}, BOB)]
        )
        assert outcomes[0] is None and forbidden(outcomes[1])
        assert store.get(owned, "a") == {"v": 1}

    def test_reads_show_a_user_only_their_own_documents(self, store: Store, owned: str) -> None:
        batch = [write(i, "create", owned, f"d{i}", {"i": i}, ALICE if i % 2 else BOB) for i in range(1, 8)]
        store.apply(batch)
        assert store.get(owned, "d2", ALICE) is None
        assert store.get(owned, "d1", ALICE) == {"i": 1}
        assert store.get(owned, "d2", ADMIN) == {"i": 2}
        mine: list[str] = []
        page = store.list(owned, 2, None, ALICE)
        while True:
            assert len(page.items) <= 2
            mine += [d["id"] for d in page.items]
            if page.next is None:
                break
            page = store.list(owned, 2, page.next, ALICE)
        assert mine == ["d1", "d3", "d5", "d7"]
        assert [d["id"] for d in store.list(owned, 10, None, ADMIN).items] == [f"d{i}" for i in range(1, 8)]
        assert [d["id"] for d in store.list(owned, 10, None, BOB).items] == ["d2", "d4", "d6"]

    def test_a_shared_collection_checks_no_owner(self, store: Store, owned: str) -> None:
        store.apply([Command("cmd-1", 1, "create", owned, "a", {"v": 1}, Access("alice", policy="shared"))])
        assert store.apply([write(2, "patch", owned, "a", {"v": 2}, SHARED_BOB)]) == [None]
        assert store.get(owned, "a", SHARED_BOB) == {"v": 2}
        assert [d["id"] for d in store.list(owned, 10, None, SHARED_BOB).items] == ["a"]

    def test_a_replayed_command_is_not_refused_by_ownership(self, store: Store, owned: str) -> None:
        batch = [
            write(1, "create", owned, "a", {"v": 1}, ALICE),
            write(2, "patch", owned, "a", {"v": 2}, ALICE),
        ]
        store.apply(batch)
        assert store.apply(batch) == [None, None]
        assert store.get(owned, "a", ALICE) == {"v": 2}

    def test_claims_travel_with_a_command_and_stay_out_of_its_document(
        self, store: Store, owned: str
    ) -> None:
        command = write(1, "create", owned, "a", {"v": 1}, CLAIMED_ALICE)
        assert (command.user, command.claims["plan"]) == ("alice", "pro")
        assert store.apply([command]) == [None]
        assert store.get(owned, "a", CLAIMED_ALICE) == {"v": 1}
        assert store.list(owned, 10, None, CLAIMED_ALICE).items == [{"v": 1, "id": "a"}]
        assert store.get(owned, "a", ALICE) == {"v": 1}  # the owner is the user, whatever the claims
        # A claim that looks like a role decides nothing: only `Access.operator` makes an operator.
        [outcome] = store.apply([write(2, "patch", owned, "a", {"v": 2}, CLAIMED_BOB)])
        assert forbidden(outcome)
        assert store.get(owned, "a", CLAIMED_BOB) is None
        assert store.get(owned, "a") == {"v": 1}

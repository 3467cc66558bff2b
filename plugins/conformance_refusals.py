"""Conformance tests of refusals on re-delivery, part of `StoreConformance`.

A batch may be committed and then delivered again before the gateway recorded its outcomes (the
worker killed, Redis lost between the commit and the acknowledgement). Every command of it must
then come to the outcome it had the first time: an applied one is skipped (outcome None), and a
refused one is refused again, of the same error type, even when a later command of its entity
applied since, so that the ledger's seq alone would call it "applied before". A store keeps its
refusals with its ledger, in the same transaction (`plugins.ledger.fold`).
"""

from __future__ import annotations

from collections.abc import Sequence

from plugins.conformance_access import ALICE, BOB, write
from plugins.store import Command, Document, Op, Outcome, Rejected, Store


def _cmd(seq: int, op: Op, collection: str, entity_id: str, payload: Document | None = None) -> Command:
    return Command(f"cmd-{seq}", seq, op, collection, entity_id, payload)


def kinds(outcomes: Sequence[Outcome]) -> list[str | None]:
    """Each outcome as its error type (a plain string: `invalid`), None for applied."""
    return [None if o is None else o.error_type if isinstance(o, Rejected) else "invalid" for o in outcomes]


class RefusalConformance:
    """Refusals kept for re-delivery, as tests; mixed into `plugins.conformance.StoreConformance`."""

    def test_a_redelivered_refusal_is_refused_again_after_its_entity_moved_on(
        self, store: Store, collection: str
    ) -> None:
        batch = [
            _cmd(1, "patch", collection, "a", {"v": 1}),  # a does not exist yet: not_found
            _cmd(2, "replace", collection, "a", {"v": 2}),
            _cmd(3, "create", collection, "a", {"v": 3}),  # a exists by now: conflict
            _cmd(4, "patch", collection, "a", {"w": 4}),
        ]
        first = store.apply(batch)
        assert kinds(first) == ["not_found", None, "conflict", None]
        again = store.apply(batch)  # committed, not acknowledged: delivered again
        assert kinds(again) == kinds(first)
        assert [str(o) for o in again if o is not None] == [str(o) for o in first if o is not None]
        assert store.get(collection, "a") == {"v": 2, "w": 4}

    def test_a_refusal_stays_refused_through_repeated_redeliveries_with_new_commands(
        self, store: Store, collection: str
    ) -> None:
        committed = [
            _cmd(1, "patch", collection, "b", {"v": 1}),
            _cmd(2, "replace", collection, "b", {"v": 2}),
        ]
        assert kinds(store.apply(committed)) == ["not_found", None]
        redelivered = [*committed, _cmd(3, "patch", collection, "b", {"w": 3})]  # with a new command
        assert kinds(store.apply(redelivered)) == ["not_found", None, None]
        assert kinds(store.apply(redelivered)) == ["not_found", None, None]  # lost again, once more
        assert store.get(collection, "b") == {"v": 2, "w": 3}

    def test_a_refusal_outlives_its_batch_mates_applied_one_by_one(
        self, store: Store, collection: str
    ) -> None:
        batch = [
            _cmd(1, "patch", collection, "e", {"v": 1}),
            _cmd(2, "replace", collection, "e", {"v": 2}),
            _cmd(3, "patch", collection, "e", {"w": 3}),
        ]
        # A batch that failed is applied one command at a time, each in a transaction of its own.
        assert [kinds(store.apply([command]))[0] for command in batch] == ["not_found", None, None]
        assert kinds(store.apply(batch)) == ["not_found", None, None]
        assert store.get(collection, "e") == {"v": 2, "w": 3}

    def test_a_redelivered_forbidden_write_is_forbidden_again(self, store: Store, owned: str) -> None:
        assert store.apply([write(1, "create", owned, "a", {"v": 1}, ALICE)]) == [None]
        batch = [write(2, "patch", owned, "a", {"v": 2}, BOB), write(3, "patch", owned, "a", {"w": 3}, ALICE)]
        assert kinds(store.apply(batch)) == ["forbidden", None]
        assert kinds(store.apply(batch)) == ["forbidden", None]
        assert store.get(owned, "a", ALICE) == {"v": 1, "w": 3}

    def test_the_applied_commands_of_a_redelivered_batch_stay_applied(
        self, store: Store, collection: str
    ) -> None:
        batch = [_cmd(1, "create", collection, "c", {"v": 1}), _cmd(2, "patch", collection, "d", {"v": 2})]
        assert kinds(store.apply(batch)) == [None, "not_found"]
        assert kinds(store.apply(batch)) == [None, "not_found"]  # the create is not refused as a conflict
        assert store.get(collection, "c") == {"v": 1} and store.get(collection, "d") is None

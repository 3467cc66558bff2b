"""Conformance tests of the store contract (`plugins.store`), for any store plugin.

A store plugin, built-in or third-party, proves that it keeps the contract by running these tests
against its store on a real backend. Subclass `StoreConformance` in a test module and give the
subclass a `store` fixture that returns (or yields) a ready store::

    import pytest

    from my_gateway_store import MyStore
    from plugins.conformance import StoreConformance


    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self):
            store = MyStore("mystore://localhost/test")
            store.setup()
            yield store
            store.close()

Every test writes to a collection of its own (the `collection` fixture, `c_<random hex>`), so
the tests may share one database and need no cleaning between them.

A store that refuses some documents at accept time (`Store.validate`) overrides the
`refused_document` fixture with one of them: `(op, document, field)`, the field its error names.
The default, None, states that the store takes every JSON object.

One test needs a batch that the store cannot commit: it writes `unstorable_document` (a string
with a lone UTF-16 surrogate, which has no UTF-8 form) and expects `apply` to raise. A store that
stores such a string overrides the `unstorable_document` fixture with a document it refuses.

`StoreConformance` is a plain class, so pytest collects only its `Test*` subclasses. For pytest's
detailed assertion messages, call `pytest.register_assert_rewrite("plugins.conformance")` in
your `conftest.py` before this module is imported.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from plugins.conformance_access import OwnershipConformance
from plugins.conformance_refusals import RefusalConformance
from plugins.store import Command, Document, Op, Outcome, Rejected, Store


def cmd(seq: int, op: Op, collection: str, entity_id: str, payload: Document | None = None) -> Command:
    """A command as a store receives it; `seq` is its acceptance order (and names the command)."""
    return Command(f"cmd-{seq}", seq, op, collection, entity_id, payload)


def refused(outcome: Outcome) -> bool:
    """Whether `outcome` says the command was refused (a `Rejected`, or a non-empty reason)."""
    return isinstance(outcome, Rejected) or (isinstance(outcome, str) and bool(outcome))


def as_json(value: Any) -> str:
    """A canonical JSON text, to compare documents exactly (1, 1.0 and true differ)."""
    return json.dumps(value, sort_keys=True)


def walk(store: Store, collection: str, limit: int) -> list[list[Document]]:
    """Every page of `collection`, following `next` until it is None."""
    pages = [store.list(collection, limit, None)]
    while pages[-1].next is not None:
        assert len(pages) <= 1000, "list never ends"
        pages.append(store.list(collection, limit, pages[-1].next))
    return [page.items for page in pages]


class StoreConformance(OwnershipConformance, RefusalConformance):
    """The store contract, as tests; subclasses provide the `store` fixture. The ownership tests
    (`plugins.conformance_access`) and those of refusals on re-delivery
    (`plugins.conformance_refusals`) are part of it."""

    @pytest.fixture
    def store(self) -> Store:
        pytest.fail(f"{type(self).__name__} must define a `store` fixture (see plugins/conformance.py)")

    @pytest.fixture
    def collection(self) -> str:
        """A fresh collection name for one test."""
        return "c_" + secrets.token_hex(6)

    @pytest.fixture
    def unstorable_document(self) -> Document:
        """A document that `store` cannot store, so that a batch holding it raises."""
        return {"text": "lone surrogate \ud800"}

    @pytest.fixture
    def refused_document(self) -> tuple[Op, Document, str] | None:
        """A write `store.validate` refuses: (op, document, the field its error names); None
        for a store that takes every JSON object."""
        return None

    # -- writes --------------------------------------------------------------------------------

    def test_create_then_get_returns_the_document_without_id(self, store: Store, collection: str) -> None:
        assert store.apply([cmd(1, "create", collection, "a", {"name": "Ada", "n": 1})]) == [None]
        assert store.get(collection, "a") == {"name": "Ada", "n": 1}

    def test_empty_batch_has_no_outcomes(self, store: Store) -> None:
        assert store.apply([]) == []

    def test_replace_overwrites_the_whole_document(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {"old": 1, "kept": "no"})])
        assert store.apply([cmd(2, "replace", collection, "a", {"new": 2})]) == [None]
        assert store.get(collection, "a") == {"new": 2}

    def test_replace_of_an_absent_entity_creates_it(self, store: Store, collection: str) -> None:
        assert store.apply([cmd(1, "replace", collection, "a", {"v": 1})]) == [None]
        assert store.get(collection, "a") == {"v": 1}

    def test_replace_by_an_equal_value_of_another_type_is_stored(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {"v": 1})])
        store.apply([cmd(2, "replace", collection, "a", {"v": True})])
        assert as_json(store.get(collection, "a")) == as_json({"v": True})
        store.apply([cmd(3, "patch", collection, "a", {"v": 1.0})])
        assert as_json(store.get(collection, "a")) == as_json({"v": 1.0})

    def test_patch_merges_per_rfc_7396(self, store: Store, collection: str) -> None:
        doc = {"a": {"b": 1, "c": 2}, "gone": 1, "list": [1, 2], "keep": "x"}
        patch = {"a": {"b": None, "d": {"e": 3}}, "gone": None, "list": [3], "new": {"x": None, "y": 1}}
        store.apply([cmd(1, "create", collection, "p", doc)])
        assert store.apply([cmd(2, "patch", collection, "p", patch)]) == [None]
        assert store.get(collection, "p") == {
            "a": {"c": 2, "d": {"e": 3}},
            "list": [3],
            "keep": "x",
            "new": {"y": 1},
        }

    def test_delete_removes_the_entity(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {"v": 1}), cmd(2, "create", collection, "b", {})])
        assert store.apply([cmd(3, "delete", collection, "a")]) == [None]
        assert store.get(collection, "a") is None
        assert [d["id"] for d in store.list(collection, 10, None).items] == ["b"]

    def test_delete_of_an_absent_entity_is_applied_and_changes_nothing(
        self, store: Store, collection: str
    ) -> None:
        store.apply([cmd(1, "create", collection, "b", {"v": 1})])
        assert store.apply([cmd(2, "delete", collection, "a")]) == [None]
        assert store.get(collection, "a") is None
        assert store.list(collection, 10, None).items == [{"v": 1, "id": "b"}]

    def test_create_of_an_existing_entity_is_rejected_and_batch_mates_commit(
        self, store: Store, collection: str
    ) -> None:
        store.apply([cmd(1, "create", collection, "a", {"v": 1})])
        batch = [cmd(2, "create", collection, "b", {"v": 2}), cmd(3, "create", collection, "a", {"v": 3})]
        outcomes = store.apply(batch)
        assert outcomes[0] is None
        assert refused(outcomes[1])
        assert store.get(collection, "a") == {"v": 1}
        assert store.get(collection, "b") == {"v": 2}

    def test_patch_of_a_missing_entity_is_rejected_and_creates_nothing(
        self, store: Store, collection: str
    ) -> None:
        [outcome] = store.apply([cmd(1, "patch", collection, "a", {"v": 1})])
        assert refused(outcome)
        assert store.get(collection, "a") is None

    def test_an_unknown_op_is_rejected_not_taken_for_a_delete(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {"v": 1})])
        [outcome] = store.apply([cmd(2, "remove", collection, "a")])  # type: ignore[arg-type]
        assert refused(outcome)
        assert store.get(collection, "a") == {"v": 1}

    def test_commands_on_one_entity_apply_in_batch_order(self, store: Store, collection: str) -> None:
        batch = [
            cmd(1, "create", collection, "a", {"n": 1}),
            cmd(2, "patch", collection, "a", {"n": 2, "x": 1}),
            cmd(3, "delete", collection, "a"),
            cmd(4, "create", collection, "a", {"n": 4}),
            cmd(5, "patch", collection, "a", {"y": 5}),
        ]
        assert store.apply(batch) == [None] * 5
        assert store.get(collection, "a") == {"n": 4, "y": 5}

    def test_outcomes_follow_the_commands_across_collections(self, store: Store, collection: str) -> None:
        other = collection + "_2"
        store.apply([cmd(1, "create", other, "y", {})])
        outcomes = store.apply(
            [
                cmd(2, "create", collection, "x", {"v": 1}),
                cmd(3, "create", other, "y", {"v": 2}),
                cmd(4, "patch", collection, "missing", {"v": 3}),
                cmd(5, "create", other, "z", {"v": 4}),
            ]
        )
        assert [o is None for o in outcomes] == [True, False, False, True]
        assert store.get(collection, "x") == {"v": 1}
        assert store.get(other, "y") == {}
        assert store.get(other, "z") == {"v": 4}

    # -- re-delivery ---------------------------------------------------------------------------

    def test_reapplying_a_batch_changes_nothing(self, store: Store, collection: str) -> None:
        batch = [cmd(1, "create", collection, "a", {"n": 1}), cmd(2, "patch", collection, "a", {"m": 2})]
        assert store.apply(batch) == [None, None]
        assert store.apply(batch) == [None, None]  # the create would be rejected if it ran again
        assert store.get(collection, "a") == {"n": 1, "m": 2}

    def test_a_stale_command_is_skipped(self, store: Store, collection: str) -> None:
        store.apply([cmd(5, "replace", collection, "a", {"v": 5})])
        assert store.apply([cmd(3, "replace", collection, "a", {"v": 3})]) == [None]
        assert store.apply([cmd(4, "delete", collection, "a")]) == [None]
        assert store.get(collection, "a") == {"v": 5}

    def test_redelivery_after_delete_stays_deleted(self, store: Store, collection: str) -> None:
        history = [cmd(1, "create", collection, "a", {"v": 1}), cmd(2, "delete", collection, "a")]
        store.apply(history)
        assert store.apply(history[:1]) == [None]
        assert store.apply(history) == [None, None]
        assert store.get(collection, "a") is None
        assert store.list(collection, 10, None).items == []

    def test_a_later_command_applies_after_a_delete(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {"v": 1}), cmd(2, "delete", collection, "a")])
        assert store.apply([cmd(3, "create", collection, "a", {"v": 3})]) == [None]
        assert store.get(collection, "a") == {"v": 3}

    # -- atomicity -----------------------------------------------------------------------------

    def test_a_batch_that_raises_leaves_nothing_behind(
        self, store: Store, collection: str, unstorable_document: Document
    ) -> None:
        before = {"kept": {"v": 1}, "gone": {"v": 1}, "bad": {"v": 1}}
        store.apply([cmd(n, "create", collection, i, d) for n, (i, d) in enumerate(before.items(), 1)])
        good = [  # an update, an insert and a delete, before and after the failing write
            cmd(4, "replace", collection, "kept", {"v": 2}),
            cmd(5, "create", collection, "new", {"v": 3}),
            cmd(6, "delete", collection, "gone"),
        ]
        with pytest.raises(Exception):  # noqa: B017 - the contract allows any exception here
            store.apply([*good[:2], cmd(7, "replace", collection, "bad", unstorable_document), good[2]])
        assert {i: store.get(collection, i) for i in [*before, "new"]} == {**before, "new": None}
        assert store.apply(good) == [None, None, None]  # their seqs were not recorded either
        assert [store.get(collection, i) for i in ("kept", "new", "gone")] == [{"v": 2}, {"v": 3}, None]

    # -- refusals at accept time ---------------------------------------------------------------

    def test_validate_finds_nothing_wrong_with_plain_documents(self, store: Store, collection: str) -> None:
        writes: list[tuple[Op, Document]] = [
            ("create", {"name": "Ada", "n": 1}),
            ("replace", {"name": "Ada", "tags": ["x"], "nested": {"a": 1.5}}),
            ("patch", {"name": None, "nested": {"b": True}}),
            ("delete", {}),
        ]
        for op, document in writes:
            assert store.validate(collection, op, document) == []

    def test_validate_names_the_field_of_a_refused_document_and_writes_nothing(
        self, store: Store, collection: str, refused_document: tuple[Op, Document, str] | None
    ) -> None:
        if refused_document is None:  # the store takes any JSON object, however its keys look
            odd = {"a b": [], "x-y": {"": None}, "ünï": -1.5, "UPPER": {"deep": [{"k": 0}]}}
            assert store.validate(collection, "create", odd) == []
            assert store.validate(collection, "patch", odd) == []
            return
        op, document, field = refused_document
        errors = store.validate(collection, op, document)
        assert field in [e["field"] for e in errors]
        assert all(set(e) == {"field", "message"} and e["message"] for e in errors)
        assert store.list(collection, 10, None).items == []

    def test_a_refused_document_that_reaches_apply_changes_nothing(
        self, store: Store, collection: str, refused_document: tuple[Op, Document, str] | None
    ) -> None:
        """A command accepted without the check (its store was unreachable, a dead letter
        replayed) fails as its outcome, or makes the batch raise `Rejected`."""
        if refused_document is None:
            return  # nothing is refused, so there is nothing to fail
        op, document, _ = refused_document
        store.apply([cmd(1, "create", collection, "a", {"v": 1})])
        try:
            [outcome] = store.apply([cmd(2, op, collection, "a", document)])
        except Rejected:
            outcome = "raised"
        assert refused(outcome)
        assert store.get(collection, "a") == {"v": 1}

    # -- reads ---------------------------------------------------------------------------------

    def test_get_of_a_missing_entity_is_none(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {})])
        assert store.get(collection, "b") is None

    def test_a_missing_collection_is_empty(self, store: Store, collection: str) -> None:
        assert store.get(collection, "a") is None
        assert store.list(collection, 10, None).items == []
        assert store.list(collection, 10, None).next is None

    def test_list_walks_every_document_once_in_id_order(self, store: Store, collection: str) -> None:
        ids = [f"e{n:02d}" for n in range(7)]
        store.apply([cmd(n + 1, "create", collection, i, {"n": n}) for n, i in enumerate(reversed(ids))])
        pages = walk(store, collection, 3)
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [d["id"] for p in pages for d in p] == ids
        assert pages[0][0] == {"n": 6, "id": "e00"}

    def test_list_next_is_none_when_the_last_page_is_full(self, store: Store, collection: str) -> None:
        store.apply([cmd(n, "create", collection, f"e{n}", {}) for n in range(1, 5)])
        first = store.list(collection, 2, None)
        last = store.list(collection, 2, first.next)
        assert first.next is not None
        assert [d["id"] for d in last.items] == ["e3", "e4"]
        assert last.next is None

    def test_list_refuses_a_cursor_it_never_gave(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {})])
        with pytest.raises(ValueError):
            store.list(collection, 10, "not a cursor!")

    def test_ids_are_case_and_trailing_space_sensitive(self, store: Store, collection: str) -> None:
        ids = ["a", "A", "a "]
        assert (
            store.apply([cmd(n, "create", collection, i, {"n": n}) for n, i in enumerate(ids, 1)])
            == [None] * 3
        )
        assert [store.get(collection, i) for i in ids] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert store.get(collection, "a  ") is None
        assert [d["id"] for d in store.list(collection, 10, None).items] == sorted(ids)

    def test_unicode_ids_are_distinct_and_listed_by_code_point(self, store: Store, collection: str) -> None:
        ids = ["é", "e\u0301", "日本", "😀", "Z", "z", "ß", "ss", "é" * 200]  # "e\u0301": é decomposed
        store.apply([cmd(n, "create", collection, i, {"n": n}) for n, i in enumerate(ids, 1)])
        assert [store.get(collection, i) for i in ids] == [{"n": n} for n in range(1, len(ids) + 1)]
        assert [d["id"] for p in walk(store, collection, 2) for d in p] == sorted(ids)

    def test_documents_round_trip_exactly(self, store: Store, collection: str) -> None:
        doc = {
            "text": 'héllo 世界 😀 "quoted" back\\slash\nnew line\ttab \u0001',
            "empty": "",
            "nested": {"list": [1, [2, [3, {"deep": [True, None]}]]], "obj": {}, "arr": []},
            "ints": [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)],
            "floats": [0.1, -2.5, 1.5e-7, 2.0, 1e300, 3.141592653589793],
            "bools": [True, False],
            "nothing": None,
        }
        store.apply([cmd(1, "create", collection, "doc", doc)])
        assert as_json(store.get(collection, "doc")) == as_json(doc)
        assert as_json(store.list(collection, 1, None).items[0]) == as_json({**doc, "id": "doc"})

    def test_a_large_document_round_trips(self, store: Store, collection: str) -> None:
        doc = {"blob": "x" * 900_000, "many": list(range(5000))}
        store.apply([cmd(1, "create", collection, "big", doc)])
        assert store.get(collection, "big") == doc

    # -- housekeeping --------------------------------------------------------------------------

    def test_ping_answers(self, store: Store) -> None:
        assert store.ping() is None

    def test_setup_is_idempotent(self, store: Store, collection: str) -> None:
        store.apply([cmd(1, "create", collection, "a", {"v": 1})])
        store.setup()
        store.setup()
        assert store.get(collection, "a") == {"v": 1}
        assert store.apply([cmd(1, "create", collection, "a", {"v": 1})]) == [None]

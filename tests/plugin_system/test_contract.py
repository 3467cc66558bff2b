"""The plugin contract depends on nothing of the application it is a contract for: importing it,
or a built-in plugin, in a fresh interpreter loads neither Flask nor `gateway` nor `workers`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.support import ROOT

CONTRACT = (
    "plugins.hookspecs",
    "plugins.store",
    "plugins.notifier",
    "plugins.events",
    "plugins.merge_patch",
    "plugins.names",
    "plugins.ledger",
    "plugins.conformance",
)
BUILT_IN = ("plugins.sql_store", "plugins.mongo_store", "plugins.fcm_notifier")
APPLICATION = ("flask", "gateway", "workers")


def loaded_after_importing(modules: tuple[str, ...]) -> list[str]:
    """The application's modules in `sys.modules` of a new interpreter that imported `modules`."""
    code = (
        "import json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    __import__(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(APPLICATION)!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_contract_imports_nothing_of_the_application() -> None:
    assert loaded_after_importing(CONTRACT) == []


@pytest.mark.parametrize("plugin", BUILT_IN)
def test_a_built_in_plugin_uses_only_the_contract(plugin: str) -> None:
    assert loaded_after_importing((plugin,)) == []


NAMES = ["notes", "a", "a" * 63, "a" * 64, "Notes", "_x", "1a", "a-b", "commands", "commandsx", "devices_"]


@pytest.mark.parametrize("name", NAMES)
def test_every_form_of_the_collection_name_rule_agrees(name: str) -> None:
    """The URL rule, the OpenAPI schema and the configuration checks all derive from
    `plugins.names`; a store holds any well-formed name, reserved ones included."""
    from jsonschema import Draft202012Validator

    from gateway.api import CollectionConverter
    from gateway.api.openapi import _collection_schema
    from gateway.schemas import Collections
    from plugins.names import RESERVED, is_collection_name, is_well_formed

    app = SimpleNamespace(extensions={"collections": Collections(None, {})})
    expected = is_collection_name(name)
    assert (re.fullmatch(CollectionConverter.regex, name) is not None) == expected
    assert Draft202012Validator(_collection_schema(app)).is_valid(name) == expected  # type: ignore[arg-type]
    assert Collections(None, {}).exists(name) == expected
    assert is_well_formed(name) == (expected or name in RESERVED)


def test_the_ledger_fold_skips_what_was_applied_and_folds_each_entity() -> None:
    from plugins.conformance import cmd
    from plugins.ledger import fold
    from plugins.store import Rejected

    batch = [
        cmd(3, "patch", "c", "a", {"x": 1}),  # not above a's last seq: applied before
        cmd(5, "patch", "c", "a", {"y": 2}),
        cmd(6, "create", "c", "b", {"v": 1}),
        cmd(7, "create", "c", "b", {"v": 2}),  # b exists by now: rejected, changes nothing
        cmd(8, "delete", "c", "a"),
    ]
    folded = fold(batch, {"a": 4}, {"a": {"x": 0}})
    assert folded.outcomes[:3] == [None, None, None] and isinstance(folded.outcomes[3], Rejected)
    assert folded.outcomes[4] is None
    assert folded.documents == {"a": None, "b": {"v": 1}}
    assert folded.seqs == {"a": 8, "b": 6}


def test_the_fold_answers_a_kept_refusal_again_and_keeps_the_newest() -> None:
    from plugins import ledger
    from plugins.conformance import cmd
    from plugins.store import Forbidden, Rejected

    first = ledger.fold([cmd(1, "patch", "c", "a", {"x": 1}), cmd(2, "replace", "c", "a", {})], {}, {})
    assert first.seqs == {"a": 2} and list(first.refusals) == ["a"]
    kept = ledger.decode_refusals(ledger.encode_refusals(first.refusals["a"]))  # as a store keeps them
    assert isinstance(kept[1], Rejected) and kept[1].error_type == "not_found"
    assert str(kept[1]) == str(first.outcomes[0])
    again = ledger.fold([cmd(1, "patch", "c", "a", {"x": 1})], {"a": 2}, {"a": {}}, refusals={"a": kept})
    assert again.outcomes == [kept[1]] and again.refusals == {} and again.seqs == {}
    assert isinstance(ledger.refusal("forbidden", "no"), Forbidden)

    many = {seq: Rejected("old", "not_found") for seq in range(ledger.MAX_REFUSALS_KEPT)}
    later = ledger.fold([cmd(10_000, "patch", "c", "b", {})], {}, {}, refusals={"b": many})
    assert len(later.refusals["b"]) == ledger.MAX_REFUSALS_KEPT
    assert min(later.refusals["b"]) == 1 and max(later.refusals["b"]) == 10_000  # the oldest went


def test_a_page_points_after_its_last_document_when_there_are_more() -> None:
    from plugins.store import decode_cursor, list_page

    rows = [("a", {"v": 1}), ("b", {"v": 2}), ("c", {"v": 3})]
    asked: list[tuple[str, str | None, int]] = []

    def fetch(collection: str, after: str | None, count: int) -> list[tuple[str, dict[str, int]]]:
        asked.append((collection, after, count))
        return [row for row in rows if after is None or row[0] > after][:count]

    first = list_page(fetch, "c", 2, None)
    assert first.items == [{"v": 1, "id": "a"}, {"v": 2, "id": "b"}] and first.next is not None
    assert decode_cursor(first.next) == "b"
    last = list_page(fetch, "c", 2, first.next)
    assert last.items == [{"v": 3, "id": "c"}] and last.next is None
    assert asked == [("c", None, 3), ("c", "b", 3)]
    with pytest.raises(ValueError):
        list_page(fetch, "c", 2, "not a cursor!")

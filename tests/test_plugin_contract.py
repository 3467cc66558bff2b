"""The plugin contract depends on nothing of the application it is a contract for: importing it,
or a built-in plugin, in a fresh interpreter loads neither Flask nor `gateway` nor `workers`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT

CONTRACT = (
    "plugins.hookspecs",
    "plugins.store",
    "plugins.notifier",
    "plugins.events",
    "plugins.merge_patch",
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

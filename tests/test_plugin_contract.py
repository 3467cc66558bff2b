"""The plugin contract depends on nothing of the application it is a contract for: importing it,
or a built-in plugin, in a fresh interpreter loads neither Flask nor `gateway` nor `workers`."""

from __future__ import annotations

import json
import subprocess
import sys

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

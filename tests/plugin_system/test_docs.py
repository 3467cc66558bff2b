"""The plugin author's guide keeps up with the code: every hook, and every method of the store
contract, is documented in docs/writing_plugins.md with its exact signature."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from plugins import hookspecs
from plugins.notifier import NotifierServices
from plugins.store import Store
from tests.support import ROOT

GUIDE = ROOT / "docs" / "writing_plugins.md"
STORE_METHODS = ["apply", "get", "list", "ping", "validate", "setup", "close"]


def signature(function: Callable[..., Any]) -> str:
    """`name(arg: Type, ...) -> Return`, as the source spells the annotations."""
    parameters = []
    for parameter in inspect.signature(function).parameters.values():
        annotation = parameter.annotation
        parameters.append(
            parameter.name if annotation is inspect.Parameter.empty else f"{parameter.name}: {annotation}"
        )
    return f"{function.__name__}({', '.join(parameters)}) -> {inspect.signature(function).return_annotation}"


def hooks() -> dict[str, Callable[..., Any]]:
    return {name: f for name, f in inspect.getmembers(hookspecs) if hasattr(f, "gateway_spec")}


def sections(text: str) -> dict[str, str]:
    """The guide's `### name` sections under `## Hooks`, by name."""
    hooks_part = text.split("\n## Hooks\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (\S+)\n", hooks_part, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


def test_the_signatures_are_spelt_as_the_source_spells_them() -> None:
    assert (
        signature(hooks()["register_stores"]) == "register_stores(settings: Settings) -> list[Store] | None"
    )


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_is_documented_with_its_exact_signature(guide: str, name: str) -> None:
    documented = sections(guide)
    assert name in documented, f"docs/writing_plugins.md has no '### {name}' section under '## Hooks'"
    assert f"```python\n{signature(hooks()[name])}\n```" in documented[name]


def test_every_documented_hook_exists(guide: str) -> None:
    assert sorted(sections(guide)) == sorted(hooks())


@pytest.mark.parametrize("method", STORE_METHODS)
def test_every_store_method_is_documented_with_its_exact_signature(guide: str, method: str) -> None:
    expected = signature(getattr(Store, method)).replace("|", "\\|")  # as a markdown table cell
    assert f"`{expected}`" in guide


def test_the_store_methods_listed_are_all_of_the_contract() -> None:
    public = [name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")]
    assert sorted(public) == sorted(STORE_METHODS)


def test_every_notifier_service_is_documented(guide: str) -> None:
    members = sorted(name for name in vars(NotifierServices) if not name.startswith("_"))
    assert members == ["devices", "enqueue", "redis", "settings"]
    assert all(f"\n| `{name}" in guide for name in members)

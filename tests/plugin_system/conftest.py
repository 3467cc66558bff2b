"""Fixtures of the plugin system tests (hooks, contract, packaging, docs)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def lmdb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The example store's setting, and a collection routed to it; no PLUGINS."""
    env = {
        "LMDB_STORE_PATH": str(tmp_path / "lmdb"),
        "COLLECTION_STORES": "kv=lmdb",
        "PLUGINS": "",
        "DISABLED_PLUGINS": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the plugin reads its setting from the environment
    return env

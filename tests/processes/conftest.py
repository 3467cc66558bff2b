"""Fixtures of the process tests (the Procfile's processes, settings, logs, CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.private_redis import PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, with AOF fsync on every write; killed after the test."""
    server = PrivateRedis(tmp_path)
    yield server
    server.kill()

"""Fixtures of the store plugin tests: the SQL store opened on each real database, and a fresh
collection name per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from plugins.sql_store import SqlStore
from tests.support import services
from tests.support.stores import open_store


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database for this test session, dropped at the end."""
    with services.scratch_mariadb() as url:
        yield url


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[SqlStore]:
    yield from open_store(sqlite_url)


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[SqlStore]:
    yield from open_store(postgres_url)


@pytest.fixture
def mariadb_store(mariadb_url: str) -> Iterator[SqlStore]:
    yield from open_store(mariadb_url)


@pytest.fixture
def collection() -> str:
    """A collection name of this test's own."""
    return "c_" + secrets.token_hex(6)

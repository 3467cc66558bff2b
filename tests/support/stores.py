"""Opening the SQL store on a test database."""

from __future__ import annotations

from collections.abc import Iterator

from plugins.sql_store import SqlStore


def open_store(url: str) -> Iterator[SqlStore]:
    """The SQL store on `url`, set up, then closed."""
    store = SqlStore(url)
    store.setup()
    yield store
    store.close()

"""Fixtures of the browser client's tests (the `browser` itself is the suite's, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import PageServer


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    """The page under test, served from another origin than the API."""
    server = PageServer()
    yield server
    server.close()

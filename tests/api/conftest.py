"""Fixtures of the HTTP API tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.api import SECRET


@pytest.fixture
def jwt_client(make_app: Callable[..., Any]) -> Any:
    """A test client of an app that requires HS256 tokens signed with SECRET."""
    return make_app(jwt_secret=SECRET).test_client()

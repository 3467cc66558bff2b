"""Fixtures of the HTTP API tests, loaded with `pytest_plugins = ["tests.api_fixtures"]`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app import create_app
from tests.api_support import SECRET, RedisKeys


@pytest.fixture
def redis_keys(redis_url: str, prefix: str) -> Iterator[RedisKeys]:
    """The Redis keys of this test's prefix."""
    keys = RedisKeys(redis_url, prefix)
    yield keys
    keys.close()


@pytest.fixture
def make_app(settings_env: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """Build apps on this test's settings with overrides (lower-case names); closed at the end."""
    apps: list[Any] = []

    def make(**overrides: Any) -> Any:
        application = create_app({k.lower(): v for k, v in settings_env.items()} | overrides)
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.extensions["gateway"].close()


@pytest.fixture
def jwt_client(make_app: Callable[..., Any]) -> Any:
    """A test client of an app that requires HS256 tokens signed with SECRET."""
    return make_app(jwt_secret=SECRET).test_client()

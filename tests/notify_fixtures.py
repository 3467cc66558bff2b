"""Fixtures of the notification tests, loaded with `pytest_plugins = ["tests.notify_fixtures"]`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from app import create_app
from tests.api_support import SECRET
from tests.notify_support import KEEPALIVE_SECONDS, LiveServer


@pytest.fixture
def live_app(settings_env: dict[str, str]) -> Iterator[Any]:
    """The app with JWT users (tokens signed with SECRET) and a short keepalive."""
    config = {k.lower(): v for k, v in settings_env.items()}
    application = create_app(config | {"jwt_secret": SECRET, "notify_keepalive_seconds": KEEPALIVE_SECONDS})
    yield application
    application.extensions["notify"].close()
    application.extensions["gateway"].close()


@pytest.fixture
def live(live_app: Any) -> Iterator[LiveServer]:
    """`live_app` served over real sockets by Werkzeug's threaded server."""
    server = LiveServer(live_app)
    yield server
    server.close()


@pytest.fixture
def push_queue_cleanup(redis_url: str, prefix: str) -> Iterator[None]:
    """Delete this test's RQ push queue keys afterwards (the prefix fixture knows only `-apply`)."""
    yield
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"rq:*{prefix}-push*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()

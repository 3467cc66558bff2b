"""Fixtures of the notification tests (the live server they share with others is in the root
conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def push_queue_cleanup(redis_url: str, prefix: str) -> Iterator[None]:
    """Delete this test's RQ push queue keys afterwards (the prefix fixture knows only `-apply`)."""
    yield
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"rq:*{prefix}-push*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()

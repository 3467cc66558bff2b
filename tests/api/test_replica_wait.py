"""REDIS_WAIT_REPLICAS: a 202 only once the command reached that many replicas."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import assert_problem

# The test Redis has no replica (the cluster lane's masters have one each).
pytestmark = [pytest.mark.integration, pytest.mark.one_redis]


def test_a_write_no_replica_acknowledged_is_answered_503(make_app: Any) -> None:
    client = make_app(redis_wait_replicas="1", redis_wait_timeout_ms="20").test_client()
    problem = assert_problem(client.put("/api/notes/a", json={"v": 1}), 503)
    assert problem["type"] == "/problems/broker-unavailable"


def test_without_replicas_to_wait_for_a_write_is_accepted(make_app: Any) -> None:
    client = make_app(redis_wait_replicas="0").test_client()
    assert client.put("/api/notes/a", json={"v": 1}).status_code == 202

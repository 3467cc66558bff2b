"""Limits on notification streams: open streams per user, and the read rate limit."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import assert_problem

pytestmark = pytest.mark.integration


def test_a_user_past_streams_per_user_is_429_and_a_closed_stream_frees_its_place(make_app: Any) -> None:
    client = make_app(streams_per_user=2).test_client()
    first = client.get("/api/events", buffered=False)
    second = client.get("/api/events", buffered=False)
    assert (first.status_code, second.status_code) == (200, 200)

    refused = client.get("/api/events", buffered=False)
    problem = assert_problem(refused, 429)
    assert problem["type"] == "/problems/too-many-streams"
    assert refused.headers["Retry-After"]

    first.close()  # the client went away: its subscription ends
    third = client.get("/api/events", buffered=False)
    assert third.status_code == 200
    second.close()
    third.close()


def test_opening_a_stream_counts_as_a_read(make_app: Any) -> None:
    client = make_app(rate_limit_reads="2/minute").test_client()
    for _ in range(2):
        client.get("/api/events", buffered=False).close()
    assert_problem(client.get("/api/events", buffered=False), 429)

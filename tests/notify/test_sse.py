"""`GET /api/events`: notifications as Server-Sent Events over a real socket, from a real worker."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.notify import KEEPALIVE_SECONDS, LiveServer, commit_ms, log_event, log_ids
from tests.support.services import wait_until

pytestmark = pytest.mark.integration


def test_the_owner_gets_each_event_with_its_id_within_a_second_and_no_one_else_does(
    live: LiveServer, start_worker: Any
) -> None:
    start_worker()
    alice, bob = live.sse("alice"), live.sse("bob")
    assert alice.status == 200
    assert alice.headers["content-type"].startswith("text/event-stream")
    assert alice.headers["cache-control"].startswith("no-cache")
    assert alice.headers["x-accel-buffering"] == "no"

    sent = {live.write("alice", f"/api/notes/s{i}", {"i": i}) for i in range(3)}
    events = alice.next(3)
    arrived_ms = time.time_ns() / 1e6

    assert [e.id for e in events] == log_ids(live.app, "alice")
    assert {e.data["command_id"] for e in events} == sent
    assert all(e.data["type"] == "command.applied" and e.data["error"] is None for e in events)
    assert arrived_ms - commit_ms(events[-1].id) < 1000
    assert bob.nothing_within(0.5)
    alice.close()
    bob.close()


def test_last_event_id_replays_exactly_what_was_missed(live: LiveServer, start_worker: Any) -> None:
    start_worker()
    first = live.sse("alice")
    live.write("alice", "/api/notes/n1", {"v": 1})
    [seen] = first.next(1)
    first.close()

    missed = [live.write("alice", f"/api/notes/m{i}", {"v": i}) for i in range(3)]
    wait_until(lambda: all(live.status("alice", c) != "pending" for c in missed), message="missed commands")
    again = live.sse("alice", last_event_id=seen.id)
    replayed = again.next(3)
    later = live.write("alice", "/api/notes/n2", {"v": 2})
    [live_event] = again.next(1)

    assert {e.data["command_id"] for e in replayed} == set(missed)
    assert [e.id for e in [seen, *replayed, live_event]] == log_ids(live.app, "alice")
    assert live_event.data["command_id"] == later
    assert again.nothing_within(0.5)
    again.close()


def test_a_browser_passes_the_token_and_last_id_in_the_query_and_the_header_wins(live: LiveServer) -> None:
    ids = [log_event(live.app, "erin", f"c{i}") for i in range(4)]

    by_query = live.sse("erin", query_last_event_id=ids[1], in_query=True)
    assert [e.id for e in by_query.next(2)] == ids[2:]
    # An EventSource reconnects to its first URL, with a newer Last-Event-ID header.
    reconnected = live.sse("erin", last_event_id=ids[2], query_last_event_id=ids[0], in_query=True)
    assert [e.id for e in reconnected.next(1)] == ids[3:]
    assert reconnected.nothing_within(0.3)
    by_query.close()
    reconnected.close()


def test_an_idle_stream_gets_heartbeat_comments(live: LiveServer) -> None:
    client = live.sse("frank")
    wait_until(lambda: "keepalive" in client.comments, 5 * KEEPALIVE_SECONDS + 2, "a heartbeat")
    assert client.comments[0] == "connected"
    client.close()


def test_a_missing_or_bad_token_or_last_id_is_refused(live: LiveServer) -> None:
    no_token = live.sse("gina")
    no_token.close()
    anonymous = type(no_token)(live.host, live.port, None)
    bad_token = type(no_token)(live.host, live.port, "not-a-jwt")
    bad_id = live.sse("gina", last_event_id="latest")

    assert (anonymous.status, anonymous.body["status"]) == (401, 401)
    assert (bad_token.status, bad_token.body["status"]) == (401, 401)
    assert (bad_id.status, bad_id.body["type"]) == (400, "/problems/invalid-parameter")
    for client in (anonymous, bad_token, bad_id):
        client.close()


def test_a_stream_that_closes_leaves_the_hub(live: LiveServer) -> None:
    hub = live.app.extensions["notify"]
    client = live.sse("hank")
    assert hub.connections() == 1
    client.close()
    # Noticed at the next write: a heartbeat at the latest.
    wait_until(lambda: hub.connections() == 0, 5 * KEEPALIVE_SECONDS + 2, "the stream to leave the hub")

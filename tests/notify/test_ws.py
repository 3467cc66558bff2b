"""`GET /ws`: notifications over a real WebSocket, from a real worker's commits.

The app runs in Werkzeug's threaded server, the commands are applied by `python -m workers`,
and the client is simple-websocket's, over TCP.
"""

from __future__ import annotations

import base64
import http.client
import os
import threading
import time
from typing import Any

import pytest
import redis

from tests.support.api import token
from tests.support.notify import LiveServer, commit_ms, frames, log_event, log_ids
from tests.support.services import wait_until

pytestmark = pytest.mark.integration


def upgrade(live: LiveServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """A WebSocket opening handshake by hand, to see the HTTP answer itself: status, headers."""
    conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
    handshake = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    try:
        conn.request("GET", path, headers=handshake | (headers or {}))
        response = conn.getresponse()
        answer = response.status, {k.lower(): v for k, v in response.getheaders()}
        response.close()
    finally:
        conn.close()
    return answer


def test_the_owner_gets_each_event_within_a_second_of_its_commit_and_no_one_else_does(
    live: LiveServer, start_worker: Any
) -> None:
    start_worker()
    alice, bob = live.ws("alice"), live.ws("bob")
    applied = {live.write("alice", f"/api/notes/a{i}", {"i": i}) for i in range(3)}
    failed = live.write("alice", "/api/notes/missing", {"x": 1}, method="PATCH")

    received = frames(alice, 4)

    events = [event for event, _ in received]
    assert [e["id"] for e in events] == log_ids(live.app, "alice")  # in log order, all of them
    for event, arrived_ms in received:
        assert arrived_ms - commit_ms(event["id"]) < 1000, event
    by_command = {e["command_id"]: e for e in events}
    assert set(by_command) == applied | {failed}
    for command_id in applied:
        event = by_command[command_id]
        assert (event["type"], event["status"], event["error"]) == ("command.applied", "applied", None)
        assert (event["op"], event["collection"]) == ("replace", "notes")
        assert event["entity_id"].startswith("a")
    refused = by_command[failed]
    assert (refused["type"], refused["status"], refused["op"]) == ("command.failed", "failed", "patch")
    assert "does not exist" in refused["error"]

    assert bob.receive(timeout=0.5) is None  # alice's events never reach bob
    own = live.write("bob", "/api/notes/b1", {"mine": True})
    [(event, _)] = frames(bob, 1)
    assert event["command_id"] == own
    alice.close()
    bob.close()


def test_a_reconnect_with_the_last_id_gets_exactly_what_it_missed(
    live: LiveServer, start_worker: Any
) -> None:
    start_worker()
    first = live.ws("alice")
    live.write("alice", "/api/notes/n1", {"v": 1})
    live.write("alice", "/api/notes/n2", {"v": 2})
    seen = [event for event, _ in frames(first, 2)]
    first.close()

    missed = [live.write("alice", f"/api/notes/m{i}", {"v": i}) for i in range(3)]
    wait_until(lambda: all(live.status("alice", c) != "pending" for c in missed), message="missed commands")
    again = live.ws("alice", last_event_id=seen[-1]["id"])
    replayed = [event for event, _ in frames(again, 3)]
    later = live.write("alice", "/api/notes/n3", {"v": 3})
    [(live_event, _)] = frames(again, 1)

    assert {e["command_id"] for e in replayed} == set(missed)
    assert [e["id"] for e in seen + replayed + [live_event]] == log_ids(live.app, "alice")
    assert live_event["command_id"] == later
    assert again.receive(timeout=0.5) is None  # nothing twice
    again.close()


def test_reconnecting_while_commands_finish_loses_and_repeats_nothing(
    live: LiveServer, start_worker: Any
) -> None:
    start_worker()
    total = 40
    client = live.ws("alice")

    def write_all() -> None:
        for i in range(total):
            live.write("alice", f"/api/churn/c{i % 7}", {"i": i})
            time.sleep(0.015)

    writer = threading.Thread(target=write_all)
    writer.start()
    received: list[dict[str, Any]] = []
    while len(received) < total:
        received += [event for event, _ in frames(client, min(3, total - len(received)), timeout=30)]
        client.close()  # and straight back, from the last id seen, while commands keep finishing
        client = live.ws("alice", last_event_id=received[-1]["id"])
    writer.join()

    assert [e["id"] for e in received] == log_ids(live.app, "alice")
    assert client.receive(timeout=0.5) is None
    client.close()


def test_the_token_may_come_in_the_authorization_header(live: LiveServer) -> None:
    client = live.ws(None, last_event_id="0-0", Authorization=f"Bearer {token('carol')}")
    event_id = log_event(live.app, "carol", "c-1")
    [(event, _)] = frames(client, 1)
    assert (event["id"], event["command_id"]) == (event_id, "c-1")
    client.close()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/ws", {}),
        ("/ws?token=not-a-jwt", {}),
        (f"/ws?token={token('alice', secret='another-secret-of-thirty-two-bytes!!')}", {}),
        ("/ws", {"Authorization": "Bearer not-a-jwt"}),
    ],
    ids=["no token", "garbage token", "token of another secret", "bad header"],
)
def test_a_bad_or_missing_token_is_refused_with_401_before_the_upgrade(
    live: LiveServer, path: str, headers: dict[str, str]
) -> None:
    status, answer_headers = upgrade(live, path, headers)
    assert status == 401
    assert answer_headers["content-type"] == "application/problem+json"
    assert "upgrade" not in answer_headers


def test_a_malformed_last_event_id_is_refused_with_400(live: LiveServer) -> None:
    status, headers = upgrade(live, f"/ws?token={token('alice')}&last_event_id=yesterday")
    assert (status, headers["content-type"]) == (400, "application/problem+json")
    assert upgrade(live, f"/ws?token={token('alice')}&last_event_id=1-0")[0] == 101


def test_frames_are_not_compressed(live: LiveServer) -> None:
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    status, headers = upgrade(live, f"/ws?token={token('alice')}", offer)
    assert status == 101
    assert "sec-websocket-extensions" not in headers  # declined: a socket costs no zlib state


def test_the_server_pings_an_idle_connection(live: LiveServer) -> None:
    client = live.ws("alice")
    pings = threading.Event()
    receive_data = client.ws.receive_data

    def spy(data: bytes | None) -> None:  # the client's thread feeds wsproto the bytes it reads
        if data and data[0] & 0x0F == 0x9:  # a frame of opcode 9: ping (the client answers it)
            pings.set()
        receive_data(data)

    client.ws.receive_data = spy
    assert pings.wait(5), "no ping within 5 s at a 0.5 s keepalive"
    assert client.connected
    client.close()


@pytest.mark.one_redis  # finds the listener by its client name, which only one Redis is given
def test_live_events_survive_the_listener_losing_redis(live: LiveServer, redis_url: str) -> None:
    client = live.ws("alice")
    before = [log_event(live.app, "alice", f"b{i}") for i in range(3)]
    assert [e["id"] for e, _ in frames(client, 3)] == before
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    name = f"{live.app.extensions['gateway'].keys.prefix}:notify-listener"
    killed = [c for c in admin.client_list() if c["name"] == name]
    for connection in killed:
        admin.client_kill_filter(_id=connection["id"])
    after = [log_event(live.app, "alice", f"a{i}") for i in range(3)]
    assert [e["id"] for e, _ in frames(client, 3)] == after
    assert killed, "the listener's blocking read was not found"
    client.close()
    admin.close()


def test_a_connection_that_closes_leaves_the_hub(live: LiveServer) -> None:
    client = live.ws("dora")
    hub = live.app.extensions["notify"]
    assert hub.connections() == 1
    client.close()
    wait_until(lambda: hub.connections() == 0, 5, "the connection to leave the hub")

"""Helpers of the notification tests: a real server in a thread, WebSocket and SSE clients,
and the users' event logs as Redis holds them."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import simple_websocket
from werkzeug.serving import make_server

from tests.support.api import token

KEEPALIVE_SECONDS = 0.5  # WebSocket pings and SSE heartbeats, short enough to be seen in a test
CONTRACT_FIELDS = {
    "id",
    "type",
    "command_id",
    "op",
    "collection",
    "entity_id",
    "status",
    "error",
    "error_type",
}


class Endpoint:
    """A gateway web server on this machine, seen by its clients: HTTP, WebSocket, SSE."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        data = json.dumps(body) if body is not None else None
        all_headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=all_headers | (headers or {}))
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        answer = json.loads(raw) if raw else None
        return response.status, answer, dict(response.getheaders())

    def write(self, user: str, path: str, body: dict[str, Any] | None = None, method: str = "PUT") -> str:
        """Send a write command as `user`; its command id."""
        status, answer, _ = self.call(method, path, body, {"Authorization": f"Bearer {token(user)}"})
        assert status == 202, answer
        return answer["command_id"]

    def status(self, user: str, command_id: str) -> str:
        auth = {"Authorization": f"Bearer {token(user)}"}
        return self.call("GET", f"/api/commands/{command_id}", headers=auth)[1]["status"]

    def ws(self, user: str | None, last_event_id: str | None = None, **headers: str) -> Any:
        query = {"token": token(user)} if user else {}
        if last_event_id is not None:
            query["last_event_id"] = last_event_id
        url = f"ws://{self.host}:{self.port}/ws?{urllib.parse.urlencode(query)}"
        return simple_websocket.Client.connect(url, headers=headers or None)

    def sse(self, user: str, last_event_id: str | None = None, **options: Any) -> SseClient:
        return SseClient(self.host, self.port, token(user), last_event_id, **options)


class LiveServer(Endpoint):
    """The app served by Werkzeug's threaded server on a free port, as `flask run` serves it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        super().__init__("127.0.0.1", self.server.server_port)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.app.extensions["notify"].close()
        self.server.shutdown()
        self.server.server_close()


def frames(ws: Any, count: int, timeout: float = 10) -> list[tuple[dict[str, Any], float]]:
    """The next `count` frames as events, each with the time (ms) it arrived."""
    received = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        text = ws.receive(max(0.01, deadline - time.monotonic()))
        assert text is not None, f"only {len(received)} of {count} events arrived: {received}"
        event = orjson.loads(text)
        assert set(event) == CONTRACT_FIELDS, event
        received.append((event, time.time_ns() / 1e6))
    return received


def commit_ms(event_id: str) -> int:
    """When the event was written: the Redis clock's ms, the first part of the stream id."""
    return int(event_id.split("-")[0])


def log_ids(app: Any, user: str) -> list[str]:
    """The ids of the user's event log, oldest first."""
    gw = app.extensions["gateway"]
    return [entry_id for entry_id, _ in gw.redis.xrange(gw.keys.events(user))]


@dataclass
class SseEvent:
    id: str | None
    data: dict[str, Any]


@dataclass
class SseClient:
    """`GET /api/events` read by a thread into a queue of events; comments are counted."""

    host: str
    port: int
    bearer: str | None
    last_event_id: str | None = None
    in_query: bool = False
    query_last_event_id: str | None = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    events: queue.Queue[SseEvent | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        query: dict[str, str] = {}
        headers: dict[str, str] = {"Accept": "text/event-stream"}
        if self.bearer and self.in_query:
            query["token"] = self.bearer
        elif self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        if self.query_last_event_id is not None:
            query["last_event_id"] = self.query_last_event_id
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.conn.request("GET", f"/api/events?{urllib.parse.urlencode(query)}", headers=headers)
        self.sock = self.conn.sock  # the response keeps it open past conn.close(); close() shuts it
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = json.loads(self.response.read())

    def _read(self) -> None:
        event_id, data = None, None
        try:
            for raw in self._lines():
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = orjson.loads(line[6:])
                elif line == "" and data is not None:
                    self.events.put(SseEvent(event_id, data))
                    event_id, data = None, None
        except (OSError, ValueError, http.client.HTTPException):
            pass  # closed by this side, mid-chunk
        self.events.put(None)  # the stream ended

    def _lines(self) -> Iterator[bytes]:
        while line := self.response.readline():
            yield line

    def next(self, count: int, timeout: float = 10) -> list[SseEvent]:
        received = []
        deadline = time.monotonic() + timeout
        while len(received) < count:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"only {len(received)} of {count} events arrived") from None
            assert event is not None, f"the stream ended after {len(received)} of {count} events"
            assert set(event.data) == CONTRACT_FIELDS and event.id == event.data["id"], event
            received.append(event)
        return received

    def nothing_within(self, seconds: float) -> bool:
        try:
            event = self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected event {event}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.conn.close()


def log_event(app: Any, user: str, command_id: str, status: str = "applied", error: str | None = None) -> str:
    """Append an event to the user's log and to the outbox as `finish.lua` does; its id."""
    gw = app.extensions["gateway"]
    body = orjson.dumps(
        {
            "type": f"command.{status}",
            "command_id": command_id,
            "op": "replace",
            "collection": "notes",
            "entity_id": command_id,
            "status": status,
            "error": error,
        }
    ).decode()
    event_id = gw.redis.xadd(gw.keys.events(user), {"e": body})
    gw.redis.xadd(gw.keys.outbox(), {"u": user, "i": event_id, "e": body})
    return event_id

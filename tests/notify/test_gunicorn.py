"""The `web` process as the Procfile runs it (gunicorn, gunicorn.conf.py): plain requests are
answered while it holds many open WebSockets and SSE streams, and SIGTERM closes them cleanly."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import simple_websocket

from gateway.redis_client import connect
from settings import load
from tests.support.api import SECRET, token
from tests.support.notify import frames
from tests.support.web import Gunicorn

pytestmark = pytest.mark.integration

STREAMS = 100  # of each kind: WebSockets and SSE streams, one user each


@pytest.fixture
def web(start_web: Callable[..., Gunicorn]) -> Gunicorn:
    """`gunicorn wsgi:app` with the project's config, one process, JWT users."""
    return start_web(JWT_SECRET=SECRET)


def test_plain_requests_are_answered_beside_open_streams_which_sigterm_closes_cleanly(
    web: Gunicorn, start_worker: Any
) -> None:
    endpoint, process = web, web.process
    assert process is not None
    start_worker()
    sockets = [endpoint.ws(f"user{i}") for i in range(STREAMS)]
    streams = [endpoint.sse(f"user{i}") for i in range(STREAMS)]
    assert all(s.status == 200 for s in streams)

    for _ in range(20):  # answered while every stream is open
        assert endpoint.call("GET", "/healthz")[0] == 200
        auth = {"Authorization": f"Bearer {token('user0')}"}
        assert (
            endpoint.call("GET", "/api/commands/0-00000000000000000000000000000000", headers=auth)[0] == 404
        )
    command_id = endpoint.write("user7", "/api/notes/g1", {"via": "gunicorn"})
    [(event, _)] = frames(sockets[7], 1)
    [streamed] = streams[7].next(1)
    assert event["command_id"] == streamed.data["command_id"] == command_id

    sent_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    for client in sockets:
        with pytest.raises(simple_websocket.ConnectionClosed) as closed:
            client.receive(10)
        assert (closed.value.reason, closed.value.message) == (1001, "server shutting down")
    for stream in streams:
        assert stream.events.get(timeout=10) is None  # the stream ended
        stream.close()
    assert process.wait(15) == 0
    assert time.monotonic() - sent_at < 10  # well within graceful_timeout (20 s): nothing held it
    assert "Using worker: gateway.web_server.GeventWorker" in web.log()


def test_more_callers_than_redis_connections_wait_for_one(settings_env: dict[str, str], prefix: str) -> None:
    """A gevent process runs many requests at once; beyond REDIS_MAX_CONNECTIONS they queue."""
    client = connect(load(**{k.lower(): v for k, v in settings_env.items()}, redis_max_connections=2))
    errors: list[BaseException] = []

    def hold_a_connection() -> None:
        try:
            client.blpop([f"{prefix}:nothing"], timeout=0.2)  # holds its connection 0.2 s
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    callers = [threading.Thread(target=hold_a_connection) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    client.close()
    assert errors == []

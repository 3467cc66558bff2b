"""The product as the Procfile runs it: gunicorn serving `wsgi:app`, `python -m workers`,
`flask setup`; and a Redis with AOF that dies and comes back without losing accepted commands."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rq import Queue, Worker

from gateway.keys import Keys
from tests.support import ROOT
from tests.support.private_redis import PrivateRedis
from tests.support.web import Gunicorn

pytestmark = pytest.mark.integration


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(predicate: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, redis.ConnectionError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out: {message}")


@pytest.fixture
def web(start_web: Callable[..., Gunicorn]) -> str:
    """gunicorn with the project's config, as the Procfile's `web` line starts it: its base URL."""
    return start_web().base


def test_procfile_processes_accept_and_apply_over_http(
    web: str, start_worker: Any, settings_env: dict[str, str]
) -> None:
    setup = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "setup"],
        cwd=ROOT,
        env={**os.environ, **settings_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert setup.returncode == 0, setup.stderr
    start_worker()

    code, accepted = call(web, "POST", "/api/notes", {"text": "over the wire"})
    assert code == 202 and accepted["status"] == "pending"
    done = wait_for(
        lambda: (s := call(web, "GET", accepted["status_url"])[1])["status"] == "applied" and s, 30, "applied"
    )
    assert done["entity_id"] == accepted["entity_id"]
    code, note = call(web, "GET", f"/api/notes/{accepted['entity_id']}")
    assert (code, note) == (200, {"id": accepted["entity_id"], "text": "over the wire"})
    assert call(web, "GET", "/readyz")[0] == 200


def test_worker_stops_cleanly_on_sigterm(start_worker: Any, settings_env: dict[str, str]) -> None:
    worker = start_worker()
    queue = Queue(
        Keys(settings_env["KEY_PREFIX"]).rq_queue(),
        connection=redis.Redis.from_url(settings_env["REDIS_URL"]),
    )
    wait_for(lambda: Worker.all(queue=queue), 30, "the worker listening")
    time.sleep(0.5)  # idle, waiting for jobs
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0


def test_worker_stops_cleanly_on_sigterm_while_starting(start_worker: Any) -> None:
    """A deploy can stop a worker that is still starting: here it waits for a Redis that accepts
    connections and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        worker = start_worker(REDIS_URL=f"redis://127.0.0.1:{port}/0")
        time.sleep(4)  # past its imports, waiting on Redis
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0


def test_accepted_commands_survive_a_redis_crash_with_aof(
    private_redis: PrivateRedis, start_worker: Any, settings_env: dict[str, str]
) -> None:
    from app import create_app

    private_redis.start()
    url = private_redis.url
    app = create_app({k.lower(): v for k, v in settings_env.items()} | {"redis_url": url})
    client = app.test_client()
    ids = [client.put(f"/api/crash/c{i}", json={"i": i}).json["command_id"] for i in range(25)]

    private_redis.kill()  # no shutdown, no final save: only the AOF remains
    private_redis.start()
    try:
        start_worker(REDIS_URL=url)

        def all_applied() -> list[dict[str, Any]] | None:
            found = [client.get(f"/api/commands/{c}").json for c in ids]
            return found if all(s["status"] == "applied" for s in found) else None

        statuses = wait_for(all_applied, 30, "every command applied after the restart")
        assert len(statuses) == 25
        assert [client.get(f"/api/crash/c{i}").json["i"] for i in range(25)] == list(range(25))
    finally:
        app.extensions["gateway"].close()


def chunked_post(base: str, path: str, chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
    """POST a body in chunks (Transfer-Encoding: chunked, no Content-Length)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(
        "POST", path, body=iter(chunks), headers={"Content-Type": "application/json"}, encode_chunked=True
    )
    response = conn.getresponse()
    answer = (response.status, json.loads(response.read()))
    conn.close()
    return answer


def test_a_chunked_body_past_the_limit_is_413_not_cut_short(web: str, settings_env: dict[str, str]) -> None:
    limit = 1024 * 1024  # MAX_BODY_BYTES' default
    padded = b'{"a":1}' + b" " * (limit - 7) + b"GARBAGE!" * 1000  # valid JSON if cut at the limit
    status, problem = chunked_post(
        web, "/api/notes", [padded[i : i + 65536] for i in range(0, len(padded), 65536)]
    )
    assert (status, problem["status"]) == (413, 413)
    client = redis.Redis.from_url(settings_env["REDIS_URL"])
    assert not list(client.scan_iter(match=f"{{{settings_env['KEY_PREFIX']}:*:cmd:*"))  # nothing queued
    client.close()

    status, accepted = chunked_post(web, "/api/notes", [b'{"text":', b' "in chunks"}'])
    assert (status, accepted["status"]) == (202, "pending")

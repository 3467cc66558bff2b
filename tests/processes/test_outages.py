"""Processes outlive their dependencies (invariant 9): a worker started while Redis is down or
still loading its data waits for it; a worker whose Redis is killed while it drains, or whose
store goes away, stays up and resumes by itself; the release step waits too. Each outage is
logged once, not once per retry.

These tests kill and start Redis servers of their own (never the shared one) and cut a TCP proxy
in front of PostgreSQL (never the server itself)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.support.private_redis import PrivateRedis
from tests.support.services import wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

Worker = subprocess.Popen[bytes]


class LoadingRedis:
    """A server on a port that answers every command as a Redis loading its data set does."""

    def __init__(self, port: int) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        buffer = b""
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                buffer += data
                commands, buffer = _complete_commands(buffer)
                conn.sendall(b"-LOADING Redis is loading the dataset in memory\r\n" * commands)

    def close(self) -> None:
        self.listener.close()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def _complete_commands(buffer: bytes) -> tuple[int, bytes]:
    """How many whole RESP commands (arrays of bulk strings) `buffer` starts with, and the rest."""
    count = 0
    while True:
        at = 0
        end = buffer.find(b"\r\n", at)
        if not buffer.startswith(b"*") or end < 0:
            return count, buffer
        parts, at = int(buffer[1:end]), end + 2
        for _ in range(parts):
            end = buffer.find(b"\r\n", at)
            if end < 0:
                return count, buffer
            at = end + 2 + int(buffer[at + 1 : end]) + 2
            if at > len(buffer):
                return count, buffer
        count += 1
        buffer = buffer[at:]


@pytest.fixture
def web_client(settings_env: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """A test client of the web app on a given Redis (and database) URL."""
    apps: list[Any] = []

    def make(redis_url: str, database_url: str | None = None) -> Any:
        from app import create_app

        config = {k.lower(): v for k, v in settings_env.items()} | {"redis_url": redis_url}
        if database_url:
            config["database_url"] = database_url
        app = create_app(config)
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["gateway"].close()


def put_all(client: Any, collection: str, start: int, count: int) -> list[str]:
    ids = []
    for i in range(start, start + count):
        answer = client.put(f"/api/{collection}/e{i % 10}", json={"i": i})
        assert answer.status_code == 202, answer.json
        ids.append(answer.json["command_id"])
    return ids


def wait_applied(client: Any, ids: list[str], timeout: float) -> None:
    def done() -> bool:
        return all(client.get(f"/api/commands/{c}").json["status"] == "applied" for c in ids)

    wait_until(done, timeout, f"{len(ids)} commands applied")


def outage_lines(log_path: Path, what: str) -> list[str]:
    text = log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if re.search(rf"{what}.*(unavailable|pausing)", line)]


def assert_alive(worker: Worker) -> None:
    assert worker.poll() is None, f"the worker exited with {worker.returncode}"


def log_of(tmp_path: Path, index: int = 0) -> Path:
    return tmp_path / f"worker-{index}.log"


def test_a_worker_started_while_redis_is_down_waits_for_it(
    private_redis: PrivateRedis, start_worker: Callable[..., Worker], web_client: Any, tmp_path: Path
) -> None:
    worker = start_worker(REDIS_URL=private_redis.url)
    time.sleep(4)  # long past its start; Redis refuses connections all along
    assert_alive(worker)
    private_redis.start()
    client = web_client(private_redis.url)
    wait_applied(client, put_all(client, "early", 0, 20), 30)
    assert_alive(worker)
    assert len(outage_lines(log_of(tmp_path), "Redis")) <= 4  # one per thread that saw it, at most


def test_a_worker_started_while_redis_is_loading_waits_for_it(
    private_redis: PrivateRedis, start_worker: Callable[..., Worker], web_client: Any
) -> None:
    loading = LoadingRedis(private_redis.port)
    try:
        worker = start_worker(REDIS_URL=private_redis.url)
        wait_until(lambda: loading.connections, 15, "the worker to reach the loading Redis")
        time.sleep(3)
        assert_alive(worker)
    finally:
        loading.close()
    private_redis.start()
    client = web_client(private_redis.url)
    wait_applied(client, put_all(client, "loaded", 0, 20), 30)
    assert_alive(worker)


def test_a_worker_outlives_redis_killed_while_it_drains(
    private_redis: PrivateRedis, start_worker: Callable[..., Worker], web_client: Any, tmp_path: Path
) -> None:
    private_redis.start()
    client = web_client(private_redis.url)
    workers = [start_worker(REDIS_URL=private_redis.url) for _ in range(2)]
    wait_applied(client, put_all(client, "kill", 0, 20), 30)
    for round_ in range(3):
        ids = put_all(client, "kill", 100 * round_, 300)  # a backlog the workers are draining
        private_redis.kill()
        time.sleep(2)
        for worker in workers:
            assert_alive(worker)
        private_redis.start()
        wait_applied(client, ids, 60)
    for index, worker in enumerate(workers):
        assert_alive(worker)
        assert len(outage_lines(log_of(tmp_path, index), "Redis")) <= 3 * 4


def test_sigterm_ends_a_worker_waiting_for_redis(
    private_redis: PrivateRedis, start_worker: Callable[..., Worker]
) -> None:
    private_redis.start()
    worker = start_worker(REDIS_URL=private_redis.url)
    time.sleep(3)
    private_redis.kill()
    time.sleep(2)
    assert_alive(worker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0


@pytest.fixture
def proxied_postgres(postgres_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of the test PostgreSQL, and the database URL through it."""
    match = re.match(r"(.*@)([^/:]+):(\d+)(/.*)", postgres_url)
    assert match, postgres_url
    proxy = TcpProxy(match.group(2), int(match.group(3))).start()
    yield proxy, f"{match.group(1)}127.0.0.1:{proxy.port}{match.group(4)}"
    proxy.cut()


def test_a_worker_outlives_its_store_and_logs_the_outage_once(
    private_redis: PrivateRedis,
    proxied_postgres: tuple[TcpProxy, str],
    start_worker: Callable[..., Worker],
    web_client: Any,
    tmp_path: Path,
) -> None:
    proxy, database_url = proxied_postgres
    private_redis.start()
    client = web_client(private_redis.url, database_url)
    proxy.cut()  # down before the worker starts, and while commands come in
    worker = start_worker(REDIS_URL=private_redis.url, DATABASE_URL=database_url)
    ids = put_all(client, "cut", 0, 50)
    time.sleep(6)  # many retries' worth
    assert_alive(worker)
    proxy.restore()
    wait_applied(client, ids, 30)
    ids = put_all(client, "cut", 50, 50)
    proxy.cut()
    time.sleep(4)
    proxy.restore()
    wait_applied(client, ids, 30)
    assert_alive(worker)
    lines = outage_lines(log_of(tmp_path), "store")
    assert 1 <= len(lines) <= 2, lines  # one line per outage, not one per retry or partition


def test_the_release_step_waits_for_redis(
    private_redis: PrivateRedis, settings_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **settings_env, "REDIS_URL": private_redis.url}
    with (tmp_path / "setup.log").open("wb") as log:
        command = [sys.executable, "-m", "flask", "--app", "app", "setup"]
        setup = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        time.sleep(4)
        assert setup.poll() is None, (tmp_path / "setup.log").read_text()
        private_redis.start()
        assert setup.wait(30) == 0, (tmp_path / "setup.log").read_text()
    finally:
        if setup.poll() is None:
            setup.kill()
            setup.wait(10)
    text = (tmp_path / "setup.log").read_text()
    assert "ready:" in text
    assert text.count("unavailable") == 1, text


def test_the_web_answers_503_while_redis_is_down_and_accepts_again_after(
    private_redis: PrivateRedis, web_client: Any
) -> None:
    private_redis.start()
    client = web_client(private_redis.url)
    assert client.put("/api/web/a", json={"v": 1}).status_code == 202
    private_redis.kill()
    down = client.put("/api/web/a", json={"v": 2})
    assert down.status_code == 503 and down.headers["Retry-After"]
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"] != "ok"
    private_redis.start()
    assert client.put("/api/web/a", json={"v": 3}).status_code == 202
    assert client.get("/readyz").status_code == 200


def test_sigterm_ends_a_draining_worker_after_its_pass(
    private_redis: PrivateRedis, start_worker: Callable[..., Worker], web_client: Any
) -> None:
    private_redis.start()
    client = web_client(private_redis.url)
    ids = put_all(client, "term", 0, 1000)
    worker = start_worker(REDIS_URL=private_redis.url)
    time.sleep(3)  # draining the backlog
    worker.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait(20) == 0
    assert time.monotonic() - started < 10  # well within a platform's 30 s
    start_worker(REDIS_URL=private_redis.url)  # the rest is left pending, for the next worker
    wait_applied(client, ids, 60)


def test_the_release_step_waits_for_its_store(
    private_redis: PrivateRedis,
    proxied_postgres: tuple[TcpProxy, str],
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    proxy, database_url = proxied_postgres
    private_redis.start()
    proxy.cut()
    env = {**os.environ, **settings_env, "REDIS_URL": private_redis.url, "DATABASE_URL": database_url}
    log_path = tmp_path / "setup.log"
    with log_path.open("wb") as log:
        command = [sys.executable, "-m", "flask", "--app", "app", "setup"]
        setup = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        time.sleep(4)
        assert setup.poll() is None, log_path.read_text()
        proxy.restore()
        assert setup.wait(30) == 0, log_path.read_text()
    finally:
        if setup.poll() is None:
            setup.kill()
            setup.wait(10)
    assert log_path.read_text().count("unavailable") == 1, log_path.read_text()

"""Fixtures shared by every area of the test suite (each folder's conftest.py adds its own).

Integration tests use the real services on this machine: Redis, PostgreSQL and MariaDB
(tests/support/services.py says what happens when one is missing). Every test gets its own
Redis key prefix and its own SQL databases' tables by name.

Areas: api/ (HTTP routes, auth), notify/ (WebSocket, SSE, FCM), pipeline/ (accept to outcome),
stores/ (store plugins), plugin_system/ (hooks, contract, packaging, docs), processes/ (the
Procfile's processes, settings, logs, CLI). Test plugin modules are in plugins/.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from gateway.redis_client import disconnect
from tests.support import ROOT, cluster, services
from tests.support import browser as chromium
from tests.support.api import SECRET, RedisKeys
from tests.support.notify import KEEPALIVE_SECONDS, LiveServer
from tests.support.web import Gunicorn

pytest.register_assert_rewrite("plugins.conformance")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("APP_ENV", "test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cluster lane (GATEWAY_TEST_CLUSTER=1) leaves out the tests of one Redis's own
    properties; the other runs leave out the tests that need the cluster. Deselected, so the
    summary counts them."""
    left_out = "one_redis" if cluster.ENABLED else "cluster"
    deselected = [item for item in items if item.get_closest_marker(left_out)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(left_out)]


@pytest.fixture(scope="session")
def queue_redis_url() -> str:
    """A real plain Redis (REDIS_TEST_URL, default db 15 of the local server): RQ's, and the
    gateway's too outside the cluster lane."""
    return services.require_redis()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[cluster.Cluster | None]:
    """The cluster lane's loopback Redis Cluster (GATEWAY_TEST_CLUSTER=1), else None."""
    if not cluster.ENABLED:
        yield None
        return
    started = cluster.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def redis_url(queue_redis_url: str, redis_cluster: cluster.Cluster | None) -> str:
    """The gateway's Redis: the plain one, or in the cluster lane the cluster."""
    return redis_cluster.url if redis_cluster else queue_redis_url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with services.scratch_postgres() as url:
        yield url


@pytest.fixture
def prefix(redis_url: str, queue_redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    value = "t" + secrets.token_hex(4)
    yield value
    for url in {redis_url, queue_redis_url}:
        client = services.client(url)
        for pattern in (f"{{{value}:*", f"{value}:*", f"rq:*{value}-apply*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        disconnect(client)  # every node's connections (a cluster client's close() may leave some)
        client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def settings_env(redis_url: str, queue_redis_url: str, prefix: str, sqlite_url: str) -> dict[str, str]:
    """Environment for gateway processes of this test: its Redis prefix and fast timings (in the
    cluster lane, the cluster with RQ's queues on the plain Redis)."""
    lane = {"REDIS_CLUSTER": "true", "QUEUE_REDIS_URL": queue_redis_url} if cluster.ENABLED else {}
    return lane | {
        "REDIS_URL": redis_url,
        "KEY_PREFIX": prefix,
        "DATABASE_URL": sqlite_url,
        "APP_ENV": "test",
        "PARTITIONS": "4",
        "LEASE_SECONDS": "3",
        "SCAN_INTERVAL_SECONDS": "0.1",
        "RETRY_BASE_SECONDS": "0.2",
        "RETRY_MAX_SECONDS": "1",
        "MAX_ATTEMPTS": "3",
    }


@pytest.fixture
def app(settings_env: dict[str, str]) -> Any:
    """The web app on this test's Redis prefix and SQLite store."""
    application = create_app({k.lower(): v for k, v in settings_env.items()})
    yield application
    application.extensions["gateway"].close()


@pytest.fixture
def client(app: Any) -> Any:
    """A test client of `app`."""
    return app.test_client()


@pytest.fixture
def start_worker(
    settings_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real `python -m workers` processes; every one is killed at the end of the test.

    Each one logs to `worker-<n>.log` in the test's tmp_path, printed when the test fails.
    """
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(**env: str) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"worker-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers"],
                cwd=ROOT,
                env={**os.environ, **settings_env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
        return process

    yield start
    for process, log_path in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        print(f"--- {log_path.name} (exit {process.returncode}) ---")
        print(log_path.read_text(errors="replace")[-5000:])


@pytest.fixture
def redis_keys(redis_url: str, prefix: str) -> Iterator[RedisKeys]:
    """The Redis keys of this test's prefix, to show what a request wrote (or did not)."""
    keys = RedisKeys(redis_url, prefix)
    yield keys
    keys.close()


@pytest.fixture
def make_app(settings_env: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """Build apps on this test's settings with overrides (lower-case names); closed at the end."""
    apps: list[Any] = []

    def make(**overrides: Any) -> Any:
        application = create_app({k.lower(): v for k, v in settings_env.items()} | overrides)
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.extensions["gateway"].close()


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
def start_web(settings_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Start the `web` process as the Procfile does (gunicorn, this test's settings plus `env`);
    each is stopped at the end of the test, and the end of its log printed."""
    servers: list[Gunicorn] = []

    def start(app: str = "wsgi:app", **env: str) -> Gunicorn:
        server = Gunicorn(settings_env | env, tmp_path / f"web-{len(servers)}.log", app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        print(f"--- {server.log_path.name} ---")
        print(server.log()[-3000:])


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the suite's browser tests (tests/support/browser.py)."""
    yield from chromium.launch()

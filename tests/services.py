"""Reaching the real services the integration tests need (fail under CI, skip elsewhere)."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(service: str, error: Exception) -> None:
    message = f"{service} is not reachable: {error}"
    if IN_CI:
        pytest.fail(message + " (CI=true: integration tests may not skip)", pytrace=False)
    pytest.skip(message)


def require_redis() -> str:
    url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        missing("Redis", error)
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

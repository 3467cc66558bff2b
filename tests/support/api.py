"""Helpers of the HTTP API tests: tokens, problem bodies and the test's Redis keys."""

from __future__ import annotations

import time
from typing import Any

import jwt
import redis

from gateway.redis_client import disconnect
from tests.support import services

# HS256 wants a key of at least 256 bits (RFC 7518 3.2); shorter ones make PyJWT warn.
SECRET = "s3cret-of-the-api-tests-32-bytes-long"


def token(sub: Any = "alice", *, secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    """A signed JWT for `sub` (None: no `sub` claim), valid for an hour unless `exp` is given
    (tokens made when a test module is imported outlive a slow run of the suite)."""
    payload: dict[str, Any] = {"exp": int(time.time()) + 3600, **claims}
    if sub is not None:
        payload["sub"] = sub
    return jwt.encode(payload, secret, algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem of `status`; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json", response.mimetype
    body = response.get_json(force=True)
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    text = response.get_data(as_text=True)
    assert "<html" not in text.lower() and "Traceback" not in text
    return body


class RedisKeys:
    """Every key under one test prefix, to show that a request wrote nothing (or something).

    Rate-limit counters are left out unless asked for: every call counts against its user's
    limit, refused ones too, and the contract allows these short-lived counters.
    """

    def __init__(self, url: str, prefix: str) -> None:
        self.client = services.client(url)
        self.patterns = (f"{{{prefix}:*", f"{prefix}:*")
        self.counters = f"{prefix}:ratelimit:".encode()

    def all(self, *, counters: bool = False) -> set[bytes]:
        keys = {key for pattern in self.patterns for key in self.client.scan_iter(match=pattern, count=1000)}
        return keys if counters else {key for key in keys if not key.startswith(self.counters)}

    def snapshot(self) -> dict[bytes, bytes | None]:
        """Each key with its serialized value: equal snapshots, nothing written in between."""
        return {key: self.client.dump(key) for key in self.all()}

    def close(self) -> None:
        disconnect(self.client)
        self.client.close()


def redis_sends(monkeypatch: Any) -> list[bytes]:
    """Every write to a Redis connection from now on (one per round trip), as sent."""
    sent: list[bytes] = []
    real = redis.connection.AbstractConnection.send_packed_command

    def record(connection: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command if isinstance(command, bytes) else b"".join(command))
        real(connection, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", record)
    return sent


def assert_one_evalsha(sent: list[bytes]) -> None:
    """One round trip holding one command, EVALSHA (RESP: one array, no second one after it)."""
    assert len(sent) == 1, sent
    assert sent[0].startswith(b"*") and sent[0].count(b"\r\nEVALSHA\r\n") == 1
    assert sent[0].count(b"\r\n*") == 0

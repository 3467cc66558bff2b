"""Security headers on every answer: successes, refusals, Flask's own errors and crashes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import SECRET

pytestmark = pytest.mark.integration


def assert_secured(response: Any) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/healthz", None, 200),
        ("POST", "/api/notes", {"x": 1}, 202),
        ("GET", "/api/notes", None, 200),
        ("GET", "/api/notes/missing", None, 404),
        ("POST", "/api/notes", [1], 422),
        ("GET", "/nowhere", None, 404),
        ("DELETE", "/healthz", None, 405),
        ("OPTIONS", "/api/notes", None, 200),
    ],
)
def test_every_answer_carries_them(client: Any, method: str, path: str, body: Any, status: int) -> None:
    response = client.open(path, method=method, json=body)
    assert response.status_code == status
    assert_secured(response)
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP


def test_401_and_500_carry_them(make_app: Any) -> None:
    app = make_app(jwt_secret=SECRET)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    client = app.test_client()
    assert_secured(client.post("/api/notes", json={}))
    response = client.get("/boom")
    assert response.status_code == 500
    assert_secured(response)


def test_https_answers_ask_for_https_from_then_on(client: Any) -> None:
    direct = client.get("/healthz", base_url="https://api.example")
    proxied = client.get("/healthz", environ_overrides={"wsgi.url_scheme": "https"})
    for response in (direct, proxied):
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")

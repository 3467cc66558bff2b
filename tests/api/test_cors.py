"""CORS_ORIGINS: browser frontends on other origins may call the API; others may not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import SECRET, assert_problem, bearer, token

pytestmark = pytest.mark.integration

FRONTEND = "https://app.example"
STRANGER = "https://evil.example"


def preflight(client: Any, origin: str, method: str = "POST", path: str = "/api/notes") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.fixture
def cors_client(make_app: Any) -> Any:
    """An app with a JWT secret that lets FRONTEND (and a second origin) call it."""
    return make_app(jwt_secret=SECRET, cors_origins=f"{FRONTEND}, https://other.example").test_client()


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/notes"), ("PATCH", "/api/notes/a"), ("GET", "/api/x")]
)
def test_a_preflight_from_an_allowed_origin_passes_without_a_token(
    cors_client: Any, redis_keys: Any, method: str, path: str
) -> None:
    response = preflight(cors_client, FRONTEND, method, path)
    assert response.status_code == 200  # Flask answers OPTIONS; flask-cors adds the headers
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert redis_keys.all() == set()


def test_answers_to_an_allowed_origin_say_so(cors_client: Any) -> None:
    response = cors_client.post(
        "/api/notes", json={"x": 1}, headers={"Origin": FRONTEND, **bearer(token("alice"))}
    )
    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "Origin" in response.headers["Vary"]
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "Location" in exposed and "Retry-After" in exposed


def test_errors_to_an_allowed_origin_are_readable_by_its_scripts(cors_client: Any) -> None:
    response = cors_client.post("/api/notes", json={}, headers={"Origin": "https://other.example"})
    assert_problem(response, 401)
    assert response.headers["Access-Control-Allow-Origin"] == "https://other.example"


def test_other_origins_get_no_cors_headers(cors_client: Any) -> None:
    response = preflight(cors_client, STRANGER)
    assert "Access-Control-Allow-Origin" not in response.headers  # the browser stops here
    assert not response.get_data()
    response = cors_client.post("/api/notes", json={}, headers={"Origin": STRANGER, **bearer(token())})
    assert response.status_code == 202
    assert "Access-Control-Allow-Origin" not in response.headers


def test_without_cors_origins_no_origin_is_allowed(make_app: Any) -> None:
    client = make_app(jwt_secret=SECRET).test_client()
    response = preflight(client, FRONTEND)
    assert "Access-Control-Allow-Origin" not in response.headers
    response = client.post("/api/notes", json={}, headers={"Origin": FRONTEND, **bearer(token())})
    assert response.status_code == 202
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_star_allows_every_origin(make_app: Any) -> None:
    client = make_app(cors_origins="*").test_client()
    response = preflight(client, STRANGER)
    assert response.status_code == 200  # Flask answers OPTIONS; flask-cors adds the headers
    assert response.headers["Access-Control-Allow-Origin"] == STRANGER
    response = client.get("/healthz", headers={"Origin": FRONTEND})
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


def test_preflights_are_not_rate_limited_nor_counted(make_app: Any, redis_keys: Any) -> None:
    client = make_app(jwt_secret=SECRET, cors_origins=FRONTEND, rate_limit_writes="2/minute").test_client()
    for _ in range(5):
        assert preflight(client, FRONTEND).status_code == 200
    assert redis_keys.all(counters=True) == set()
    for _ in range(2):
        response = client.post("/api/notes", json={}, headers={"Origin": FRONTEND, **bearer(token())})
        assert response.status_code == 202


def test_a_refused_call_still_tells_its_wait_to_the_frontend(make_app: Any) -> None:
    client = make_app(jwt_secret=SECRET, cors_origins=FRONTEND, rate_limit_writes="1/minute").test_client()
    headers = {"Origin": FRONTEND, **bearer(token())}
    assert client.post("/api/notes", json={}, headers=headers).status_code == 202
    response = client.post("/api/notes", json={}, headers=headers)
    assert_problem(response, 429)
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]

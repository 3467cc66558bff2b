"""Per-user rate limits shared by every web process: 429 problem JSON with Retry-After."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import SECRET, assert_one_evalsha, assert_problem, bearer, redis_sends, token

pytestmark = pytest.mark.integration

# Made when the module is collected: the helper's tokens are valid for an hour, so that a slow
# suite reaches them in time.
ALICE, BOB = bearer(token("alice")), bearer(token("bob"))


@pytest.fixture
def limited(make_app: Any) -> Any:
    """Three writes and four reads a minute per user."""
    return make_app(jwt_secret=SECRET, rate_limit_writes="3/minute", rate_limit_reads="4/minute")


def test_writes_past_the_limit_are_429_with_retry_after(limited: Any, redis_keys: Any) -> None:
    client = limited.test_client()
    for n in range(3):
        assert client.put(f"/api/notes/n{n}", json={}, headers=ALICE).status_code == 202
    written = redis_keys.snapshot()
    for method, path in [("POST", "/api/notes"), ("PUT", "/api/notes/x"), ("PATCH", "/api/notes/x")]:
        response = client.open(path, method=method, json={}, headers=ALICE)
        problem = assert_problem(response, 429)
        assert problem["type"] == "/problems/rate-limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert "3 per 1 minute" in problem["detail"]
    assert_problem(client.delete("/api/notes/x", headers=ALICE), 429)
    assert redis_keys.snapshot() == written  # no command queued by a refused call


def test_each_user_has_their_own_limits(limited: Any) -> None:
    client = limited.test_client()
    for _ in range(3):
        client.post("/api/notes", json={}, headers=ALICE)
    assert_problem(client.post("/api/notes", json={}, headers=ALICE), 429)
    assert client.post("/api/notes", json={}, headers=BOB).status_code == 202


def test_reads_and_writes_are_counted_apart(limited: Any) -> None:
    client = limited.test_client()
    command_ids = [
        client.post("/api/notes", json={}, headers=ALICE).get_json()["command_id"] for _ in range(3)
    ]
    assert_problem(client.post("/api/notes", json={}, headers=ALICE), 429)
    assert client.get(f"/api/commands/{command_ids[0]}", headers=ALICE).status_code == 200
    assert client.get("/api/notes", headers=ALICE).status_code == 200
    assert client.get("/api/notes/x", headers=ALICE).status_code == 404
    assert client.get(f"/api/commands/{command_ids[1]}", headers=ALICE).status_code == 200
    assert_problem(client.get("/api/notes", headers=ALICE), 429)


def test_every_web_process_counts_against_the_same_limit(make_app: Any) -> None:
    """Two apps on one Redis stand for two gunicorn processes."""
    one, two = (make_app(jwt_secret=SECRET, rate_limit_writes="4/minute").test_client() for _ in range(2))
    for client in (one, two, one, two):
        assert client.post("/api/notes", json={}, headers=ALICE).status_code == 202
    assert_problem(one.post("/api/notes", json={}, headers=ALICE), 429)
    assert_problem(two.post("/api/notes", json={}, headers=ALICE), 429)


def test_unauthenticated_calls_are_401_and_not_counted(limited: Any, redis_keys: Any) -> None:
    client = limited.test_client()
    for _ in range(5):
        assert_problem(client.post("/api/notes", json={}), 401)
    assert redis_keys.all(counters=True) == set()
    assert client.post("/api/notes", json={}, headers=ALICE).status_code == 202


def test_counters_live_under_the_deployment_prefix_and_expire(
    limited: Any, redis_keys: Any, prefix: str
) -> None:
    limited.test_client().post("/api/notes", json={}, headers=ALICE)
    counters = redis_keys.all(counters=True) - redis_keys.all()
    assert counters and all(key.startswith(f"{prefix}:ratelimit:".encode()) for key in counters)
    assert all(b"alice" not in key for key in counters)  # the user id is hashed
    assert all(0 < redis_keys.client.pttl(key) <= 2 * 60_000 for key in counters)


def test_a_write_is_counted_by_its_accept_script_in_one_redis_call(
    limited: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = limited.test_client()
    client.post("/api/notes", json={}, headers=ALICE)  # scripts loaded, connections open
    sent = redis_sends(monkeypatch)
    assert client.post("/api/notes", json={}, headers=ALICE).status_code == 202
    assert_one_evalsha(sent)


def test_empty_settings_turn_the_limits_off(make_app: Any, redis_keys: Any) -> None:
    client = make_app(rate_limit_writes="", rate_limit_reads="").test_client()
    for _ in range(5):
        assert client.post("/api/notes", json={}).status_code == 202
        assert client.get("/api/notes").status_code == 200
    assert redis_keys.all(counters=True) == redis_keys.all()


def test_the_defaults_take_a_burst_and_hold_a_minute_to_6000_writes(app: Any, client: Any) -> None:
    settings = app.extensions["gateway"].settings
    assert (settings.rate_limit_writes, settings.rate_limit_reads) == ("6000/minute", "18000/minute")
    for n in range(300):
        assert client.put(f"/api/notes/n{n}", json={}).status_code == 202


@pytest.mark.parametrize("value", ["1/second;10/minute", "lots", "5 per fortnight"])
def test_a_setting_that_is_not_one_limit_stops_the_start(make_app: Any, value: str) -> None:
    with pytest.raises(ValueError, match="rate_limit_writes"):
        make_app(rate_limit_writes=value)


def test_write_bytes_past_the_limit_are_429_before_the_body_is_read(make_app: Any, redis_keys: Any) -> None:
    """Bytes beyond the first 16 KiB of each body count: two 36 KiB bodies fit in 45,000 bytes a
    minute, a third does not; small bodies are not counted, and other users have their own."""
    client = make_app(jwt_secret=SECRET, rate_limit_write_bytes="45000/minute").test_client()
    large = {"text": "x" * (36 * 1024)}
    for n in range(2):
        assert client.put(f"/api/notes/n{n}", json=large, headers=ALICE).status_code == 202
    written = redis_keys.snapshot()
    response = client.post("/api/notes", json=large, headers=ALICE)
    problem = assert_problem(response, 429)
    assert problem["type"] == "/problems/rate-limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "45000 bytes of write bodies" in problem["detail"]
    malformed = b"{" + b"x" * (64 * 1024)
    refused = client.post("/api/notes", data=malformed, content_type="application/json", headers=ALICE)
    assert_problem(refused, 429)  # refused on its length: a malformed body is never parsed
    assert redis_keys.snapshot() == written  # nothing queued by a refused call
    assert client.post("/api/notes", json={"text": "x" * 1000}, headers=ALICE).status_code == 202
    assert client.post("/api/notes", json=large, headers=BOB).status_code == 202

"""Idempotency-Key: a retried write answers the first command again and enqueues nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.accept import idempotency_record
from tests.support.api import SECRET, assert_one_evalsha, assert_problem, bearer, redis_sends, token

pytestmark = pytest.mark.integration


def stream_entries(app: Any) -> list[str]:
    """Every command id queued on any partition stream, in stream order per partition."""
    gw = app.extensions["gateway"]
    return [
        fields["c"]
        for partition in range(gw.settings.partitions)
        for _, fields in gw.redis.xrange(gw.keys.stream(partition))
    ]


def with_key(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/notes", {"title": "no id"}),
        ("POST", "/api/notes", {"id": "i-1", "title": "with id"}),
        ("PUT", "/api/notes/i-2", {"v": 1}),
        ("PATCH", "/api/notes/i-3", {"v": None}),
        ("DELETE", "/api/notes/i-4", None),
    ],
)
def test_a_retry_answers_the_first_command_and_enqueues_nothing(
    app: Any, client: Any, method: str, path: str, body: Any
) -> None:
    first = client.open(path, method=method, json=body, headers=with_key("k-1"))
    assert first.status_code == 202
    queued = stream_entries(app)
    assert queued == [first.get_json()["command_id"]]

    again = client.open(path, method=method, json=body, headers=with_key("k-1"))
    assert again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert stream_entries(app) == queued
    status = client.get(first.headers["Location"]).get_json()
    assert status["entity_id"] == first.get_json()["entity_id"]


def test_the_body_is_compared_as_json_not_as_bytes(app: Any, client: Any) -> None:
    first = client.post(
        "/api/notes", data=b'{"a": 1, "b": [1, 2]}', content_type="application/json", headers=with_key("k")
    )
    again = client.post(
        "/api/notes", data=b'{ "b":[1,2],"a":1 }', content_type="application/json", headers=with_key("k")
    )
    assert first.status_code == again.status_code == 202
    assert again.get_json()["command_id"] == first.get_json()["command_id"]
    assert len(stream_entries(app)) == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/notes", {"title": "changed"}),
        ("POST", "/api/notes", {"id": "other", "title": "first"}),
        ("POST", "/api/other", {"title": "first"}),
        ("PUT", "/api/notes/x", {"title": "first"}),
    ],
)
def test_the_same_key_with_another_request_is_refused(
    app: Any, client: Any, redis_keys: Any, method: str, path: str, body: Any
) -> None:
    assert client.post("/api/notes", json={"title": "first"}, headers=with_key("k")).status_code == 202
    before = redis_keys.snapshot()
    problem = assert_problem(client.open(path, method=method, json=body, headers=with_key("k")), 422)
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert redis_keys.snapshot() == before


def test_keys_are_per_user(jwt_client: Any) -> None:
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    first = jwt_client.post("/api/notes", json={"x": 1}, headers=with_key("shared", **alice))
    other = jwt_client.post("/api/notes", json={"x": 1}, headers=with_key("shared", **bob))
    different = jwt_client.post("/api/notes", json={"x": 2}, headers=with_key("shared", **bob))
    assert first.status_code == other.status_code == 202
    assert other.get_json()["command_id"] != first.get_json()["command_id"]
    assert_problem(different, 422)  # bob's key, now bound to bob's first request
    assert len(stream_entries(jwt_client.application)) == 2
    # Bob cannot learn alice's command through her key.
    assert jwt_client.get(first.headers["Location"], headers=bob).status_code == 404


def test_different_keys_are_different_commands(app: Any, client: Any) -> None:
    one = client.put("/api/notes/a", json={"v": 1}, headers=with_key("one"))
    two = client.put("/api/notes/a", json={"v": 1}, headers=with_key("two"))
    none = client.put("/api/notes/a", json={"v": 1})
    ids = {r.get_json()["command_id"] for r in (one, two, none)}
    assert len(ids) == 3
    assert sorted(stream_entries(app)) == sorted(ids)


def test_the_record_is_kept_a_day(app: Any, client: Any) -> None:
    client.post("/api/notes", json={}, headers=with_key("ttl"))
    gw = app.extensions["gateway"]
    ttl = gw.redis.ttl(idempotency_record(gw.keys, "dev", "ttl", gw.settings.partitions))
    assert gw.settings.idempotency_ttl_seconds == 24 * 3600
    assert 24 * 3600 - 60 < ttl <= 24 * 3600


def test_the_record_lives_in_a_partition_of_the_gateway(app: Any, client: Any) -> None:
    """Under the hash tag of the partition the (user, key) pair picks, like every partition key."""
    client.post("/api/notes", json={}, headers=with_key("tagged"))
    gw = app.extensions["gateway"]
    record = idempotency_record(gw.keys, "dev", "tagged", gw.settings.partitions)
    tags = {gw.keys.tag(p) for p in range(gw.settings.partitions)}
    assert record.split(":idem:")[0] in tags
    assert gw.redis.hgetall(record).keys() == {"fp", "cid", "eid"}


@pytest.mark.parametrize("key", ["", " leading-space", "x" * 256, "clé", "tab\there"])
def test_malformed_keys_are_400_and_write_nothing(client: Any, redis_keys: Any, key: str) -> None:
    response = client.post("/api/notes", json={}, headers={"Idempotency-Key": key})
    assert_problem(response, 400)
    assert redis_keys.all() == set()


def test_a_key_at_the_length_limit_is_taken(client: Any) -> None:
    assert client.post("/api/notes", json={}, headers=with_key("k" * 255)).status_code == 202


def test_concurrent_retries_enqueue_one_command(make_app: Any) -> None:
    app = make_app(jwt_secret=SECRET)
    headers = with_key("race", **bearer(token("alice")))
    start = threading.Barrier(8)

    def send(_: int) -> Any:
        client = app.test_client()
        start.wait()
        return client.post("/api/notes", json={"title": "once"}, headers=headers)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    assert {r.status_code for r in responses} == {202}
    command_ids = {r.get_json()["command_id"] for r in responses}
    assert len(command_ids) == 1
    assert stream_entries(app) == list(command_ids)


@pytest.mark.one_redis  # on a cluster, the write rate limit is a round trip of its own
@pytest.mark.parametrize("key", [None, "one-trip"])
def test_an_accept_is_one_redis_round_trip(client: Any, monkeypatch: Any, key: str | None) -> None:
    """The key's check and the command's write are the one accept script, with a key or without:
    one write to the Redis connection, holding one command."""
    assert client.post("/api/notes", json={"x": 0}).status_code == 202  # scripts loaded, pool warm
    sent = redis_sends(monkeypatch)
    headers = with_key(key) if key else {}
    for _ in range(2 if key else 1):  # with a key: the first request, then its replay
        sent.clear()
        assert client.post("/api/notes", json={"x": 1}, headers=headers).status_code == 202
        assert_one_evalsha(sent)


def test_two_concurrent_requests_with_one_key_and_different_bodies(make_app: Any) -> None:
    """One wins and is queued; the other, whichever it is, is refused and queues nothing."""
    app = make_app()
    for attempt in range(5):
        start = threading.Barrier(2)

        def send(n: int, key: str = f"race-{attempt}", start: Any = start) -> Any:
            client = app.test_client()
            start.wait()
            return client.post("/api/notes", json={"n": n}, headers=with_key(key))

        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(send, range(2)))
        assert sorted(r.status_code for r in responses) == [202, 422]
    assert len(stream_entries(app)) == 5

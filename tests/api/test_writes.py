"""Write routes: 202 Accepted, and the command record and stream entry left in Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

from gateway.ids import COMMAND_ID, partition_of, partition_of_command

pytestmark = pytest.mark.integration


def accepted(response: Any) -> dict[str, Any]:
    """The body of a 202 answer, after checking its shape and headers."""
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"command_id", "entity_id", "status", "status_url"}
    assert body["status"] == "pending"
    assert COMMAND_ID.match(body["command_id"])
    assert body["status_url"] == f"/api/commands/{body['command_id']}"
    assert response.headers["Location"] == body["status_url"]
    assert int(response.headers["Retry-After"]) >= 1
    return body


def stored(app: Any, collection: str, entity_id: str, command_id: str) -> tuple[dict[str, str], list[Any]]:
    """The command's record and its partition stream's entries, as Redis holds them."""
    gw = app.extensions["gateway"]
    partition = partition_of(collection, entity_id, gw.settings.partitions)
    assert partition_of_command(command_id, gw.settings.partitions) == partition
    record = gw.redis.hgetall(gw.keys.command(partition, command_id))
    entries = gw.redis.xrange(gw.keys.stream(partition))
    return record, entries


def test_post_with_id_accepts_and_records_the_command(app: Any, client: Any) -> None:
    before_ms = time.time_ns() // 1_000_000
    body = accepted(client.post("/api/notes", json={"id": "n-1", "title": "hello", "tags": ["a", "b"]}))
    assert body["entity_id"] == "n-1"

    record, entries = stored(app, "notes", "n-1", body["command_id"])
    assert record["op"] == "create"
    assert record["col"] == "notes"
    assert record["eid"] == "n-1"
    assert record["uid"] == "dev"
    assert record["st"] == "pending"
    assert record["att"] == "0"
    assert before_ms <= int(record["acc"]) <= time.time_ns() // 1_000_000
    assert orjson.loads(record["pl"]) == {"title": "hello", "tags": ["a", "b"]}
    assert [fields for _, fields in entries] == [{"c": body["command_id"]}]


def test_post_without_id_makes_a_fresh_entity_id(app: Any, client: Any) -> None:
    first = accepted(client.post("/api/notes", json={"title": "one"}))
    second = accepted(client.post("/api/notes", json={"title": "two"}))
    assert first["entity_id"] != second["entity_id"]
    assert first["command_id"] != second["command_id"]
    made = uuid.UUID(first["entity_id"])  # raises if it is not one
    assert str(made) == first["entity_id"]  # in its canonical text form
    assert (made.version, made.variant) == (4, uuid.RFC_4122)  # a random one

    record, entries = stored(app, "notes", first["entity_id"], first["command_id"])
    assert record["eid"] == first["entity_id"]
    assert orjson.loads(record["pl"]) == {"title": "one"}
    assert {"c": first["command_id"]} in [fields for _, fields in entries]


def test_put_replaces_with_the_body_less_its_matching_id(app: Any, client: Any) -> None:
    body = accepted(client.put("/api/notes/n-2", json={"id": "n-2", "title": "replaced"}))
    assert body["entity_id"] == "n-2"
    record, entries = stored(app, "notes", "n-2", body["command_id"])
    assert record["op"] == "replace"
    assert orjson.loads(record["pl"]) == {"title": "replaced"}
    assert [fields for _, fields in entries] == [{"c": body["command_id"]}]


@pytest.mark.parametrize("content_type", ["application/json", "application/merge-patch+json"])
def test_patch_accepts_json_and_merge_patch(app: Any, client: Any, content_type: str) -> None:
    patch = {"title": None, "meta": {"seen": True}}
    response = client.patch("/api/notes/n-3", data=orjson.dumps(patch), content_type=content_type)
    body = accepted(response)
    record, entries = stored(app, "notes", "n-3", body["command_id"])
    assert record["op"] == "patch"
    assert orjson.loads(record["pl"]) == patch  # nulls kept: they delete members
    assert [fields for _, fields in entries] == [{"c": body["command_id"]}]


def test_delete_records_no_payload(app: Any, client: Any) -> None:
    body = accepted(client.delete("/api/notes/n-4"))
    assert body["entity_id"] == "n-4"
    record, entries = stored(app, "notes", "n-4", body["command_id"])
    assert record["op"] == "delete"
    assert "pl" not in record
    assert [fields for _, fields in entries] == [{"c": body["command_id"]}]


def test_commands_on_one_entity_queue_in_order_on_one_stream(app: Any, client: Any) -> None:
    ids = [
        accepted(client.put("/api/notes/same", json={"v": 1}))["command_id"],
        accepted(client.patch("/api/notes/same", json={"v": 2}))["command_id"],
        accepted(client.delete("/api/notes/same"))["command_id"],
    ]
    _, entries = stored(app, "notes", "same", ids[0])
    assert [fields["c"] for _, fields in entries] == ids


def test_content_type_parameters_are_accepted(app: Any, client: Any) -> None:
    response = client.post(
        "/api/notes", data=b'{"id": "n-5", "x": 1}', content_type="application/json; charset=utf-8"
    )
    body = accepted(response)
    record, _ = stored(app, "notes", "n-5", body["command_id"])
    assert orjson.loads(record["pl"]) == {"x": 1}


def test_ids_at_the_limits_are_accepted(app: Any, client: Any) -> None:
    longest = "x" * 200
    body = accepted(client.put(f"/api/notes/{longest}", json={}))
    assert body["entity_id"] == longest
    body = accepted(client.post("/api/notes", json={"id": "é ü 1"}))
    assert body["entity_id"] == "é ü 1"
    body = accepted(client.put("/api/a/x", json={}))  # one-letter collection
    record, _ = stored(app, "a", "x", body["command_id"])
    assert record["col"] == "a"
    longest_collection = "c" + "_" * 62
    body = accepted(client.post(f"/api/{longest_collection}", json={"id": "k"}))
    record, _ = stored(app, longest_collection, "k", body["command_id"])
    assert record["col"] == longest_collection


def test_a_body_at_the_size_limit_is_accepted(make_app: Any, redis_keys: Any) -> None:
    client = make_app(max_body_bytes=1024).test_client()
    raw = b'{"id": "big", "pad": "' + b"p" * 1000 + b'"'
    raw += b" " * (1023 - len(raw)) + b"}"
    assert len(raw) == 1024
    body = accepted(client.post("/api/notes", data=raw, content_type="application/json"))
    assert body["entity_id"] == "big"
    assert redis_keys.all()  # the command was written


def test_the_status_url_keeps_the_path_the_app_is_mounted_under(client: Any) -> None:
    response = client.post("/api/notes", json={}, base_url="http://localhost/gateway")
    body = response.get_json()
    assert body["status_url"] == f"/gateway/api/commands/{body['command_id']}"
    assert response.headers["Location"] == body["status_url"]

"""GET /api/commands/<id>: the command's status record, to its owner only."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.api import assert_problem, bearer, token

pytestmark = pytest.mark.integration

FIELDS = {
    "command_id",
    "status",
    "op",
    "collection",
    "entity_id",
    "attempts",
    "accepted_at",
    "finished_at",
    "error",
}


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("method", "path", "body", "op", "entity_id"),
    [
        ("POST", "/api/notes", {"id": "s-1", "x": 1}, "create", "s-1"),
        ("PUT", "/api/notes/s-2", {"x": 2}, "replace", "s-2"),
        ("PATCH", "/api/notes/s-3", {"x": None}, "patch", "s-3"),
        ("DELETE", "/api/notes/s-4", None, "delete", "s-4"),
    ],
)
def test_a_pending_command_shows_the_contract_fields(
    client: Any, method: str, path: str, body: Any, op: str, entity_id: str
) -> None:
    started = datetime.now(UTC).replace(microsecond=0)
    accepted = client.open(path, method=method, json=body)
    assert accepted.status_code == 202
    response = client.get(accepted.headers["Location"])
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    status = response.get_json()
    assert set(status) >= FIELDS
    assert status["command_id"] == accepted.get_json()["command_id"]
    assert status["status"] == "pending"
    assert status["op"] == op
    assert status["collection"] == "notes"
    assert status["entity_id"] == entity_id
    assert status["attempts"] == 0
    assert started <= parse_time(status["accepted_at"]) <= datetime.now(UTC)
    assert status["finished_at"] is None
    assert status["error"] is None


def test_a_finished_command_shows_its_outcome(app: Any, client: Any) -> None:
    """The route shows what the worker wrote: here written by hand, as the worker's script does."""
    command_id = client.put("/api/notes/f-1", json={}).get_json()["command_id"]
    gw = app.extensions["gateway"]
    partition = int(command_id.split("-", 1)[0])
    finished_ms = int(time.time() * 1000)
    gw.redis.hset(
        gw.keys.command(partition, command_id),
        mapping={"st": "failed", "att": 3, "fin": finished_ms, "err": "notes/f-1 already exists"},
    )
    status = client.get(f"/api/commands/{command_id}").get_json()
    assert status["status"] == "failed"
    assert status["attempts"] == 3
    assert status["error"] == "notes/f-1 already exists"
    assert abs(parse_time(status["finished_at"]).timestamp() * 1000 - finished_ms) < 1
    assert parse_time(status["accepted_at"]) <= parse_time(status["finished_at"])


@pytest.mark.parametrize(
    "command_id",
    [
        "0-" + "0" * 32,  # well-formed, never issued
        "3-" + "f" * 32,
        "4-" + "0" * 32,  # a partition this deployment does not have (PARTITIONS=4)
        "9999-" + "0" * 32,
        "nope",
        "0-" + "0" * 31,
        "0-" + "G" * 32,
        "-1-" + "0" * 32,
        "x" * 300,
    ],
)
def test_unknown_or_malformed_ids_are_404(client: Any, redis_keys: Any, command_id: str) -> None:
    problem = assert_problem(client.get(f"/api/commands/{command_id}"), 404)
    assert problem["type"] != "about:blank"
    assert redis_keys.all() == set()


def test_an_issued_id_is_found_and_a_neighbour_is_not(client: Any) -> None:
    command_id = client.post("/api/notes", json={}).get_json()["command_id"]
    assert client.get(f"/api/commands/{command_id}").status_code == 200
    partition, _, hex_part = command_id.partition("-")
    neighbour = f"{partition}-{hex_part[:-1]}{'0' if hex_part[-1] != '0' else '1'}"
    assert_problem(client.get(f"/api/commands/{neighbour}"), 404)


def test_another_users_command_is_404(jwt_client: Any) -> None:
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    response = jwt_client.post("/api/notes", json={"secret": "alice's"}, headers=alice)
    status_url = response.get_json()["status_url"]

    assert jwt_client.get(status_url, headers=alice).status_code == 200
    problem = assert_problem(jwt_client.get(status_url, headers=bob), 404)
    assert "alice" not in problem["detail"]
    # Indistinguishable from an id that does not exist.
    unknown = assert_problem(jwt_client.get("/api/commands/0-" + "0" * 32, headers=bob), 404)
    assert problem["type"] == unknown["type"] and problem["title"] == unknown["title"]
    assert_problem(jwt_client.get(status_url), 401)


def test_a_finished_and_expired_record_is_404(app: Any, client: Any) -> None:
    command_id = client.delete("/api/notes/gone").get_json()["command_id"]
    gw = app.extensions["gateway"]
    gw.redis.delete(gw.keys.command(int(command_id.split("-", 1)[0]), command_id))
    assert_problem(client.get(f"/api/commands/{command_id}"), 404)

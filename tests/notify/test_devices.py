"""`POST /api/devices` and `DELETE /api/devices/<token>`: the devices push notifications go to."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.device_registry import MAX_DEVICES_PER_USER, DeviceRegistry
from tests.support.api import assert_problem, bearer, token

pytestmark = pytest.mark.integration

FCM_TOKEN = "dGVzdC1kZXZpY2U:APA91bH-example_token-0123456789"  # the shape of an FCM token


@pytest.fixture
def client(live_app: Any) -> Any:
    return live_app.test_client()


@pytest.fixture
def registry(live_app: Any) -> DeviceRegistry:
    gw = live_app.extensions["gateway"]
    return DeviceRegistry(gw.redis, gw.keys)


def register(client: Any, user: str, device: str) -> Any:
    return client.post("/api/devices", json={"token": device}, headers=bearer(token(user)))


def test_a_device_is_registered_once_and_dropped(client: Any, registry: DeviceRegistry) -> None:
    first = register(client, "alice", FCM_TOKEN)
    assert first.status_code == 201
    assert first.json == {"token": FCM_TOKEN}
    assert first.headers["Location"] == f"/api/devices/{FCM_TOKEN}"
    assert register(client, "alice", FCM_TOKEN).status_code == 200  # again: refreshed, not added
    assert registry.tokens("alice") == [FCM_TOKEN]

    dropped = client.delete(f"/api/devices/{FCM_TOKEN}", headers=bearer(token("alice")))
    assert dropped.status_code == 204
    assert registry.tokens("alice") == []
    assert_problem(client.delete(f"/api/devices/{FCM_TOKEN}", headers=bearer(token("alice"))), 404)


def test_a_user_cannot_drop_another_users_device(client: Any, registry: DeviceRegistry) -> None:
    register(client, "alice", FCM_TOKEN)
    assert_problem(client.delete(f"/api/devices/{FCM_TOKEN}", headers=bearer(token("bob"))), 404)
    assert registry.tokens("alice") == [FCM_TOKEN]


def test_a_device_registered_by_another_user_leaves_its_former_owner(
    client: Any, registry: DeviceRegistry
) -> None:
    register(client, "alice", FCM_TOKEN)
    assert register(client, "bob", FCM_TOKEN).status_code == 201
    assert registry.tokens("alice") == []  # alice's events no longer reach bob's phone
    assert registry.tokens("bob") == [FCM_TOKEN]
    assert_problem(client.delete(f"/api/devices/{FCM_TOKEN}", headers=bearer(token("alice"))), 404)


def test_a_user_keeps_the_newest_devices(client: Any, registry: DeviceRegistry) -> None:
    for i in range(MAX_DEVICES_PER_USER + 3):
        assert register(client, "alice", f"device-{i}").status_code == 201
    kept = registry.tokens("alice")
    assert len(kept) == MAX_DEVICES_PER_USER
    assert "device-0" not in kept and f"device-{MAX_DEVICES_PER_USER + 2}" == kept[0]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"token": ""}, 422),
        ({"token": 42}, 422),
        ({"token": "has/slash"}, 422),
        ({"token": "has space"}, 422),
        ({"token": "x" * 4097}, 422),
        ([FCM_TOKEN], 422),
    ],
)
def test_a_malformed_registration_is_refused(client: Any, body: Any, status: int) -> None:
    response = client.post("/api/devices", json=body, headers=bearer(token("alice")))
    assert_problem(response, status)


def test_registration_needs_json_and_a_token(client: Any, registry: DeviceRegistry) -> None:
    as_text = client.post("/api/devices", data=FCM_TOKEN, headers=bearer(token("alice")))
    assert_problem(as_text, 415)
    assert_problem(client.post("/api/devices", json={"token": FCM_TOKEN}), 401)
    assert_problem(client.delete(f"/api/devices/{FCM_TOKEN}"), 401)
    assert registry.tokens("alice") == []


def test_trimmed_tokens_leave_no_owner_key_behind(registry: DeviceRegistry, live_app: Any) -> None:
    gw = live_app.extensions["gateway"]
    devices = [f"{FCM_TOKEN}-{i}" for i in range(MAX_DEVICES_PER_USER + 3)]
    for device in devices:
        registry.register("alice", device)
    assert len(registry.tokens("alice")) == MAX_DEVICES_PER_USER
    owners = [gw.redis.get(gw.keys.device_owner(d)) for d in devices]
    assert owners == [None] * 3 + ["alice"] * MAX_DEVICES_PER_USER  # the oldest three went whole


def test_a_trimmed_token_that_moved_to_another_user_keeps_its_owner(
    registry: DeviceRegistry, live_app: Any
) -> None:
    gw = live_app.extensions["gateway"]
    registry.register("alice", "shared-device")
    registry.register("bob", "shared-device")
    for i in range(MAX_DEVICES_PER_USER + 1):
        registry.register("alice", f"alices-{i}")
    assert gw.redis.get(gw.keys.device_owner("shared-device")) == "bob"


def test_device_calls_are_rate_limited(client: Any) -> None:
    answers = [register(client, "mallory", f"{FCM_TOKEN}-{i}").status_code for i in range(31)]
    assert answers[:30] == [201] * 30
    refused = register(client, "mallory", "one-more")
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert register(client, "alice", FCM_TOKEN).status_code == 201  # another user is not held back

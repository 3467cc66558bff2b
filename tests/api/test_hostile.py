"""Issue 14's attacks, each replayed by one user with a valid token against the real app, Redis
and a real worker process: each one meets its bound (an answer, Redis memory, CPU time), and a
legitimate user's commands keep being applied meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app import create_app
from gateway.device_registry import MAX_DEVICES_PER_USER
from tests.support.api import SECRET, assert_problem, bearer, token
from tests.support.services import wait_until

pytestmark = pytest.mark.integration

BOUNDS = {
    "max_pending_per_user": "20",
    "max_backlog": "60",
    "max_dead_letters": "8",  # 2 a partition
    "max_dead_letter_payload_bytes": "1024",
    "status_records_per_user": "25",
    "rate_limit_writes": "",
}


@pytest.fixture(autouse=True)
def users(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh tokens for each test (they live a minute)."""
    monkeypatch.setitem(globals(), "MALLORY", bearer(token("mallory")))
    monkeypatch.setitem(globals(), "ALICE", bearer(token("alice")))


MALLORY: dict[str, str] = {}
ALICE: dict[str, str] = {}


@pytest.fixture
def hostile(settings_env: dict[str, str]) -> Iterator[Any]:
    """The app with small bounds, so that a test reaches them quickly."""
    app = create_app({k.lower(): v for k, v in settings_env.items()} | BOUNDS | {"jwt_secret": SECRET})
    yield app
    app.extensions["gateway"].close()


@pytest.fixture
def worker(start_worker: Callable[..., Any]) -> Callable[[], Any]:
    """Start a real worker with the same bounds."""
    return lambda: start_worker(JWT_SECRET=SECRET, **{k.upper(): v for k, v in BOUNDS.items()})


def statuses(client: Any, headers: dict[str, str], command_ids: list[str]) -> list[str]:
    """Each command's status; "gone" for a finished one whose record was trimmed (404)."""
    answers = [client.get(f"/api/commands/{c}", headers=headers) for c in command_ids]
    return [a.json["status"] if a.status_code == 200 else "gone" for a in answers]


def applied(client: Any, headers: dict[str, str], command_ids: list[str]) -> bool:
    return all(s == "applied" for s in statuses(client, headers, command_ids))


def write(client: Any, headers: dict[str, str], path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body, headers=headers)


def test_a_user_with_too_many_unfinished_commands_gets_429_and_others_go_on(
    hostile: Any, worker: Callable[[], Any]
) -> None:
    client = hostile.test_client()
    answers = [write(client, MALLORY, "/api/notes", {"n": i}).status_code for i in range(25)]
    assert answers == [202] * 20 + [429] * 5  # no worker yet: all 20 stay unfinished
    refused = write(client, MALLORY, "/api/notes", {"n": 99})
    assert assert_problem(refused, 429)["type"] == "/problems/too-many-pending"
    assert refused.headers["Retry-After"] == "1"
    mine = [write(client, ALICE, "/api/notes", {"n": i}).json["command_id"] for i in range(5)]
    worker()
    wait_until(lambda: applied(client, ALICE, mine), 30, "alice's commands")
    wait_until(lambda: write(client, MALLORY, "/api/notes", {}).status_code == 202, 30, "mallory's quota")


def test_a_backlog_past_max_backlog_is_503_and_nothing_accepted_is_lost(
    hostile: Any, worker: Callable[[], Any]
) -> None:
    client = hostile.test_client()
    accepted = []
    for i in range(4):  # 4 users x 15: the backlog of 60, none past their own quota
        user = bearer(token(f"user{i}"))
        accepted += [
            (user, write(client, user, "/api/notes", {"n": n}).json["command_id"]) for n in range(15)
        ]
    full = write(client, ALICE, "/api/notes", {"n": 1})
    assert assert_problem(full, 503)["type"] == "/problems/backlog-full"
    assert int(full.headers["Retry-After"]) >= 1
    worker()
    wait_until(lambda: all(applied(client, u, [c]) for u, c in accepted), 60, "the backlog")
    assert write(client, ALICE, "/api/notes", {"n": 2}).status_code == 202


def test_failing_writes_with_large_payloads_keep_dead_letters_bounded(
    hostile: Any, worker: Callable[[], Any]
) -> None:
    client = hostile.test_client()
    gw = hostile.extensions["gateway"]
    worker()
    first = write(client, MALLORY, "/api/notes", {"id": "taken"}).json["command_id"]
    wait_until(lambda: applied(client, MALLORY, [first]), 30, "the first create")
    big = {"id": "taken", "blob": "x" * 200_000}
    failing, mine = [], []
    for round_ in range(4):
        for _ in range(10):  # creates of an existing id: each fails and is dead-lettered
            answer = write(client, MALLORY, "/api/notes", big)
            if answer.status_code == 202:
                failing.append(answer.json["command_id"])
        mine.append(write(client, ALICE, "/api/notes", {"round": round_}).json["command_id"])
        time.sleep(0.2)
    wait_until(lambda: applied(client, ALICE, mine), 30, "alice's commands beside the attack")
    wait_until(
        lambda: all(s in ("failed", "gone") for s in statuses(client, MALLORY, failing)),
        60,
        "the failing creates",
    )
    dead = [gw.keys.dead(p) for p in range(gw.settings.partitions)]
    assert sum(gw.redis.xlen(key) for key in dead) <= 8
    dead_bytes = sum(gw.redis.memory_usage(key) or 0 for key in dead)
    assert dead_bytes < 64 * 1024  # 40 x 200 KB refused payloads: kept as digests, a few KB
    trimmed = sum(int(gw.redis.get(gw.keys.dead_trimmed(p)) or 0) for p in range(gw.settings.partitions))
    assert trimmed == len(failing) - sum(gw.redis.xlen(key) for key in dead)
    records = list(gw.redis.scan_iter(match=f"{{{gw.keys.prefix}:*:cmd:*", count=1000))
    assert len(records) <= 25 + len(mine)  # STATUS_RECORDS_PER_USER for mallory, alice's own


def test_a_body_of_many_small_arrays_costs_little_cpu(hostile: Any) -> None:
    client = hostile.test_client()
    body = b'{"a":[' + b",".join([b"[]"] * 300_000) + b"]}"  # ~900 KB of empty arrays
    assert len(body) < hostile.extensions["gateway"].settings.max_body_bytes
    started = time.process_time()
    answer = client.post("/api/notes", data=body, headers={**ALICE, "Content-Type": "application/json"})
    spent = time.process_time() - started
    assert assert_problem(answer, 422)["type"] == "/problems/too-many-members"
    assert spent < 0.25, f"{spent:.3f} s of CPU for one body"


def test_a_collection_the_database_cannot_create_is_refused_at_accept(hostile: Any) -> None:
    client = hostile.test_client()
    gw = hostile.extensions["gateway"]
    before = gw.redis.dbsize()
    assert_problem(write(client, MALLORY, "/api/sqlite_stat1", {"a": 1}), 422)
    assert gw.redis.dbsize() == before  # nothing accepted, nothing written


def test_device_churn_is_rate_limited_and_leaves_bounded_keys(hostile: Any) -> None:
    client = hostile.test_client()
    gw = hostile.extensions["gateway"]
    answers = [
        write(client, MALLORY, "/api/devices", {"token": f"device-{i}"}).status_code for i in range(40)
    ]
    assert answers.count(429) == 10
    assert write(client, ALICE, "/api/devices", {"token": "alices-phone"}).status_code == 201
    owners = list(gw.redis.scan_iter(match=f"{gw.keys.prefix}:device:*", count=1000))
    assert len(owners) == MAX_DEVICES_PER_USER + 1  # mallory's newest 20 and alice's one

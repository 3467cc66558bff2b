"""The command pipeline end to end: real Redis, real databases, real worker processes.

Each test accepts commands over HTTP, lets `python -m workers` processes apply them, and checks
the committed rows, the command statuses and what is left in Redis.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import sqlalchemy as sa

from app import create_app
from gateway.ids import partition_of
from gateway.keys import GROUP
from tests.support.services import wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

FAULTY = "tests.plugins.faulty_store"


@pytest.fixture
def make_client(settings_env: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """A test client of an app with this test's settings plus overrides (lower-case names)."""
    apps = []

    def make(**overrides: str) -> Any:
        config = {k.lower(): v for k, v in settings_env.items()} | overrides
        application = create_app(config)
        apps.append(application)
        return application.test_client()

    yield make
    for application in apps:
        application.extensions["gateway"].close()


def accept(client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> str:
    response = client.open(path, method=method, json=body)
    assert response.status_code == 202, response.json
    return response.json["command_id"]


def status(client: Any, command_id: str) -> dict[str, Any]:
    return client.get(f"/api/commands/{command_id}").json


def wait_finished(client: Any, command_ids: list[str], timeout: float = 60) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        found = [status(client, c) for c in command_ids]
        return found if all(s["status"] != "pending" for s in found) else None

    return wait_until(finished, timeout, f"{len(command_ids)} commands to finish")


def backlog(client: Any) -> dict[str, int]:
    """Entries left in the streams and in the consumer groups' pending lists."""
    gw = client.application.extensions["gateway"]
    entries = pending = 0
    for partition in range(gw.settings.partitions):
        stream = gw.keys.stream(partition)
        entries += gw.redis.xlen(stream)
        if entries:
            pending += gw.redis.xpending(stream, GROUP)["pending"]
    return {"entries": entries, "pending": pending}


def same_partition_ids(collection: str, count: int, partitions: int = 4) -> list[str]:
    """Entity ids that all land in one partition, so they share a stream and its batches."""
    found = [f"e{i}" for i in range(1000) if partition_of(collection, f"e{i}", partitions) == 0]
    return found[:count]


def test_commands_are_applied_and_leave_nothing_behind(make_client: Any, start_worker: Any) -> None:
    client = make_client()
    start_worker()
    ids = [
        accept(client, "POST", "/api/notes", {"id": "n1", "text": "hello", "tags": ["a"]}),
        accept(client, "PUT", "/api/notes/n2", {"text": "second"}),
        accept(client, "PATCH", "/api/notes/n1", {"text": "hello again", "tags": None, "meta": {"x": 1}}),
        accept(client, "POST", "/api/notes", {"id": "n3", "text": "gone soon"}),
        accept(client, "DELETE", "/api/notes/n3"),
    ]
    statuses = wait_finished(client, ids)

    assert [(s["status"], s["attempts"]) for s in statuses] == [("applied", 1)] * 5
    assert all(s["finished_at"] and s["error"] is None for s in statuses)
    assert client.get("/api/notes/n1").json == {"id": "n1", "text": "hello again", "meta": {"x": 1}}
    assert client.get("/api/notes/n2").json == {"id": "n2", "text": "second"}
    assert client.get("/api/notes/n3").status_code == 404
    assert backlog(client) == {"entries": 0, "pending": 0}
    gw = client.application.extensions["gateway"]
    records = [gw.redis.hgetall(gw.keys.command(int(c.split("-")[0]), c)) for c in ids]
    assert all(
        "pl" not in r and gw.redis.ttl(gw.keys.command(int(c.split("-")[0]), c)) > 0
        for r, c in zip(records, ids, strict=False)
    )
    user_log = gw.redis.xrange(gw.keys.events("dev"))
    events = [orjson.loads(f["e"]) for _, f in user_log]
    outbox = [(f["u"], f["i"], f["e"]) for _, f in gw.redis.xrange(gw.keys.outbox())]
    assert outbox == [("dev", event_id, f["e"]) for event_id, f in user_log]
    # one event per command; across entities (partitions) they come in the order they finished
    assert sorted((e["command_id"], e["type"]) for e in events) == sorted((c, "command.applied") for c in ids)


def test_a_rejected_command_fails_alone(make_client: Any, start_worker: Any) -> None:
    client = make_client()
    start_worker()
    ids = [
        accept(client, "POST", "/api/items", {"id": "i1", "v": 1}),
        accept(client, "POST", "/api/items", {"id": "i1", "v": 2}),  # the entity exists by then
        accept(client, "PATCH", "/api/items/i1", {"w": 3}),
        accept(client, "PATCH", "/api/items/missing", {"w": 3}),
    ]
    first, duplicate, patch, orphan_patch = wait_finished(client, ids)

    assert (first["status"], patch["status"]) == ("applied", "applied")
    assert duplicate["status"] == "failed" and "already exists" in duplicate["error"]
    assert orphan_patch["status"] == "failed" and "does not exist" in orphan_patch["error"]
    assert client.get("/api/items/i1").json == {"id": "i1", "v": 1, "w": 3}


def test_patches_to_one_entity_apply_in_acceptance_order_with_workers_and_retries(
    make_client: Any, start_worker: Any, postgres_url: str
) -> None:
    env = {"DATABASE_URL": postgres_url, "PLUGINS": FAULTY, "DEFAULT_STORE": "flaky"}
    client = make_client(**{k.lower(): v for k, v in env.items()})
    faults = {
        "FLAKY_RATE": "0.3",
        "MAX_ATTEMPTS": "100",
        "RETRY_BASE_SECONDS": "0.02",
        "RETRY_MAX_SECONDS": "0.1",
        "BATCH_SIZE": "7",
    }
    for _ in range(3):
        start_worker(**env, **faults)
    entities, patches = [f"o{i}" for i in range(8)], 30
    ids = [accept(client, "POST", "/api/orders", {"id": e, "k-1": -1}) for e in entities]
    for i in range(patches):
        for e in entities:
            ids.append(
                accept(client, "PATCH", f"/api/orders/{e}", {"last": i, f"k{i}": i, f"k{i - 1}": None})
            )
    statuses = wait_finished(client, ids, timeout=120)

    assert {s["status"] for s in statuses} == {"applied"}
    assert max(s["attempts"] for s in statuses) > 1, "no retry happened: the test proves nothing"
    for e in entities:  # each patch drops the previous key: any reordering leaves a stale key
        assert client.get(f"/api/orders/{e}").json == {
            "id": e,
            "last": patches - 1,
            f"k{patches - 1}": patches - 1,
        }
    assert backlog(client) == {"entries": 0, "pending": 0}


def in_transaction(engine: sa.Engine) -> bool:
    """Some session of this database holds a transaction open with nothing to do."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND state = 'idle in transaction'"
    )
    with engine.connect() as conn:
        return conn.execute(sa.text(query)).scalar_one() > 0


@pytest.mark.parametrize("moment", ["before-commit", "after-commit"])
def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    make_client: Any, start_worker: Any, postgres_url: str, moment: str
) -> None:
    env = {"DATABASE_URL": postgres_url, "PLUGINS": FAULTY, "DEFAULT_STORE": "slow"}
    client = make_client(**{k.lower(): v for k, v in env.items()})
    collection = "kill_" + moment.replace("-", "_")
    entities = same_partition_ids(collection, 40)
    ids = [accept(client, "POST", f"/api/{collection}", {"id": e, "n": i}) for i, e in enumerate(entities)]
    engine = sa.create_engine(postgres_url)

    def rows() -> int:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(collection):
                return 0
            return conn.execute(sa.text(f"SELECT count(*) FROM {collection}")).scalar_one()

    if moment == "after-commit":
        victim = start_worker(**env, SLOW_AFTER_COMMIT="60")
        wait_until(lambda: rows() == len(entities), message="the batch to commit")
    else:
        victim = start_worker(**env, SLOW_BEFORE_COMMIT="60")
        wait_until(lambda: in_transaction(engine), message="a transaction to open")
        assert rows() == 0
    assert any(status(client, c)["status"] == "pending" for c in ids)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)

    start_worker(**env, SLOW_AFTER_COMMIT="0")
    statuses = wait_finished(client, ids, timeout=60)

    # a create applied twice would fail as "already exists": every one applied once
    assert [s["status"] for s in statuses] == ["applied"] * len(ids), [s["error"] for s in statuses]
    assert rows() == len(entities)
    page = client.get(f"/api/{collection}?limit=500").json["items"]
    assert sorted((d["id"], d["n"]) for d in page) == sorted((e, i) for i, e in enumerate(entities))
    assert backlog(client) == {"entries": 0, "pending": 0}
    engine.dispose()


def test_a_store_outage_delays_commands_without_failing_them(
    make_client: Any, start_worker: Any, postgres_url: str
) -> None:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    proxied = postgres_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}")
    client = make_client(database_url=postgres_url)
    start_worker(DATABASE_URL=proxied)
    warm = accept(client, "POST", "/api/outage", {"id": "warm"})
    assert wait_finished(client, [warm])[0]["status"] == "applied"

    proxy.cut()
    ids = [accept(client, "PUT", f"/api/outage/d{i}", {"i": i}) for i in range(20)]
    time.sleep(3)  # several retry periods of the test settings
    during = [status(client, c) for c in ids]
    assert {s["status"] for s in during} == {"pending"}
    assert {s["attempts"] for s in during} == {0}, "an outage must not use up attempts"

    proxy.restore()
    statuses = wait_finished(client, ids, timeout=60)
    assert {s["status"] for s in statuses} == {"applied"}
    assert [client.get(f"/api/outage/d{i}").json["i"] for i in range(20)] == list(range(20))
    proxy.cut()


def test_a_document_postgres_refuses_fails_without_blocking_others(
    make_client: Any, start_worker: Any, postgres_url: str
) -> None:
    client = make_client(database_url=postgres_url)
    poisoned, other = same_partition_ids("docs", 2)
    ids = [
        accept(client, "POST", "/api/docs", {"id": poisoned, "text": "nul \u0000 inside"}),
        accept(client, "POST", "/api/docs", {"id": other, "text": "fine"}),
    ]
    start_worker(DATABASE_URL=postgres_url)
    poison, fine = wait_finished(client, ids)
    ids.append(accept(client, "PUT", f"/api/docs/{poisoned}", {"text": "fixed"}))
    (fixed,) = wait_finished(client, ids[2:])

    assert poison["status"] == "failed" and "refused" in poison["error"]
    assert (fine["status"], fixed["status"]) == ("applied", "applied")
    assert client.get(f"/api/docs/{poisoned}").json == {"id": poisoned, "text": "fixed"}
    gw = client.application.extensions["gateway"]
    dead = gw.redis.xrange(gw.keys.dead(0))
    assert [(f["c"], orjson.loads(f["pl"])["text"]) for _, f in dead] == [(ids[0], "nul \u0000 inside")]


def test_a_failing_command_is_retried_then_dead_lettered_and_replayable(
    make_client: Any, start_worker: Any
) -> None:
    client = make_client(plugins=FAULTY, default_store="poisonable")
    start_worker(PLUGINS=FAULTY, DEFAULT_STORE="poisonable")
    bad, good = same_partition_ids("jobs", 2)
    poison_id = accept(client, "POST", "/api/jobs", {"id": bad, "poison": True})
    good_id = accept(client, "POST", "/api/jobs", {"id": good})

    assert wait_finished(client, [good_id])[0]["status"] == "applied"
    assert status(client, poison_id)["status"] == "pending", "the good command waited for the bad one"
    poison = wait_finished(client, [poison_id])[0]
    assert poison["status"] == "failed" and poison["attempts"] == 3
    assert poison["error"] == "The store could not apply the write." and poison["error_type"] == "store_error"

    runner = client.application.test_cli_runner()
    listed = runner.invoke(args=["dead-letters", "list"])
    assert listed.exit_code == 0, listed.output + repr(listed.exception)
    letters = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert [(d["command_id"], d["entity_id"]) for d in letters] == [(poison_id, bad)]
    assert "refuses poison" in letters[0]["error"]  # the store's own text: for operators only
    replayed = runner.invoke(args=["dead-letters", "replay", letters[0]["dead_letter"]])
    new_id = replayed.output.split()[-1]
    assert replayed.exit_code == 0 and status(client, new_id)["status"] in {"pending", "failed"}
    assert runner.invoke(args=["dead-letters", "list"]).output == ""


def test_the_same_event_delivered_twice_has_one_effect(make_client: Any, start_worker: Any) -> None:
    client = make_client()
    command_id = accept(client, "POST", "/api/twice", {"id": "t1", "v": 1})
    gw = client.application.extensions["gateway"]
    partition = int(command_id.split("-")[0])
    gw.redis.xadd(gw.keys.stream(partition), {"c": command_id})  # the same command again
    start_worker()
    assert wait_finished(client, [command_id])[0]["status"] == "applied"  # not "already exists"
    wait_until(lambda: backlog(client) == {"entries": 0, "pending": 0}, message="both entries consumed")
    assert client.get("/api/twice/t1").json == {"id": "t1", "v": 1}

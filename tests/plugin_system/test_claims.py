"""The token's claims travel with each command (COMMAND_CLAIMS and the roles claim, bounded):
through the record and the real drain to a store plugin's `Command`, and through the outbox to
the notifiers' `Event`; reads hand them to the store too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.claims import MAX_CLAIMS_BYTES
from plugins.events import Event
from plugins.notifier import Notifier
from settings import load
from tests.plugins import claims_store
from tests.support.api import SECRET, RedisKeys, assert_problem, bearer, token
from workers import runtime
from workers.delivery import NotifierThread
from workers.drain import drain_partition

pytestmark = pytest.mark.integration

PRO = token("alice", plan="pro", roles=["editor"], email="alice@example.com")
FREE = token("bob", plan="free", email="bob@example.com")
ADMIN = token("root", roles=["admin"])


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    """Collection `tiers` is kept by the `plans` store, whose rule reads the `plan` claim."""
    return {
        **settings_env,
        "JWT_SECRET": SECRET,
        "PLUGINS": "tests.plugins.claims_store",
        "COLLECTION_STORES": "tiers=plans",
        "COMMAND_CLAIMS": "plan",
    }


@pytest.fixture
def rt(settings_env: dict[str, str]) -> Iterator[runtime.Runtime]:
    """A worker runtime of this test's settings, installed for the drain job to find."""
    instance = runtime.Runtime(load(**{k.lower(): v for k, v in settings_env.items()}))
    runtime.install(instance)
    instance.gw.ensure_groups()
    claims_store.SEEN.clear()
    yield instance
    runtime.install(None)
    instance.close()


class ListNotifier(Notifier):
    name = "claims-list"

    def __init__(self) -> None:
        self.events: list[Event] = []

    def notify(self, events: Any) -> None:
        self.events += events


def write(client: Any, who: str, entity_id: str, request_id: str) -> str:
    headers = {**bearer(who), "X-Request-ID": request_id}
    response = client.put(f"/api/tiers/{entity_id}", json={"v": 1}, headers=headers)
    assert response.status_code == 202, response.json
    return str(response.json["command_id"])


def drain_all(rt: runtime.Runtime) -> None:
    for partition in range(rt.gw.settings.partitions):
        drain_partition(partition)


def test_a_store_rule_decides_on_a_claim_carried_through_the_worker(rt: runtime.Runtime, client: Any) -> None:
    notifier = ListNotifier()
    thread = NotifierThread(rt, notifier)
    thread.ensure_group()  # from the outbox's end: only this test's events
    pro, free, admin = (
        write(client, PRO, "a", "r-pro"),
        write(client, FREE, "b", "r-free"),
        write(client, ADMIN, "c", "r-op"),
    )

    drain_all(rt)

    statuses = [
        client.get(f"/api/commands/{c}", headers=bearer(who)).json
        for c, who in ((pro, PRO), (free, FREE), (admin, ADMIN))
    ]
    assert [(s["status"], s["error_type"]) for s in statuses] == [
        ("applied", None),
        ("failed", "forbidden"),
        ("applied", None),
    ]
    seen = {s["command_id"]: s for s in claims_store.SEEN}
    # Only the named claims and the roles claim travel: not `email`, `sub` or `exp`.
    assert seen[pro]["claims"] == {"plan": "pro", "roles": ["editor"]}
    assert seen[free]["claims"] == {"plan": "free"}
    assert (seen[admin]["claims"], seen[admin]["operator"]) == ({"roles": ["admin"]}, True)

    while thread.step():
        pass
    thread.redis.close()
    context = {e.command_id: (dict(e.claims), e.request_id) for e in notifier.events}
    assert context[pro] == ({"plan": "pro", "roles": ["editor"]}, "r-pro")
    assert context[free] == ({"plan": "free"}, "r-free")
    assert all("claims" not in e.as_dict() for e in notifier.events)  # never sent to users


def test_a_replayed_dead_letter_carries_the_claims_it_first_had(rt: runtime.Runtime, client: Any) -> None:
    free = write(client, FREE, "b", "r-free")
    drain_all(rt)
    [letter] = client.get("/admin/api/dead-letters", headers=bearer(ADMIN)).json["dead_letters"]
    assert (letter["command_id"], letter["claims"]) == (free, {"plan": "free"})
    replayed = client.post(
        "/admin/api/dead-letters/replay", json={"dead_letter": letter["dead_letter"]}, headers=bearer(ADMIN)
    )
    assert replayed.status_code == 200, replayed.json
    claims_store.SEEN.clear()
    drain_all(rt)
    assert [s["claims"] for s in claims_store.SEEN] == [{"plan": "free"}]


def test_claims_too_large_to_carry_are_refused_and_leave_nothing(
    client: Any, redis_url: str, prefix: str
) -> None:
    keys = RedisKeys(redis_url, prefix)
    before = keys.all()
    huge = token("carol", plan="p" * MAX_CLAIMS_BYTES)
    problem = assert_problem(client.put("/api/tiers/x", json={"v": 1}, headers=bearer(huge)), 431)
    assert problem["type"].endswith("/claims-too-large")
    assert keys.all() == before
    keys.close()

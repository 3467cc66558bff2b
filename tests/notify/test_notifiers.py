"""Notifier plugins: the worker hands every finished command's event to each one, at least once,
through a consumer group per notifier on the outbox."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
import redis

from plugins.notifier import Event, Notifier
from settings import Settings, load
from tests.support.api import bearer, token
from tests.support.notify import log_event
from tests.support.services import wait_until
from workers import delivery
from workers.delivery import GROUP_PREFIX, NotifierThread
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

RECORDING = "tests.plugins.recording_notifier"


class ListNotifier(Notifier):
    """Keeps what it is handed; fails the first `failures` calls."""

    name = "list"

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[Event]] = []
        self.failures = failures

    def notify(self, events: Sequence[Event]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("list notifier: injected failure")
        self.batches.append(list(events))

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return load(**{k.lower(): v for k, v in settings_env.items()})


@pytest.fixture
def make_runtime(settings: Settings) -> Iterator[Any]:
    made: list[Runtime] = []

    def make() -> Runtime:
        made.append(Runtime(settings))
        return made[-1]

    yield make
    for rt in made:
        rt.close()


def outbox_events(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    outbox = f"{settings.key_prefix}:outbox"
    return [{"user": f["u"], **orjson.loads(f["e"]), "id": f["i"]} for _, f in client.xrange(outbox)]


def test_the_worker_hands_each_event_to_a_notifier_plugin_once_across_workers(
    live_app: Any, start_worker: Any, settings: Settings
) -> None:
    env = {"PLUGINS": RECORDING, "RECORDING_FAIL_FIRST": "1"}
    start_worker(**env)
    start_worker(**env)
    gw = live_app.extensions["gateway"]
    group = GROUP_PREFIX + "recording"

    def group_ready() -> bool:
        try:
            return any(g["name"] == group for g in gw.redis.xinfo_groups(gw.keys.outbox()))
        except redis.ResponseError:
            return False

    wait_until(group_ready, 20, "the notifier's consumer group")
    client = live_app.test_client()
    for i in range(12):
        user = "alice" if i % 3 else "bob"
        response = client.put(f"/api/notes/r{i}", json={"i": i}, headers=bearer(token(user)))
        assert response.status_code == 202

    recorded_key = f"{settings.key_prefix}:recorded"
    wait_until(lambda: gw.redis.llen(recorded_key) >= 12, 20, "12 events recorded")
    recorded = [orjson.loads(item) for item in gw.redis.lrange(recorded_key, 0, -1)]
    assert sorted(recorded, key=lambda e: e["command_id"]) == sorted(
        outbox_events(gw.redis, settings), key=lambda e: e["command_id"]
    )  # each event once, with its owner, although each worker's first batch failed
    assert len({(e["user"], e["id"]) for e in recorded}) == 12
    assert gw.redis.xpending(gw.keys.outbox(), group)["pending"] == 0


def test_a_failing_batch_is_handed_on_again_then_dropped_after_its_attempts(
    live_app: Any, make_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "BACKOFF_SECONDS", (0, 0, 0, 0))
    notifier = ListNotifier(failures=2)
    thread = NotifierThread(make_runtime(), notifier)
    thread.ensure_group()
    first = log_event(live_app, "alice", "c1")
    assert [thread.step() for _ in range(3)] == [0, 0, 1]  # handed on at the third attempt

    notifier.failures = delivery.ATTEMPTS
    log_event(live_app, "alice", "c2")
    assert [thread.step() for _ in range(delivery.ATTEMPTS)] == [0] * delivery.ATTEMPTS
    third = log_event(live_app, "alice", "c3")
    assert thread.step() == 1
    assert [e.id for e in notifier.events] == [first, third]  # the dropped batch does not come back
    thread.redis.close()


def test_an_outbox_entry_that_is_no_event_is_skipped(live_app: Any, make_runtime: Any) -> None:
    notifier = ListNotifier()
    thread = NotifierThread(make_runtime(), notifier)
    thread.ensure_group()
    gw = live_app.extensions["gateway"]
    gw.redis.xadd(gw.keys.outbox(), {"u": "alice", "i": "1-0", "e": "{not json"})
    good = log_event(live_app, "alice", "c1")
    assert thread.step() == 1
    assert [e.id for e in notifier.events] == [good]
    assert gw.redis.xpending(gw.keys.outbox(), thread.group)["pending"] == 0
    thread.redis.close()


def test_a_batch_held_by_a_dead_worker_is_claimed_by_another(
    live_app: Any, make_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "CLAIM_IDLE_MS", 0)
    dead, alive = make_runtime(), make_runtime()
    alive.name = "alive-worker"
    held = ListNotifier()
    dying = NotifierThread(dead, held)
    dying.ensure_group()
    event_id = log_event(live_app, "alice", "c1")
    assert [entry_id for entry_id, _ in dying.read_new()] != []  # read, never acknowledged: it died

    rescuer = ListNotifier()
    thread = NotifierThread(alive, rescuer)
    assert thread.step() == 1
    assert [e.id for e in rescuer.events] == [event_id]
    assert [e.user for e in rescuer.events] == ["alice"]
    dying.redis.close()
    thread.redis.close()

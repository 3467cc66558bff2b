"""The drain job in-process against the real Redis: how one job serves several partitions and
what happens when draining one of them fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from gateway.ids import partition_of
from gateway.redis_client import RoundTrip
from plugins.store import Rejected
from settings import load
from workers import outcome, runtime
from workers.drain import DrainJob, drain_partition
from workers.outcome import Outcomes
from workers.stream import PartitionStream

pytestmark = pytest.mark.integration


@pytest.fixture
def rt(settings_env: dict[str, str]) -> Iterator[runtime.Runtime]:
    """A worker runtime of this test's settings, installed for the drain job to find."""
    instance = runtime.Runtime(load(**{k.lower(): v for k, v in settings_env.items()}))
    runtime.install(instance)
    instance.gw.ensure_groups()
    yield instance
    runtime.install(None)
    instance.close()


def entity_in(collection: str, partition: int, partitions: int = 4) -> str:
    return next(f"e{i}" for i in range(1000) if partition_of(collection, f"e{i}", partitions) == partition)


def accept_in(client: Any, partition: int) -> str:
    entity = entity_in("things", partition)
    return client.put(f"/api/things/{entity}", json={"p": partition}).json["command_id"]


def test_one_job_drains_every_partition_with_due_work(rt: runtime.Runtime, client: Any) -> None:
    ids = [accept_in(client, p) for p in range(4)]
    summary = drain_partition(2)
    assert [client.get(f"/api/commands/{c}").json["status"] for c in ids] == ["applied"] * 4
    assert summary.startswith("partition 2:")  # its own partition first, then the others
    assert summary.count("applied 1") == 4


def test_a_partition_that_cannot_be_drained_is_paused_and_the_others_go_on(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, fine = accept_in(client, 0), accept_in(client, 1)
    gw = rt.gw
    # A pause long enough to be seen after the job drained the other partitions, however slowly.
    monkeypatch.setattr(outcome, "MAX_PAUSE_MS", 600_000)
    monkeypatch.setattr(gw, "settings", gw.settings.model_copy(update={"retry_base_seconds": 600}))
    gw.redis.hset(gw.keys.command(0, broken), "pl", "{not json")  # a record damaged in Redis

    summary = drain_partition(0)

    assert "partition 0: JSONDecodeError" in summary
    assert client.get(f"/api/commands/{fine}").json["status"] == "applied"
    assert client.get(f"/api/commands/{broken}").json["status"] == "pending"  # kept, not lost
    assert gw.redis.pttl(gw.keys.pause(0)) > 0
    assert gw.redis.exists(gw.keys.lease(0)) == 0
    assert not rt.due([0]), "a paused partition is not drained again before its pause ends"


def test_a_worker_that_lost_its_lease_reads_no_new_entries(rt: runtime.Runtime, client: Any) -> None:
    command_id = accept_in(client, 3)
    lease = rt.leases.acquire(3)
    assert lease is not None
    rt.gw.redis.set(rt.gw.keys.lease(3), "99:another-worker")  # taken over meanwhile
    stream = PartitionStream(rt.gw, rt.name, lease)

    trip = RoundTrip(rt.gw.redis)  # a pass's reads, as the drain job sends them
    stream.queue_read(trip, 10)
    assert stream.take_read(*trip.send(), 10) == []
    assert lease.lost.is_set()
    assert rt.gw.redis.xpending(rt.gw.keys.stream(3), "appliers")["pending"] == 0  # left for the holder
    rt.gw.redis.delete(rt.gw.keys.lease(3))
    drain_partition(3)
    assert client.get(f"/api/commands/{command_id}").json["status"] == "applied"


def test_the_partitions_of_a_job_share_one_store_transaction(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [accept_in(client, p) for p in range(4)]
    store = rt.gw.stores.for_collection("things")
    batches: list[list[str]] = []
    real = store.apply
    monkeypatch.setattr(
        store, "apply", lambda commands: batches.append([c.command_id for c in commands]) or real(commands)
    )
    drain_partition(1)
    assert [sorted(batch) for batch in batches] == [sorted(ids)]  # 4 partitions, one transaction
    assert [client.get(f"/api/commands/{c}").json["status"] for c in ids] == ["applied"] * 4


def test_a_job_takes_its_share_of_the_partitions_and_hands_on_the_rest(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two workers listening, a job drains half of the due partitions and queues jobs for
    the others, which the other worker can take meanwhile."""
    ids = {p: accept_in(client, p) for p in range(4)}
    monkeypatch.setattr(rt, "live_workers", lambda: 2)
    queued: list[int] = []
    monkeypatch.setattr(rt, "enqueue_drain", queued.append)
    summary = drain_partition(0)
    drained = [p for p in range(4) if f"partition {p}: applied 1" in summary]
    assert len(drained) == 2 and drained[0] == 0
    assert sorted(queued) == sorted(set(range(4)) - set(drained))
    statuses = {p: client.get(f"/api/commands/{c}").json["status"] for p, c in ids.items()}
    assert statuses == {p: "applied" if p in drained else "pending" for p in range(4)}


def test_a_partition_with_nothing_left_stays_with_its_job_and_gets_its_next_command_at_once(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that reaches a partition the job holds with nothing to do is applied by the
    job's next pass: it waits neither for the end of the job nor for a job of its own."""
    accept_in(client, 0)
    accept_in(client, 1)
    store = rt.gw.stores.for_collection("things")
    real = store.apply
    queued: list[int] = []
    monkeypatch.setattr(rt, "enqueue_drain", queued.append)
    passes: list[list[int]] = []

    def apply_and_send_more(commands: Any) -> Any:
        passes.append(sorted(partition_of(c.collection, c.entity_id, 4) for c in commands))
        if len(passes) < 3:
            accept_in(client, 1)  # partition 1 stays busy
        if len(passes) == 2:
            accept_in(client, 0)  # partition 0 had nothing in the second pass
        return real(commands)

    monkeypatch.setattr(store, "apply", apply_and_send_more)
    summary = drain_partition(0)
    assert passes[:3] == [[0, 1], [1], [0, 1]]
    assert "partition 0: applied 2" in summary and "partition 1: applied 3" in summary
    assert queued == []


def test_an_idle_job_waits_for_new_entries_then_ends(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing to read, the job blocks on its partitions' streams: a command arriving then
    is applied by the same job; with none for LINGER_SECONDS, the job ends and lets go."""
    first = accept_in(client, 0)
    late: list[str] = []
    sending: list[threading.Timer] = []  # set at once: a wait before the timer fired sends no second
    real_wait = DrainJob._wait_for_entries

    def wait_and_send_one(job: DrainJob, idle: Any, seconds: float) -> bool:
        if not sending:
            sending.append(threading.Timer(0.02, lambda: late.append(accept_in(client, 0))))
            sending[0].start()
        return real_wait(job, idle, seconds)

    monkeypatch.setattr(DrainJob, "_wait_for_entries", wait_and_send_one)
    started = time.monotonic()
    summary = drain_partition(0)
    assert summary == "partition 0: applied 2, failed 0"
    assert [client.get(f"/api/commands/{c}").json["status"] for c in [first, *late]] == ["applied"] * 2
    assert time.monotonic() - started < rt.gw.settings.drain_slice_seconds  # ended idle, before its slice
    assert rt.gw.redis.exists(rt.gw.keys.lease(0)) == 0


def test_an_idle_job_ends_at_once_when_push_jobs_wait_for_its_worker(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept_in(client, 0)
    waits: list[float] = []
    monkeypatch.setattr(DrainJob, "_wait_for_entries", lambda job, idle, seconds: waits.append(seconds))
    push = rt.push_queue.enqueue("workers.delivery.no_such_job")  # a push waits (never run here)
    try:
        assert drain_partition(0) == "partition 0: applied 1, failed 0"
    finally:
        push.delete()
    assert waits == []


def test_a_busy_job_ends_early_when_push_jobs_wait_and_queues_its_remaining_work(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept_in(client, 0)
    store = rt.gw.stores.for_collection("things")
    real = store.apply
    queued: list[int] = []
    monkeypatch.setattr(rt, "enqueue_drain", queued.append)
    pushes: list[Any] = []

    def apply_and_send_more(commands: Any) -> Any:
        accept_in(client, 0)  # partition 0 never runs dry
        if not pushes:
            pushes.append(rt.push_queue.enqueue("workers.delivery.no_such_job"))  # never run here
        return real(commands)

    monkeypatch.setattr(store, "apply", apply_and_send_more)
    started = time.monotonic()
    try:
        drain_partition(0)
    finally:
        pushes[0].delete()
    assert time.monotonic() - started < rt.gw.settings.drain_slice_seconds / 2
    assert queued == [0]  # the rest of its work: a job of its own, after the push


def test_a_busy_job_takes_up_a_partition_that_gets_work(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command reaching a partition nobody holds, while a job is busy, is applied by that job
    in a later pass: it does not wait for a job of its own."""
    accept_in(client, 0)
    store = rt.gw.stores.for_collection("things")
    real = store.apply
    late: list[str] = []
    queued: list[int] = []
    monkeypatch.setattr(rt, "enqueue_drain", queued.append)

    def apply_and_send_more(commands: Any) -> Any:
        if not late:
            late.append(accept_in(client, 2))  # a partition the job does not hold
            accept_in(client, 0)  # and more for the one it holds, so that it goes on
        return real(commands)

    monkeypatch.setattr(store, "apply", apply_and_send_more)
    summary = drain_partition(0)
    assert client.get(f"/api/commands/{late[0]}").json["status"] == "applied"
    assert "partition 2: applied 1" in summary
    assert 2 not in queued  # no job of its own was needed


def test_a_partition_that_applies_again_forgets_its_outages(rt: runtime.Runtime, client: Any) -> None:
    """The outage backoff starts over once the store commits again."""
    rt.gw.redis.set(rt.gw.keys.outages(0), 3)
    command_id = accept_in(client, 0)
    drain_partition(0)
    assert client.get(f"/api/commands/{command_id}").json["status"] == "applied"
    assert rt.gw.redis.exists(rt.gw.keys.outages(0)) == 0


def test_dead_letters_older_than_the_retention_go_when_a_new_one_comes(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = rt.gw
    day_ms = 86_400_000
    now_ms = int(time.time() * 1000)
    kept_days = gw.settings.dead_letter_days
    gw.redis.xadd(gw.keys.dead(0), {"c": "too-old"}, id=f"{now_ms - (kept_days + 1) * day_ms}-0")
    gw.redis.xadd(gw.keys.dead(0), {"c": "recent"}, id=f"{now_ms - (kept_days - 1) * day_ms}-0")
    store = rt.gw.stores.for_collection("things")
    monkeypatch.setattr(store, "apply", lambda commands: ["refused by the store"] * len(commands))
    command_id = accept_in(client, 0)

    drain_partition(0)

    assert client.get(f"/api/commands/{command_id}").json["status"] == "failed"
    assert [f["c"] for _, f in gw.redis.xrange(gw.keys.dead(0))] == ["recent", command_id]


def test_batch_wait_lets_commands_arriving_meanwhile_join_the_transaction(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With BATCH_WAIT_MS, a pass that read fewer than a batch waits that long and reads again
    before it applies: a command arriving meanwhile shares the first one's transaction."""
    monkeypatch.setattr(rt.gw, "settings", rt.gw.settings.model_copy(update={"batch_wait_ms": 500}))
    first = accept_in(client, 0)
    store = rt.gw.stores.for_collection("things")
    real = store.apply
    batches: list[list[str]] = []
    monkeypatch.setattr(
        store, "apply", lambda commands: batches.append([c.command_id for c in commands]) or real(commands)
    )
    late: list[str] = []
    threading.Timer(0.1, lambda: late.append(accept_in(client, 0))).start()
    drain_partition(0)
    assert batches[0] == [first, *late]


def test_a_refused_command_delivered_again_after_its_batch_committed_is_failed_again(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store committed the batch, then recording its outcomes failed (Redis lost): the next
    pass gets the same batch again, and the refused patch fails again as it did the first time,
    though the put after it moved its entity's ledger past it."""
    entity = entity_in("things", 0)
    patched = client.patch(f"/api/things/{entity}", json={"v": 1}).json["command_id"]  # e absent: refused
    put = client.put(f"/api/things/{entity}", json={"v": 2}).json["command_id"]
    real_finish = Outcomes._finish

    def redis_lost(outcomes: Outcomes, finished: Any, now: int) -> bool:
        raise redis.ConnectionError("Redis lost after the store committed")

    monkeypatch.setattr(Outcomes, "_finish", redis_lost)
    drain_partition(0)
    assert client.get(f"/api/commands/{patched}").json["status"] == "pending"

    monkeypatch.setattr(Outcomes, "_finish", real_finish)
    rt.gw.redis.delete(rt.gw.keys.pause(0), rt.gw.keys.lease(0))
    drain_partition(0)
    records = [client.get(f"/api/commands/{c}").json for c in (patched, put)]
    assert [r["status"] for r in records] == ["failed", "applied"]
    assert records[0]["error_type"] == "not_found"
    assert client.get(f"/api/things/{entity}").json == {"v": 2, "id": entity}


def test_the_commands_held_back_behind_a_raised_refusal_apply_in_the_same_job(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity = entity_in("things", 0)
    poisoned = client.put(f"/api/things/{entity}", json={"poison": 1}).json["command_id"]
    after = client.put(f"/api/things/{entity}", json={"v": 2}).json["command_id"]
    store = rt.gw.stores.for_collection("things")
    real = store.apply

    def refuse_poison(commands: Any) -> Any:
        if any("poison" in (c.payload or {}) for c in commands):
            raise Rejected("the database refused the document")
        return real(commands)

    monkeypatch.setattr(store, "apply", refuse_poison)
    drain_partition(0)
    assert [client.get(f"/api/commands/{c}").json["status"] for c in (poisoned, after)] == [
        "failed",
        "applied",
    ]
    assert client.get(f"/api/things/{entity}").json == {"v": 2, "id": entity}

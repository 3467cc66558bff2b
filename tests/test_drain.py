"""The drain job in-process against the real Redis: how one job serves several partitions and
what happens when draining one of them fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.ids import partition_of
from settings import load
from workers import runtime
from workers.drain import drain_partition

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
    rt: runtime.Runtime, client: Any
) -> None:
    broken, fine = accept_in(client, 0), accept_in(client, 1)
    gw = rt.gw
    gw.redis.hset(gw.keys.command(0, broken), "pl", "{not json")  # a record damaged in Redis

    summary = drain_partition(0)

    assert "partition 0: JSONDecodeError" in summary
    assert client.get(f"/api/commands/{fine}").json["status"] == "applied"
    assert client.get(f"/api/commands/{broken}").json["status"] == "pending"  # kept, not lost
    assert gw.redis.pttl(gw.keys.pause(0)) > 0
    assert gw.redis.exists(gw.keys.lease(0)) == 0
    assert not rt.due([0]), "a paused partition is not drained again before its pause ends"


def test_a_worker_that_lost_its_lease_reads_no_new_entries(rt: runtime.Runtime, client: Any) -> None:
    from workers.drain import Drainer

    command_id = accept_in(client, 3)
    lease = rt.leases.acquire(3)
    assert lease is not None
    rt.gw.redis.set(rt.gw.keys.lease(3), "99:another-worker")  # taken over meanwhile
    drainer = Drainer(rt, lease)

    assert drainer.read() == []
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


def test_a_partition_with_nothing_left_is_let_go_while_the_others_drain(
    rt: runtime.Runtime, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that reaches an idle partition must not wait for the end of a job busy with
    another one: the job gives the idle partition's lease back at once."""
    accept_in(client, 0)
    accept_in(client, 1)
    store = rt.gw.stores.for_collection("things")
    real = store.apply
    partition_0_held: list[int] = []

    def apply_and_keep_partition_1_busy(commands: Any) -> Any:
        partition_0_held.append(rt.gw.redis.exists(rt.gw.keys.lease(0)))
        if len(partition_0_held) < 4:
            accept_in(client, 1)  # more work for partition 1 only
        return real(commands)

    monkeypatch.setattr(store, "apply", apply_and_keep_partition_1_busy)
    drain_partition(0)
    assert partition_0_held[0] == 1  # the first pass applied both partitions
    assert partition_0_held[-1] == 0  # partition 0 was let go while partition 1 still drained


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

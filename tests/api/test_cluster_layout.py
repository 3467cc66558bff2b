"""What a Redis Cluster changes in the accept path (the cluster lane, GATEWAY_TEST_CLUSTER=1):
the quotas' counts and the Idempotency-Key list per partition, in its slot, the dead-letter
replay's transaction in one slot, and what is not kept on a cluster yet."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import dead_letters
from gateway.accept import idempotency_record, key_partition
from gateway.ids import partition_of
from tests.support.api import assert_problem
from tests.support.operations import DeadLetterMaker

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def test_a_commands_counts_are_in_its_partitions_slot(app: Any, client: Any) -> None:
    gw = app.extensions["gateway"]
    answer = client.put("/api/notes/a", json={"v": 1})
    assert answer.status_code == 202
    partition = int(answer.json["command_id"].split("-")[0])
    assert gw.redis.zcard(gw.keys.pending("dev", partition)) == 1
    assert gw.redis.get(gw.keys.backlog(partition)) == "1"
    assert gw.keys.pending("dev", partition).startswith(gw.keys.tag(partition))


def test_devices_are_refused_plainly_on_a_cluster(client: Any) -> None:
    assert_problem(client.post("/api/devices", json={"token": "device-1"}), 501)


def keys_in(partition: int, partitions: int, count: int) -> list[str]:
    """`count` Idempotency-Keys of the user "dev" whose record is in `partition`."""
    found = (f"k{i}" for i in range(10_000) if key_partition("dev", f"k{i}", partitions) == partition)
    return [next(found) for _ in range(count)]


@pytest.mark.parametrize("same_partition", [True, False], ids=["in-accept", "split"])
def test_a_users_key_records_are_bounded_per_partition(make_app: Any, same_partition: bool) -> None:
    """IDEMPOTENCY_KEYS_PER_USER holds on a cluster too: the user's list of key records is
    kept in the records' partition with its share of the cap, whether accept.lua checks the
    key (the command's partition) or idempotency.lua does (another partition)."""
    app = make_app(idempotency_keys_per_user="1")  # a share of 1 in each partition
    gw, client = app.extensions["gateway"], app.test_client()
    partitions = gw.settings.partitions
    command_partition = partition_of("notes", "a", partitions)
    partition = command_partition if same_partition else (command_partition + 1) % partitions
    first, second = keys_in(partition, partitions, 2)
    firsts = [
        client.put("/api/notes/a", json={"v": 1}, headers={"Idempotency-Key": key}).json["command_id"]
        for key in (first, second)
    ]
    kept = gw.keys.idempotency_keys("dev", partition)
    assert kept.startswith(gw.keys.tag(partition))
    assert gw.redis.lrange(kept, 0, -1) == [idempotency_record(gw.keys, "dev", second, partitions)]
    again = client.put("/api/notes/a", json={"v": 1}, headers={"Idempotency-Key": second})
    assert again.json["command_id"] == firsts[1], "a kept key still replays its first command"
    anew = client.put("/api/notes/a", json={"v": 1}, headers={"Idempotency-Key": first})
    assert anew.json["command_id"] != firsts[0], "a key past the bound is new again"


def test_a_dead_letter_is_replayed_in_one_transaction_in_its_partitions_slot(app: Any) -> None:
    """The replay's WATCH/MULTI names only keys of the letter's partition (its dead letters,
    the new command's record, stream, counts): one slot, so it runs on a cluster."""
    gw = app.extensions["gateway"]
    entity = "e1"
    partition = partition_of("notes", entity, gw.settings.partitions)
    name = DeadLetterMaker(gw)(partition, entity_id=entity)
    replayed = dead_letters.replay(gw, dead_letters.get(gw, name))
    assert replayed.command_id.startswith(f"{partition}-")
    assert [f["c"] for _, f in gw.redis.xrange(gw.keys.stream(partition))] == [replayed.command_id]
    with pytest.raises(dead_letters.NoSuchDeadLetter):
        dead_letters.get(gw, name)


def test_a_dead_letter_of_another_partition_than_its_command_is_not_replayed(app: Any) -> None:
    """A letter kept from before a change of PARTITIONS, whose command now goes elsewhere: its
    replay's transaction would span two slots, so it is refused and the letter kept."""
    gw = app.extensions["gateway"]
    partition = (partition_of("notes", "e1", gw.settings.partitions) + 1) % gw.settings.partitions
    name = DeadLetterMaker(gw)(partition, entity_id="e1")
    with pytest.raises(dead_letters.NotReplayed, match="PARTITIONS changed"):
        dead_letters.replay(gw, dead_letters.get(gw, name))
    assert dead_letters.get(gw, name).fields["eid"] == "e1"

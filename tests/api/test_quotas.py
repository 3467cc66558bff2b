"""Quotas and bounds kept by the accept and finish scripts: a user's unfinished commands
(MAX_PENDING_PER_USER), all unfinished commands (MAX_BACKLOG), dead letters (count and payload
bytes), a user's finished status records and Idempotency-Key records, and how their counts
heal. Unit tests on fakeredis (with lupa for Lua), through the accept and outcome stages as the
web and worker processes call them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from gateway import record, scripts
from gateway.accept import BacklogFull, Idempotency, TooManyPending, accept, idempotency_record, prepare
from gateway.context import Gateway
from gateway.ids import partition_of, seq_of
from gateway.keys import GROUP
from gateway.scripts import Scripts
from settings import load
from workers.apply import Result
from workers.lease import Lease
from workers.outcome import Outcomes
from workers.stream import Entry

PARTITIONS = 2
APPLIED, FAILED = Result("applied"), Result("failed", "refused by the store")


SMALL = {
    "max_pending_per_user": 3,
    "max_backlog": 5,
    "max_dead_letters": 4,  # 2 a partition
    "max_dead_letter_payload_bytes": 64,
    "status_records_per_user": 2,
    "idempotency_keys_per_user": 3,
}

# The counts as one Redis keeps them (per user and per deployment); a cluster's are per partition.
pytestmark = pytest.mark.one_redis


@pytest.fixture
def gw() -> Iterator[Gateway]:
    """A gateway on fakeredis with small quotas and bounds."""
    gateway = Gateway(load(key_prefix="unit", partitions=PARTITIONS, **SMALL))
    gateway.redis = fakeredis.FakeRedis(decode_responses=True)
    gateway.scripts = Scripts(gateway.redis)
    gateway.ensure_groups()
    yield gateway
    gateway.close()


@pytest.fixture
def real_gw(redis_url: str, prefix: str) -> Iterator[Gateway]:
    """The same on the real Redis (fakeredis's Lua has no redis.sha1hex)."""
    gateway = Gateway(load(redis_url=redis_url, key_prefix=prefix, partitions=PARTITIONS, **SMALL))
    gateway.ensure_groups()
    yield gateway
    gateway.close()


def write(gw: Gateway, user: str, entity_id: str, payload: dict[str, object] | None = None) -> str:
    return accept(gw, prepare(gw, user, "create", "things", entity_id, payload or {"n": 1})).command_id


def entity_ids(partition: int, count: int, start: int = 0) -> list[str]:
    every = (f"e{i}" for i in range(start, start + 10_000))
    return [e for e in every if partition_of("things", e, PARTITIONS) == partition][:count]


def finish(gw: Gateway, partition: int, results: Result | dict[str, Result]) -> None:
    """Read the partition's new entries and finish them all with `results` (one, or by command id)."""
    token = gw.scripts.run(scripts.lease_acquire(gw.keys, partition, owner="unit", ttl_ms=60_000))
    redis: Any = gw.redis  # decoded replies
    reply = redis.xreadgroup(GROUP, "unit", {gw.keys.stream(partition): ">"})
    entries = {}
    for entry_id, fields in reply[0][1] if reply else []:
        command_id = fields[record.COMMAND_ID]
        fetched = redis.hmget(gw.keys.command(partition, command_id), record.WORK_FIELDS)
        work = record.work(command_id, seq_of(entry_id), fetched)
        assert work is not None
        result = results if isinstance(results, Result) else results[command_id]
        entries[Entry(entry_id, work.command, work.user, gw.settings.max_attempts - 1)] = result
    assert Outcomes(gw, Lease(partition, token)).record(entries, waits=[])
    gw.scripts.run(scripts.lease_release(gw.keys, partition, token=token))


def test_a_user_past_max_pending_is_refused_and_writes_nothing(gw: Gateway) -> None:
    for entity_id in entity_ids(0, 3):
        write(gw, "alice", entity_id)
    keys_before = set(gw.redis.scan_iter())
    with pytest.raises(TooManyPending):
        write(gw, "alice", "another")
    assert {k for k in gw.redis.scan_iter() if k not in keys_before and ":ratelimit:" not in k} == set()
    write(gw, "bob", "bobs")  # another user is not held back


def test_finishing_frees_the_users_quota_once_even_if_finished_twice(gw: Gateway) -> None:
    for entity_id in entity_ids(0, 3):
        write(gw, "alice", entity_id)
    finish(gw, 0, APPLIED)
    assert gw.redis.zcard(gw.keys.pending("alice", 0)) == 0
    assert gw.redis.get(gw.keys.backlog(0)) == "0"
    assert gw.redis.exists(gw.keys.pending("alice", 0)) == 0  # an empty set is no key
    # A second finish of the same entries (a re-delivery) counts nothing again.
    command_ids = [write(gw, "alice", e) for e in entity_ids(0, 2, start=500)]
    token = gw.scripts.run(scripts.lease_acquire(gw.keys, 0, owner="again", ttl_ms=60_000))
    for _ in range(2):
        done = [scripts.Finished("0-0", c, "alice", "applied", "", 1) for c in command_ids]
        gw.scripts.run(
            scripts.finish(
                gw.keys,
                0,
                token=token,
                now_ms=record.now_ms(),
                record_ttl_seconds=60,
                events_per_user=10,
                outbox_length=100,
                oldest_dead_letter_ms=0,
                commands=done,
            )
        )
    assert gw.redis.get(gw.keys.backlog(0)) == "2"  # their entries are still there: not decremented
    assert gw.redis.zcard(gw.keys.pending("alice", 0)) == 0


def test_a_lost_finish_heals_at_the_limit(gw: Gateway) -> None:
    command_ids = [write(gw, "alice", e) for e in entity_ids(1, 3)]
    # Their records finished without the set hearing of it (drift, as from a lost script).
    for command_id in command_ids:
        gw.redis.hset(gw.keys.command(1, command_id), record.STATUS, record.APPLIED)
    write(gw, "alice", entity_ids(1, 1, start=700)[0])
    assert gw.redis.zcard(gw.keys.pending("alice", 0)) == 1


def test_the_backlog_refuses_with_503_until_the_workers_catch_up(gw: Gateway) -> None:
    for i, entity_id in enumerate(entity_ids(0, 5)):
        write(gw, f"user{i}", entity_id)
    with pytest.raises(BacklogFull):
        write(gw, "late", "x")
    finish(gw, 0, APPLIED)
    write(gw, "late", "x")


def test_the_backlog_counter_is_recounted_from_the_streams(gw: Gateway) -> None:
    write(gw, "alice", entity_ids(0, 1)[0])
    gw.redis.set(gw.keys.backlog(0), 5)  # drifted up (say, restored from an old snapshot)
    write(gw, "bob", entity_ids(1, 1)[0])  # at the limit: recounted, 1 unfinished, accepted
    assert gw.redis.get(gw.keys.backlog(0)) == "2"
    gw.redis.delete(gw.keys.backlog(0))  # lost: counted again from 0 = a recount
    write(gw, "carol", entity_ids(0, 1, start=800)[0])
    assert gw.redis.get(gw.keys.backlog(0)) == "3"


def test_dead_letters_keep_their_share_and_large_payloads_as_a_digest(
    real_gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = real_gw
    redis: Any = gw.redis  # decoded replies
    small, large, *rest = entity_ids(0, 4)
    write(gw, "alice", small, {"n": 1})
    write(gw, "bob", large, {"text": "x" * 500})
    finish(gw, 0, FAILED)
    letters = [fields for _, fields in redis.xrange(gw.keys.dead(0))]
    assert letters[0][record.PAYLOAD] == '{"n":1}' and record.PAYLOAD_DIGEST not in letters[0]
    assert letters[1][record.PAYLOAD] == "" and int(letters[1][record.PAYLOAD_SIZE]) > 500
    assert len(letters[1][record.PAYLOAD_DIGEST]) == 40
    with pytest.raises(record.PayloadNotKept):
        record.dead_command(letters[1])
    for entity_id in rest:
        write(gw, "carol", entity_id)
    finish(gw, 0, FAILED)
    assert gw.redis.xlen(gw.keys.dead(0)) == 2  # MAX_DEAD_LETTERS 4 over 2 partitions
    kept = [f[record.ENTITY_ID] for _, f in redis.xrange(gw.keys.dead(0))]
    assert kept == rest  # the oldest went first
    assert gw.redis.get(gw.keys.dead_trimmed(0)) == "2"
    assert "2 oldest dead letters trimmed" in caplog.text


def test_a_users_finished_records_are_bounded(gw: Gateway) -> None:
    command_ids = [write(gw, "alice", e) for e in entity_ids(0, 3)]
    finish(gw, 0, APPLIED)
    kept = [gw.redis.exists(gw.keys.command(0, c)) for c in command_ids]
    assert kept == [0, 1, 1]  # STATUS_RECORDS_PER_USER 2: the oldest is gone
    assert gw.redis.llen(gw.keys.finished("alice", 0)) == 2
    assert gw.redis.ttl(gw.keys.finished("alice", 0)) > 0


def test_a_users_idempotency_key_records_are_bounded(redis_url: str, prefix: str) -> None:
    bounds = {**SMALL, "max_pending_per_user": 100, "max_backlog": 100}
    gw = Gateway(load(redis_url=redis_url, key_prefix=prefix, partitions=PARTITIONS, **bounds))

    def keyed(user: str, key: str, entity_id: str) -> str:
        once = Idempotency(key, fingerprint=f"{key}-{entity_id}")
        return accept(gw, prepare(gw, user, "create", "things", entity_id, {"n": 1}, once)).command_id

    bob_first = keyed("bob", "k0", "b0")
    firsts = [keyed("alice", f"k{i}", f"e{i}") for i in range(5)]
    records = [idempotency_record(gw.keys, "alice", f"k{i}", PARTITIONS) for i in range(5)]
    kept = [gw.redis.exists(key) for key in records]
    assert kept == [0, 0, 1, 1, 1]  # IDEMPOTENCY_KEYS_PER_USER 3: the oldest are gone
    assert gw.redis.llen(gw.keys.idempotency_keys("alice", 0)) == 3
    assert 0 < gw.redis.ttl(gw.keys.idempotency_keys("alice", 0)) <= gw.settings.idempotency_ttl_seconds
    assert keyed("alice", "k4", "e4") == firsts[4], "a kept key still replays its first command"
    assert keyed("bob", "k0", "b0") == bob_first, "another user's keys are not counted"
    assert keyed("alice", "k0", "e0") != firsts[0], "a key past the bound is new again"
    gw.close()

"""The outcome stage (workers/outcome.py): what each result becomes (finished, retried after a
backoff, dead-lettered, or a pause that counts no attempt), first as decisions, then as the
finish and retry scripts write them. Unit tests: the scripts run on fakeredis (with lupa for
Lua), no Redis server, no store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import orjson
import pytest

from gateway import record, scripts
from gateway.accept import accept, prepare
from gateway.context import Gateway
from gateway.ids import partition_of, seq_of
from gateway.keys import GROUP
from gateway.public_errors import message
from gateway.scripts import Finished, Retry, Scripts
from gateway.stats import Totals
from plugins.store import Command
from settings import Settings, load
from workers import outcome
from workers.apply import Result
from workers.lease import Lease
from workers.outcome import Outcomes, backoff_ms, decide
from workers.stream import Entry

APPLIED, FAILED = Result("applied"), Result("failed", "refused by the store", "invalid")
PUBLIC_INVALID, PUBLIC_STORE_ERROR = message("invalid"), message("store_error")
RETRY, UNAVAILABLE = Result("retry", "RuntimeError: boom"), Result("unavailable", "StoreUnavailable: down")


@pytest.fixture
def settings() -> Settings:
    return load(key_prefix="unit", partitions=4, max_attempts=3, retry_base_seconds=0.2, retry_max_seconds=1)


def entry(seq: int, attempts: int = 0) -> Entry:
    command = Command(f"c{seq}", seq, "create", "things", f"e{seq}", {})
    return Entry(entry_id=f"{seq}-0", command=command, user="alice", attempts=attempts)


# -- decisions ---------------------------------------------------------------------------------


def test_the_backoff_doubles_from_the_base_up_to_the_cap(settings: Settings) -> None:
    assert [backoff_ms(settings, attempt) for attempt in range(1, 6)] == [200, 400, 800, 1000, 1000]


def test_applied_and_refused_commands_are_finished_with_their_attempt_counted(settings: Settings) -> None:
    decisions = decide({entry(1): APPLIED, entry(2, attempts=1): FAILED}, settings, now=1_000)
    assert decisions.finished == [
        Finished("1-0", "c1", "alice", "applied", "", 1),
        Finished("2-0", "c2", "alice", "failed", PUBLIC_INVALID, 2, "invalid", "refused by the store"),
    ]
    assert (decisions.retries, decisions.waits, decisions.outage) == ([], [], False)


def test_a_failed_attempt_with_attempts_left_is_retried_after_its_backoff(settings: Settings) -> None:
    decisions = decide({entry(1): RETRY, entry(2, attempts=1): RETRY}, settings, now=10_000)
    assert decisions.retries == [
        Retry("c1", 1, 10_200, PUBLIC_STORE_ERROR),
        Retry("c2", 2, 10_400, PUBLIC_STORE_ERROR),
    ]
    assert decisions.waits == [10_200, 10_400]
    assert decisions.finished == []


def test_the_last_attempt_fails_the_command_for_good(settings: Settings) -> None:
    decisions = decide({entry(1, attempts=2): RETRY}, settings, now=10_000)  # MAX_ATTEMPTS = 3
    assert decisions.finished == [
        Finished("1-0", "c1", "alice", "failed", PUBLIC_STORE_ERROR, 3, "store_error", RETRY.error)
    ]
    assert decisions.retries == []


def test_an_outage_counts_no_attempt(settings: Settings) -> None:
    decisions = decide({entry(1): UNAVAILABLE, entry(2, attempts=2): UNAVAILABLE}, settings, now=10_000)
    assert decisions.outage
    assert (decisions.finished, decisions.retries, decisions.waits) == ([], [], [])


# -- written by the scripts --------------------------------------------------------------------


@pytest.fixture
def gw(settings: Settings) -> Iterator[Gateway]:
    """A gateway whose Redis is fakeredis, with the consumer groups made."""
    gateway = Gateway(settings)
    gateway.redis = fakeredis.FakeRedis(decode_responses=True)
    gateway.scripts = Scripts(gateway.redis)
    gateway.ensure_groups()
    yield gateway
    gateway.close()


PARTITION = 0


def entity_ids(count: int) -> list[str]:
    """Entity ids of partition PARTITION."""
    return [f"e{i}" for i in range(1000) if partition_of("things", f"e{i}", 4) == PARTITION][:count]


@pytest.fixture
def lease(gw: Gateway) -> Lease:
    token = gw.scripts.run(scripts.lease_acquire(gw.keys, PARTITION, owner="unit", ttl_ms=60_000))
    return Lease(PARTITION, token)


def delivered(gw: Gateway, count: int, attempts: int = 0) -> list[Entry]:
    """`count` commands accepted on PARTITION and read by this consumer, as the stream stage makes them."""
    for entity_id in entity_ids(count):
        accept(gw, prepare(gw, "alice", "create", "things", entity_id, {"id": entity_id}))
    reply = gw.redis.xreadgroup(GROUP, "unit", {gw.keys.stream(PARTITION): ">"})
    entries = []
    for entry_id, fields in reply[0][1]:
        record_key = gw.keys.command(PARTITION, fields[record.COMMAND_ID])
        work = record.work(
            fields[record.COMMAND_ID], seq_of(entry_id), gw.redis.hmget(record_key, record.WORK_FIELDS)
        )
        assert work is not None
        entries.append(Entry(entry_id, work.command, work.user, attempts))
    return entries


def stored(gw: Gateway, entry: Entry) -> dict[str, Any]:
    return gw.redis.hgetall(gw.keys.command(PARTITION, entry.command.command_id))


def pending(gw: Gateway) -> int:
    return gw.redis.xpending(gw.keys.stream(PARTITION), GROUP)["pending"]


def test_finished_commands_close_their_records_tell_their_owner_and_leave_the_stream(
    gw: Gateway, lease: Lease
) -> None:
    done, refused = delivered(gw, 2)
    outcomes = Outcomes(gw, lease)
    assert outcomes.record({done: APPLIED, refused: FAILED}, waits=[])

    assert (outcomes.applied, outcomes.failed) == (1, 1)
    assert (stored(gw, done)[record.STATUS], stored(gw, refused)[record.STATUS]) == ("applied", "failed")
    assert stored(gw, refused)[record.ERROR] == PUBLIC_INVALID  # never the store's own text
    assert stored(gw, refused)[record.ERROR_TYPE] == "invalid"
    assert all(
        record.PAYLOAD not in stored(gw, e) and stored(gw, e)[record.ATTEMPTS] == "1" for e in (done, refused)
    )
    assert gw.redis.xlen(gw.keys.stream(PARTITION)) == 0 and pending(gw) == 0
    [(_, dead)] = gw.redis.xrange(gw.keys.dead(PARTITION))
    assert (dead[record.COMMAND_ID], dead[record.ERROR]) == (refused.command.command_id, FAILED.error)
    events = [orjson.loads(f["e"]) for _, f in gw.redis.xrange(gw.keys.events("alice"))]
    assert [(e["type"], e["error"]) for e in events] == [
        ("command.applied", None),
        ("command.failed", PUBLIC_INVALID),
    ]
    assert events[1]["error_type"] == "invalid" and dead[record.ERROR_TYPE] == "invalid"
    totals = Totals.of([gw.redis.hgetall(gw.keys.stats(PARTITION))])
    op, collection = done.command.op, done.command.collection
    assert totals.finished == {(collection, op, "applied"): 1, (collection, op, "failed"): 1}
    assert sum(totals.latency_counts) == 2

    assert outcomes.record({done: APPLIED}, waits=[])  # finished again (re-delivered): counted once
    assert Totals.of([gw.redis.hgetall(gw.keys.stats(PARTITION))]).applied == 1


def test_a_retry_keeps_the_command_pending_until_its_next_attempt(gw: Gateway, lease: Lease) -> None:
    [retried] = delivered(gw, 1)
    assert Outcomes(gw, lease).record({retried: RETRY}, waits=[])
    kept = stored(gw, retried)
    assert (kept[record.STATUS], kept[record.ATTEMPTS], kept[record.ERROR]) == (
        "pending",
        "1",
        PUBLIC_STORE_ERROR,
    )
    assert int(kept[record.NEXT_ATTEMPT_AT]) > record.now_ms()
    assert record.PAYLOAD in kept and pending(gw) == 1  # still in the stream, in its place
    assert 0 < gw.redis.pttl(gw.keys.wait(PARTITION)) <= 200
    assert gw.redis.hget(gw.keys.stats(PARTITION), "retries") == "1"


def test_an_outage_pauses_the_partition_longer_each_time_and_counts_no_attempt(
    gw: Gateway, lease: Lease
) -> None:
    [waiting] = delivered(gw, 1)
    outcomes = Outcomes(gw, lease)
    assert not outcomes.record({waiting: UNAVAILABLE}, waits=[])
    first = gw.redis.pttl(gw.keys.pause(PARTITION))
    assert not outcomes.record({waiting: UNAVAILABLE}, waits=[])
    assert 0 < first <= 200 < gw.redis.pttl(gw.keys.pause(PARTITION)) <= 400
    assert stored(gw, waiting)[record.ATTEMPTS] == "0" and pending(gw) == 1
    assert gw.redis.get(gw.keys.outages(PARTITION)) == "2"
    assert gw.redis.hget(gw.keys.stats(PARTITION), "outages") == "2"


def test_a_commit_after_outages_starts_the_backoff_over(gw: Gateway, lease: Lease) -> None:
    gw.redis.set(gw.keys.outages(PARTITION), 3)
    [done] = delivered(gw, 1)
    assert Outcomes(gw, lease).record({done: APPLIED}, waits=[])
    assert gw.redis.exists(gw.keys.outages(PARTITION)) == 0


def test_without_the_lease_nothing_is_written_and_the_lease_is_marked_lost(gw: Gateway, lease: Lease) -> None:
    done, retried = delivered(gw, 2)
    gw.redis.set(gw.keys.lease(PARTITION), "99:another-worker")  # taken over meanwhile
    assert not Outcomes(gw, lease).record({done: APPLIED}, waits=[])
    assert lease.lost.is_set()
    assert not Outcomes(gw, lease).record({retried: RETRY}, waits=[])
    assert [stored(gw, e)[record.STATUS] for e in (done, retried)] == ["pending", "pending"]
    assert stored(gw, retried)[record.ATTEMPTS] == "0" and pending(gw) == 2


def test_many_commands_are_finished_a_chunk_per_script_call(
    gw: Gateway, lease: Lease, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcome, "FINISH_CHUNK", 2)
    calls: list[int] = []
    run = gw.scripts.run
    monkeypatch.setattr(gw.scripts, "run", lambda call: calls.append(len(call.keys)) or run(call))
    entries = delivered(gw, 5)
    outcomes = Outcomes(gw, lease)
    assert outcomes.record(dict.fromkeys(entries, APPLIED), waits=[])
    assert calls == [7 + 4 * 2, 7 + 4 * 2, 7 + 4 * 1]  # 7 keys, then 4 a command
    assert outcomes.applied == 5 and gw.redis.xlen(gw.keys.stream(PARTITION)) == 0

"""Accepting a command (one atomic Redis step) and reading its status record."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.context import Gateway
from gateway.ids import new_command_id, partition_of, partition_of_command
from gateway.keys import Keys
from plugins.store import Document, Op


@dataclass(frozen=True)
class Accepted:
    command_id: str
    entity_id: str
    seq: str | None  # the stream entry id (the command's place in its entity's order); None: a replay

    @property
    def replayed(self) -> bool:
        """The answer of an earlier request with the same Idempotency-Key; nothing was queued."""
        return self.seq is None


@dataclass(frozen=True)
class Idempotency:
    """A client's Idempotency-Key and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


class IdempotencyConflict(Exception):
    """The user sent this Idempotency-Key before, with a different request."""


@dataclass(frozen=True)
class WriteLimit:
    """Writes a user may make per window, counted by the accept script itself (sliding window
    counter: this window's count plus the previous one's, weighted by how much of it the sliding
    window still covers), so that a write stays one round trip to Redis."""

    amount: int
    window_seconds: int

    def counters(self, keys: Keys, user: str, now: int) -> tuple[list[str], list[Any], int]:
        """The two counter keys, the script's limit arguments, and the seconds left in this window."""
        window_ms = self.window_seconds * 1000
        index, elapsed = divmod(now, window_ms)
        who = hashlib.blake2b(user.encode(), digest_size=12).hexdigest()  # any user id, a plain key
        counter_keys = [keys.write_window(who, index), keys.write_window(who, index - 1)]
        args = [self.amount, 1 - elapsed / window_ms, 2 * self.window_seconds]
        return counter_keys, args, -(-(window_ms - elapsed) // 1000)


class RateLimited(Exception):
    """The user is past the write rate limit; `retry_after` seconds until the window turns."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def idempotency_record(keys: Keys, user: str, key: str, partitions: int) -> str:
    """The Redis key of the user's Idempotency-Key record: the pair hashed (any user id, any key),
    in the partition that hash picks."""
    digest = hashlib.sha256(orjson.dumps([user, key])).hexdigest()
    return keys.idempotency(int(digest[:8], 16) % partitions, digest)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class AcceptCall:
    """One call of the accept script, ready to send (alone, or in a pipeline by tools)."""

    command_id: str
    entity_id: str
    keys: list[str]
    args: list[Any]
    retry_after: int  # seconds left in the rate-limit window, for a refusal
    idempotency_key: str = ""


def prepare(
    gw: Gateway,
    user: str,
    op: Op,
    collection: str,
    entity_id: str,
    payload: Document | None,
    idempotency: Idempotency | None = None,
    limit: WriteLimit | None = None,
) -> AcceptCall:
    """The accept script's keys and arguments for this command (see gateway/lua/accept.lua)."""
    now = now_ms()
    partition = partition_of(collection, entity_id, gw.settings.partitions)
    command_id = new_command_id(partition)
    record = gw.keys.command(partition, command_id)
    fields: list[Any] = ["op", op, "col", collection, "eid", entity_id, "uid", user]
    fields += ["st", "pending", "att", 0, "acc", now]
    if payload is not None:
        fields += ["pl", orjson.dumps(payload)]
    keys = [record, gw.keys.stream(partition), record, record, record]
    args: list[Any] = [command_id, "", entity_id, gw.settings.idempotency_ttl_seconds, 0, 0, 0]
    if idempotency is not None:
        keys[2] = idempotency_record(gw.keys, user, idempotency.key, gw.settings.partitions)
        args[1] = idempotency.fingerprint
    retry_after = 0
    if limit is not None:
        keys[3:5], args[4:7], retry_after = limit.counters(gw.keys, user, now)
    key = idempotency.key if idempotency else ""
    return AcceptCall(command_id, entity_id, keys, [*args, *fields], retry_after, key)


def accept(gw: Gateway, call: AcceptCall) -> Accepted:
    """Record the command and queue it, in one Lua script: both are written or neither is.

    The same script first counts the write against the call's rate limit (RateLimited past it)
    and looks its Idempotency-Key up: a key the user sent before with the same request answers
    that first command again and writes nothing; one sent before with another request raises
    IdempotencyConflict. Check and write are one atomic step, so of two concurrent requests with
    one key, one is accepted and the other replays it. Concurrent calls of a process share round
    trips (gateway/pipelining.py).
    """
    outcome = gw.accept_calls(call.keys, call.args)
    if outcome[0] == "accepted":
        return Accepted(command_id=call.command_id, entity_id=call.entity_id, seq=outcome[1])
    if outcome[0] == "replay":
        return Accepted(command_id=outcome[1], entity_id=outcome[2], seq=None)
    if outcome[0] == "limited":
        raise RateLimited(call.retry_after)
    raise IdempotencyConflict(call.idempotency_key)


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return (
        datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def status_of(gw: Gateway, user: str, command_id: str) -> dict[str, Any] | None:
    """The command's status as the API shows it; None when unknown or not this user's."""
    partition = partition_of_command(command_id, gw.settings.partitions)
    if partition is None:
        return None
    record = gw.redis.hgetall(gw.keys.command(partition, command_id))
    if not record or record.get("uid") != user:
        return None
    status: dict[str, Any] = {
        "command_id": command_id,
        "status": record["st"],
        "op": record["op"],
        "collection": record["col"],
        "entity_id": record["eid"],
        "attempts": int(record.get("att", 0)),
        "accepted_at": _iso(record.get("acc")),
        "finished_at": _iso(record.get("fin")),
        "error": record.get("err") or None,
    }
    if record.get("nxt") and record["st"] == "pending":
        status["next_attempt_at"] = _iso(record["nxt"])
    return status

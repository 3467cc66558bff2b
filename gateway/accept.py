"""The accept stage: a validated command is recorded and queued in one atomic Redis step.

Its record (gateway/record.py) and its partition stream entry are written by one call of
accept.lua, which also counts the user's write rate limit and looks the Idempotency-Key up, so
that a refused or replayed request writes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from gateway import record, scripts, stats
from gateway.context import Gateway
from gateway.ids import new_command_id, partition_of
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

    def window(self, keys: Keys, user: str, now: int) -> WriteWindow:
        """The user's counters of this window and the previous one, at `now` (ms)."""
        window_ms = self.window_seconds * 1000
        index, elapsed = divmod(now, window_ms)
        who = user_digest(user)
        return WriteWindow(
            counters=(keys.write_window(who, index), keys.write_window(who, index - 1)),
            previous_weight=1 - elapsed / window_ms,
            retry_after=-(-(window_ms - elapsed) // 1000),
        )


@functools.lru_cache(maxsize=4096)
def user_digest(user: str) -> str:
    """Any user id as a plain key part; a process's active users are hashed once each."""
    return hashlib.blake2b(user.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class WriteWindow:
    """A user's write counters at one moment."""

    counters: tuple[str, str]  # this window's counter key and the previous one's
    previous_weight: float  # the share of the previous window the sliding window still covers
    retry_after: int  # seconds left in this window


class TooManyPending(Exception):
    """The user has MAX_PENDING_PER_USER commands unfinished: 429 until some finish."""


class BacklogFull(Exception):
    """MAX_BACKLOG commands are unfinished in all: the workers are behind, 503 until they catch up."""


class RateLimited(Exception):
    """The user is past the write rate limit; `retry_after` seconds until the window turns."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _key_digest(user: str, key: str) -> str:
    return hashlib.sha256(orjson.dumps([user, key])).hexdigest()


def key_partition(user: str, key: str, partitions: int) -> int:
    """The partition the user's Idempotency-Key picks: its record's on one Redis; on a cluster,
    the partition a new entity of a POST with that key is made in (`new_entity_in`)."""
    return int(_key_digest(user, key)[:8], 16) % partitions


def idempotency_record(keys: Keys, user: str, key: str, partitions: int) -> str:
    """The Redis key of the user's Idempotency-Key record: the pair hashed (any user id, any key),
    in the partition that hash picks, so a retry finds it before it knows the entity."""
    return keys.idempotency(key_partition(user, key, partitions), _key_digest(user, key))


@dataclass(frozen=True)
class SplitKey:
    """On a Redis Cluster, an Idempotency-Key whose record is in another partition than the
    command: checked by idempotency.lua around the accept call instead of inside it."""

    partition: int  # the key's record's: the (user, key) pair's
    digest: str  # the pair's hash, naming the record
    user: str  # whose list of key records in that partition the record joins
    fingerprint: str
    ttl_seconds: int
    accept_as: Callable[[str], scripts.ScriptCall]  # the accept call under another command id


@dataclass(frozen=True)
class AcceptCall:
    """One call of the accept script, ready to send (alone, or in a pipeline by tools)."""

    command_id: str
    entity_id: str
    script: scripts.ScriptCall
    retry_after: int  # seconds left in the rate-limit window, for a refusal
    idempotency_key: str = ""
    split_key: SplitKey | None = None


def prepare(
    gw: Gateway,
    user: str,
    op: Op,
    collection: str,
    entity_id: str,
    payload: Document | None,
    idempotency: Idempotency | None = None,
    limit: WriteLimit | None = None,
    operator: bool = False,
    request_id: str = "",
    claims: bytes | str = b"",
) -> AcceptCall:
    """The accept script's call for this command, sent by the request `request_id` with the
    token's carried `claims` (gateway/claims.py, as JSON); both travel in its record."""
    now = record.now_ms()
    partitions = gw.settings.partitions
    partition = partition_of(collection, entity_id, partitions)
    command_id = new_command_id(partition)
    key_record = idempotency_record(gw.keys, user, idempotency.key, partitions) if idempotency else None
    split = gw.keys.cluster and key_record is not None and not key_record.startswith(gw.keys.tag(partition))
    window = limit.window(gw.keys, user, now) if limit else None
    accept_as = functools.partial(
        scripts.accept,
        gw.keys,
        partition,
        entity_id=entity_id,
        record=record.new(op, collection, entity_id, user, payload, now, operator, request_id, claims),
        idempotency_ttl_seconds=gw.settings.idempotency_ttl_seconds,
        idempotency_record=None if split else key_record,
        fingerprint=idempotency.fingerprint if idempotency and not split else "",
        write_counters=window.counters if window else None,
        write_limit=limit.amount if limit else 0,
        previous_window_weight=window.previous_weight if window else 0,
        counter_ttl_seconds=2 * limit.window_seconds if limit else 0,
        user=user,
        quotas=gw.accept_quotas,
        now_ms=now,
        stats_field=stats.accepted_field(collection, op),
    )
    split_key = None
    if split and key_record and idempotency:
        ttl = gw.settings.idempotency_ttl_seconds
        split_key = SplitKey(
            key_partition(user, idempotency.key, partitions),
            _key_digest(user, idempotency.key),
            user,
            idempotency.fingerprint,
            ttl,
            lambda cid: accept_as(command_id=cid),
        )
    return AcceptCall(
        command_id,
        entity_id,
        accept_as(command_id=command_id),
        retry_after=window.retry_after if window else 0,
        idempotency_key=idempotency.key if idempotency else "",
        split_key=split_key,
    )


def accept(gw: Gateway, call: AcceptCall) -> Accepted:
    """Record the command and queue it, in one Lua script: both are written or neither is.

    The same script first counts the write against the call's rate limit (RateLimited past it),
    checks the quotas (TooManyPending, BacklogFull: nothing written) and looks its
    Idempotency-Key up: a key the user sent before with the same request answers
    that first command again and writes nothing; one sent before with another request raises
    IdempotencyConflict. Check and write are one atomic step, so of two concurrent requests with
    one key, one is accepted and the other replays it. Concurrent calls of a process share round
    trips (gateway/pipelining.py).
    """
    started = time.perf_counter()
    if call.split_key is not None:
        accepted = _accept_split(gw, call, call.split_key)
    else:
        accepted = answer(call, gw.accept_calls(call.script.keys, call.script.args))
    gw.process_report.observe_accept(time.perf_counter() - started)
    return accepted


def answer(call: AcceptCall, outcome: list[str]) -> Accepted:
    """What the accept script's reply to `call` means: the command accepted (or replayed), or
    the refusal raised."""
    if outcome[0] == "accepted":
        return Accepted(command_id=call.command_id, entity_id=call.entity_id, seq=outcome[1])
    if outcome[0] == "replay":
        return Accepted(command_id=outcome[1], entity_id=outcome[2], seq=None)
    if outcome[0] == "limited":
        raise RateLimited(call.retry_after)
    if outcome[0] == "busy":
        raise TooManyPending()
    if outcome[0] == "backlog":
        raise BacklogFull()
    raise IdempotencyConflict(call.idempotency_key)


def _accept_split(gw: Gateway, call: AcceptCall, key: SplitKey) -> Accepted:
    """A keyed accept on a Redis Cluster whose key record is in another slot than the command:
    the record is reserved for this command id (or names the first request's), the command is
    accepted under the id it names (accept.lua writes an id at most once, so a retry after a
    lost reply or a crash queues nothing twice), and the record is confirmed; a refused accept
    releases the record, leaving nothing behind. See gateway/lua/idempotency.lua."""

    def record(mode: str, command_id: str) -> Any:
        return gw.scripts.run(
            scripts.idempotency(
                gw.keys,
                key.partition,
                digest=key.digest,
                mode=mode,
                command_id=command_id,
                fingerprint=key.fingerprint,
                entity_id=call.entity_id,
                ttl_seconds=key.ttl_seconds,
                user=key.user,
                keys_kept=gw.accept_quotas.keys_kept(cluster=True),
            )
        )

    reply = record("reserve", call.command_id)
    if reply[0] == "conflict":
        raise IdempotencyConflict(call.idempotency_key)
    if reply[0] == "replay" and reply[3]:
        return Accepted(command_id=reply[1], entity_id=reply[2], seq=None)
    command_id = call.command_id if reply[0] == "reserved" else reply[1]
    script = key.accept_as(command_id)
    try:
        accepted = answer(replace(call, command_id=command_id), gw.accept_calls(script.keys, script.args))
    except (RateLimited, TooManyPending, BacklogFull):
        record("release", command_id)
        raise
    record("confirm", command_id)
    return accepted if reply[0] == "reserved" else replace(accepted, seq=None)

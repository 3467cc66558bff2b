"""The gateway's Lua scripts (`gateway/lua/*.lua`), each called through one function here.

A script's header documents its KEYS and ARGV; the function of the same name is the only code
that lays them out, from named arguments, so no caller builds a script's arguments by position
and a change to a script's arguments is made in two places side by side. Each function returns
a `ScriptCall`: `Scripts.run` sends it alone, `Scripts.queue` adds it to a `RoundTrip` with
other calls, and the web process's auto-pipelining (gateway/pipelining.py) sends the accept
calls' keys and args in batches.

Keys of one partition share a hash tag (gateway/keys.py). On a Redis Cluster (`Keys.cluster`)
every key a call names is in its partition's slot: the quotas' counts are the partition's own
(with its share of each limit, `Quotas.for_partition`), and `finish` writes the partition's
outbox instead of the owner's event log and the deployment's outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

from gateway.keys import GROUP, Keys
from gateway.redis_client import RoundTrip

LUA = Path(__file__).with_name("lua")
NAMES = (
    "accept",
    "idempotency",
    "finish",
    "retry",
    "read",
    "kick",
    "lease_acquire",
    "lease_renew",
    "lease_release",
    "dead_letter_replayed",
)


@dataclass(frozen=True)
class ScriptCall:
    """One call of a script, ready to send: the script's name, its KEYS and its ARGV."""

    name: str
    keys: list[str]
    args: list[Any]


class Scripts:
    """The scripts registered on one client: sent as EVALSHA, loaded again after a Redis restart."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts = {name: client.register_script((LUA / f"{name}.lua").read_text()) for name in NAMES}

    def script(self, name: str) -> Script:
        return self._scripts[name]

    def run(self, call: ScriptCall, client: Any = None) -> Any:
        """The script's reply to `call`, sent on its own (or on `client`, a pipeline)."""
        return self._scripts[call.name](keys=call.keys, args=call.args, client=client)

    def queue(self, trip: RoundTrip, call: ScriptCall) -> None:
        """Add `call` to `trip`; its reply comes with the others'."""
        trip.script(self._scripts[call.name], call.keys, call.args)


@dataclass(frozen=True)
class Quotas:
    """The accept script's quotas: a user's unfinished commands, all unfinished commands and the
    user's Idempotency-Key records (0: no limit), how long an idle user's pending set is kept,
    and the partitions whose streams' lengths make the backlog when it is recounted."""

    max_pending_per_user: int = 0
    max_backlog: int = 0
    idempotency_keys_per_user: int = 0
    pending_ttl_seconds: int = 7 * 24 * 3600
    partitions: int = 1

    def for_partition(self, cluster: bool) -> tuple[int, int, int | str]:
        """The limits and the recount's partitions one accept call checks: on one Redis, the
        whole limits and every partition's stream; on a cluster, where a call reaches one slot,
        the partition's share of each limit (rounded up) and '' (its own stream's length)."""
        if not cluster:
            return self.max_pending_per_user, self.max_backlog, self.partitions
        return share(self.max_pending_per_user, self.partitions), share(self.max_backlog, self.partitions), ""

    def keys_kept(self, cluster: bool) -> int:
        """The Idempotency-Key records one list keeps: the user's on one Redis; on a cluster,
        where each partition keeps the user's records it holds, the partition's share."""
        if not cluster:
            return self.idempotency_keys_per_user
        return share(self.idempotency_keys_per_user, self.partitions)


def share(limit: int, partitions: int) -> int:
    """A partition's share of a deployment-wide limit, rounded up (0 stays no limit)."""
    return -(-limit // partitions)


def accept(
    keys: Keys,
    partition: int,
    *,
    command_id: str,
    entity_id: str,
    record: Sequence[Any],
    idempotency_ttl_seconds: int,
    idempotency_record: str | None = None,
    fingerprint: str = "",
    write_counters: tuple[str, str] | None = None,
    write_limit: int = 0,
    previous_window_weight: float = 0,
    counter_ttl_seconds: int = 0,
    user: str = "",
    quotas: Quotas | None = None,
    now_ms: int = 0,
    stats_field: str,
) -> ScriptCall:
    """accept.lua: write the command's `record` (HSET pairs) and its stream entry, after the
    Idempotency-Key check (`idempotency_record`, the key's record; `fingerprint`, the request's),
    the write rate limit (`write_counters`, this and the previous window's; `write_limit`
    writes per window, 0 for none) and the `quotas` of `user` (none: not counted against any),
    and count it under `stats_field` of the partition's stats. KEYS: record, stream, key record,
    the two counters (an unused key repeats the record), the user's pending set, the backlog
    counter, stats, the user's key records list. ARGV: command id, fingerprint, entity id, key
    record TTL, limit, previous window's weight, counter TTL, the two quotas, now, pending set
    TTL, key prefix, partitions, stats field, key records kept, then the record's pairs."""
    record_key = keys.command(partition, command_id)
    current, previous = write_counters or (record_key, record_key)
    quotas = quotas or Quotas()
    max_pending, max_backlog, recount = quotas.for_partition(keys.cluster)
    return ScriptCall(
        "accept",
        [
            record_key,
            keys.stream(partition),
            idempotency_record or record_key,
            current,
            previous,
            keys.pending(user, partition),
            keys.backlog(partition),
            keys.stats(partition),
            keys.idempotency_keys(user, partition) if idempotency_record else record_key,
        ],
        [
            command_id,
            fingerprint,
            entity_id,
            idempotency_ttl_seconds,
            write_limit,
            previous_window_weight,
            counter_ttl_seconds,
            max_pending,
            max_backlog,
            now_ms,
            quotas.pending_ttl_seconds,
            keys.prefix,
            recount,
            stats_field,
            quotas.keys_kept(keys.cluster),
            *record,
        ],
    )


def idempotency(
    keys: Keys,
    partition: int,
    *,
    digest: str,
    mode: str,
    command_id: str,
    fingerprint: str,
    entity_id: str,
    ttl_seconds: int,
    user: str,
    keys_kept: int,
) -> ScriptCall:
    """idempotency.lua (a Redis Cluster's keyed accept whose key record is in another slot than
    the command): `mode` 'reserve', 'confirm' or 'release' the record `digest` names in
    `partition` for `command_id`; a reserved record joins `user`'s list of key records in that
    partition, which keeps `keys_kept` (0: all). KEYS: the record, the list. ARGV: mode, command
    id, fingerprint, entity id, TTL, records kept."""
    record = keys.idempotency(partition, digest)
    return ScriptCall(
        "idempotency",
        [record, keys.idempotency_keys(user, partition)],
        [mode, command_id, fingerprint, entity_id, ttl_seconds, keys_kept],
    )


@dataclass(frozen=True)
class Finished:
    """A command for `finish`: its stream entry, its owner, how it ended and after how many attempts."""

    entry_id: str
    command_id: str
    user: str
    status: str  # record.APPLIED or record.FAILED
    error: str  # the public message ('' when applied): what the status and the event show
    attempts: int
    error_type: str = ""  # '' when applied (gateway.public_errors)
    detail: str = ""  # the store's own text: for the dead letter only


@dataclass(frozen=True)
class DeadLetterBounds:
    """What finish.lua keeps of dead letters and status records: dead letters per partition
    (the oldest trimmed first), the largest payload a dead letter keeps whole (a larger one is
    kept as its size and SHA-1), and the finished status records kept per user."""

    per_partition: int = 1000
    payload_bytes: int = 16 * 1024
    records_per_user: int = 10_000


def finish(
    keys: Keys,
    partition: int,
    *,
    token: str,
    now_ms: int,
    record_ttl_seconds: int,
    events_per_user: int,
    outbox_length: int,
    oldest_dead_letter_ms: int,
    commands: Sequence[Finished],
    bounds: DeadLetterBounds | None = None,
) -> ScriptCall:
    """finish.lua: close the commands' records, dead-letter the failed ones (within `bounds`),
    write their events, take them off their owners' pending sets and the backlog, count them in
    the partition's stats, acknowledge and delete their entries; refused (0) without the lease
    `token`, else {1, dead letters trimmed}. KEYS: lease, stream, dead letters, outbox, backlog,
    trimmed counter, stats, then per command its record and its owner's events, pending set and
    finished list. ARGV: token, group, now, record TTL, events per user, outbox length, oldest
    dead letter kept, dead letters kept, payload bytes kept, records kept per user, then per
    command: entry id, command id, status, error (public), attempts, error type, detail (the
    store's own text, for the dead letter only)."""
    bounds = bounds or DeadLetterBounds()
    script_keys = [
        keys.lease(partition),
        keys.stream(partition),
        keys.dead(partition),
        keys.finish_outbox(partition),
        keys.backlog(partition),
        keys.dead_trimmed(partition),
        keys.stats(partition),
    ]
    args: list[Any] = [token, GROUP, now_ms, record_ttl_seconds, events_per_user, outbox_length]
    args += [oldest_dead_letter_ms, bounds.per_partition, bounds.payload_bytes, bounds.records_per_user]
    for command in commands:
        user = command.user
        script_keys += [
            keys.command(partition, command.command_id),
            keys.event_log(user, partition),
            keys.pending(user, partition),
            keys.finished(user, partition),
        ]
        args += [command.entry_id, command.command_id, command.status, command.error, command.attempts]
        args += [command.error_type, command.detail]
    return ScriptCall("finish", script_keys, args)


@dataclass(frozen=True)
class Retry:
    """A command for `retry`: its attempts so far, when it is due again (ms), and why it failed."""

    command_id: str
    attempts: int
    next_attempt_ms: int
    error: str


def retry(keys: Keys, partition: int, *, token: str, commands: Sequence[Retry]) -> ScriptCall:
    """retry.lua: record a failed attempt of each pending command; refused (0) without the lease
    `token`. KEYS: lease, then the records. ARGV: token, then per command: attempts, next
    attempt (ms), error."""
    script_keys = [keys.lease(partition)]
    args: list[Any] = [token]
    for command in commands:
        script_keys.append(keys.command(partition, command.command_id))
        args += [command.attempts, command.next_attempt_ms, command.error]
    return ScriptCall("retry", script_keys, args)


def read(keys: Keys, partition: int, *, token: str, consumer: str, count: int) -> ScriptCall:
    """read.lua: up to `count` new entries for `consumer`, only with the lease `token` (the
    reply: XREADGROUP's; the newest entry's id when there are none; None without the lease).
    KEYS: lease, stream. ARGV: token, group, consumer, count."""
    return ScriptCall(
        "read", [keys.lease(partition), keys.stream(partition)], [token, GROUP, consumer, count]
    )


def kick(keys: Keys, partition: int, *, marker_ttl_ms: int, check_only: bool) -> ScriptCall:
    """kick.lua: 1 when a drain job should be queued for the partition, which is then marked
    queued for `marker_ttl_ms` (with `check_only`, only whether work is due). KEYS: stream,
    lease, pause, wait, kick marker. ARGV: marker TTL, group, "check" or "mark"."""
    script_keys = [
        keys.stream(partition),
        keys.lease(partition),
        keys.pause(partition),
        keys.wait(partition),
        keys.kick(partition),
    ]
    return ScriptCall("kick", script_keys, [marker_ttl_ms, GROUP, "check" if check_only else "mark"])


def lease_acquire(keys: Keys, partition: int, *, owner: str, ttl_ms: int) -> ScriptCall:
    """lease_acquire.lua: the new fencing token, or None when the lease is held. KEYS: lease,
    fence counter. ARGV: owner, TTL."""
    return ScriptCall("lease_acquire", [keys.lease(partition), keys.fence(partition)], [owner, ttl_ms])


def lease_renew(keys: Keys, partition: int, *, token: str, ttl_ms: int) -> ScriptCall:
    """lease_renew.lua: 1 when the lease is still `token`'s and now runs `ttl_ms` more, else 0.
    KEYS: lease. ARGV: token, TTL."""
    return ScriptCall("lease_renew", [keys.lease(partition)], [token, ttl_ms])


def lease_release(keys: Keys, partition: int, *, token: str) -> ScriptCall:
    """lease_release.lua: drop the lease if it is still `token`'s (1), else 0. KEYS: lease.
    ARGV: token."""
    return ScriptCall("lease_release", [keys.lease(partition)], [token])


def dead_letter_replayed(keys: Keys, partition: int, *, entry_id: str, command_record: str) -> ScriptCall:
    """dead_letter_replayed.lua: remove the dead letter `entry_id` of the partition if the
    command accepted again in the same transaction has its record (`command_record`): 1, else 0.
    KEYS: dead letters, the record. ARGV: entry id."""
    return ScriptCall("dead_letter_replayed", [keys.dead(partition), command_record], [entry_id])

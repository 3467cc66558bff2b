"""The stream stage: reading a held partition's stream, in stream (acceptance) order.

A drain job reads a partition only while it holds the partition's lease (workers/lease.py).
When it takes a partition, it first claims (XAUTOCLAIM) every entry other consumers still hold:
those of dead or slow workers, which it then reads as its own. Each pass reads the entries this
worker already holds (pending: crashed, waiting for a retry, or blocked behind one), oldest
first, then new ones. New entries are read by read.lua, only while the lease is held: a worker
that lost it must not take entries that the new holder would then apply out of order.

The entries' command records (gateway/record.py) then say what is due: an entry waiting for its
retry holds back the later entries of its entity (order); an entry whose command is no longer
pending (delivered again after it finished, or its record gone) is dropped.

The reads are queued on a RoundTrip that the job shares among all its partitions (`queue_*`),
and each partition takes its replies back (`take_*`, `due`): a pass costs two round trips to
Redis whatever the number of partitions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from gateway import record, scripts
from gateway.context import Gateway, ensure_group
from gateway.ids import seq_of
from gateway.keys import GROUP
from gateway.redis_client import RoundTrip
from plugins.store import Command
from workers.lease import Lease

log = logging.getLogger("gateway.drain")

RawEntry = tuple[str, dict[str, str] | None]  # an entry id and its fields (None: deleted)
CLAIM_COUNT = 1000  # entries claimed per XAUTOCLAIM call


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per entry
class Entry:
    """A stream entry and the pending command it stands for."""

    entry_id: str
    command: Command
    user: str
    attempts: int  # attempts made before this one
    request_id: str = ""  # the X-Request-ID of the request that sent it, for log lines

    @property
    def entity(self) -> tuple[str, str]:
        return (self.command.collection, self.command.entity_id)


@dataclass(frozen=True)
class Due:
    """A partition's part of one pass: the entries to apply now, when its waiting ones are due
    (ms), and whether it dropped entries that had no pending command."""

    ready: list[Entry]
    waits: list[int]
    forgot: bool


class PartitionStream:
    """A held partition's stream, read by one consumer under the partition's lease."""

    def __init__(self, gw: Gateway, consumer: str, lease: Lease) -> None:
        self.gw = gw
        self.keys = gw.keys
        self.consumer = consumer
        self.lease = lease
        self.partition = lease.partition
        self.key = self.keys.stream(self.partition)
        self.newest = "0-0"  # the newest entry of the stream its last read found delivered

    def claim(self) -> None:
        """Take over every entry still pending under other consumers (dead or slow workers)."""
        start = "0-0"
        while True:
            try:
                reply = self.gw.redis.execute_command(  # redis-py drops the cursor with JUSTID
                    "XAUTOCLAIM", self.key, GROUP, self.consumer, 0, start, "COUNT", CLAIM_COUNT, "JUSTID"
                )
            except redis.ResponseError as error:
                self._no_group(error)
                return
            start = reply[0]
            if start == "0-0":
                return

    def queue_read(self, trip: RoundTrip, size: int) -> None:
        """Add to `trip` the two reads of a pass: this worker's pending entries, oldest first (they
        come before any new one), then new ones, so that retries waiting in the pending list
        never hold back the other entities."""
        trip.command("XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", size, "STREAMS", self.key, "0")
        self._queue_new(trip, size)

    def take_read(self, pending: Any, new: Any, size: int) -> list[RawEntry]:
        """The entries of the replies to `queue_read`'s two reads (a full page of pending entries
        is followed by the rest of them first)."""
        if isinstance(pending, Exception):
            return self._no_group(pending)
        entries = page = _entries(pending)
        while len(page) == size:
            page = self._pending_after(page[-1][0], size)
            entries = entries + page
        fresh = self._take_new(new)
        if new is None or isinstance(new, Exception):
            return []  # without the lease, or the group was gone: nothing to apply this pass
        # A page of pending entries read after the new ones were delivered also holds them.
        known = {entry_id for entry_id, _ in entries}
        return entries + [entry for entry in fresh if entry[0] not in known]

    def read_new(self, size: int) -> list[RawEntry]:
        """Up to `size` entries nobody has read yet."""
        trip = RoundTrip(self.gw.redis)
        self._queue_new(trip, size)
        return self._take_new(trip.send()[0])

    def queue_records(self, trip: RoundTrip, raw: list[RawEntry]) -> int:
        """Add to `trip` a read of the command record of each entry of `raw`; how many."""
        count = 0
        for _, fields in raw:
            if fields:
                record_key = self.keys.command(self.partition, fields[record.COMMAND_ID])
                trip.command("HMGET", record_key, *record.WORK_FIELDS)
                count += 1
        return count

    def due(self, raw: list[RawEntry], records: list[Any]) -> Due:
        """What is due among `raw`, given the replies to `queue_records`: an entry waiting for
        its retry holds back the later entries of its entity (order); entries without a pending
        command are dropped."""
        entries, orphans = self._load(raw, records)
        if orphans:
            self._forget(orphans)
        now = record.now_ms()
        blocked: set[tuple[str, str]] = set()
        ready: list[Entry] = []
        waits: list[int] = []
        for entry, due in entries:
            if entry.entity in blocked:
                continue
            if due > now:
                blocked.add(entry.entity)
                waits.append(due)
                continue
            ready.append(entry)
        return Due(ready, waits, bool(orphans))

    def _queue_new(self, trip: RoundTrip, size: int) -> None:
        token, consumer = self.lease.token, self.consumer
        call = scripts.read(self.keys, self.partition, token=token, consumer=consumer, count=size)
        self.gw.scripts.queue(trip, call)

    def _take_new(self, new: Any) -> list[RawEntry]:
        """The new entries in the read script's reply; none without the lease (it is marked
        lost). The newest entry seen is kept: an idle job waits for the entries after it."""
        if isinstance(new, Exception):
            return self._no_group(new)
        if new is None:
            self.lease.lost.set()
            return []
        if isinstance(new, str):  # nothing new: every entry is delivered, the newest is `new`
            self.newest = new
            return []
        fresh = _entries(new)
        if fresh:
            self.newest = fresh[-1][0]
        return fresh

    def _pending_after(self, after: str, count: int) -> list[RawEntry]:
        """This worker's pending entries after `after`."""
        try:
            reply = self.gw.redis.xreadgroup(GROUP, self.consumer, {self.key: after}, count=count)
        except redis.ResponseError as error:
            return self._no_group(error)
        return _entries(reply)

    def _no_group(self, error: Exception) -> list[RawEntry]:
        """The stream or its group is gone (Redis lost its data): create them, nothing to read."""
        if not isinstance(error, redis.ResponseError) or "NOGROUP" not in str(error):
            raise error
        ensure_group(self.gw.redis, self.keys, self.partition)
        return []

    def _load(self, raw: list[RawEntry], records: list[Any]) -> tuple[list[tuple[Entry, int]], list[str]]:
        """Each entry with its command and the time it is due; orphans have no pending record."""
        replies = iter(records)
        entries: list[tuple[Entry, int]] = []
        orphans: list[str] = []
        for entry_id, fields in raw:
            reply = next(replies) if fields else []
            if isinstance(reply, Exception):
                raise reply
            command_id = fields[record.COMMAND_ID] if fields else ""
            work = record.work(command_id, seq_of(entry_id), reply, self.gw.collections) if fields else None
            if work is None:
                orphans.append(entry_id)  # deleted entry, or its record is gone or finished
                continue
            entry = Entry(entry_id, work.command, work.user, work.attempts, work.request_id)
            entries.append((entry, work.due_ms))
        return entries, orphans

    def _forget(self, entry_ids: list[str]) -> None:
        log.warning(
            "partition %s: dropping %d entries without a pending command", self.partition, len(entry_ids)
        )
        pipe = self.gw.redis.pipeline(transaction=False)
        pipe.xack(self.key, GROUP, *entry_ids)
        pipe.xdel(self.key, *entry_ids)
        pipe.execute()


def _entries(reply: Any) -> list[RawEntry]:
    """The entries of one stream's XREADGROUP reply, from redis-py or from a script."""
    if not reply:
        return []
    return [(entry_id, _fields(fields)) for entry_id, fields in reply[0][1]]


def _fields(raw: dict[str, str] | list[str] | None) -> dict[str, str] | None:
    """An entry's fields, from redis-py (a dict) or from a script (a flat list); None: deleted."""
    if not raw:
        return None
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))

"""The outcome stage: each applied command's result, written to Redis under the partition's lease.

- Applied, and refused by the store: finished (finish.lua: status, event, dead letter for a
  failure, then XACK and XDEL of the entry), FINISH_CHUNK commands per script call.
- Failed with attempts left: scheduled again after a backoff (retry.lua: attempts, next
  attempt, error); the entry stays pending in the stream and keeps its place.
- Failed on its last attempt (MAX_ATTEMPTS): finished as failed, so dead-lettered.
- The store could not be reached: the partition pauses for a growing while, up to MAX_PAUSE_MS
  (the count of consecutive outages is kept OUTAGE_MEMORY_SECONDS), and no attempt is counted.

Both scripts are refused once the lease is lost: the partition's next holder does it again.
Each retry and each dead letter is logged once, after its script succeeded (a line per command:
its id, collection, error type and the X-Request-ID that sent it); an applied command is a
debug line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway import record, scripts
from gateway.context import Gateway
from gateway.notify.relay import relay
from gateway.public_errors import message
from settings import Settings
from workers.apply import Result
from workers.lease import Lease
from workers.stream import Entry

log = logging.getLogger("gateway.drain")

FINISH_CHUNK = 250  # commands finished per script call, so that Redis is never blocked long
OUTAGE_MEMORY_SECONDS = 600  # consecutive outages are counted for the backoff within this window
# The longest pause of a partition: a store that is back is tried again within this, so the
# backlog of an outage of any length starts to drain seconds after it ends.
MAX_PAUSE_MS = 2000
DAY_MS = 86_400_000


@dataclass
class Decisions:
    """What to write for a pass's results: the commands to finish, the ones to try again (and
    when they are due, ms), and whether the store was out."""

    finished: list[scripts.Finished] = field(default_factory=list)
    retries: list[scripts.Retry] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)
    outage: bool = False
    # What to log once written: each finished command and its result (None: applied), in the
    # order of `finished`, and each retried one with its result.
    finished_results: list[tuple[Entry, Result | None]] = field(default_factory=list)
    retried_results: list[tuple[Entry, Result]] = field(default_factory=list)


def decide(results: Mapping[Entry, Result], settings: Settings, now: int) -> Decisions:
    """Finish, retry (after a backoff) or leave each command, from its result and its attempts."""
    decisions = Decisions()
    for entry, result in results.items():
        attempts = entry.attempts + 1
        if result.kind == "unavailable":
            decisions.outage = True
        elif result.kind == "applied":
            decisions.finished.append(_finished(entry, record.APPLIED, None))
            decisions.finished_results.append((entry, None))
        elif result.kind == "failed" or attempts >= settings.max_attempts:
            decisions.finished.append(_finished(entry, record.FAILED, result))
            decisions.finished_results.append((entry, result))
        else:
            due = now + backoff_ms(settings, attempts)
            # The record shows users the public message; the store's text is in the log.
            error = message(result.error_type)
            decisions.retries.append(scripts.Retry(entry.command.command_id, attempts, due, error))
            decisions.retried_results.append((entry, result))
            decisions.waits.append(due)
    return decisions


def _finished(entry: Entry, status: str, result: Result | None) -> scripts.Finished:
    """A command to finish: applied (no result), or failed with the result's public message,
    type and (for the dead letter) the store's own text."""
    command_id, attempts = entry.command.command_id, entry.attempts + 1
    if result is None:
        return scripts.Finished(entry.entry_id, command_id, entry.user, status, "", attempts)
    public = message(result.error_type)
    return scripts.Finished(
        entry.entry_id, command_id, entry.user, status, public, attempts, result.error_type, result.error
    )


def log_finished(entry: Entry, result: Result | None) -> None:
    """A finished command's line: a warning for a dead letter (refused by the store, or out of
    attempts), a debug line for an applied one."""
    command = entry.command
    if result is None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "command %s on %s applied", command.command_id, command.collection, extra=_context(entry)
            )
        return
    how = "refused by the store" if result.kind == "failed" else f"failed {entry.attempts + 1} times"
    log.warning(
        "command %s on %s %s (%s), dead-lettered: %s",
        command.command_id,
        command.collection,
        how,
        result.error_type,
        result.error,
        extra=_context(entry, result),
    )


def log_retried(entry: Entry, result: Result, settings: Settings) -> None:
    """A failed attempt's line, for a command that will be tried again."""
    attempts = entry.attempts + 1
    log.info(
        "command %s on %s failed (%s), attempt %d of %d, tried again in %d ms: %s",
        entry.command.command_id,
        entry.command.collection,
        result.error_type,
        attempts,
        settings.max_attempts,
        backoff_ms(settings, attempts),
        result.error,
        extra=_context(entry, result),
    )


def _context(entry: Entry, result: Result | None = None) -> dict[str, object]:
    """A command's line's context (gateway/logs.py): its ids and user, and as JSON fields its
    collection, entity, attempts and error type."""
    fields: dict[str, object] = {
        "collection": entry.command.collection,
        "entity_id": entry.command.entity_id,
        "attempts": entry.attempts + 1,
    }
    if result is not None:
        fields["error_type"] = result.error_type
    return {
        "command_id": entry.command.command_id,
        "request_id": entry.request_id or None,
        "user": entry.user,
        "fields": fields,
    }


def backoff_ms(settings: Settings, attempt: int) -> int:
    """Wait before attempt `attempt + 1`: RETRY_BASE_SECONDS doubling, capped at RETRY_MAX_SECONDS."""
    return int(min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1)) * 1000)


def pause(gw: Gateway, partition: int, reason: str, *, quiet: bool = False) -> None:
    """Leave the partition alone for a growing while (a store is down, or draining it failed);
    no command's attempts are counted. `quiet`: the cause is logged elsewhere, once per outage
    (a store down), so each pause is only a debug line."""
    keys = gw.keys
    pipe = gw.redis.pipeline(transaction=False)
    pipe.incr(keys.outages(partition))
    pipe.expire(keys.outages(partition), OUTAGE_MEMORY_SECONDS)
    pipe.hincrby(keys.stats(partition), "outages", 1)
    pause_ms = min(MAX_PAUSE_MS, backoff_ms(gw.settings, pipe.execute()[0]))
    level = logging.DEBUG if quiet else logging.WARNING
    log.log(level, "partition %s: %s, pausing %d ms", partition, reason, pause_ms)
    gw.redis.set(keys.pause(partition), 1, px=pause_ms)


class Outcomes:
    """A held partition's outcomes in one drain job: written under its lease, and counted."""

    def __init__(self, gw: Gateway, lease: Lease) -> None:
        self.gw = gw
        self.lease = lease
        self.partition = lease.partition
        self.applied = 0
        self.failed = 0
        self.outages_cleared = False

    def record(self, results: Mapping[Entry, Result], waits: list[int]) -> bool:
        """Write every result; `waits` are the due times of entries still waiting for their
        retry. True when anything finished or was scheduled again."""
        now = record.now_ms()
        decisions = decide(results, self.gw.settings, now)
        if decisions.finished and not self._finish(decisions, now):
            return False
        if decisions.retries and not self._retry(decisions.retries):
            return False
        for entry, retried in decisions.retried_results:
            log_retried(entry, retried, self.gw.settings)
        waits = waits + decisions.waits
        if waits:
            self.gw.redis.set(self.gw.keys.wait(self.partition), 1, px=max(1, min(waits) - now))
        if decisions.outage:
            pause(self.gw, self.partition, "store unavailable", quiet=True)
        elif decisions.finished and not self.outages_cleared:
            # The store works again: the next outage backs off from the start. Once per job is
            # enough, as an outage ends this partition's part in it.
            self.gw.redis.delete(self.gw.keys.outages(self.partition))
            self.outages_cleared = True
        return bool(decisions.finished or decisions.retries) and not decisions.outage

    def _finish(self, decisions: Decisions, now: int) -> bool:
        """Finish the commands chunk by chunk, logging each chunk's once it is written."""
        settings = self.gw.settings
        finished = decisions.finished
        for start in range(0, len(finished), FINISH_CHUNK):
            chunk = finished[start : start + FINISH_CHUNK]
            call = scripts.finish(
                self.gw.keys,
                self.partition,
                token=self.lease.token,
                now_ms=now,
                record_ttl_seconds=settings.status_ttl_seconds,
                events_per_user=settings.events_per_user,
                outbox_length=settings.outbox_length,
                oldest_dead_letter_ms=now - settings.dead_letter_days * DAY_MS,  # older ones go
                commands=chunk,
                bounds=scripts.DeadLetterBounds(
                    per_partition=-(-settings.max_dead_letters // settings.partitions),
                    payload_bytes=settings.max_dead_letter_payload_bytes,
                    records_per_user=(  # on a cluster, the list is per partition: its share
                        scripts.share(settings.status_records_per_user, settings.partitions)
                        if self.gw.keys.cluster
                        else settings.status_records_per_user
                    ),
                ),
            )
            reply = self.gw.scripts.run(call)
            if not reply:
                log.warning(
                    "partition %s: lease lost before finishing; the next holder redoes it", self.partition
                )
                self.lease.lost.set()
                return False
            if int(reply[1]):
                log.warning(
                    "partition %s: %s oldest dead letters trimmed (MAX_DEAD_LETTERS %d in all)",
                    self.partition,
                    reply[1],
                    settings.max_dead_letters,
                )
            for entry, result in decisions.finished_results[start : start + FINISH_CHUNK]:
                log_finished(entry, result)
        if self.gw.keys.cluster:  # the events wait in the partition's outbox: to their owners now
            relay(self.gw, self.partition)
        self.applied += sum(1 for command in finished if command.status == record.APPLIED)
        self.failed += sum(1 for command in finished if command.status == record.FAILED)
        return True

    def _retry(self, retries: list[scripts.Retry]) -> bool:
        call = scripts.retry(self.gw.keys, self.partition, token=self.lease.token, commands=retries)
        if not self.gw.scripts.run(call):
            self.lease.lost.set()
            return False
        self.gw.redis.hincrby(self.gw.keys.stats(self.partition), "retries", len(retries))
        return True

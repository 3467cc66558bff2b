"""The drain job: apply the partitions' due commands to their stores, batch by batch.

One RQ job drains a share of the partitions with due work for at most `DRAIN_SLICE_SECONDS`,
holding their leases, so commands of one entity are applied by one worker at a time, in stream
(acceptance) order.

Each pass reads, from each partition held, the entries this worker already holds (pending:
crashed, waiting for a retry, or blocked behind one) and then new ones, up to BATCH_SIZE in all
(one round trip to Redis for all the partitions, and one more for the command records), and
applies the due ones with one transaction per store for all the partitions together: under
a steady trickle of commands spread over the partitions, a transaction (and its commit) carries
every partition's few new commands instead of one partition's. When a batch fails, its commands
are applied one by one, so that a bad command fails alone; a command that fails waits for its
retry and holds back the later commands of its entity (order), not the others. A store that
cannot be reached pauses the partitions without counting an attempt. Nothing is acknowledged
before its store has committed. A job keeps the partitions with nothing to read until its slice
ends, waiting on their streams when all are idle, and ends early only once idle for a while.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis
from rq.timeouts import BaseTimeoutException

from gateway import record, scripts
from gateway.context import Gateway, ensure_group
from gateway.ids import seq_of
from gateway.keys import GROUP
from gateway.record import now_ms
from gateway.redis_client import RoundTrip
from plugins.store import Command, Rejected, Store, StoreUnavailable
from settings import Settings
from workers import runtime
from workers.lease import Lease

log = logging.getLogger("gateway.drain")

T = TypeVar("T")

RawEntry = tuple[str, dict[str, str] | None]  # an entry id and its fields (None: deleted)
# How long a job whose partitions all have nothing to read waits for a new entry on one of them
# before it ends (unless push jobs wait for its worker): RQ's bookkeeping costs ~3 ms a job.
LINGER_SECONDS = 0.2
# How often a busy job looks for partitions that got work and that nobody holds.
TAKE_UP_SECONDS = 0.05
FINISH_CHUNK = 250  # commands finished per script call, so that Redis is never blocked long
OUTAGE_MEMORY_SECONDS = 600  # consecutive outages are counted for the backoff within this window


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per entry
class Entry:
    """A stream entry and the command it stands for."""

    entry_id: str
    command: Command
    user: str
    attempts: int

    @property
    def entity(self) -> tuple[str, str]:
        return (self.command.collection, self.command.entity_id)


Kind = Literal["applied", "failed", "retry", "unavailable"]


@dataclass(frozen=True)
class Result:
    kind: Kind
    error: str = ""


@dataclass(frozen=True)
class Step:
    """A partition's part of one pass: the entries to apply now, when its waiting ones are due,
    and whether it dropped entries that had no pending command."""

    ready: list[Entry]
    waits: list[int]
    forgot: bool


def drain_partition(partition: int) -> str:
    """RQ job: drain `partition` and a share of the other partitions with due work and no
    holder, together, until the time slice ends. One job serves several partitions, so that a
    partition waits for the next job to start, not for a job of its own (RQ's bookkeeping costs
    ~3 ms a job); it takes its share (the due partitions divided among the live workers), not
    all of them, so that the other workers' jobs find partitions to drain. Between passes it
    takes up partitions that got work and have no holder, up to its part of all the partitions,
    so that their commands need not wait for a job of their own. Returns a summary for RQ's
    logs."""
    rt = runtime.current()
    rt.gw.redis.delete(rt.gw.keys.kick(partition))
    deadline = time.monotonic() + rt.gw.settings.drain_slice_seconds
    count = rt.gw.settings.partitions
    due = rt.due([(partition + step) % count for step in range(1, count)])
    workers = rt.live_workers()
    share = max(1, -(-(len(due) + 1) // workers))
    most = max(share, -(-count // workers))
    drainers: list[Drainer] = []

    def take(candidates: list[int], room: int) -> list[Drainer]:
        taken: list[Drainer] = []
        while candidates and len(taken) < room:
            lease = rt.leases.acquire(candidates.pop(0))
            if lease is not None:
                taken.append(Drainer(rt, lease))
        drainers.extend(taken)
        return taken

    def take_up(active: list[Drainer]) -> list[Drainer]:
        if len(active) >= most:
            return []
        held = {d.partition for d in active}
        return take(rt.due([p for p in range(count) if p not in held]), most - len(active))

    try:
        candidates = [partition, *due]
        take(candidates, share)
        rt.kick_many(candidates)  # the rest of the due partitions: jobs of their own, for other workers
        drain_together(rt, list(drainers), deadline, take_up)
    finally:
        held = [d for d in drainers if not d.released]
        for drainer in held:
            drainer.release()
    rt.kick_many(d.partition for d in held)  # work that came in meanwhile, or the rest of a backlog
    return "; ".join(d.summary() for d in drainers) or "busy: other workers hold the partitions"


def drain_together(
    rt: runtime.Runtime,
    drainers: list[Drainer],
    deadline: float,
    take_up: Callable[[list[Drainer]], list[Drainer]] | None = None,
) -> None:
    """Pass after pass, read the held partitions' entries (a batch in all, shared among them),
    apply the due ones together, record each partition's results. A partition leaves when it has
    only retries to wait for, loses its lease, or fails (it is then paused; the others go on).

    One with nothing to read stays: when none has anything, the job waits for new entries on
    their streams, and ends after LINGER_SECONDS without any. Under a steady flow of commands a
    job so keeps its partitions for its whole slice, instead of ending and being queued again for
    every few commands. It ends early when push jobs wait for its worker (looked at when idle,
    and every TAKE_UP_SECONDS when busy). `take_up(active)` gives partitions to add (those that
    got work meanwhile, up to the job's part of all the partitions: a drain job queued for one
    of them finds it taken and ends at once); it is asked every TAKE_UP_SECONDS."""
    active: list[Drainer] = []
    joining = drainers
    next_take_up = time.monotonic() + TAKE_UP_SECONDS
    idle_since: float | None = None
    while (now := time.monotonic()) < deadline:
        claimed = [d for d in joining if d.guarded(d.claim)]
        _let_go(rt, [d for d in joining if d not in claimed])
        active += claimed
        if not active:
            break
        held = list(active)
        passes = _gather(rt, active)
        if passes:
            idle_since = None
            results = apply_ready(rt.gw, [e for _, step in passes for e in step.ready])
            for drainer, step in passes:
                moved = _record(drainer, step, results)
                if not (moved or step.forgot) or drainer.failed_with or drainer.lease.lost.is_set():
                    active.remove(drainer)
        _let_go(rt, [d for d in held if d not in active])
        if active and not passes:
            idle_since = idle_since or now
            lingered = now - idle_since
            if lingered >= LINGER_SECONDS or rt.pushes_waiting():
                break
            wait = min(TAKE_UP_SECONDS, LINGER_SECONDS - lingered, deadline - now)
            _wait_for_entries(rt, active, wait)
        joining = []
        if active and time.monotonic() >= next_take_up:
            if passes and rt.pushes_waiting():
                break  # a busy job must not hold push notifications until its slice ends
            joining = take_up(active) if take_up else []
            next_take_up = time.monotonic() + TAKE_UP_SECONDS


def _wait_for_entries(rt: runtime.Runtime, idle: list[Drainer], seconds: float) -> bool:
    """Block until an entry reaches one of the idle partitions' streams (True) or `seconds` pass
    (False). Each stream is read after the newest entry its last read found, so none is missed."""
    reply = rt.gw.redis.xread({d.stream: d.newest for d in idle}, count=1, block=max(1, int(seconds * 1000)))
    return bool(reply)


def _let_go(rt: runtime.Runtime, done: list[Drainer]) -> None:
    """Release at once the partitions this job is done with, and queue a job for any that got
    work meanwhile: they must not wait for the others' slice to end."""
    for drainer in done:
        drainer.release()
    if done:
        rt.kick_many(d.partition for d in done)


def _record(drainer: Drainer, step: Step, results: dict[Entry, Result]) -> bool | None:
    """Record a partition's part of the pass's results; None if that failed."""
    # Entries held back behind a failed command of their entity have no result: still pending.
    mine = {e: results[e] for e in step.ready if e in results}
    return drainer.guarded(lambda: drainer.record(mine, step.waits))


def _gather(rt: runtime.Runtime, active: list[Drainer]) -> list[tuple[Drainer, Step]]:
    """One pass's entries: each active partition's pending ones and its share of a batch of new
    ones, read for all of them in one round trip, and their records in another. Removes from
    `active` the partitions whose reading failed; those with nothing to read stay, idle."""
    settings = rt.gw.settings
    share = max(1, settings.batch_size // len(active))
    raws = _read_all(rt, active, share)
    reading = [(d, raw) for d, raw in raws if raw]
    if settings.batch_wait_ms and 0 < sum(len(raw) for _, raw in reading) < settings.batch_size:
        time.sleep(settings.batch_wait_ms / 1000)  # let the batch fill up
        for d, raw in reading:
            room = share - len(raw)
            if room > 0:
                raw += d.guarded(lambda d=d, room=room: d.read_new(room)) or []
    records = _load_all(rt, reading)
    steps = [(d, d.guarded(lambda d=d, raw=raw, rec=rec: d.prepare(raw, rec))) for (d, raw), rec in records]
    passes = [(d, step) for d, step in steps if step is not None]
    failed = {d for d, raw in raws if raw is None} | {d for d, step in steps if step is None}
    active[:] = [d for d in active if d not in failed]
    return passes


def _read_all(
    rt: runtime.Runtime, active: list[Drainer], share: int
) -> list[tuple[Drainer, list[RawEntry] | None]]:
    """Each partition's pending entries (up to `share`) and new ones (up to `share`), in one round
    trip for all; None for a partition whose reading failed (it is paused)."""
    trip = RoundTrip(rt.gw.redis)
    for d in active:
        d.queue_read(trip, share)
    replies = trip.send()
    return [
        (d, d.guarded(lambda d=d, i=i: d.take_read(replies[2 * i], replies[2 * i + 1], share)))
        for i, d in enumerate(active)
    ]


def _load_all(
    rt: runtime.Runtime, reading: list[tuple[Drainer, list[RawEntry]]]
) -> list[tuple[tuple[Drainer, list[RawEntry]], list[Any]]]:
    """The command records of every entry read, in one round trip for all the partitions."""
    trip = RoundTrip(rt.gw.redis)
    counts = [d.queue_load(trip, raw) for d, raw in reading]
    replies = iter(trip.send())
    return [
        (pair, [next(replies) for _ in range(count)]) for pair, count in zip(reading, counts, strict=True)
    ]


def describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text[:1000]


class Drainer:
    """One held partition of a drain job: its reading and the recording of its results."""

    def __init__(self, rt: runtime.Runtime, lease: Lease) -> None:
        self.rt = rt
        self.gw = rt.gw
        self.settings = rt.gw.settings
        self.keys = rt.gw.keys
        self.lease = lease
        self.partition = lease.partition
        self.stream = self.keys.stream(self.partition)
        self.applied = 0
        self.failed = 0
        self.failed_with = ""  # why draining this partition failed (it was paused)
        self.released = False
        self.outages_cleared = False
        self.newest = "0-0"  # the newest entry of the stream its last read found delivered

    def release(self) -> None:
        """Give the partition's lease back (once)."""
        if not self.released:
            self.released = True
            self.rt.leases.release(self.lease)

    def summary(self) -> str:
        if self.failed_with:
            return f"partition {self.partition}: {self.failed_with}"
        return f"partition {self.partition}: applied {self.applied}, failed {self.failed}"

    def guarded(self, step: Callable[[], T]) -> T | None:
        """`step()`, or None when it failed: the fault is this partition's alone, which is then
        paused (its commands stay pending) while the others go on."""
        try:
            return step()
        except BaseTimeoutException:
            raise
        except Exception as error:  # noqa: BLE001 - one partition's fault must not stop the others
            log.exception("partition %s: draining failed", self.partition)
            self.failed_with = describe(error)
            pause(self.rt, self.partition, f"draining failed ({self.failed_with})")
            return None

    def claim(self) -> bool:
        """Take over every entry still pending under other consumers (dead or slow workers)."""
        start = "0-0"
        while True:
            try:
                reply = self.gw.redis.execute_command(  # redis-py drops the cursor with JUSTID
                    "XAUTOCLAIM", self.stream, GROUP, self.rt.name, 0, start, "COUNT", 1000, "JUSTID"
                )
            except redis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                ensure_group(self.gw.redis, self.keys, self.partition)
                return True
            start = reply[0]
            if start == "0-0":
                return True

    def queue_read(self, trip: RoundTrip, size: int) -> None:
        """Add to `trip` the two reads of a pass: this worker's pending entries, oldest first (they
        come before any new one), then new ones, so that retries waiting in the pending list
        never hold back the other entities. New entries are read only while the lease is held, so
        a worker that lost it cannot take entries the new holder would apply out of order."""
        trip.command("XREADGROUP", "GROUP", GROUP, self.rt.name, "COUNT", size, "STREAMS", self.stream, "0")
        self._queue_new(trip, size)

    def _queue_new(self, trip: RoundTrip, size: int) -> None:
        call = scripts.read(
            self.keys, self.partition, token=self.lease.token, consumer=self.rt.name, count=size
        )
        self.gw.scripts.queue(trip, call)

    def take_read(self, pending: Any, new: Any, size: int) -> list[RawEntry]:
        """The entries of the replies to `queue_read`'s reads (a full page of pending entries is
        followed by the rest of them first)."""
        if isinstance(pending, Exception):
            return self._no_group(pending)
        entries = page = _entries(pending)
        while len(page) == size:
            page = self._xreadgroup(page[-1][0], size)
            entries = entries + page
        fresh = self._take_new(new)
        if new is None or isinstance(new, Exception):
            return []  # without the lease, or the group was gone: nothing to apply this pass
        # A page of pending entries read after the new ones were delivered also holds them.
        known = {entry_id for entry_id, _ in entries}
        return entries + [entry for entry in fresh if entry[0] not in known]

    def read(self, size: int | None = None) -> list[RawEntry]:
        """This worker's pending entries, then up to `size` new ones (default BATCH_SIZE)."""
        size = size or self.settings.batch_size
        trip = RoundTrip(self.gw.redis)
        self.queue_read(trip, size)
        return self.take_read(*trip.send(), size)

    def read_new(self, size: int) -> list[RawEntry]:
        """Up to `size` entries nobody has read yet."""
        trip = RoundTrip(self.gw.redis)
        self._queue_new(trip, size)
        return self._take_new(trip.send()[0])

    def _take_new(self, new: Any) -> list[RawEntry]:
        """The new entries in the read script's reply; none without the lease (it is marked
        lost). The newest entry seen is kept for `_wait_for_entries`."""
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

    def _xreadgroup(self, after: str, count: int) -> list[RawEntry]:
        """This worker's pending entries after `after`."""
        try:
            reply = self.gw.redis.xreadgroup(GROUP, self.rt.name, {self.stream: after}, count=count)
        except redis.ResponseError as error:
            return self._no_group(error)
        return _entries(reply)

    def _no_group(self, error: Exception) -> list[RawEntry]:
        """The stream or its group is gone (Redis lost its data): create them, nothing to read."""
        if not isinstance(error, redis.ResponseError) or "NOGROUP" not in str(error):
            raise error
        ensure_group(self.gw.redis, self.keys, self.partition)
        return []

    # -- one pass ----------------------------------------------------------------------------

    def prepare(self, raw: list[RawEntry], records: list[Any]) -> Step:
        """What is due among `raw`, given the records `queue_load` asked for: an entry waiting
        for its retry holds back the later entries of its entity (order); entries without a
        pending command are dropped."""
        entries, orphans = self._load(raw, records)
        if orphans:
            self._forget(orphans)
        now = now_ms()
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
        return Step(ready, waits, bool(orphans))

    def queue_load(self, trip: RoundTrip, raw: list[RawEntry]) -> int:
        """Add to `trip` a read of the command record of each entry of `raw`; how many."""
        count = 0
        for _, fields in raw:
            if fields:
                trip.command(
                    "HMGET", self.keys.command(self.partition, fields[record.COMMAND_ID]), *record.WORK_FIELDS
                )
                count += 1
        return count

    def _load(self, raw: list[RawEntry], records: list[Any]) -> tuple[list[tuple[Entry, int]], list[str]]:
        """Each entry with its command and the time it is due; orphans have no pending record."""
        replies = iter(records)
        entries: list[tuple[Entry, int]] = []
        orphans: list[str] = []
        for entry_id, fields in raw:
            reply = next(replies) if fields else []
            if isinstance(reply, Exception):
                raise reply
            work = record.work(fields[record.COMMAND_ID], seq_of(entry_id), reply) if fields else None
            if work is None:
                orphans.append(entry_id)  # deleted entry, or its record is gone or finished
                continue
            entry = Entry(entry_id=entry_id, command=work.command, user=work.user, attempts=work.attempts)
            entries.append((entry, work.due_ms))
        return entries, orphans

    def _forget(self, entry_ids: list[str]) -> None:
        log.warning(
            "partition %s: dropping %d entries without a pending command", self.partition, len(entry_ids)
        )
        pipe = self.gw.redis.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *entry_ids)
        pipe.xdel(self.stream, *entry_ids)
        pipe.execute()

    # -- recording ---------------------------------------------------------------------------

    def record(self, results: dict[Entry, Result], waits: list[int]) -> bool:
        """Write every result to Redis; True when anything finished or was scheduled again."""
        now = now_ms()
        finished: list[tuple[Entry, str, str]] = []
        retries: list[tuple[Entry, int, str]] = []
        outage = False
        for entry, result in results.items():
            if result.kind == "applied":
                finished.append((entry, "applied", ""))
            elif result.kind == "failed":
                finished.append((entry, "failed", result.error))
            elif result.kind == "unavailable":
                outage = True
            elif entry.attempts + 1 >= self.settings.max_attempts:
                finished.append((entry, "failed", result.error))
            else:
                due = now + self._backoff_ms(entry.attempts + 1)
                retries.append((entry, due, result.error))
                waits.append(due)
        if finished and not self._finish(finished, now):
            return False
        if retries and not self._retry(retries):
            return False
        if waits:
            self.gw.redis.set(self.keys.wait(self.partition), 1, px=max(1, min(waits) - now))
        if outage:
            pause(self.rt, self.partition, "store unavailable")
        elif finished and not self.outages_cleared:
            # The store works again: the next outage backs off from the start. Once per job is
            # enough, as an outage ends this partition's part in it.
            self.gw.redis.delete(self.keys.outages(self.partition))
            self.outages_cleared = True
        return bool(finished or retries) and not outage

    def _backoff_ms(self, attempt: int) -> int:
        return backoff_ms(self.settings, attempt)

    def _finish(self, finished: list[tuple[Entry, str, str]], now: int) -> bool:
        settings = self.settings
        for chunk in _chunks(finished, FINISH_CHUNK):
            call = scripts.finish(
                self.keys,
                self.partition,
                token=self.lease.token,
                now_ms=now,
                record_ttl_seconds=settings.status_ttl_seconds,
                events_per_user=settings.events_per_user,
                outbox_length=settings.outbox_length,
                oldest_dead_letter_ms=now - settings.dead_letter_days * 86_400_000,
                commands=[
                    scripts.Finished(e.entry_id, e.command.command_id, e.user, status, error, e.attempts + 1)
                    for e, status, error in chunk
                ],
            )
            if not self.gw.scripts.run(call):
                log.warning(
                    "partition %s: lease lost before finishing; the next holder redoes it", self.partition
                )
                self.lease.lost.set()
                return False
        self.applied += sum(1 for _, status, _ in finished if status == "applied")
        self.failed += sum(1 for _, status, _ in finished if status == "failed")
        return True

    def _retry(self, retries: list[tuple[Entry, int, str]]) -> bool:
        commands = [
            scripts.Retry(e.command.command_id, e.attempts + 1, due, error) for e, due, error in retries
        ]
        call = scripts.retry(self.keys, self.partition, token=self.lease.token, commands=commands)
        if not self.gw.scripts.run(call):
            self.lease.lost.set()
            return False
        return True


def apply_ready(gw: Gateway, ready: list[Entry]) -> dict[Entry, Result]:
    """Each entry's result, with one transaction per store for all of them."""
    by_store: dict[int, tuple[Store, list[Entry]]] = {}
    for entry in ready:
        store = gw.stores.for_collection(entry.command.collection)
        by_store.setdefault(id(store), (store, []))[1].append(entry)
    results: dict[Entry, Result] = {}
    for store, entries in by_store.values():
        results.update(_apply(store, entries))
    return results


def _apply(store: Store, entries: list[Entry]) -> dict[Entry, Result]:
    """Apply as one transaction; on failure, isolate the failing command(s) one by one."""
    try:
        outcomes = store.apply([e.command for e in entries])
    except StoreUnavailable as error:
        return {e: Result("unavailable", describe(error)) for e in entries}
    except Rejected as error:
        if len(entries) == 1:
            return {entries[0]: Result("failed", str(error))}
        return _apply_one_by_one(store, entries)
    except BaseTimeoutException:
        raise  # RQ's job timeout: the job ends, the entries stay pending for the next one
    except Exception as error:  # noqa: BLE001 - any store error is the command's or the store's
        if not _reachable(store):
            return {e: Result("unavailable", describe(error)) for e in entries}
        if len(entries) == 1:
            log.info("command %s failed: %s", entries[0].command.command_id, describe(error))
            return {entries[0]: Result("retry", describe(error))}
        return _apply_one_by_one(store, entries)
    return {
        e: Result("applied") if outcome is None else Result("failed", outcome)
        for e, outcome in zip(entries, outcomes, strict=False)
    }


def _apply_one_by_one(store: Store, entries: list[Entry]) -> dict[Entry, Result]:
    results: dict[Entry, Result] = {}
    blocked: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        if entry.entity in blocked:
            continue  # stays pending behind its entity's failed command
        result = _apply(store, [entry])[entry]
        if result.kind == "unavailable":
            results.update({e: result for e in entries[index:] if e.entity not in blocked})
            break
        if result.kind == "retry":
            blocked.add(entry.entity)
        results[entry] = result
    return results


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


def backoff_ms(settings: Settings, attempt: int) -> int:
    """Wait before attempt `attempt + 1`: RETRY_BASE_SECONDS doubling, capped at RETRY_MAX_SECONDS."""
    return int(min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1)) * 1000)


def pause(rt: runtime.Runtime, partition: int, reason: str) -> None:
    """Leave the partition alone for a growing while (a store is down, or draining it failed);
    no command's attempts are counted."""
    keys = rt.gw.keys
    pipe = rt.gw.redis.pipeline(transaction=False)
    pipe.incr(keys.outages(partition))
    pipe.expire(keys.outages(partition), OUTAGE_MEMORY_SECONDS)
    pause_ms = backoff_ms(rt.gw.settings, pipe.execute()[0])
    log.warning("partition %s: %s, pausing %d ms", partition, reason, pause_ms)
    rt.gw.redis.set(keys.pause(partition), 1, px=pause_ms)


def _reachable(store: Store) -> bool:
    try:
        store.ping()
    except Exception:  # noqa: BLE001
        return False
    return True


def _chunks(items: list, size: int) -> Iterable[list]:  # type: ignore[type-arg]
    for start in range(0, len(items), size):
        yield items[start : start + size]

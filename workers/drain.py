"""The drain job: apply the partitions' due commands to their stores, pass after pass.

One RQ job drains a share of the partitions with due work for at most `DRAIN_SLICE_SECONDS`,
holding their leases, so commands of one entity are applied by one worker at a time, in stream
(acceptance) order. Each pass goes through the stages of the other modules, for all the
partitions the job holds together:

- workers/stream.py reads each partition's pending entries and new ones, up to BATCH_SIZE in
  all (one round trip to Redis for all the partitions, one more for the command records), and
  says which are due;
- workers/apply.py applies the due ones with one transaction per store for all the partitions;
- workers/outcome.py records each partition's results (finished, retried, paused).

A fault while draining one partition (Redis refuses a read, a damaged record) is that
partition's alone: it is paused, and the others go on. A lost connection to Redis is every
partition's: the job ends, its leases expire, and the worker waits for Redis. Nothing is
acknowledged before its store has committed. A job keeps the partitions with nothing to read
until its slice ends, waiting on their streams when all are idle, and ends early only once idle
for a while.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from rq.timeouts import BaseTimeoutException

from gateway.redis_client import RoundTrip, read_streams
from workers import runtime
from workers.apply import Result, apply_ready, describe
from workers.lease import Lease
from workers.outcome import Outcomes, pause
from workers.stream import Due, Entry, PartitionStream, RawEntry

log = logging.getLogger("gateway.drain")

# How long a job whose partitions all have nothing to read waits for a new entry on one of them
# before it ends (unless push jobs wait for its worker): RQ's bookkeeping costs ~3 ms a job.
LINGER_SECONDS = 0.2
# How often a busy job looks for partitions that got work and that nobody holds.
TAKE_UP_SECONDS = 0.05


def drain_partition(partition: int) -> str:
    """RQ job: drain `partition` and a share of the other partitions with due work and no
    holder, together, until the time slice ends. Returns a summary for RQ's logs."""
    rt = runtime.current()
    job = DrainJob(rt)
    try:
        rt.gw.redis.delete(rt.gw.keys.kick(partition))
        try:
            job.run(job.start(partition))
        finally:
            held = job.release_all()
        rt.kick_many(h.partition for h in held)  # work that came in meanwhile, or the rest of a backlog
    except (redis.ConnectionError, redis.TimeoutError) as error:
        # Redis went away (BusyLoadingError included): nothing was acknowledged that its store had
        # not committed, and the leases not given back expire. The job ends without an error, as
        # RQ could not record one; the worker process waits for Redis (workers/__main__.py).
        rt.redis_outage.down(error)
        return f"Redis unavailable: {describe(error)}"
    rt.redis_outage.up()
    return job.summary()


class Held:
    """A partition a drain job holds: its stream, its outcomes, and why draining it failed."""

    def __init__(self, rt: runtime.Runtime, lease: Lease) -> None:
        self.rt = rt
        self.lease = lease
        self.partition = lease.partition
        self.stream = PartitionStream(rt.gw, rt.name, lease)
        self.outcomes = Outcomes(rt.gw, lease)
        self.failed_with = ""  # why draining this partition failed (it was paused)
        self.released = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run the block; a fault in it is this partition's alone. The partition is then paused
        (its commands stay pending) and marked failed, and the rest of the block is skipped."""
        try:
            yield
        except (BaseTimeoutException, redis.ConnectionError, redis.TimeoutError):
            raise  # RQ's job timeout, or Redis gone for every partition: the whole job ends
        except Exception as error:  # noqa: BLE001 - one partition's fault must not stop the others
            log.exception("partition %s: draining failed", self.partition)
            self.failed_with = describe(error)
            pause(self.rt.gw, self.partition, f"draining failed ({self.failed_with})")

    def release(self) -> None:
        """Give the partition's lease back (once). Without Redis, the lease is only forgotten
        here (no longer renewed) and expires after LEASE_SECONDS."""
        if not self.released:
            self.released = True
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self.rt.leases.release(self.lease)

    def summary(self) -> str:
        if self.failed_with:
            return f"partition {self.partition}: {self.failed_with}"
        return f"partition {self.partition}: applied {self.outcomes.applied}, failed {self.outcomes.failed}"


class DrainJob:
    """One run of the drain job: the partitions it holds and its passes over them."""

    def __init__(self, rt: runtime.Runtime) -> None:
        self.rt = rt
        self.gw = rt.gw
        self.settings = rt.gw.settings
        self.deadline = time.monotonic() + self.settings.drain_slice_seconds
        self.held: list[Held] = []  # every partition taken, in the order taken
        self.most = 1  # the most partitions it holds at once

    def start(self, partition: int) -> list[Held]:
        """Take `partition` and the job's share of the other partitions with due work (the due
        ones divided among the live workers), and queue jobs for the rest, for other workers.
        One job serves several partitions, so that a partition waits for the next job to start,
        not for a job of its own (RQ's bookkeeping costs ~3 ms a job); it takes its share, not
        all of them, so that the other workers' jobs find partitions to drain. The ones taken."""
        count = self.settings.partitions
        due = self.rt.due([(partition + step) % count for step in range(1, count)])
        workers = self.rt.live_workers()
        share = max(1, -(-(len(due) + 1) // workers))
        self.most = max(share, -(-count // workers))  # its part of all the partitions
        candidates = [partition, *due]
        taken = self._take(candidates, share)
        self.rt.kick_many(candidates)  # the due partitions it did not try to take
        return taken

    def run(self, joining: list[Held]) -> None:
        """Pass after pass, read the held partitions' entries (a batch in all, shared among them),
        apply the due ones together, record each partition's results. A partition leaves when it
        has only retries to wait for, loses its lease, or fails (it is then paused).

        One with nothing to read stays: when none has anything, the job waits for new entries on
        their streams, and ends after LINGER_SECONDS without any. Under a steady flow of commands
        a job so keeps its partitions for its whole slice, instead of ending and being queued
        again for every few commands. It ends early when push jobs wait for its worker (looked at
        when idle, and every TAKE_UP_SECONDS when busy). Every TAKE_UP_SECONDS it takes up
        partitions that got work and have no holder: a drain job queued for one of them then
        finds it taken and ends at once."""
        active: list[Held] = []
        next_take_up = time.monotonic() + TAKE_UP_SECONDS
        idle_since: float | None = None
        while (now := time.monotonic()) < self.deadline and not self.rt.stopping.is_set():
            active += self._claim(joining)
            if not active:
                break
            before = list(active)
            passes = self._gather(active)
            if passes:
                idle_since = None
                self._apply_and_record(passes, active)
            self._let_go([h for h in before if h not in active])
            if active and not passes:
                idle_since = idle_since or now
                lingered = now - idle_since
                if lingered >= LINGER_SECONDS or self.rt.pushes_waiting():
                    break
                wait = min(TAKE_UP_SECONDS, LINGER_SECONDS - lingered, self.deadline - now)
                self._wait_for_entries(active, wait)
            joining = []
            if active and time.monotonic() >= next_take_up:
                if passes and self.rt.pushes_waiting():
                    break  # a busy job must not hold push notifications until its slice ends
                joining = self._take_up(active)
                next_take_up = time.monotonic() + TAKE_UP_SECONDS

    def release_all(self) -> list[Held]:
        """Give back every partition still held; those."""
        held = [h for h in self.held if not h.released]
        for h in held:
            h.release()
        return held

    def summary(self) -> str:
        return "; ".join(h.summary() for h in self.held) or "busy: other workers hold the partitions"

    def _take(self, candidates: list[int], room: int) -> list[Held]:
        """Take the leases of up to `room` of `candidates`, trying them in order (those tried are
        removed from the list); the partitions taken."""
        taken: list[Held] = []
        while candidates and len(taken) < room:
            lease = self.rt.leases.acquire(candidates.pop(0))
            if lease is not None:
                taken.append(Held(self.rt, lease))
        self.held.extend(taken)
        return taken

    def _take_up(self, active: list[Held]) -> list[Held]:
        """Partitions that got work meanwhile and have no holder, up to the job's part of all."""
        if len(active) >= self.most:
            return []
        held = {h.partition for h in active}
        free = [p for p in range(self.settings.partitions) if p not in held]
        return self._take(self.rt.due(free), self.most - len(active))

    def _claim(self, joining: list[Held]) -> list[Held]:
        """The joining partitions whose entries held by other consumers were claimed; the others
        (failed) are let go."""
        claimed: list[Held] = []
        for held in joining:
            with held.guard():
                held.stream.claim()
                claimed.append(held)
        self._let_go([h for h in joining if h not in claimed])
        return claimed

    def _gather(self, active: list[Held]) -> list[tuple[Held, Due]]:
        """One pass's entries: each active partition's pending ones and its share of a batch of
        new ones, read for all of them in one round trip, and their records in another. Removes
        from `active` the partitions whose reading failed; those with nothing to read stay, idle."""
        share = max(1, self.settings.batch_size // len(active))
        raws = self._read_all(active, share)
        reading = [(h, raw) for h, raw in raws if raw]
        batch_wait_ms = self.settings.batch_wait_ms
        if batch_wait_ms and 0 < sum(len(raw) for _, raw in reading) < self.settings.batch_size:
            time.sleep(batch_wait_ms / 1000)  # let the batch fill up
            for held, raw in reading:
                if share > len(raw):
                    with held.guard():
                        raw += held.stream.read_new(share - len(raw))
        passes: list[tuple[Held, Due]] = []
        for (held, raw), records in self._load_all(reading):
            with held.guard():
                passes.append((held, held.stream.due(raw, records)))
        stepped = {held for held, _ in passes}
        failed = {held for held, raw in raws if raw is None} | {h for h, _ in reading if h not in stepped}
        active[:] = [h for h in active if h not in failed]
        return passes

    def _read_all(self, active: list[Held], share: int) -> list[tuple[Held, list[RawEntry] | None]]:
        """Each partition's pending entries (up to `share`) and new ones (up to `share`), in one
        round trip for all; None for a partition whose reading failed (it is paused)."""
        trip = RoundTrip(self.gw.redis)
        for held in active:
            held.stream.queue_read(trip, share)
        replies = trip.send()
        raws: list[tuple[Held, list[RawEntry] | None]] = []
        for i, held in enumerate(active):
            raw = None
            with held.guard():
                pending, new = replies[2 * i], replies[2 * i + 1]  # queue_read's two reads
                raw = held.stream.take_read(pending, new, share)
            raws.append((held, raw))
        return raws

    def _load_all(
        self, reading: list[tuple[Held, list[RawEntry]]]
    ) -> list[tuple[tuple[Held, list[RawEntry]], list[Any]]]:
        """The command records of every entry read, in one round trip for all the partitions."""
        trip = RoundTrip(self.gw.redis)
        counts = [held.stream.queue_records(trip, raw) for held, raw in reading]
        replies = iter(trip.send())
        return [(pair, [next(replies) for _ in range(n)]) for pair, n in zip(reading, counts, strict=True)]

    def _apply_and_record(self, passes: list[tuple[Held, Due]], active: list[Held]) -> None:
        """Apply the pass's due entries together and record each partition's results; a partition
        with nothing moved (only retries to wait for), lost or failed leaves `active`."""
        results = apply_ready(self.gw.stores, [e for _, due in passes for e in due.ready])
        self._note_store_outages(results)
        for held, due in passes:
            # Entries held back behind a failed command of their entity have no result: still pending.
            mine = {e: results[e] for e in due.ready if e in results}
            moved = False
            with held.guard():
                moved = held.outcomes.record(mine, due.waits)
            if not (moved or due.forgot) or held.failed_with or held.lease.lost.is_set():
                active.remove(held)

    def _note_store_outages(self, results: dict[Entry, Result]) -> None:
        """Tell each store's outage record whether the store answered this pass (it logs one
        line when a store goes down and one when it is back)."""
        answered: dict[str, Result] = {}
        for entry, result in results.items():
            name = self.gw.stores.for_collection(entry.command.collection).name
            if name not in answered or answered[name].kind == "unavailable":
                answered[name] = result  # any answer means the store is up
        for name, result in answered.items():
            outage = self.rt.store_outage(name)
            if result.kind == "unavailable":
                outage.down(result.error)
            else:
                outage.up()

    def _let_go(self, done: list[Held]) -> None:
        """Release at once the partitions this job is done with, and queue a job for any that got
        work meanwhile: they must not wait for the others' slice to end."""
        for held in done:
            held.release()
        if done:
            self.rt.kick_many(h.partition for h in done)

    def _wait_for_entries(self, idle: list[Held], seconds: float) -> bool:
        """Block until an entry reaches one of the idle partitions' streams (True) or `seconds`
        pass (False). Each stream is read after the newest entry its last read found, so none is
        missed."""
        streams = {h.stream.key: h.stream.newest for h in idle}
        return bool(read_streams(self.gw.redis, streams, count=1, block_ms=max(1, int(seconds * 1000))))

"""The drain job: apply a partition's due commands to their stores, batch by batch.

One RQ job drains one partition for at most `DRAIN_SLICE_SECONDS` while holding its lease, so
commands of one entity are applied by one worker at a time, in stream (acceptance) order.

Each pass reads the entries this worker already holds (pending: crashed, waiting for a retry,
or blocked behind one) and then new ones, and applies the due ones with one transaction per
store. When a batch fails, its commands are applied one by one, so that a bad command fails
alone; a command that fails waits for its retry and holds back the later commands of its entity
(order), not the others. A store that cannot be reached pauses the partition without counting
an attempt. Nothing is acknowledged before its store has committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import orjson
import redis
from rq.timeouts import BaseTimeoutException

from gateway.commands import now_ms
from gateway.context import ensure_group
from gateway.ids import seq_of
from gateway.keys import GROUP
from plugins.store import Command, Rejected, Store, StoreUnavailable
from settings import Settings
from workers import runtime
from workers.lease import Lease

log = logging.getLogger("gateway.drain")

RECORD_FIELDS = ("op", "col", "eid", "uid", "att", "nxt", "pl", "st")
FINISH_CHUNK = 250  # commands finished per script call, so that Redis is never blocked long
OUTAGE_MEMORY_SECONDS = 600  # consecutive outages are counted for the backoff within this window


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per entry
class Entry:
    """A stream entry and the command it stands for."""

    entry_id: str
    record_key: str
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


def drain_partition(partition: int) -> str:
    """RQ job: drain `partition`, then every other partition with due work and no holder, until
    the time slice ends. One job serves every partition that needs it, so that a partition waits
    for the next job to start, not for a job of its own (RQ's bookkeeping costs ~3 ms a job).
    Returns a summary for RQ's logs."""
    rt = runtime.current()
    rt.gw.redis.delete(rt.gw.keys.kick(partition))
    deadline = time.monotonic() + rt.gw.settings.drain_slice_seconds
    count = rt.gw.settings.partitions
    others = [(partition + step) % count for step in range(1, count)]
    summaries: list[str] = []
    drained: list[int] = []
    for candidate in [partition, *rt.due(others)]:
        if time.monotonic() >= deadline:
            break
        lease = rt.leases.acquire(candidate)
        if lease is None:
            continue
        try:
            summaries.append(Drainer(rt, lease, deadline).run())
        except BaseTimeoutException:
            raise
        except Exception as error:  # noqa: BLE001 - one partition's fault must not stop the others
            log.exception("partition %s: draining failed", candidate)
            pause(rt, candidate, f"draining failed ({describe(error)})")
            summaries.append(f"partition {candidate}: {describe(error)}")
        finally:
            rt.leases.release(lease)
        drained.append(candidate)
    for done in drained:
        rt.kick(done)  # work that came in meanwhile, or the rest of a long backlog
    return "; ".join(summaries) or "busy: other workers hold the partitions"


def describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text[:1000]


class Drainer:
    def __init__(self, rt: runtime.Runtime, lease: Lease, deadline: float) -> None:
        self.rt = rt
        self.deadline = deadline
        self.gw = rt.gw
        self.settings = rt.gw.settings
        self.keys = rt.gw.keys
        self.lease = lease
        self.partition = lease.partition
        self.stream = self.keys.stream(self.partition)
        self.applied = 0
        self.failed = 0

    def run(self) -> str:
        self._claim()
        while time.monotonic() < self.deadline and not self.lease.lost.is_set():
            entries = self._read()
            if not entries or not self._process(entries):
                break
        return f"partition {self.partition}: applied {self.applied}, failed {self.failed}"

    # -- reading -----------------------------------------------------------------------------

    def _claim(self) -> None:
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
                return
            start = reply[0]
            if start == "0-0":
                return

    def _read(self) -> list[tuple[str, dict[str, str] | None]]:
        """This worker's pending entries, oldest first, then up to a batch of new ones."""
        size = self.settings.batch_size
        entries: list[tuple[str, dict[str, str] | None]] = []
        after = "0"
        while True:
            page = self._xreadgroup(after, size)
            entries += page
            if len(page) < size:
                break
            after = page[-1][0]
        fresh = self._xreadgroup(">", size)
        if self.settings.batch_wait_ms and 0 < len(fresh) < size:
            time.sleep(self.settings.batch_wait_ms / 1000)  # let the batch fill up
            fresh += self._xreadgroup(">", size - len(fresh))
        return entries + fresh

    def _xreadgroup(self, after: str, count: int) -> list[tuple[str, dict[str, str] | None]]:
        """Entries after `after` ("0": this worker's pending ones; ">": new ones, read only while
        the lease is held, so a worker that lost it cannot take entries out of order)."""
        try:
            if after == ">":
                reply = self.gw.scripts.read(
                    keys=[self.keys.lease(self.partition), self.stream],
                    args=[self.lease.token, GROUP, self.rt.name, count],
                )
                if reply is None:
                    self.lease.lost.set()
                    return []
            else:
                reply = self.gw.redis.xreadgroup(GROUP, self.rt.name, {self.stream: after}, count=count)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            ensure_group(self.gw.redis, self.keys, self.partition)
            return []
        if not reply:
            return []
        return [(entry_id, _fields(fields)) for entry_id, fields in reply[0][1]]

    # -- one pass ----------------------------------------------------------------------------

    def _process(self, raw: list[tuple[str, dict[str, str] | None]]) -> bool:
        """Apply what is due among `raw`; True when anything finished or moved on."""
        entries, orphans = self._load(raw)
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
        results = self._apply_ready(ready)
        return self._record(results, waits) or bool(orphans)

    def _load(
        self, raw: list[tuple[str, dict[str, str] | None]]
    ) -> tuple[list[tuple[Entry, int]], list[str]]:
        """Each entry with its command and the time it is due; orphans have no pending record."""
        pipe = self.gw.redis.pipeline(transaction=False)
        for _, fields in raw:
            if fields:
                pipe.hmget(self.keys.command(self.partition, fields["c"]), RECORD_FIELDS)
        records = iter(pipe.execute())
        entries: list[tuple[Entry, int]] = []
        orphans: list[str] = []
        for entry_id, fields in raw:
            record = dict(zip(RECORD_FIELDS, next(records), strict=False)) if fields else {}
            if record.get("st") != "pending":
                orphans.append(entry_id)  # deleted entry, or its record is gone or finished
                continue
            command_id = fields["c"]  # type: ignore[index]
            command = Command(
                command_id=command_id,
                seq=seq_of(entry_id),
                op=record["op"],  # type: ignore[arg-type]
                collection=record["col"],  # type: ignore[arg-type]
                entity_id=record["eid"],  # type: ignore[arg-type]
                payload=orjson.loads(record["pl"]) if record.get("pl") else None,
            )
            entry = Entry(
                entry_id=entry_id,
                record_key=self.keys.command(self.partition, command_id),
                command=command,
                user=record["uid"] or "",
                attempts=int(record["att"] or 0),
            )
            entries.append((entry, int(record["nxt"] or 0)))
        return entries, orphans

    def _forget(self, entry_ids: list[str]) -> None:
        log.warning(
            "partition %s: dropping %d entries without a pending command", self.partition, len(entry_ids)
        )
        pipe = self.gw.redis.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *entry_ids)
        pipe.xdel(self.stream, *entry_ids)
        pipe.execute()

    # -- applying ----------------------------------------------------------------------------

    def _apply_ready(self, ready: list[Entry]) -> dict[Entry, Result]:
        by_store: dict[int, tuple[Store, list[Entry]]] = {}
        for entry in ready:
            store = self.gw.stores.for_collection(entry.command.collection)
            by_store.setdefault(id(store), (store, []))[1].append(entry)
        results: dict[Entry, Result] = {}
        for store, entries in by_store.values():
            results.update(self._apply(store, entries))
        return results

    def _apply(self, store: Store, entries: list[Entry]) -> dict[Entry, Result]:
        """Apply as one transaction; on failure, isolate the failing command(s) one by one."""
        try:
            outcomes = store.apply([e.command for e in entries])
        except StoreUnavailable as error:
            return {e: Result("unavailable", describe(error)) for e in entries}
        except Rejected as error:
            if len(entries) == 1:
                return {entries[0]: Result("failed", str(error))}
            return self._apply_one_by_one(store, entries)
        except BaseTimeoutException:
            raise  # RQ's job timeout: the job ends, the entries stay pending for the next one
        except Exception as error:  # noqa: BLE001 - any store error is the command's or the store's
            if not _reachable(store):
                return {e: Result("unavailable", describe(error)) for e in entries}
            if len(entries) == 1:
                log.info("command %s failed: %s", entries[0].command.command_id, describe(error))
                return {entries[0]: Result("retry", describe(error))}
            return self._apply_one_by_one(store, entries)
        return {
            e: Result("applied") if outcome is None else Result("failed", outcome)
            for e, outcome in zip(entries, outcomes, strict=False)
        }

    def _apply_one_by_one(self, store: Store, entries: list[Entry]) -> dict[Entry, Result]:
        results: dict[Entry, Result] = {}
        blocked: set[tuple[str, str]] = set()
        for index, entry in enumerate(entries):
            if entry.entity in blocked:
                continue  # stays pending behind its entity's failed command
            result = self._apply(store, [entry])[entry]
            if result.kind == "unavailable":
                results.update({e: result for e in entries[index:] if e.entity not in blocked})
                break
            if result.kind == "retry":
                blocked.add(entry.entity)
            results[entry] = result
        return results

    # -- recording ---------------------------------------------------------------------------

    def _record(self, results: dict[Entry, Result], waits: list[int]) -> bool:
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
        elif finished:
            self.gw.redis.delete(self.keys.outages(self.partition))
        return bool(finished or retries) and not outage

    def _backoff_ms(self, attempt: int) -> int:
        return backoff_ms(self.settings, attempt)

    def _finish(self, finished: list[tuple[Entry, str, str]], now: int) -> bool:
        keys, settings = self.keys, self.settings
        for chunk in _chunks(finished, FINISH_CHUNK):
            script_keys = [keys.lease(self.partition), self.stream, keys.dead(self.partition), keys.outbox()]
            args: list[object] = [self.lease.token, GROUP, now, settings.status_ttl_seconds]
            args += [settings.events_per_user, settings.outbox_length]
            for entry, status, error in chunk:
                script_keys += [entry.record_key, keys.events(entry.user)]
                args += [entry.entry_id, entry.command.command_id, status, error, entry.attempts + 1]
            if not self.gw.scripts.finish(keys=script_keys, args=args):
                log.warning(
                    "partition %s: lease lost before finishing; the next holder redoes it", self.partition
                )
                self.lease.lost.set()
                return False
        self.applied += sum(1 for _, status, _ in finished if status == "applied")
        self.failed += sum(1 for _, status, _ in finished if status == "failed")
        return True

    def _retry(self, retries: list[tuple[Entry, int, str]]) -> bool:
        script_keys = [self.keys.lease(self.partition)]
        args: list[object] = [self.lease.token]
        for entry, due, error in retries:
            script_keys.append(entry.record_key)
            args += [entry.attempts + 1, due, error]
        if not self.gw.scripts.retry(keys=script_keys, args=args):
            self.lease.lost.set()
            return False
        return True


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

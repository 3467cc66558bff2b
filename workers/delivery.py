"""The notify stage's worker side: every finished command's event is delivered to the notifier
plugins (FCM, a team's webhook, ...); the contract they implement is `plugins/notifier.py`, and
the web side's live deliveries to WebSocket and SSE clients are `gateway/notify/`.

One thread per notifier follows the outbox stream through a consumer group of its own,
`notify:<name>`, in which each worker process is a consumer: each event reaches one process,
and a slow or failing notifier holds back only itself. An entry is acknowledged once its
notifier took it (at least once). A batch whose notifier raises is read again from the pending
list after a backoff, up to ATTEMPTS times, then logged and dropped. What a worker that died
was holding is claimed by another after CLAIM_IDLE_MS.

The group starts at the end of the outbox when it is first made, so a new notifier is not
flooded with the outbox's history.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from gateway import record
from gateway.redis_client import Outage, connect
from plugins.events import Event
from plugins.notifier import Notifier
from workers.plugin_services import RuntimeServices
from workers.runtime import Runtime

log = logging.getLogger("gateway.notifier")

GROUP_PREFIX = "notify:"
BATCH = 100  # events per notify call
BLOCK_MS = 2000  # wait for new events; below the Redis client's 5 s read timeout
CLAIM_IDLE_MS = 30_000  # a batch pending this long belongs to a worker that died
ATTEMPTS = 5
BACKOFF_SECONDS = (1, 2, 4, 8)  # before the 2nd, 3rd, ... attempt at a failed batch
RETRY_REDIS_SECONDS = 1.0

Entries = list[tuple[str, dict[str, str] | None]]


class NotifierThread(threading.Thread):
    """Feeds one notifier from the outbox."""

    def __init__(self, rt: Runtime, notifier: Notifier) -> None:
        super().__init__(name=f"notifier-{notifier.name}", daemon=True)
        self.notifier = notifier
        self.settings = rt.gw.settings
        self.consumer = rt.name
        self.outbox = rt.gw.keys.outbox()
        self.group = GROUP_PREFIX + notifier.name
        self.stopped = threading.Event()
        self.failures = 0  # consecutive failed attempts at the batch now pending
        self.group_ready = False
        self.next_claim = 0.0
        self.redis = connect(self.settings)

    def run(self) -> None:
        outage = Outage(log, f"notifier {self.notifier.name}: Redis")
        while not self.stopped.is_set():
            try:
                self.step()
            except redis.RedisError as error:
                self.group_ready = False  # a Redis that lost its data lost the group too
                self.stopped.wait(outage.down(error))
                continue
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                log.exception("notifier %s: unexpected error, going on", self.notifier.name)
                self.stopped.wait(RETRY_REDIS_SECONDS)
                continue
            outage.up()
        self.redis.close()

    def step(self) -> int:
        """Read one batch (held, claimed, or new) and hand it on; the number of events handed on."""
        self.ensure_group()
        entries = self.read_pending() or self.claim() or self.read_new()
        events, held, unusable = [], [], []
        for entry_id, fields in entries:
            event = self.event_of(entry_id, fields)
            if event is None:
                unusable.append(entry_id)
            else:
                events.append(event)
                held.append(entry_id)
        if unusable:
            self.redis.xack(self.outbox, self.group, *unusable)
        if not events:
            return 0
        try:
            self.notifier.notify(events)
        except Exception:  # noqa: BLE001 - a plugin's failure must not stop the others
            return self.failed(held)
        self.failures = 0
        self.redis.xack(self.outbox, self.group, *held)
        return len(events)

    def event_of(self, entry_id: str, fields: dict[str, str] | None) -> Event | None:
        """The entry's event; None when it was trimmed while pending, or cannot be read."""
        if not fields:
            return None  # trimmed from the outbox while it was pending
        try:
            context = {"claims": fields.get(record.CLAIMS), "request_id": fields.get(record.REQUEST_ID)}
            return Event.from_log(fields["i"], fields["u"], fields["e"], **context)
        except (KeyError, ValueError):
            log.error("notifier %s: outbox entry %s is not an event; skipped", self.notifier.name, entry_id)
            return None

    def failed(self, entry_ids: list[str]) -> int:
        self.failures += 1
        if self.failures >= ATTEMPTS:
            log.exception(
                "notifier %s failed %d times on %d events; dropping them",
                self.notifier.name,
                self.failures,
                len(entry_ids),
            )
            self.redis.xack(self.outbox, self.group, *entry_ids)
            self.failures = 0
            return 0
        delay = BACKOFF_SECONDS[min(self.failures, len(BACKOFF_SECONDS)) - 1]
        log.exception("notifier %s failed; trying again in %s s", self.notifier.name, delay)
        self.stopped.wait(delay)
        return 0

    def ensure_group(self) -> None:
        if self.group_ready:
            return
        try:
            self.redis.xgroup_create(self.outbox, self.group, id="$", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self.group_ready = True

    def read_pending(self) -> Entries:
        """The batch this consumer holds and has not handed on (its notifier failed)."""
        return self._read("0", block=None)

    def claim(self) -> Entries:
        """A batch held too long by another consumer, a worker that died (looked for now and then)."""
        if time.monotonic() < self.next_claim:
            return []
        self.next_claim = time.monotonic() + CLAIM_IDLE_MS / 1000 / 3
        reply = self.redis.xautoclaim(
            self.outbox, self.group, self.consumer, CLAIM_IDLE_MS, start_id="0-0", count=BATCH
        )
        return [(entry_id, fields or None) for entry_id, fields in reply[1]]

    def read_new(self) -> Entries:
        return self._read(">", block=BLOCK_MS)

    def _read(self, after: str, block: int | None) -> Entries:
        try:
            reply = self.redis.xreadgroup(
                self.group, self.consumer, {self.outbox: after}, count=BATCH, block=block
            )
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self.group_ready = False  # the outbox was deleted: make the group again
            return []
        return [(entry_id, fields or None) for entry_id, fields in reply[0][1]] if reply else []

    def stop(self) -> None:
        self.stopped.set()


def start_notifiers(rt: Runtime) -> list[NotifierThread]:
    """One running thread per notifier the plugins provide."""
    threads = [NotifierThread(rt, notifier) for notifier in rt.gw.plugins.notifiers(RuntimeServices(rt))]
    for thread in threads:
        thread.start()
    if threads:
        log.info("notifiers: %s", ", ".join(t.notifier.name for t in threads))
    return threads


def stop_notifiers(threads: list[NotifierThread]) -> None:
    for thread in threads:
        thread.stop()
    for thread in threads:
        thread.join(BLOCK_MS / 1000 + 5)
        thread.notifier.close()

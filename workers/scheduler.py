"""Queues drain jobs: at once when a stream receives a command, and by a periodic scan.

The wake-up is a blocking XREAD on every partition stream, from the last entry it has seen of
each, so nothing added between two reads goes unseen (on a Redis Cluster, where one XREAD
reaches one slot, a poll of them all every 10 ms: gateway.redis_client.read_streams). A busy
stream would otherwise wake it for every command (a kick each time, though a drain job is
already on the partition and takes the new entries itself): after a wake-up it waits
WAKE_GATHER_SECONDS, and the next read returns everything that came in meanwhile, in one wake-up.

The scan is the safety net that finds what a wake-up cannot see: partitions whose worker died
(lease expired), retries that came due, a store that came back, a queued job that was lost.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from gateway.redis_client import Outage, connect, read_streams
from workers.runtime import Runtime

log = logging.getLogger("gateway.scheduler")

# At most ~200 wake-ups a second whatever the load, for at most 5 ms more latency.
WAKE_GATHER_SECONDS = 0.005
WAKE_READ_COUNT = 1000  # entries read per stream and wake-up: only their ids are looked at


class Scheduler(threading.Thread):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.rt = rt
        self.interval = rt.gw.settings.scan_interval_seconds
        self.stopped = threading.Event()
        self.partition_of_stream = {rt.gw.keys.stream(p): p for p in range(rt.gw.settings.partitions)}
        self.wake_ups = 0  # XREADs that returned entries

    def run(self) -> None:
        listener = connect(self.rt.gw.settings)
        outage = Outage(log, "scheduler: Redis")
        next_scan = 0.0
        seen: dict[str, str] | None = None
        while not self.stopped.is_set():
            try:
                if seen is None:
                    seen = self._last_ids(listener)
                if time.monotonic() >= next_scan:
                    self.rt.kick_all()
                    next_scan = time.monotonic() + self.interval
                block_ms = max(1, int((next_scan - time.monotonic()) * 1000))
                replies = read_streams(listener, seen, count=WAKE_READ_COUNT, block_ms=block_ms)
                for stream, entries in replies:
                    seen[stream] = entries[-1][0]
                outage.up()
                if replies:
                    self.wake_ups += 1
                    self.rt.kick_many([self.partition_of_stream[stream] for stream, _ in replies])
                    self.stopped.wait(WAKE_GATHER_SECONDS)
            except redis.RedisError as error:
                seen = None  # the streams may have been recreated meanwhile
                self.stopped.wait(outage.down(error))
        listener.close()

    def _last_ids(self, client: redis.Redis) -> dict[str, str]:
        """Each stream's newest entry id ("0-0" for an empty stream): the XREAD starts after it.
        What was there before is the scan's to find."""
        pipe = client.pipeline(transaction=False)
        for stream in self.partition_of_stream:
            pipe.xrevrange(stream, count=1)
        newest = pipe.execute()
        return {
            stream: entries[0][0] if entries else "0-0"
            for stream, entries in zip(self.partition_of_stream, newest, strict=True)
        }

    def stop(self) -> None:
        self.stopped.set()

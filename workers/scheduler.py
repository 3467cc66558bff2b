"""Queues drain jobs: at once when a stream receives a command, and by a periodic scan.

The wake-up is a blocking XREAD on every partition stream. The scan is the safety net that
finds what a wake-up cannot see: partitions whose worker died (lease expired), retries that
came due, a store that came back, a queued job that was lost.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from gateway.redis_client import connect
from workers.runtime import Runtime

log = logging.getLogger("gateway.scheduler")


class Scheduler(threading.Thread):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.rt = rt
        self.interval = rt.gw.settings.scan_interval_seconds
        self.stopped = threading.Event()
        self.partition_of_stream = {rt.gw.keys.stream(p): p for p in range(rt.gw.settings.partitions)}

    def run(self) -> None:
        listener = connect(self.rt.gw.settings)
        next_scan = 0.0
        while not self.stopped.is_set():
            try:
                if time.monotonic() >= next_scan:
                    self.rt.kick_all()
                    next_scan = time.monotonic() + self.interval
                block_ms = max(1, int((next_scan - time.monotonic()) * 1000))
                streams = dict.fromkeys(self.partition_of_stream, "$")
                for stream, _ in listener.xread(streams, count=1, block=block_ms) or []:
                    self.rt.kick(self.partition_of_stream[stream])
            except redis.RedisError:
                log.exception("scheduler: Redis error, retrying in a second")
                self.stopped.wait(1)
        listener.close()

    def stop(self) -> None:
        self.stopped.set()

"""What only a web process knows, reported to Redis so that whichever process answers
`/metrics` gives the whole deployment's: its open notification streams, per channel, and the
latencies of the accept step it measured.

A reporter thread (a greenlet under gunicorn's gevent worker), started on the process's first
accept or stream, writes every REPORT_SECONDS, in one round trip:

- the open streams into the process's own hash (`Keys.web_process`), which expires after
  REPORT_TTL_SECONDS, and its name into the `Keys.web_processes` set: a killed process's
  streams leave the totals when its hash expires, and its name is removed from the set by the
  next report of any process;
- the accept latencies measured since its last report, added (HINCRBY) to one partition's
  counters (gateway/stats.py), where they are summed with every other process's.

The accept path pays a clock read and an in-memory count. A process that stops reports once
more; one killed with SIGKILL loses the latencies of its last REPORT_SECONDS.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import redis

from gateway.redis_client import Outage
from gateway.stats import ACCEPT_LATENCY_BUCKETS

if TYPE_CHECKING:
    from gateway.context import Gateway

log = logging.getLogger("gateway.metrics")

REPORT_SECONDS = 5.0
# A process missing two reports in a row no longer counts (its streams are gone with it).
REPORT_TTL_SECONDS = 3 * int(REPORT_SECONDS)
CHANNELS = ("sse", "websocket")  # where notification streams are open (gateway/notify)


class LatencyCounts:
    """Latencies measured since they were last taken, per histogram bucket; thread-safe."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self._counts = [0] * (len(bounds) + 1)
        self._sum_us = 0

    def observe(self, seconds: float) -> None:
        bucket = bisect.bisect_left(self._bounds, seconds)  # the first bound at or above it
        with self._lock:
            self._counts[bucket] += 1
            self._sum_us += int(seconds * 1_000_000)

    def take(self) -> tuple[list[int], int]:
        """The counts per bucket and the sum (µs) since the last take; counting starts again."""
        with self._lock:
            counts, self._counts = self._counts, [0] * len(self._counts)
            sum_us, self._sum_us = self._sum_us, 0
        return counts, sum_us

    def give_back(self, counts: list[int], sum_us: int) -> None:
        """Counts taken but not reported (Redis was down): reported with the next ones."""
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
            self._sum_us += sum_us


class ProcessReport:
    """This web process's report: its open streams (from `count_streams`) and accept latencies."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        # The partition whose counters take this process's latencies: any one would do.
        self.partition = int.from_bytes(self.name.encode()[-4:], "big") % gw.settings.partitions
        self.accept_latency = LatencyCounts(ACCEPT_LATENCY_BUCKETS)
        self._streams: Callable[[], Mapping[str, int]] = dict
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._start_lock = threading.Lock()

    def count_streams(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Report what `source` answers: open streams by channel (the process's hub)."""
        self._streams = source

    def observe_accept(self, seconds: float) -> None:
        """One accept step took `seconds`, as this process saw it."""
        self.accept_latency.observe(seconds)
        if self._thread is None:
            self.start()

    def start(self) -> None:
        """Start reporting, if not started yet (and not stopped)."""
        with self._start_lock:
            if self._thread is not None or self._stopped.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="process-report", daemon=True)
            self._thread.start()
        atexit.register(self.close)

    def report(self) -> None:
        """Write the open streams and the latencies since the last report (one round trip),
        then forget the names of processes whose report expired."""
        keys, streams = self.gw.keys, self._streams()
        counts, sum_us = self.accept_latency.take()
        mine, stats = keys.web_process(self.name), keys.stats(self.partition)
        pipe = self.gw.redis.pipeline(transaction=False)
        pipe.hset(mine, mapping={f"streams|{c}": streams.get(c, 0) for c in (*CHANNELS, *streams)})
        pipe.expire(mine, REPORT_TTL_SECONDS)
        pipe.sadd(keys.web_processes(), self.name)
        for bucket, count in enumerate(counts):
            if count:
                pipe.hincrby(stats, f"alat|{bucket}", count)
        if sum_us:
            pipe.hincrby(stats, "alat_us", sum_us)
        pipe.smembers(keys.web_processes())
        try:
            names = sorted(pipe.execute()[-1])
        except redis.RedisError:
            self.accept_latency.give_back(counts, sum_us)  # the HINCRBYs all ran, or none
            raise
        pipe = self.gw.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(keys.web_process(name))
        gone = [name for name, exists in zip(names, pipe.execute(), strict=True) if not exists]
        if gone:
            self.gw.redis.srem(keys.web_processes(), *gone)

    def close(self) -> None:
        """Stop reporting: the last latencies are reported, and the streams (none now) forgotten."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._thread is None:
            return
        self._thread.join(REPORT_SECONDS)
        try:
            self._streams = dict
            self.report()
            self.gw.redis.delete(self.gw.keys.web_process(self.name))
        except redis.RedisError as error:
            log.warning("process report: the last one was not written: %s", error)

    def _run(self) -> None:
        outage = Outage(log, "process report: Redis")
        next_at = time.monotonic() + REPORT_SECONDS  # the first accept or stream is not held up
        while not self._stopped.wait(max(0.0, next_at - time.monotonic())):
            next_at = time.monotonic() + REPORT_SECONDS
            try:
                self.report()
                outage.up()
            except redis.RedisError as error:
                outage.down(error)
            except Exception:  # noqa: BLE001 - the reporter must outlive any one failure
                log.exception("process report: unexpected error, going on")

"""The worker process's shared parts: the gateway, its leases, the RQ queue, and kicks."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable
from typing import Any

from rq import Queue, Worker

from gateway import scripts
from gateway.context import Gateway
from gateway.redis_client import Outage, RoundTrip, connect_queue
from settings import Settings, load
from workers.lease import Leases

# RQ keeps a queued job by this dotted path, and queued jobs outlive a deploy: keep it importable.
DRAIN_JOB = "workers.drain.drain_partition"
KICK_TTL_MS = 30_000  # a queued drain job that never ran (lost queue) is re-queued after this
# A drain job normally ends within its slice; this only stops one stuck on a hung store.
DRAIN_JOB_TIMEOUT = 300


class Runtime:
    """One per worker process; the drain jobs it runs find it with `current()`."""

    def __init__(self, settings: Settings) -> None:
        self.gw = Gateway(settings)
        self.gw.collections  # noqa: B018 - the declarations, read (and checked) at start, not at a first write
        # Unique per start: a restarted container keeps its hostname and pid, and RQ refuses a
        # worker name whose previous owner died without saying so (for ~8 minutes).
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.leases = Leases(self.gw, self.name)
        self.rq_redis = connect_queue(settings)  # RQ runs on a plain Redis, a cluster or not
        self.queue = Queue(self.gw.keys.rq_queue(), connection=self.rq_redis)
        # Push notification jobs (FCM sends), after the drain jobs in the RQ worker's order.
        self.push_queue = Queue(self.gw.keys.push_queue(), connection=self.rq_redis)
        # Set by SIGTERM: the running drain job ends after its current pass, the process then ends.
        self.stopping = threading.Event()
        # Redis as the RQ loop and the drain jobs see it (the other threads keep outages of their own).
        self.redis_outage = Outage(logging.getLogger("gateway.worker"), "Redis")
        self.store_outages: dict[str, Outage] = {}

    def store_outage(self, name: str) -> Outage:
        """The outage record of the store `name`, as the drain jobs see it."""
        if name not in self.store_outages:
            self.store_outages[name] = Outage(logging.getLogger("gateway.drain"), f"store {name}")
        return self.store_outages[name]

    def _checks(self, partitions: list[int], check_only: bool) -> list[Any]:
        """kick.lua for each of `partitions`, in one round trip: queue-if-due (which sets the
        marker), or with `check_only` only ask."""
        trip = RoundTrip(self.gw.redis)
        for partition in partitions:
            call = scripts.kick(self.gw.keys, partition, marker_ttl_ms=KICK_TTL_MS, check_only=check_only)
            self.gw.scripts.queue(trip, call)
        replies = trip.send()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def kick_all(self) -> int:
        """`kick_many` for every partition."""
        return self.kick_many(range(self.gw.settings.partitions))

    def kick_many(self, partitions: Iterable[int]) -> int:
        """Queue a drain job for each of `partitions` that has due work and none queued or running,
        with one round trip for the checks; how many got a job."""
        partitions = list(partitions)
        marked = self._checks(partitions, check_only=False)
        due = [p for p, queue_it in zip(partitions, marked, strict=True) if queue_it]
        for partition in due:
            self.enqueue_drain(partition)
        return len(due)

    def pushes_waiting(self) -> bool:
        """Whether push notification jobs wait for this process's worker."""
        return self.push_queue.count > 0

    def live_workers(self) -> int:
        """Workers listening on the drain queue (RQ's registry of them), this one included."""
        return max(1, Worker.count(queue=self.queue))

    def due(self, partitions: list[int]) -> list[int]:
        """Those of `partitions` with work due now and nobody on them, in one round trip."""
        checks = self._checks(partitions, check_only=True)
        return [p for p, is_due in zip(partitions, checks, strict=True) if is_due]

    def enqueue_drain(self, partition: int) -> None:
        self.queue.enqueue(
            DRAIN_JOB,
            partition,
            job_timeout=DRAIN_JOB_TIMEOUT,
            result_ttl=0,
            failure_ttl=24 * 3600,
            description=f"drain partition {partition}",
        )

    def close(self) -> None:
        self.leases.stop()
        self.gw.close()
        self.rq_redis.close()


_current: Runtime | None = None


def current() -> Runtime:
    """This process's runtime; built from the environment when a plain `rq worker` runs a job."""
    global _current
    if _current is None:
        _current = Runtime(load())
    return _current


def install(runtime: Runtime | None) -> None:
    global _current
    _current = runtime

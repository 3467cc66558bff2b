"""Partition leases: one worker at a time applies a partition, which keeps per-entity order.

A lease is a Redis key with a TTL and a token that is new for every holder (a fencing token):
the scripts that finish commands check it, so a worker that lost its lease (paused, partitioned
away) cannot acknowledge work another worker has taken over. A keeper thread renews the leases
the process holds, so a long store transaction does not lose one; a dead process stops renewing,
and its partitions are free again after `LEASE_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import redis

from gateway import scripts
from gateway.context import Gateway
from gateway.redis_client import Outage

log = logging.getLogger("gateway.lease")


@dataclass
class Lease:
    partition: int
    token: str
    lost: threading.Event = field(default_factory=threading.Event)


class Leases:
    """Takes, renews and releases this process's partition leases."""

    def __init__(self, gw: Gateway, owner: str) -> None:
        self.gw = gw
        self.owner = owner
        self.ttl_ms = int(gw.settings.lease_seconds * 1000)
        self._held: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self, partition: int) -> Lease | None:
        call = scripts.lease_acquire(self.gw.keys, partition, owner=self.owner, ttl_ms=self.ttl_ms)
        token = self.gw.scripts.run(call)
        if not token:
            return None
        lease = Lease(partition, token)
        with self._lock:
            self._held[partition] = lease
        self._ensure_keeper()
        return lease

    def release(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(lease.partition, None)
        self.gw.scripts.run(scripts.lease_release(self.gw.keys, lease.partition, token=lease.token))

    def renew_all(self) -> None:
        with self._lock:
            held = list(self._held.values())
        for lease in held:
            call = scripts.lease_renew(self.gw.keys, lease.partition, token=lease.token, ttl_ms=self.ttl_ms)
            renewed = self.gw.scripts.run(call)
            if not renewed:
                log.warning("lost the lease of partition %s", lease.partition)
                lease.lost.set()

    def _ensure_keeper(self) -> None:
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        outage = Outage(log, "lease keeper: Redis")
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.renew_all()
            except redis.RedisError as error:  # try again at the next tick; a lease not renewed expires
                outage.down(error)
            except Exception:  # noqa: BLE001 - the keeper must outlive any one failure
                log.exception("renewing leases failed")
            else:
                outage.up()

    def stop(self) -> None:
        self._stop.set()

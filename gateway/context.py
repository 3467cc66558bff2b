"""The shared parts of a gateway process (web or worker): settings, Redis, scripts, stores."""

from __future__ import annotations

import functools
import logging

import redis

from gateway.keys import GROUP, Keys
from gateway.pipelining import ScriptBatcher
from gateway.process_report import ProcessReport
from gateway.redis_client import ReplicaWait, connect, connect_queue
from gateway.schemas import Collections
from gateway.scripts import Quotas, Scripts
from gateway.stores import StoreRouter
from plugins.manager import Plugins
from settings import Settings

log = logging.getLogger("gateway")


class Gateway:
    """One per process; built from settings, with the stores opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix, cluster=settings.redis_cluster)
        self.redis: redis.Redis = connect(settings)
        self.scripts = Scripts(self.redis)

    @functools.cached_property
    def accept_calls(self) -> ScriptBatcher:
        """The accept script, called through auto-pipelining (see gateway/pipelining.py)."""
        wait = ReplicaWait(self.settings.redis_wait_replicas, self.settings.redis_wait_timeout_ms)
        return ScriptBatcher(self.redis, self.scripts.script("accept"), wait=wait)

    @functools.cached_property
    def queue_redis(self) -> redis.Redis:
        """The plain Redis of RQ's queues (QUEUE_REDIS_URL), decoded: to read RQ's registries
        (the gateway's own client when that is REDIS_URL)."""
        if self.settings.queue_redis_url is None:
            return self.redis
        return connect_queue(self.settings, decode=True)

    @functools.cached_property
    def process_report(self) -> ProcessReport:
        """What this process alone knows (open streams, accept latencies), reported to Redis."""
        return ProcessReport(self)

    @functools.cached_property
    def accept_quotas(self) -> Quotas:
        """The quotas every accept call carries, from the settings."""
        return Quotas(
            max_pending_per_user=self.settings.max_pending_per_user,
            max_backlog=self.settings.max_backlog,
            idempotency_keys_per_user=self.settings.idempotency_keys_per_user,
            pending_ttl_seconds=self.settings.status_ttl_seconds,
            partitions=self.settings.partitions,
        )

    @functools.cached_property
    def plugins(self) -> Plugins:
        return Plugins(self.settings)

    @functools.cached_property
    def collections(self) -> Collections:
        """The declared collections and their policies (settings, schemas, plugins)."""
        return Collections.from_settings(self.settings, self.plugins.collections())

    @functools.cached_property
    def stores(self) -> StoreRouter:
        return StoreRouter.from_settings(self.settings, self.plugins.stores())

    def ensure_groups(self) -> None:
        """Create the consumer group of every partition stream (idempotent)."""
        for partition in range(self.settings.partitions):
            ensure_group(self.redis, self.keys, partition)

    def close(self) -> None:
        if "process_report" in self.__dict__:
            self.process_report.close()
        if "stores" in self.__dict__:
            self.stores.close()
        self.redis.close()
        if "queue_redis" in self.__dict__ and self.queue_redis is not self.redis:
            self.queue_redis.close()


def ensure_group(client: redis.Redis, keys: Keys, partition: int) -> None:
    """Create the partition's consumer group, from the stream's first entry, if it is missing."""
    try:
        client.xgroup_create(keys.stream(partition), GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise

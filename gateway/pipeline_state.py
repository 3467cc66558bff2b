"""The pipeline's state as Redis holds it, read in one go for every view of it: `/metrics`
(gateway/metrics.py), and `flask status` and `/admin` (gateway/pipeline_status.py).

Two round trips, whatever the number of partitions and processes: the first reads Redis's
clock (TIME: every age is measured on it, never on the reading machine's), every partition's
keys, and the registries of RQ workers and of web processes; the second, whether each
registered worker is still alive and what each web process reported (gateway/process_report.py).
With RQ on its own Redis (QUEUE_REDIS_URL, as on a Redis Cluster) its registry and workers are
read there, one round trip each more. On a cluster each round trip is one pipeline of the
cluster client, each command sent to the node serving its key.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from rq import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from gateway.context import Gateway
from gateway.redis_client import RoundTrip
from gateway.stats import Totals

STREAMS_FIELD = "streams|"  # a web process's report: `streams|<channel>` = its open streams


@dataclass(frozen=True)
class PartitionState:
    partition: int
    backlog: int  # entries in its stream: commands accepted and not finished
    first_added_ms: int | None  # when its oldest unfinished command was added; None: none waits
    holder: str | None  # the worker whose lease it is under
    paused_ms: int  # how long it stays paused for a store it could not reach (0: not paused)
    dead_letters: int  # kept now
    dead_trimmed: int  # dropped, oldest first, to stay under MAX_DEAD_LETTERS
    stats: dict[str, str]  # its counters (gateway/stats.py)

    def oldest_pending_seconds(self, now_ms: int) -> float | None:
        if self.first_added_ms is None:
            return None
        return max(now_ms - self.first_added_ms, 0) / 1000


@dataclass(frozen=True)
class PipelineState:
    now_ms: int  # Redis's clock when it was read
    partitions: list[PartitionState]
    workers: list[str]  # names of the live workers of the drain queue
    open_streams: Counter[str]  # notification streams open now, by channel, in every web process

    @functools.cached_property
    def totals(self) -> Totals:
        return Totals.of(p.stats for p in self.partitions)

    @property
    def backlog(self) -> int:
        return sum(p.backlog for p in self.partitions)

    @property
    def oldest_pending_seconds(self) -> float | None:
        ages = [p.oldest_pending_seconds(self.now_ms) for p in self.partitions]
        return max((age for age in ages if age is not None), default=None)

    @property
    def dead_letters(self) -> int:
        return sum(p.dead_letters for p in self.partitions)


def read(gw: Gateway) -> PipelineState:
    """The state now."""
    keys, partitions = gw.keys, range(gw.settings.partitions)
    trip = RoundTrip(gw.redis)
    trip.command("TIME")
    for p in partitions:
        trip.command("XLEN", keys.stream(p))
        trip.command("XRANGE", keys.stream(p), "-", "+", "COUNT", 1)
        trip.command("GET", keys.lease(p))
        trip.command("PTTL", keys.pause(p))
        trip.command("XLEN", keys.dead(p))
        trip.command("GET", keys.dead_trimmed(p))
        trip.command("HGETALL", keys.stats(p))
    registry = WORKERS_BY_QUEUE_KEY % keys.rq_queue()
    queue_apart = gw.queue_redis is not gw.redis  # QUEUE_REDIS_URL: RQ on its own Redis
    if not queue_apart:
        trip.command("SMEMBERS", registry)
    trip.command("SMEMBERS", keys.web_processes())
    replies = checked(trip.send())
    seconds, micros = replies[0]
    web_names = sorted(replies[-1])
    worker_keys = sorted(gw.queue_redis.smembers(registry) if queue_apart else replies[-2])
    rows = []
    for p in partitions:
        backlog, first, lease, pause_ms, dead, trimmed, stats = replies[1 + 7 * p : 8 + 7 * p]
        rows.append(
            PartitionState(
                partition=p,
                backlog=backlog,
                first_added_ms=int(first[0][0].partition("-")[0]) if first else None,  # ids are ms-n
                holder=lease.partition(":")[2] or None if lease else None,  # "<token>:<holder>"
                paused_ms=max(pause_ms, 0),
                dead_letters=dead,
                dead_trimmed=int(trimmed or 0),
                stats=stats,
            )
        )
    workers, streams = _processes(gw, worker_keys, web_names)
    return PipelineState(int(seconds) * 1000 + int(micros) // 1000, rows, workers, streams)


def _processes(gw: Gateway, worker_keys: list[str], web_names: list[str]) -> tuple[list[str], Counter[str]]:
    """The live workers (RQ's registry, less those whose key expired: a killed process stays
    in the registry until a live one cleans it), and the open streams the web processes whose
    report has not expired reported."""
    streams: Counter[str] = Counter()
    if not worker_keys and not web_names:
        return [], streams
    queue_apart = gw.queue_redis is not gw.redis
    trip = RoundTrip(gw.redis)
    if queue_apart:
        queue_trip = RoundTrip(gw.queue_redis)
        for key in worker_keys:
            queue_trip.command("EXISTS", key)
        alive = checked(queue_trip.send()) if worker_keys else []
    else:
        for key in worker_keys:
            trip.command("EXISTS", key)
    for name in web_names:
        trip.command("HGETALL", gw.keys.web_process(name))
    replies = checked(trip.send())
    if not queue_apart:
        alive = replies[: len(worker_keys)]
        replies = replies[len(worker_keys) :]
    workers = [
        key.removeprefix(Worker.redis_worker_namespace_prefix)
        for key, exists in zip(worker_keys, alive, strict=True)
        if exists
    ]
    for report in replies:
        for field, value in report.items():
            if field.startswith(STREAMS_FIELD):
                streams[field.removeprefix(STREAMS_FIELD)] += int(value)
    return workers, streams


def checked(replies: Iterable[Any]) -> list[Any]:
    """The replies of a round trip, the first error among them raised."""
    replies = list(replies)
    for reply in replies:
        if isinstance(reply, redis.RedisError):
            raise reply
    return replies

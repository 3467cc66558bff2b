"""`GET /metrics`: the pipeline in Prometheus text format, for the whole deployment.

Everything is read from Redis when the page is scraped, so whichever web process answers, the
figures are the deployment's: the counters the pipeline keeps (gateway/stats.py), the backlog
and the age of its oldest command from the partition streams, the dead letters kept, and the
live worker processes from RQ's registry. A scrape costs a few round trips to Redis; the accept
path pays one HINCRBY inside its script and nothing in Python.

With METRICS_TOKEN set, a scrape needs `Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue, Worker

from gateway.api.openapi import answer, describe, problem
from gateway.context import Gateway
from gateway.problems import Problem
from gateway.redis_client import connect_queue
from gateway.stats import Totals

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PipelineCollector(Collector):
    """The gateway's metrics, gathered from Redis at each scrape."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.queue = Queue(gw.keys.rq_queue(), connection=connect_queue(gw.settings))

    def collect(self) -> Iterator[Metric]:
        partitions = range(self.gw.settings.partitions)
        keys = self.gw.keys
        pipe = self.gw.redis.pipeline(transaction=False)
        for partition in partitions:
            pipe.hgetall(keys.stats(partition))
            pipe.xlen(keys.stream(partition))
            pipe.xrange(keys.stream(partition), count=1)
            pipe.xlen(keys.dead(partition))
            pipe.get(keys.dead_trimmed(partition))
        replies = pipe.execute()
        now_ms = time.time() * 1000
        stats, backlogs, oldest, dead, trimmed = (replies[i::5] for i in range(5))
        totals = Totals.of(stats)
        yield from _counters(totals)
        yield _gauge(
            "gateway_backlog_commands", "Unfinished commands now (accepted, not yet finished).", sum(backlogs)
        )
        by_partition = GaugeMetricFamily(
            "gateway_partition_backlog_commands",
            "Unfinished commands now, by partition.",
            labels=["partition"],
        )
        for partition, backlog in zip(partitions, backlogs, strict=True):
            by_partition.add_metric([str(partition)], backlog)
        yield by_partition
        firsts = [int(entries[0][0].partition("-")[0]) for entries in oldest if entries]  # ids are ms-n
        age = max(0.0, (now_ms - min(firsts)) / 1000) if firsts else 0.0
        yield _gauge("gateway_oldest_pending_seconds", "Age of the oldest unfinished command.", age)
        yield _gauge(
            "gateway_dead_letters", "Dead letters kept (failed commands, for replay or drop).", sum(dead)
        )
        yield CounterMetricFamily(
            "gateway_dead_letters_trimmed",
            "Dead letters dropped, oldest first, to keep under MAX_DEAD_LETTERS.",
            value=sum(int(n or 0) for n in trimmed),
        )
        yield _gauge(
            "gateway_workers", "Live worker processes (RQ's registry of the drain queue).", self._workers()
        )

    def _workers(self) -> int:
        return len(Worker.all(queue=self.queue))


def _counters(totals: Totals) -> Iterator[Metric]:
    accepted = CounterMetricFamily(
        "gateway_commands_accepted", "Commands accepted (202).", labels=["collection", "op"]
    )
    for (collection, op), count in sorted(totals.accepted.items()):
        accepted.add_metric([collection, op], count)
    yield accepted
    finished = CounterMetricFamily(
        "gateway_commands_finished",
        "Commands finished, applied or failed (after their retries, or refused by the store).",
        labels=["collection", "op", "status"],
    )
    for (collection, op, status), count in sorted(totals.finished.items()):
        finished.add_metric([collection, op, status], count)
    yield finished
    latency = HistogramMetricFamily(
        "gateway_apply_latency_seconds", "Time from a command's accept to its finish (applied or failed)."
    )
    latency.add_metric([], totals.cumulative_latency(), totals.latency_sum_seconds)
    yield latency
    yield CounterMetricFamily(
        "gateway_retries", "Attempts scheduled again after a failure.", value=totals.retries
    )
    yield CounterMetricFamily(
        "gateway_store_outages",
        "Times a partition paused for a store it could not reach.",
        value=totals.outages,
    )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


@bp.get("/metrics")
@describe(
    tags=["probes"],
    responses={
        "200": answer("The metrics, Prometheus text format 0.0.4.", {"type": "string"}, media="text/plain"),
        "401": problem("METRICS_TOKEN is set and the request does not carry it."),
        "503": problem("Redis cannot be read now."),
    },
)
def metrics() -> Response:
    """The deployment's pipeline metrics (Prometheus)."""
    token = current_app.extensions["gateway"].settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Problem(
                401,
                "Unauthorized",
                "Send METRICS_TOKEN as a bearer token.",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    registry: CollectorRegistry = current_app.extensions["metrics"]
    body = generate_latest(registry)  # Redis down: a RedisError, answered 503 (gateway/problems.py)
    return Response(body, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(app.extensions["gateway"]))
    app.extensions["metrics"] = registry
    app.register_blueprint(bp)

"""`GET /metrics`: the pipeline in Prometheus text format, for the whole deployment.

Everything is read from Redis when the page is scraped (gateway/pipeline_state.py, as `flask
status` reads it), so whichever web process answers, the figures are the deployment's: the
counters the pipeline keeps (gateway/stats.py), the backlog and the age of its oldest command
from the partition streams, the dead letters kept, the live worker processes from RQ's
registry, and what each web process reported of its own (gateway/process_report.py): its open
notification streams and its accept latencies. A scrape costs two round trips to Redis; the
accept path pays one HINCRBY inside its script and an in-memory count of its latency.

With METRICS_TOKEN set, a scrape needs `Authorization: Bearer <METRICS_TOKEN>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import pipeline_state
from gateway.api.openapi import answer, describe, problem
from gateway.context import Gateway
from gateway.problems import Problem
from gateway.process_report import CHANNELS
from gateway.stats import Totals

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PipelineCollector(Collector):
    """The gateway's metrics, gathered from Redis at each scrape."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def collect(self) -> Iterator[Metric]:
        state = pipeline_state.read(self.gw)
        yield from _counters(state.totals)
        yield _gauge(
            "gateway_backlog_commands", "Unfinished commands now (accepted, not yet finished).", state.backlog
        )
        by_partition = GaugeMetricFamily(
            "gateway_partition_backlog_commands",
            "Unfinished commands now, by partition.",
            labels=["partition"],
        )
        for partition in state.partitions:
            by_partition.add_metric([str(partition.partition)], partition.backlog)
        yield by_partition
        yield _gauge(
            "gateway_oldest_pending_seconds",
            "Age of the oldest unfinished command.",
            state.oldest_pending_seconds or 0.0,
        )
        yield _gauge(
            "gateway_dead_letters",
            "Dead letters kept (failed commands, for replay or drop).",
            state.dead_letters,
        )
        yield CounterMetricFamily(
            "gateway_dead_letters_trimmed",
            "Dead letters dropped, oldest first, to keep under MAX_DEAD_LETTERS.",
            value=sum(p.dead_trimmed for p in state.partitions),
        )
        yield _gauge(
            "gateway_workers", "Live worker processes (RQ's registry of the drain queue).", len(state.workers)
        )
        streams = GaugeMetricFamily(
            "gateway_notification_streams",
            "Notification streams (WebSocket, SSE) open now, in every web process.",
            labels=["channel"],
        )
        for channel in sorted({*CHANNELS, *state.open_streams}):
            streams.add_metric([channel], state.open_streams[channel])
        yield streams


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
    accept_latency = HistogramMetricFamily(
        "gateway_accept_latency_seconds",
        "Time of the accept step (the write's one call to Redis) as the web processes measured it.",
    )
    accept_latency.add_metric([], totals.cumulative_accept_latency(), totals.accept_latency_sum_seconds)
    yield accept_latency
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

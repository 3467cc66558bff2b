"""`/metrics`: the deployment's pipeline in Prometheus format, read from Redis at each scrape."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.api import bearer
from tests.support.metrics import scrape
from tests.support.services import wait_until

pytestmark = pytest.mark.integration


def metrics(client: Any, **headers: str) -> dict[str, dict[Any, float]]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return scrape(response.get_data(as_text=True))


def one(samples: dict[str, dict[Any, float]], name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_the_backlog_builds_without_workers_and_drains_with_one(
    client: Any, make_app: Any, start_worker: Any
) -> None:
    other_process = make_app().test_client()  # another web process: the same figures
    before = metrics(client)
    assert one(before, "gateway_backlog_commands") == 0
    for i in range(30):
        assert client.put(f"/api/notes/n{i}", json={"i": i}).status_code == 202
    for i in range(20):
        assert client.post("/api/tasks", json={"i": i}).status_code == 202
    assert client.patch("/api/notes/missing", json={"x": 1}).status_code == 202  # will fail
    time.sleep(1.1)

    waiting = metrics(other_process)
    assert one(waiting, "gateway_backlog_commands") == 51
    assert sum(waiting["gateway_partition_backlog_commands"].values()) == 51
    assert one(waiting, "gateway_oldest_pending_seconds") >= 1.0
    assert one(waiting, "gateway_commands_accepted_total", collection="notes", op="replace") == 30
    assert one(waiting, "gateway_commands_accepted_total", collection="tasks", op="create") == 20
    assert one(waiting, "gateway_commands_accepted_total", collection="notes", op="patch") == 1
    assert one(waiting, "gateway_workers") == 0

    start_worker()
    wait_until(lambda: one(metrics(client), "gateway_backlog_commands") == 0, 30, "the backlog to drain")
    done = metrics(client)
    assert one(done, "gateway_oldest_pending_seconds") == 0
    assert (
        one(done, "gateway_commands_finished_total", collection="notes", op="replace", status="applied") == 30
    )
    assert (
        one(done, "gateway_commands_finished_total", collection="tasks", op="create", status="applied") == 20
    )
    assert one(done, "gateway_commands_finished_total", collection="notes", op="patch", status="failed") == 1
    assert one(done, "gateway_dead_letters") == 1
    assert one(done, "gateway_workers") == 1
    assert one(done, "gateway_apply_latency_seconds_count") == 51
    assert one(done, "gateway_apply_latency_seconds_bucket", le="+Inf") == 51
    assert one(done, "gateway_apply_latency_seconds_bucket", le="0.5") == 0  # every one waited > 1 s
    assert one(done, "gateway_apply_latency_seconds_sum") >= 51 * 1.0


def test_the_retry_and_outage_counters_are_on_the_page(client: Any) -> None:
    app = client.application
    gw = app.extensions["gateway"]
    gw.redis.hincrby(gw.keys.stats(0), "retries", 2)  # as the outcome stage counts them
    gw.redis.hincrby(gw.keys.stats(3), "outages", 1)
    gw.redis.incrby(gw.keys.dead_trimmed(1), 4)  # as finish.lua counts them
    samples = metrics(client)
    assert one(samples, "gateway_retries_total") == 2
    assert one(samples, "gateway_store_outages_total") == 1
    assert one(samples, "gateway_dead_letters_trimmed_total") == 4


def test_metrics_token_guards_the_page(make_app: Any) -> None:
    client = make_app(metrics_token="scrape-secret").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("wrong")).status_code == 401
    assert "gateway_backlog_commands" in metrics(client, **bearer("scrape-secret"))


@pytest.mark.one_redis  # a cluster client reaches a node as it is made (see docs/scaling.md)
def test_redis_down_is_a_503_problem(make_app: Any) -> None:
    response = make_app(redis_url="redis://127.0.0.1:1/0").test_client().get("/metrics")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"


def test_open_streams_are_counted_over_every_web_process_until_a_report_expires(make_app: Any) -> None:
    first, second, scraper = make_app(), make_app(), make_app().test_client()
    streams = [first.test_client().get("/api/events", buffered=False) for _ in range(2)]
    sockets = [second.extensions["notify"].subscribe("dev", None, "websocket") for _ in range(3)]
    reports = [app.extensions["gateway"].process_report for app in (first, second)]
    for report in reports:
        report.report()  # as its reporter does every REPORT_SECONDS
    samples = metrics(scraper)
    assert one(samples, "gateway_notification_streams", channel="sse") == 2
    assert one(samples, "gateway_notification_streams", channel="websocket") == 3

    streams[0].close()
    second.extensions["notify"].unsubscribe(sockets[0])
    for report in reports:
        report.report()
    samples = metrics(scraper)
    assert one(samples, "gateway_notification_streams", channel="sse") == 1
    assert one(samples, "gateway_notification_streams", channel="websocket") == 2

    gw = first.extensions["gateway"]
    gw.redis.delete(gw.keys.web_process(reports[1].name))  # as when a killed process's report expires
    assert one(metrics(scraper), "gateway_notification_streams", channel="websocket") == 0
    reports[0].report()
    assert gw.redis.smembers(gw.keys.web_processes()) == {reports[0].name}
    streams[1].close()


def test_accept_latency_is_counted_by_each_web_process_and_summed(make_app: Any) -> None:
    writers = [make_app().test_client() for _ in range(2)]
    for i in range(5):
        for writer in writers:
            assert writer.post("/api/notes", json={"i": i}).status_code == 202
    for writer in writers:
        writer.application.extensions["gateway"].process_report.report()
    samples = metrics(make_app().test_client())
    assert one(samples, "gateway_accept_latency_seconds_count") == 10
    assert one(samples, "gateway_accept_latency_seconds_bucket", le="+Inf") == 10
    assert 0 < one(samples, "gateway_accept_latency_seconds_sum") < 10 * 2.5
    assert one(samples, "gateway_commands_accepted_total", collection="notes", op="create") == 10

"""The pipeline's snapshot (gateway/pipeline_status.py) as `flask status` prints it: backlog
and oldest pending age per partition, the workers and the partitions they hold, dead letters by
collection and error, with real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
import redis

from gateway import pipeline_status
from tests.support import ROOT
from tests.support.operations import DeadLetterMaker, wait_for_snapshot

pytestmark = pytest.mark.integration


def status_json(cli: Any) -> dict[str, Any]:
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_the_backlog_and_its_age_grow_while_no_worker_runs_and_fall_to_zero_when_one_does(
    app: Any, client: Any, cli: Any, start_worker: Any
) -> None:
    gw = app.extensions["gateway"]
    for n in range(7):
        assert client.put(f"/api/notes/n{n}", json={"n": n}).status_code == 202
    time.sleep(0.5)
    snap = status_json(cli)
    assert snap["backlog"] == 7 == sum(p["backlog"] for p in snap["partitions"])
    assert len(snap["partitions"]) == gw.settings.partitions
    assert 0.5 <= snap["oldest_pending_seconds"] < 30
    waiting = [p for p in snap["partitions"] if p["backlog"]]
    assert all(p["oldest_pending_seconds"] >= 0.5 for p in waiting)
    assert all(p["oldest_pending_seconds"] is None for p in snap["partitions"] if not p["backlog"])
    assert snap["workers"] == [] and all(p["holder"] is None for p in snap["partitions"])
    assert snap["totals"]["accepted"] == 7 and snap["totals"]["applied"] == 0

    start_worker()
    done = wait_for_snapshot(gw, lambda s: s["backlog"] == 0 and s["workers"], 30, "the backlog drained")
    assert done["oldest_pending_seconds"] is None
    assert (done["totals"]["accepted"], done["totals"]["applied"], done["totals"]["failed"]) == (7, 7, 0)
    assert len(done["workers"]) == 1
    held = done["workers"][0]["partitions"]
    assert set(held) <= set(range(gw.settings.partitions))
    assert all(
        p["holder"] == done["workers"][0]["name"] for p in done["partitions"] if p["partition"] in held
    )


def test_dead_letters_are_grouped_by_collection_and_by_error(
    app: Any, cli: Any, make_dead_letter: DeadLetterMaker
) -> None:
    make_dead_letter(0, collection="notes", error="the document 'n1' does not exist")
    make_dead_letter(1, collection="notes", error="the document 'n22' does not exist")
    make_dead_letter(2, collection="tasks", error="the database refused the document: value 42 too long")
    make_dead_letter(3, collection="tasks", error="ignored when typed", ety="conflict")
    snap = status_json(cli)["dead_letters"]
    assert snap["total"] == snap["scanned"] == 4
    assert snap["by_collection"] == [{"collection": "notes", "count": 2}, {"collection": "tasks", "count": 2}]
    assert snap["by_error"] == [
        {"error": "the document # does not exist", "count": 2},
        {"error": "the database refused the document: value # too long", "count": 1},
        {"error": "conflict", "count": 1},
    ]
    text = cli("status").stdout
    assert "dead letters: 4" in text and "the document # does not exist" in text
    assert "partition  backlog" in text and "workers: 0" in text
    assert "totals: accepted 0, applied 0, failed 0, retries 0, store outages 0" in text


def test_a_lease_of_a_worker_that_is_gone_is_shown_apart(app: Any, cli: Any) -> None:
    gw = app.extensions["gateway"]
    gw.redis.set(gw.keys.lease(2), "17:gone-host-1-abc", px=3000)
    gw.redis.set(gw.keys.pause(1), "1", px=5000)
    snap = status_json(cli)
    assert snap["partitions"][2]["holder"] == "gone-host-1-abc"
    assert snap["leases_without_worker"] == [{"name": "gone-host-1-abc", "partitions": [2]}]
    assert 0 < snap["partitions"][1]["paused_seconds"] <= 5
    assert "gone-host-1-abc (not running; lease expiring): partitions 2" in cli("status").stdout


def test_totals_come_from_every_partitions_stats(app: Any) -> None:
    gw = app.extensions["gateway"]
    gw.redis.hset(
        gw.keys.stats(0),
        mapping={"acc|notes|create": 5, "fin|notes|create|applied": 3, "fin|notes|create|failed": 1},
    )
    gw.redis.hset(gw.keys.stats(3), mapping={"acc|tasks|patch": 2, "fin|tasks|patch|applied": 2})
    gw.redis.hset(gw.keys.stats(2), mapping={"retries": 4, "outages": 1, "lat|3": 2})
    totals = {"accepted": 7, "applied": 5, "failed": 1, "retries": 4, "outages": 1}
    assert pipeline_status.snapshot(gw)["totals"] == totals


@pytest.mark.one_redis  # a cluster client splits each round trip by node (docs/scaling.md)
def test_the_snapshot_takes_three_round_trips_whatever_the_partitions(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = make_app(partitions=64).extensions["gateway"]
    DeadLetterMaker(gw)(5)
    gw.redis.sadd(f"rq:workers:{gw.keys.rq_queue()}", "rq:worker:nobody")
    sent: list[Any] = []
    real = redis.connection.AbstractConnection.send_packed_command

    def record(connection: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        real(connection, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", record)
    snap = pipeline_status.snapshot(gw)
    assert len(snap["partitions"]) == 64 and snap["dead_letters"]["total"] == 1
    assert snap["workers"] == []  # in the registry, but its key is gone: not live
    assert len(sent) <= 4  # partitions, the registry (members, then their keys), dead letters
    gw.redis.delete(f"rq:workers:{gw.keys.rq_queue()}")


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--json"], ["setup", "--wait", "0"], ["dead-letters", "list"]]
)
def test_redis_down_is_one_line(make_app: Any, command: list[str]) -> None:
    app = make_app(redis_url="redis://user:pw@127.0.0.1:1/0")
    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Redis at redis://user:***@127.0.0.1:1/0 is not reachable (")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert "pw" not in result.output
    assert time.monotonic() - started < 30


def test_the_real_command_prints_the_snapshot_and_fails_in_one_line(
    client: Any, settings_env: dict[str, str]
) -> None:
    """`flask --app app status` as an operator runs it: its own process, the environment's settings."""
    for n in range(3):
        assert client.put(f"/api/notes/s{n}", json={"n": n}).status_code == 202
    command = [sys.executable, "-m", "flask", "--app", "app", "status", "--json"]
    env = {**os.environ, **settings_env}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["backlog"] == 3
    down = subprocess.run(
        command,
        cwd=ROOT,
        env=env | {"REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1 and done.stdout and not down.stdout
    assert "Traceback" not in down.stderr
    assert down.stderr.splitlines()[-1].startswith("error: Redis at redis://127.0.0.1:1/0 is not reachable (")

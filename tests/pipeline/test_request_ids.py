"""A request's X-Request-ID follows its command into the worker: the worker's lines for the
command carry it, each retry and dead letter is one line with the command id, collection and
error type, and the dead letter keeps the id for operators."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.logs import TextFormatter
from settings import load
from tests.support.services import wait_until
from workers import runtime
from workers.drain import drain_partition

pytestmark = pytest.mark.integration

FAULTY = "tests.plugins.faulty_store"


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    """Writes to `jobs` go to a store that fails every command holding `"poison": true`."""
    return {**settings_env, "PLUGINS": FAULTY, "COLLECTION_STORES": "jobs=poisonable"}


def accept(client: Any, method: str, path: str, request_id: str, body: Any = None) -> str:
    response = client.open(path, method=method, json=body, headers={"X-Request-ID": request_id})
    assert response.status_code == 202, response.json
    assert response.headers["X-Request-ID"] == request_id
    return str(response.json["command_id"])


def finished(client: Any, command_ids: list[str]) -> bool:
    return all(client.get(f"/api/commands/{c}").json["status"] != "pending" for c in command_ids)


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_text().splitlines() if raw.startswith("{")]


def test_the_workers_json_lines_for_a_command_carry_its_request_id(
    client: Any, start_worker: Any, tmp_path: Path
) -> None:
    applied = accept(client, "POST", "/api/notes", "req-applied", {"id": "n1", "text": "hi"})
    refused = accept(client, "PATCH", "/api/notes/missing", "req-refused", {"text": "no such note"})
    poisoned = accept(client, "POST", "/api/jobs", "req-poisoned", {"id": "j1", "poison": True})
    start_worker(LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    wait_until(lambda: finished(client, [applied, refused, poisoned]), 60, "the three commands to finish")
    log = tmp_path / "worker-0.log"
    wait_until(lambda: "dead-lettered" in log.read_text(), 10, "the dead letters' lines")
    lines = json_lines(log)

    def lines_of(command_id: str) -> list[dict[str, Any]]:
        return [line for line in lines if line.get("command_id") == command_id]

    [ok] = lines_of(applied)
    assert (ok["level"], ok["request_id"], ok["collection"]) == ("DEBUG", "req-applied", "notes")

    [refusal] = lines_of(refused)  # one line: refused, so dead-lettered at once
    assert (refusal["level"], refusal["request_id"]) == ("WARNING", "req-refused")
    assert (refusal["collection"], refusal["error_type"], refusal["attempts"]) == ("notes", "not_found", 1)
    assert "refused by the store" in refusal["msg"] and refusal["user"] == "dev"

    poison = lines_of(poisoned)  # MAX_ATTEMPTS is 3: two retries, then one dead letter
    assert [(p["level"], p["attempts"]) for p in poison] == [("INFO", 1), ("INFO", 2), ("WARNING", 3)]
    assert {(p["request_id"], p["collection"], p["error_type"]) for p in poison} == {
        ("req-poisoned", "jobs", "store_error")
    }
    assert "refuses poison" in poison[-1]["msg"]  # the store's own text, for operators


def test_a_dead_letter_keeps_its_request_id_for_the_cli_and_the_admin_json(
    client: Any, start_worker: Any
) -> None:
    refused = accept(client, "PATCH", "/api/notes/missing", "req-dead-1", {"text": "no such note"})
    start_worker()
    wait_until(lambda: finished(client, [refused]), 60, "the command to fail")

    [letter] = client.get("/admin/api/dead-letters").json["dead_letters"]
    assert (letter["command_id"], letter["request_id"]) == (refused, "req-dead-1")
    runner = client.application.test_cli_runner()
    shown = runner.invoke(args=["dead-letters", "show", letter["dead_letter"]])
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.output)["request_id"] == "req-dead-1"

    replayed = runner.invoke(args=["dead-letters", "replay", letter["dead_letter"]])
    assert replayed.exit_code == 0, replayed.output
    new_id = replayed.output.split()[-1]
    gw = client.application.extensions["gateway"]
    record = gw.redis.hgetall(gw.keys.command(int(new_id.split("-")[0]), new_id))
    assert record["rid"] == "req-dead-1"  # the replay is traced to the request that sent it


@pytest.fixture
def rt(settings_env: dict[str, str]) -> Iterator[runtime.Runtime]:
    """A worker runtime of this test's settings, installed for the drain job to find."""
    instance = runtime.Runtime(load(**{k.lower(): v for k, v in settings_env.items()}))
    runtime.install(instance)
    instance.gw.ensure_groups()
    yield instance
    runtime.install(None)
    instance.close()


def test_a_text_line_of_the_drain_shows_the_request_id(
    rt: runtime.Runtime, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    deleted = accept(client, "DELETE", "/api/jobs/j2", "req-text-1")  # a delete always applies
    forbidden = accept(client, "PATCH", "/api/notes/none", "req-text-2", {"a": 1})
    caplog.set_level(logging.DEBUG, logger="gateway.drain")
    for partition in range(rt.gw.settings.partitions):
        drain_partition(partition)
    assert finished(client, [deleted, forbidden])
    text = [TextFormatter().format(r) for r in caplog.records if getattr(r, "command_id", None)]
    assert any("request_id=req-text-1" in line and f"command_id={deleted}" in line for line in text)
    [failed] = [line for line in text if f"command_id={forbidden}" in line]
    assert "request_id=req-text-2" in failed and "not_found" in failed and " notes " in failed

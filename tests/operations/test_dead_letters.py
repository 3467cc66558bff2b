"""The operations on dead letters (gateway/dead_letters.py) through `flask dead-letters`: API
field names and ISO times, filters, show, replay and drop of one or all matching."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway import dead_letters
from gateway.record import now_ms
from tests.support.operations import DeadLetterMaker

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


@pytest.fixture
def letters(make_dead_letter: DeadLetterMaker) -> dict[str, str]:
    """Four dead letters: two of notes (one two days old), one of tasks, one typed."""
    now = now_ms()
    return {
        "old": make_dead_letter(
            0, collection="notes", error="the document 'a' does not exist", failed_ms=now - 48 * HOUR_MS
        ),
        "note": make_dead_letter(
            1, collection="notes", error="the document 'b' does not exist", failed_ms=now - 1000
        ),
        "task": make_dead_letter(2, collection="tasks", error="value too long for type", failed_ms=now - 500),
        "typed": make_dead_letter(
            3, collection="tasks", error="not yours", ety="forbidden", failed_ms=now - 100
        ),
    }


def listed(cli: Any, *args: str) -> list[dict[str, Any]]:
    result = cli("dead-letters", "list", *args)
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def names(cli: Any, *args: str) -> list[str]:
    return [d["dead_letter"] for d in listed(cli, *args)]


def test_list_shows_api_field_names_and_iso_times_oldest_first(cli: Any, letters: dict[str, str]) -> None:
    shown = listed(cli)
    assert [d["dead_letter"] for d in shown] == [
        letters["old"],
        letters["note"],
        letters["task"],
        letters["typed"],
    ]
    first = shown[1]
    assert set(first) == {
        "dead_letter", "command_id", "op", "collection", "entity_id", "user", "payload",
        "error", "attempts", "accepted_at", "failed_at",
    }  # fmt: skip
    assert first["op"] == "create" and first["collection"] == "notes" and first["user"] == "dev"
    assert first["attempts"] == 3 and first["payload"] == {"n": 2}
    assert first["failed_at"].endswith("Z") and first["accepted_at"] < first["failed_at"]
    assert shown[3]["error_type"] == "forbidden"
    assert names(cli, "--limit", "2") == [letters["old"], letters["note"]]


def test_list_filters_by_collection_error_and_since(cli: Any, letters: dict[str, str]) -> None:
    assert names(cli, "--collection", "tasks") == [letters["task"], letters["typed"]]
    assert names(cli, "--error", "DOES NOT exist") == [letters["old"], letters["note"]]
    assert names(cli, "--error", "forbidden") == [letters["typed"]]
    assert names(cli, "--since", "1h") == [letters["note"], letters["task"], letters["typed"]]
    assert names(cli, "--since", "3d") == list(letters.values())
    assert names(cli, "--since", "2030-01-01T00:00:00Z") == []
    assert names(cli, "--since", "2000-01-01") == list(letters.values())
    assert names(cli, "--collection", "notes", "--since", "1h", "--error", "exist") == [letters["note"]]
    bad = cli("dead-letters", "list", "--since", "yesterday")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: 'yesterday' is neither an ISO time")


def test_show_prints_one(cli: Any, letters: dict[str, str]) -> None:
    result = cli("dead-letters", "show", letters["task"])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.stdout)
    assert shown["dead_letter"] == letters["task"] and shown["error"] == "value too long for type"
    missing = cli("dead-letters", "show", "2/1-0")
    assert missing.exit_code == 1 and missing.stderr == "error: no dead letter 2/1-0\n"


def test_replay_all_matching_accepts_each_again_and_removes_it(
    app: Any, client: Any, cli: Any, letters: dict[str, str]
) -> None:
    refused = cli("dead-letters", "replay", "--all", "--collection", "notes", input="n\n")
    assert refused.exit_code == 1 and "replay 2 dead letters?" in refused.output
    assert len(listed(cli)) == 4  # nothing done
    done = cli("dead-letters", "replay", "--all", "--collection", "notes", "--yes")
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [letters["old"], letters["note"]]
    for line in lines:
        status = client.get(f"/api/commands/{line.split()[-1]}").json
        assert (status["status"], status["collection"], status["op"]) == ("pending", "notes", "create")
    assert names(cli) == [letters["task"], letters["typed"]]
    assert (
        cli("dead-letters", "replay", "--all", "--collection", "notes").stdout == "no dead letter matches\n"
    )


def test_drop_all_matching_forgets_them(cli: Any, letters: dict[str, str]) -> None:
    asked = cli("dead-letters", "drop", "--all", "--error", "exist", input="y\n")
    assert asked.exit_code == 0 and "drop 2 dead letters?" in asked.output
    assert asked.stdout.endswith("dropped 2 dead letters\n")
    assert names(cli) == [letters["task"], letters["typed"]]
    assert cli("dead-letters", "drop", "--all", "--yes").stdout == "dropped 2 dead letters\n"
    assert names(cli) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay"], "error: replay needs a dead letter's name, or --all (with filters)\n"),
        (["drop", "0/1-0", "--all"], "error: drop needs a dead letter's name, or --all (with filters)\n"),
        (
            ["drop", "0/1-0", "--collection", "notes"],
            "error: --collection, --error and --since go with --all\n",
        ),
        (["replay", "9/1-0"], "error: '9/1-0' is not a dead letter: <partition>/<entry id>, as listed\n"),
    ],
)
def test_misuse_is_refused_in_one_line(
    cli: Any, letters: dict[str, str], args: list[str], message: str
) -> None:
    result = cli("dead-letters", *args)
    assert result.exit_code == 1 and result.stderr == message
    assert len(listed(cli)) == 4


def test_a_replay_the_accept_refuses_keeps_the_dead_letter(make_app: Any) -> None:
    app = make_app(max_backlog=1)
    gw = app.extensions["gateway"]
    name = DeadLetterMaker(gw)(2, collection="tasks")
    assert app.test_client().post("/api/notes", json={"text": "fills the backlog"}).status_code == 202
    result = app.test_cli_runner().invoke(args=["dead-letters", "replay", name])
    assert (
        result.exit_code == 1
        and result.stderr == f"error: {name} not replayed (backlog full); try again later\n"
    )
    assert dead_letters.get(gw, name).fields["col"] == "tasks"
    assert sum(gw.redis.xlen(gw.keys.stream(p)) for p in range(gw.settings.partitions)) == 1


def test_a_real_failure_becomes_a_dead_letter_that_replays_once_the_cause_is_fixed(
    app: Any, client: Any, cli: Any, start_worker: Any
) -> None:
    from tests.support.services import wait_until

    start_worker()
    patched = client.patch("/api/notes/later", json={"done": True})  # no such document: fails at once
    wait_until(lambda: client.get(patched.json["status_url"]).json["status"] == "failed", 20, "failed")
    [letter] = listed(cli)
    assert (letter["command_id"], letter["op"], letter["entity_id"]) == (
        patched.json["command_id"],
        "patch",
        "later",
    )
    assert letter["payload"] == {"done": True} and letter["error"]
    created = client.put("/api/notes/later", json={"text": "now"})
    wait_until(lambda: client.get(created.json["status_url"]).json["status"] == "applied", 20, "created")
    replayed = cli("dead-letters", "replay", letter["dead_letter"])
    assert replayed.exit_code == 0, replayed.output
    status_url = f"/api/commands/{replayed.stdout.split()[-1]}"
    wait_until(lambda: client.get(status_url).json["status"] == "applied", 20, "replayed and applied")
    assert client.get("/api/notes/later").json == {"id": "later", "text": "now", "done": True}
    assert listed(cli) == []


def test_a_dead_letter_whose_payload_was_not_kept_is_shown_but_not_replayed(
    cli: Any, make_dead_letter: DeadLetterMaker
) -> None:
    name = make_dead_letter(1, op="delete", pls="600", pld="a" * 40)  # as finish.lua keeps a large one
    shown = orjson.loads(cli("dead-letters", "show", name).stdout)
    assert (shown["payload"], shown["payload_size"], shown["payload_digest"]) == (None, 600, "a" * 40)
    refused = cli("dead-letters", "replay", name)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: {name} cannot be replayed: its payload of 600 bytes")
    assert names(cli) == [name]

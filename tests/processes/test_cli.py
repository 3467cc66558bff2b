"""The operators' `flask` commands on the dead letters: list, replay, drop, and clear refusals."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def dead_letters(app: Any) -> list[str]:
    """Two dead letters as the finish script writes them, in partitions 1 and 3."""
    gw = app.extensions["gateway"]
    names = []
    for partition, entity in [(1, "a"), (3, "b")]:
        entry_id = gw.redis.xadd(
            gw.keys.dead(partition),
            {
                "c": f"{partition}-x",
                "op": "create",
                "col": "notes",
                "eid": entity,
                "uid": "dev",
                "pl": orjson.dumps({"text": entity}).decode(),
                "err": "refused",
                "att": "1",
                "acc": "1",
                "at": "2",
            },
        )
        names.append(f"{partition}/{entry_id}")
    return names


def cli(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["dead-letters", *args])


def test_list_prints_each_dead_letter_with_its_name(app: Any, dead_letters: list[str]) -> None:
    listed = cli(app, "list")
    assert listed.exit_code == 0, listed.output
    assert [(d["dead_letter"], d["eid"]) for d in map(orjson.loads, listed.output.splitlines())] == [
        (dead_letters[0], "a"),
        (dead_letters[1], "b"),
    ]
    assert len(cli(app, "list", "--limit", "1").output.splitlines()) == 1


def test_drop_forgets_one_dead_letter(app: Any, dead_letters: list[str]) -> None:
    dropped = cli(app, "drop", dead_letters[0])
    assert dropped.exit_code == 0 and dropped.output.strip() == f"dropped {dead_letters[0]}"
    assert [orjson.loads(line)["dead_letter"] for line in cli(app, "list").output.splitlines()] == [
        dead_letters[1]
    ]
    again = cli(app, "drop", dead_letters[0])
    assert again.exit_code == 1 and f"no dead letter {dead_letters[0]}" in again.output


def test_replay_queues_the_command_again_and_removes_the_dead_letter(
    app: Any, client: Any, dead_letters: list[str]
) -> None:
    replayed = cli(app, "replay", dead_letters[1])
    assert replayed.exit_code == 0, replayed.output
    command_id = replayed.output.split()[-1]
    status = client.get(f"/api/commands/{command_id}").json
    assert (status["status"], status["entity_id"], status["op"]) == ("pending", "b", "create")
    assert [orjson.loads(line)["eid"] for line in cli(app, "list").output.splitlines()] == ["a"]


@pytest.mark.parametrize("name", ["nothing", "x/1-0", "99/1-0", "1/", "1/not-an-id"])
def test_a_name_that_is_not_a_dead_letter_is_refused_in_one_line(
    app: Any, dead_letters: list[str], name: str
) -> None:
    for command in ("drop", "replay"):
        refused = cli(app, command, name)
        assert refused.exit_code == 1 and refused.exception is not None
        assert refused.output.startswith("Error: ") and "Traceback" not in refused.output
        assert len(cli(app, "list").output.splitlines()) == 2  # nothing touched

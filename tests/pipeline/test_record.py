"""The command record (gateway/record.py): its encodings, and the names the Lua scripts spell,
which must be the record module's so that a rename on one side cannot leave the other behind."""

from __future__ import annotations

import re
from pathlib import Path

import fakeredis
import pytest

from gateway import record
from tests.support import ROOT

SCRIPTS = sorted((ROOT / "gateway" / "lua").glob("*.lua"))
# The header lines that list the names a script spells, and the names gateway/record.py gives
# them; the other kinds are only listed (their names are not the record's).
OWNED = {
    "record fields": set(record.FIELDS),
    "record statuses": set(record.STATUSES),
    "entry fields": {record.COMMAND_ID},
    "dead letter fields": set(record.DEAD_LETTER_FIELDS),
}
LISTED_ONLY = {"idempotency record fields", "event stream fields", "outbox fields"}
NAMES_LINE = re.compile(r"^--   ([a-z ]+): ([a-z ]+)$", re.MULTILINE)


def listed(script: Path) -> dict[str, set[str]]:
    """The names the script's header lists, by kind."""
    return {kind: set(names.split()) for kind, names in NAMES_LINE.findall(script.read_text())}


def spelt(script: Path) -> set[str]:
    """The field names and statuses the script's code spells: its short lower-case string
    literals, and any literal that is a status."""
    code = "\n".join(line.split("--", 1)[0] for line in script.read_text().splitlines())
    literals = set(re.findall(r"'([^']*)'", code))
    return {s for s in literals if re.fullmatch(r"[a-z]{1,3}", s)} | (literals & set(record.STATUSES))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_name_a_script_spells_is_listed_in_its_header(script: Path) -> None:
    names = listed(script)
    assert set(names) <= set(OWNED) | LISTED_ONLY, f"{script.name}: unknown kind of names"
    every = set().union(*names.values())
    assert spelt(script) == every, f"{script.name}: its header lists {every}, its code spells {spelt(script)}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_record_names_a_script_spells_are_the_record_modules(script: Path) -> None:
    for kind, names in listed(script).items():
        if kind in OWNED:
            assert names <= OWNED[kind], (
                f"{script.name}: {kind} {names - OWNED[kind]} are not gateway/record.py's"
            )


def test_the_scripts_that_write_the_record_are_checked() -> None:
    kinds = {script.name: set(listed(script)) for script in SCRIPTS}
    assert {"record fields", "record statuses", "dead letter fields"} <= kinds["finish.lua"]
    assert {"record fields", "record statuses"} <= kinds["retry.lua"]
    assert "entry fields" in kinds["accept.lua"]


def test_a_new_record_reads_back_as_pending_work() -> None:
    redis = fakeredis.FakeRedis(decode_responses=True)
    pairs = record.new("patch", "notes", "n1", "alice", {"text": "hi", "gone": None}, now=1_700_000_000_000)
    redis.execute_command("HSET", "cmd", *pairs)
    work = record.work("0-abc", 42, redis.hmget("cmd", record.WORK_FIELDS))
    assert work is not None
    command = work.command
    assert (command.command_id, command.seq, command.op) == ("0-abc", 42, "patch")
    assert (command.collection, command.entity_id, command.payload) == (
        "notes",
        "n1",
        {"text": "hi", "gone": None},
    )
    assert (work.user, work.attempts, work.due_ms) == ("alice", 0, 0)
    assert redis.hget("cmd", record.ACCEPTED_AT) == "1700000000000"


def test_a_delete_has_no_payload() -> None:
    pairs = record.new("delete", "notes", "n1", "alice", None, now=1)
    assert record.PAYLOAD not in pairs[::2]


def test_a_record_that_is_not_pending_is_no_work() -> None:
    values = {record.STATUS: record.APPLIED, record.OP: "create", record.ATTEMPTS: "1"}
    assert record.work("0-abc", 1, [values.get(f) for f in record.WORK_FIELDS]) is None
    assert record.work("0-abc", 1, []) is None  # the record is gone


def test_the_status_shows_times_in_iso_and_the_next_attempt_only_while_pending() -> None:
    stored = {
        record.STATUS: record.PENDING,
        record.OP: "create",
        record.COLLECTION: "notes",
        record.ENTITY_ID: "n1",
        record.USER: "alice",
        record.ATTEMPTS: "2",
        record.ACCEPTED_AT: "1700000000123",
        record.ERROR: "boom",
        record.NEXT_ATTEMPT_AT: "1700000001000",
    }
    assert record.status("0-abc", stored) == {
        "command_id": "0-abc",
        "status": "pending",
        "op": "create",
        "collection": "notes",
        "entity_id": "n1",
        "attempts": 2,
        "accepted_at": "2023-11-14T22:13:20.123Z",
        "finished_at": None,
        "error": "boom",
        "error_type": None,
        "next_attempt_at": "2023-11-14T22:13:21.000Z",
    }
    finished = {
        **stored,
        record.STATUS: record.APPLIED,
        record.FINISHED_AT: "1700000002000",
        record.ERROR: "",
    }
    shown = record.status("0-abc", finished)
    assert "next_attempt_at" not in shown and shown["error"] is None
    assert shown["finished_at"] == "2023-11-14T22:13:22.000Z"


def test_a_dead_letter_gives_back_its_command() -> None:
    fields = {
        record.COMMAND_ID: "0-abc",
        record.USER: "alice",
        record.OP: "replace",
        record.COLLECTION: "notes",
        record.ENTITY_ID: "n1",
        record.PAYLOAD: '{"v":1}',
        record.DIED_AT: "1",
    }
    assert record.dead_command(fields) == record.DeadCommand("alice", "replace", "notes", "n1", {"v": 1})

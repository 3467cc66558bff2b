"""Every Lua script is called through its one function of gateway/scripts.py, with named
arguments: the only code that lays out the script's KEYS and ARGV."""

from __future__ import annotations

import inspect

import pytest

from gateway import scripts
from gateway.keys import Keys
from tests.support import ROOT

FILES = sorted(p.stem for p in (ROOT / "gateway" / "lua").glob("*.lua"))


def test_every_script_file_is_registered_and_has_its_function() -> None:
    assert sorted(scripts.NAMES) == FILES
    assert all(callable(getattr(scripts, name, None)) for name in FILES)


@pytest.mark.parametrize("name", FILES)
def test_a_script_function_takes_its_arguments_by_name(name: str) -> None:
    parameters = list(inspect.signature(getattr(scripts, name)).parameters.values())
    assert [p.name for p in parameters[:2]] == ["keys", "partition"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[2:])


def test_a_plain_accept_repeats_the_record_key_for_the_checks_it_skips() -> None:
    call = scripts.accept(
        Keys("gw"),
        3,
        command_id="3-x",
        entity_id="e1",
        record=["op", "create"],
        idempotency_ttl_seconds=60,
        user="alice",
        quotas=scripts.Quotas(max_pending_per_user=5, max_backlog=9, pending_ttl_seconds=70, partitions=16),
        now_ms=1000,
        stats_field="acc|notes|create",
    )
    assert call.name == "accept"
    assert call.keys == [
        "{gw:3}:cmd:3-x",
        "{gw:3}:stream",
        *["{gw:3}:cmd:3-x"] * 3,
        "gw:pending:alice",
        "gw:backlog",
        "{gw:3}:stats",
        "{gw:3}:cmd:3-x",
    ]
    assert call.args == [
        "3-x",
        "",
        "e1",
        60,
        0,
        0,
        0,
        5,
        9,
        1000,
        70,
        "gw",
        16,
        "acc|notes|create",
        0,
        "op",
        "create",
    ]


def test_finish_lays_out_each_command_after_the_shared_arguments() -> None:
    done = scripts.Finished("1-0", "3-a", "alice", "applied", "", 1)
    failed = scripts.Finished("2-0", "3-b", "bob", "failed", "refused", 3)
    call = scripts.finish(
        Keys("gw"),
        3,
        token="7:w",
        now_ms=1000,
        record_ttl_seconds=60,
        events_per_user=10,
        outbox_length=20,
        oldest_dead_letter_ms=5,
        commands=[done, failed],
    )
    assert call.keys == [
        "{gw:3}:lease",
        "{gw:3}:stream",
        "{gw:3}:dead",
        "gw:outbox",
        "gw:backlog",
        "{gw:3}:dead:trimmed",
        "{gw:3}:stats",
        "{gw:3}:cmd:3-a",
        "gw:events:alice",
        "gw:pending:alice",
        "gw:finished:alice",
        "{gw:3}:cmd:3-b",
        "gw:events:bob",
        "gw:pending:bob",
        "gw:finished:bob",
    ]
    assert call.args[:10] == ["7:w", "appliers", 1000, 60, 10, 20, 5, 1000, 16384, 10000]
    assert call.args[10:] == [
        *("1-0", "3-a", "applied", "", 1, "", ""),
        *("2-0", "3-b", "failed", "refused", 3, "", ""),
    ]

"""Hostile JSON against the accept path: nothing crashes, nothing half-written is left in Redis.

Hypothesis writes request bodies byte by byte, so that they can hold what a JSON library would
never produce: integers far past 64 bits, floats past a double, deep nesting, duplicate names,
escaped NUL and lone surrogates, odd Unicode, broken syntax. Every answer must be a 202 or a
problem of the API's refusals, and afterwards Redis must hold exactly the accepted commands:
each with its record and its stream entry, its payload as accepted, and nothing for the refused.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ids import partition_of_command
from tests.support.api import assert_problem

pytestmark = pytest.mark.integration

REFUSALS = {400, 413, 415, 422}


def string_literal(text: str, escapes: list[str]) -> str:
    """A JSON string holding `text`, then the escapes as written (`\\u0000`, `\\ud800`, ...)."""
    return json.dumps(text, ensure_ascii=False)[:-1] + "".join(escapes) + '"'


escape = st.sampled_from(["\\u0000", "\\ud83d\\ude00", "\\u202e", "\\ufeff", "\\uffff", "\\u0085", "\\/"])
strings = st.builds(
    string_literal,
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.lists(escape, max_size=2),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "1e400",
            "-1e999",
            "1e-400",
            "0.1e1",
            "-0",
            "12345678901234567890.5",
            "4.9e-324",
            "1" * 40,
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
scalars = st.one_of(strings, numbers, st.sampled_from(["true", "false", "null"]))


def objects(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Objects written by hand: names may repeat, and may hold the same escapes as values."""
    names = st.one_of(strings, strings, strings, st.just('"a"'), st.just('"id"'))
    members = st.lists(st.tuples(names, children), max_size=6)
    return members.map(lambda ms: "{" + ",".join(f"{name}:{value}" for name, value in ms) + "}")


values = st.recursive(
    scalars,
    lambda children: st.one_of(
        objects(children), st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
    ),
    max_leaves=30,
)
deep = st.integers(min_value=20, max_value=1100).map(lambda n: '{"d":' + "[" * n + "1" + "]" * n + "}")
bodies = st.one_of(
    objects(values),  # weighted: hostile but acceptable objects are the point
    objects(values),
    objects(values),
    objects(values),
    deep,
    st.sampled_from(['{"s": "\\ud800"}', '{"s": "\\udfff x"}', '{"n": 1e400}', "\ufeff{}", '{"a": 1,}']),
    values,  # not an object, mostly
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),  # not JSON at all, mostly
    objects(values).map(lambda text: text[: max(1, len(text) // 2)]),  # cut short
)
writes = st.sampled_from(
    [
        ("POST", "/api/notes", "application/json"),
        ("PUT", "/api/notes/e1", "application/json"),
        ("PATCH", "/api/notes/e2", "application/merge-patch+json"),
        ("PATCH", "/api/notes/e3", "application/json"),
        ("POST", "/api/notes", "text/plain"),
    ]
)


def queued(app: Any) -> dict[str, str]:
    """Every command id on the partition streams, with its stream entry id."""
    gw = app.extensions["gateway"]
    return {
        fields["c"]: entry
        for partition in range(gw.settings.partitions)
        for entry, fields in gw.redis.xrange(gw.keys.stream(partition))
    }


@pytest.mark.parametrize("run", ["hostile json"])
def test_hostile_json_crashes_nothing_and_leaves_nothing_half_written(
    make_app: Any, redis_keys: Any, prefix: str, run: str
) -> None:
    app = make_app(max_body_bytes=16 * 1024)
    client = app.test_client()
    accepted: dict[str, Any] = {}  # command id -> the payload it was accepted with

    @settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(write=writes, body=bodies)
    def send(write: tuple[str, str, str], body: str) -> None:
        method, path, content_type = write
        raw = body.encode("utf-8", "surrogatepass")
        before = len(redis_keys.all())
        response = client.open(path, method=method, data=raw, content_type=content_type)
        if response.status_code == 202:
            document = {k: v for k, v in orjson.loads(raw).items() if k != "id"}
            accepted[response.get_json()["command_id"]] = document
        else:
            assert response.status_code in REFUSALS, response.get_data(as_text=True)
            assert_problem(response, response.status_code)
            assert len(redis_keys.all()) == before

    send()
    assert accepted, "no hostile body was acceptable: the run tested refusals only"
    gw = app.extensions["gateway"]
    on_streams = queued(app)
    records = {key.decode().rsplit(":cmd:", 1)[1] for key in redis_keys.all() if b":cmd:" in key}
    assert set(on_streams) == records == set(accepted)
    for command_id, document in accepted.items():
        partition = partition_of_command(command_id, gw.settings.partitions)
        record = gw.redis.hgetall(gw.keys.command(partition, command_id))
        assert record["st"] == "pending"
        assert orjson.loads(record["pl"]) == document

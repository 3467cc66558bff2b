"""Limits on a write's JSON beside its size: nesting depth, member count, 64-bit integers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.api import assert_problem

pytestmark = pytest.mark.integration

JSON = "application/json"


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep, the body itself counting as one: alternately objects and arrays."""
    value: Any = 1
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value]
    return {"a": value}


def payload(app: Any, command_id: str) -> Any:
    gw = app.extensions["gateway"]
    record = gw.redis.hgetall(gw.keys.command(int(command_id.split("-", 1)[0]), command_id))
    return orjson.loads(record["pl"])


@pytest.fixture
def small(make_app: Any) -> Any:
    """An app allowing 4 levels of nesting and 10 object members."""
    return make_app(max_json_depth=4, max_json_members=10)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/notes"), ("PUT", "/api/notes/d"), ("PATCH", "/api/notes/d")]
)
def test_nesting_up_to_the_limit_is_taken_and_deeper_is_422(
    small: Any, redis_keys: Any, method: str, path: str
) -> None:
    client = small.test_client()
    assert client.open(path, method=method, json=nested(4)).status_code == 202
    written = redis_keys.snapshot()
    problem = assert_problem(client.open(path, method=method, json=nested(5)), 422)
    assert problem["type"] == "/problems/too-deep"
    assert "4" in problem["errors"][0]["message"]
    assert redis_keys.snapshot() == written


def test_the_default_depth_is_32(client: Any) -> None:
    assert client.post("/api/notes", json=nested(32)).status_code == 202
    assert_problem(client.post("/api/notes", json=nested(33)), 422)


def test_json_too_deep_for_the_parser_is_400(client: Any, redis_keys: Any) -> None:
    body = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"
    problem = assert_problem(client.post("/api/notes", data=body, content_type=JSON), 400)
    assert problem["type"] == "/problems/malformed-json"
    assert redis_keys.all() == set()


def test_members_are_counted_at_every_depth(small: Any, redis_keys: Any) -> None:
    client = small.test_client()
    # 4 at the top, 1 in b, 2 elements of e, 3 in e's objects
    ten = {"a": 1, "b": {"c": 1}, "e": [{"f": 1, "g": 1}, {"h": 1}], "j": None}
    assert client.post("/api/notes", json=ten).status_code == 202
    written = redis_keys.snapshot()
    eleven = {**ten, "e": [ten["e"][0], {"h": 1, "i": 1}]}
    problem = assert_problem(client.post("/api/notes", json=eleven), 422)
    assert problem["type"] == "/problems/too-many-members"
    assert redis_keys.snapshot() == written


def test_array_elements_count_as_members(small: Any, redis_keys: Any) -> None:
    client = small.test_client()
    assert client.post("/api/notes", json={"n": list(range(9))}).status_code == 202  # 1 + 9
    written = redis_keys.snapshot()
    for body in ({"n": list(range(10))}, {"n": [[], [], [], [], [], [], [], [], [], []]}):
        problem = assert_problem(client.post("/api/notes", json=body), 422)
        assert problem["type"] == "/problems/too-many-members"
    assert redis_keys.snapshot() == written


def test_a_body_of_many_small_arrays_is_refused_before_its_arrays_are_walked(
    client: Any, redis_keys: Any
) -> None:
    """1 MiB of empty arrays, one too deep at the end: the check stops at the member count
    (the walk would find the deep one first), so its cost is bounded by the limit."""
    body = b'{"a": [' + b"[]," * 349_000 + orjson.dumps(nested(40)) + b"]}"
    assert len(body) < 1024 * 1024
    problem = assert_problem(client.post("/api/notes", data=body, content_type=JSON), 422)
    assert problem["type"] == "/problems/too-many-members"
    assert "10000" in problem["detail"]
    assert redis_keys.all() == set()


@pytest.mark.parametrize("number", [2**63 - 1, -(2**63), 0, -1, 10**18])
def test_64_bit_integers_are_kept_exactly(app: Any, client: Any, number: int) -> None:
    raw = b'{"n": ' + str(number).encode() + b', "deep": [{"m": ' + str(number).encode() + b"}]}"
    response = client.post("/api/notes", data=raw, content_type=JSON)
    assert response.status_code == 202
    assert payload(app, response.get_json()["command_id"]) == {"n": number, "deep": [{"m": number}]}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"n": 9223372036854775808}', "n"),
        (b'{"n": -9223372036854775809}', "n"),
        (b'{"n": 18446744073709551616}', "n"),
        (b'{"a": [1, {"b": 123456789012345678901234567890}]}', "a.1.b"),
        (b'{"x": 1, "x": 99999999999999999999}', "x"),  # duplicate names: the last one counts
    ],
)
def test_integers_beyond_64_bits_are_422_naming_the_field(
    client: Any, redis_keys: Any, raw: bytes, field: str
) -> None:
    problem = assert_problem(client.post("/api/notes", data=raw, content_type=JSON), 422)
    assert problem["type"] == "/problems/number-too-large"
    assert problem["errors"] == [{"field": field, "message": problem["errors"][0]["message"]}]
    assert "64 bits" in problem["errors"][0]["message"]
    assert redis_keys.all() == set()


def test_long_digit_runs_that_are_not_large_integers_are_taken(app: Any, client: Any) -> None:
    raw = b'{"s": "12345678901234567890123", "f": 12345678901234567890.5, "e": 1e300, "x": 1.0e-5}'
    response = client.post("/api/notes", data=raw, content_type=JSON)
    assert response.status_code == 202
    stored = payload(app, response.get_json()["command_id"])
    assert stored["s"] == "12345678901234567890123" and stored["e"] == 1e300


@pytest.mark.parametrize("raw", [b'{"n": 1e400}', b'{"n": -1e999}', b'{"s": "\\ud800"}', b'{"n": NaN}'])
def test_numbers_and_strings_json_cannot_carry_are_400(client: Any, redis_keys: Any, raw: bytes) -> None:
    problem = assert_problem(client.post("/api/notes", data=raw, content_type=JSON), 400)
    assert problem["type"] == "/problems/malformed-json"
    assert redis_keys.all() == set()


def test_nul_and_odd_unicode_are_stored_as_sent(app: Any, client: Any) -> None:
    """NUL is valid JSON; a store that cannot hold it refuses it in its own `validate`."""
    document = {
        "nul": "a\u0000b",
        "\u0000": 1,
        "rtl": "\u202eabc",
        "emoji": "🧪",
        "bom": "\ufeff",
        "nc": "\uffff",
    }
    response = client.post("/api/notes", json=document)
    assert response.status_code == 202
    assert payload(app, response.get_json()["command_id"]) == document

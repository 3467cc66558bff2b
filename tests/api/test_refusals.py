"""Refused requests: an RFC 9457 problem each, and nothing of the command left in Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.ids import partition_of
from tests.support.api import SECRET, assert_problem, bearer, token

pytestmark = pytest.mark.integration

JSON = "application/json"

# (method, path, body bytes or None, content type, status)
REFUSALS = {
    "malformed json": ("POST", "/api/notes", b'{"title": ', JSON, 400),
    "empty body": ("POST", "/api/notes", b"", JSON, 400),
    "NaN is not JSON": ("POST", "/api/notes", b'{"x": NaN}', JSON, 400),
    "trailing garbage": ("PUT", "/api/notes/n1", b'{"x": 1} {', JSON, 400),
    "malformed patch": ("PATCH", "/api/notes/n1", b"{'x': 1}", "application/merge-patch+json", 400),
    "array body": ("POST", "/api/notes", b"[1, 2]", JSON, 422),
    "string body": ("PUT", "/api/notes/n1", b'"text"', JSON, 422),
    "null body": ("PATCH", "/api/notes/n1", b"null", JSON, 422),
    "number body": ("POST", "/api/notes", b"42", JSON, 422),
    "text/plain": ("POST", "/api/notes", b'{"x": 1}', "text/plain", 415),
    "form": ("PUT", "/api/notes/n1", b"x=1", "application/x-www-form-urlencoded", 415),
    "no content type": ("POST", "/api/notes", b'{"x": 1}', None, 415),
    "merge patch on POST": ("POST", "/api/notes", b'{"x": 1}', "application/merge-patch+json", 415),
    "merge patch on PUT": ("PUT", "/api/notes/n1", b'{"x": 1}', "application/merge-patch+json", 415),
    "xml patch": ("PATCH", "/api/notes/n1", b"<x/>", "application/xml", 415),
    "upper-case collection": ("POST", "/api/Notes", b"{}", JSON, 404),
    "collection with digit first": ("PUT", "/api/1notes/n1", b"{}", JSON, 404),
    "collection with dash": ("DELETE", "/api/my-notes/n1", None, None, 404),
    "collection too long": ("POST", "/api/c" + "x" * 63, b"{}", JSON, 404),
    "reserved commands (POST)": ("POST", "/api/commands", b"{}", JSON, 404),
    "reserved commands (PUT)": ("PUT", "/api/commands/n1", b"{}", JSON, 405),  # GET only
    "reserved events (PUT)": ("PUT", "/api/events/n1", b"{}", JSON, 404),
    "reserved events (PATCH)": ("PATCH", "/api/events/n1", b"{}", JSON, 404),
    "reserved devices (PUT)": ("PUT", "/api/devices/n1", b"{}", JSON, 405),  # DELETE only
    "reserved devices (PATCH)": ("PATCH", "/api/devices/n1", b"{}", JSON, 405),
    "url id too long (PUT)": ("PUT", "/api/notes/" + "x" * 201, b"{}", JSON, 422),
    "url id too long (DELETE)": ("DELETE", "/api/notes/" + "x" * 201, None, None, 422),
    "url id non-printable": ("PUT", "/api/notes/a%01b", b"{}", JSON, 422),
    "url id with newline": ("PATCH", "/api/notes/a%0Ab", b"{}", JSON, 422),
    "url id with slash": ("PUT", "/api/notes/a%2Fb", b"{}", JSON, 404),
    "empty url id (PUT)": ("PUT", "/api/notes/", b"{}", JSON, 404),
    "empty url id (DELETE)": ("DELETE", "/api/notes/", None, None, 404),
    "body id too long": ("POST", "/api/notes", b'{"id": "' + b"x" * 201 + b'"}', JSON, 422),
    "body id empty": ("POST", "/api/notes", b'{"id": ""}', JSON, 422),
    "body id non-printable": ("POST", "/api/notes", b'{"id": "a\\u0000b"}', JSON, 422),
    "body id with slash": ("POST", "/api/notes", b'{"id": "a/b"}', JSON, 422),
    "body id a number": ("POST", "/api/notes", b'{"id": 7}', JSON, 422),
    "body id null": ("POST", "/api/notes", b'{"id": null}', JSON, 422),
    "body id an object": ("POST", "/api/notes", b'{"id": {"a": 1}}', JSON, 422),
    "PUT body id differs": ("PUT", "/api/notes/n1", b'{"id": "n2"}', JSON, 422),
    "PUT body id a number": ("PUT", "/api/notes/1", b'{"id": 1}', JSON, 422),
    "PATCH body id differs": ("PATCH", "/api/notes/n1", b'{"id": "n2", "x": 1}', JSON, 422),
    "PATCH body id null": ("PATCH", "/api/notes/n1", b'{"id": null}', "application/merge-patch+json", 422),
}


@pytest.fixture
def seeded(app: Any, client: Any) -> Iterator[None]:
    """A command accepted on every partition, so that a stray XADD would change a stream."""
    partitions = app.extensions["gateway"].settings.partitions
    covered: set[int] = set()
    n = 0
    while len(covered) < partitions:
        entity = f"seed-{n}"
        covered.add(partition_of("notes", entity, partitions))
        assert client.put(f"/api/notes/{entity}", json={"n": n}).status_code == 202
        n += 1
    yield


def send(client: Any, method: str, path: str, body: bytes | None, content_type: str | None, **kw: Any) -> Any:
    headers = kw.pop("headers", {})
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.open(path, method=method, data=body, headers=headers, **kw)


@pytest.mark.parametrize("case", REFUSALS.values(), ids=list(REFUSALS))
def test_refused_writes_answer_a_problem_and_write_nothing(
    client: Any, seeded: None, redis_keys: Any, case: tuple[Any, ...]
) -> None:
    method, path, body, content_type, status = case
    before = redis_keys.snapshot()
    assert before  # the seeded commands are there
    problem = assert_problem(send(client, method, path, body, content_type), status)
    assert redis_keys.snapshot() == before
    if status == 422:
        assert problem["errors"] and all({"field", "message"} <= set(e) for e in problem["errors"])


def test_refusals_on_an_empty_redis_create_no_key(client: Any, redis_keys: Any) -> None:
    for method, path, body, content_type, status in REFUSALS.values():
        assert_problem(send(client, method, path, body, content_type), status)
    assert redis_keys.all() == set()


def test_validation_problem_names_the_field(client: Any) -> None:
    problem = assert_problem(client.put("/api/notes/n1", json={"id": "other"}), 422)
    assert problem["errors"][0]["field"] == "id"
    assert problem["type"] != "about:blank"


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/api/notes", JSON),
        ("PUT", "/api/notes/n1", JSON),
        ("PATCH", "/api/notes/n1", "application/merge-patch+json"),
    ],
)
def test_a_body_over_the_limit_is_413_and_writes_nothing(
    make_app: Any, redis_keys: Any, method: str, path: str, content_type: str
) -> None:
    client = make_app(max_body_bytes=1024).test_client()
    body = b'{"pad": "' + b"p" * 1100 + b'"}'
    assert_problem(send(client, method, path, body, content_type), 413)
    assert redis_keys.all() == set()
    # The same route takes a small body: the 413 was about the size.
    assert send(client, method, path, b'{"pad": "p"}', content_type).status_code == 202


def test_unauthenticated_writes_write_nothing(jwt_client: Any, redis_keys: Any) -> None:
    for method, path in [("POST", "/api/notes"), ("PUT", "/api/notes/a"), ("PATCH", "/api/notes/a")]:
        assert_problem(jwt_client.open(path, method=method, json={"x": 1}), 401)
        assert_problem(
            jwt_client.open(path, method=method, json={"x": 1}, headers=bearer(token(secret=SECRET + "x"))),
            401,
        )
    assert_problem(jwt_client.delete("/api/notes/a"), 401)
    assert redis_keys.all() == set()


# -- errors Flask raises itself, and unexpected ones -------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/notes/a/b", "/static/x.css"])
def test_unknown_routes_are_problem_404(client: Any, path: str) -> None:
    assert_problem(client.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/healthz", {"GET"}),
        ("DELETE", "/readyz", {"GET"}),
        ("POST", "/api/notes/n1", {"GET", "PUT", "PATCH", "DELETE"}),
        ("PUT", "/api/notes", {"GET", "POST"}),
        ("DELETE", "/api/notes", {"GET", "POST"}),
    ],
)
def test_wrong_methods_are_problem_405_with_allow(
    client: Any, redis_keys: Any, method: str, path: str, allowed: set[str]
) -> None:
    response = client.open(path, method=method, json={})
    assert_problem(response, 405)
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert method not in response.headers["Allow"]
    assert redis_keys.all() == set()


def test_an_unexpected_exception_is_a_bare_problem_500(make_app: Any, caplog: Any) -> None:
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("the database password is hunter2")

    with caplog.at_level("ERROR", logger="gateway.problems"):
        response = app.test_client().get("/boom")
    problem = assert_problem(response, 500)
    assert "hunter2" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    assert problem["title"] == "Internal Server Error"
    # The operator still gets the whole story in the log.
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


def test_an_unreachable_redis_on_write_is_a_problem_503(make_app: Any) -> None:
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    response = client.post("/api/notes", json={"x": 1})
    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) >= 1
    assert "127.0.0.1" not in response.get_data(as_text=True)

"""Per-collection JSON Schemas (SCHEMAS_DIR), the COLLECTIONS allowlist, and Store.validate."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugins.hookspecs import hookimpl
from plugins.sql_engine import CONNECT_TIMEOUT_SECONDS
from plugins.sql_store import LOOKUP_WAIT_SECONDS, SqlStore
from plugins.store import Command, Document, Op, StoreUnavailable
from settings import Settings
from tests.support.api import assert_problem
from tests.support.tcp_proxy import SilentServer

pytestmark = pytest.mark.integration

NOTE = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "maxLength": 40},
        "title": {"type": "string", "minLength": 1},
        "n": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "properties": {"color": {"enum": ["red", "blue"]}}},
    },
    "required": ["title"],
    "additionalProperties": False,
}
_seq = itertools.count(1)


@pytest.fixture
def schemas_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "notes.json").write_bytes(orjson.dumps(NOTE))
    (folder / "todo_items.json").write_bytes(orjson.dumps({"type": "object"}))
    (folder / "README.md").write_text("not a schema: only *.json files count")
    return folder


@pytest.fixture
def schema_app(make_app: Any, schemas_dir: Path) -> Any:
    return make_app(schemas_dir=str(schemas_dir))


def store_document(app: Any, collection: str, entity_id: str, document: Document) -> None:
    """Put a document in the store as a worker would."""
    store = app.extensions["gateway"].stores.for_collection(collection)
    command = Command(f"0-{next(_seq):016d}", next(_seq), "replace", collection, entity_id, document)
    assert store.apply([command]) == [None]


def fields(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem["errors"]]


def test_a_document_the_schema_accepts_is_accepted(schema_app: Any) -> None:
    client = schema_app.test_client()
    assert client.post("/api/notes", json={"id": "n1", "title": "t", "tags": ["a"]}).status_code == 202
    assert client.put("/api/notes/n2", json={"title": "t", "meta": {"color": "red"}}).status_code == 202
    assert client.post("/api/todo_items", json={"anything": [1, 2]}).status_code == 202


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, ["title"]),
        ({"title": ""}, ["title"]),
        ({"title": "t", "n": -1}, ["n"]),
        ({"title": "t", "n": "one"}, ["n"]),
        ({"title": "t", "tags": ["a", 2]}, ["tags.1"]),
        ({"title": "t", "meta": {"color": "green"}}, ["meta.color"]),
        ({"title": "t", "extra": 1}, [""]),
        ({"n": "x", "tags": "y"}, ["n", "tags", "title"]),
        ({"id": "x" * 41, "title": "t"}, ["id"]),
    ],
)
def test_a_violation_is_422_naming_each_field(
    schema_app: Any, redis_keys: Any, body: dict[str, Any], expected: list[str]
) -> None:
    client = schema_app.test_client()
    for method, path in [("POST", "/api/notes"), ("PUT", f"/api/notes/{body.get('id', 'n1')}")]:
        problem = assert_problem(client.open(path, method=method, json=body), 422)
        assert problem["type"] == "/problems/validation"
        assert sorted(fields(problem)) == expected
        assert all(error["message"] for error in problem["errors"])
    assert redis_keys.all() == set()


def test_the_schema_sees_the_id_even_when_the_server_makes_it(make_app: Any, tmp_path: Path) -> None:
    (tmp_path / "codes.json").write_bytes(orjson.dumps({"properties": {"id": {"pattern": "^c-"}}}))
    client = make_app(schemas_dir=str(tmp_path)).test_client()
    assert client.put("/api/codes/c-1", json={}).status_code == 202
    assert fields(assert_problem(client.put("/api/codes/x-1", json={}), 422)) == ["id"]
    assert fields(assert_problem(client.post("/api/codes", json={}), 422)) == ["id"]  # a fresh uuid


def test_a_patch_is_checked_as_its_result(schema_app: Any, redis_keys: Any) -> None:
    store_document(schema_app, "notes", "p1", {"title": "stored", "n": 1})
    client = schema_app.test_client()
    assert client.patch("/api/notes/p1", json={"n": 2}).status_code == 202  # no title in the patch
    assert client.patch("/api/notes/p1", json={"tags": None, "n": None}).status_code == 202
    written = redis_keys.snapshot()
    problem = assert_problem(client.patch("/api/notes/p1", json={"title": None}), 422)
    assert fields(problem) == ["title"]
    assert "merged with the patch" in problem["detail"]
    assert fields(assert_problem(client.patch("/api/notes/p1", json={"n": "two"}), 422)) == ["n"]
    assert fields(assert_problem(client.patch("/api/notes/p1", json={"meta": {"color": 1}}), 422)) == [
        "meta.color"
    ]
    assert redis_keys.snapshot() == written


def test_a_patch_of_a_document_not_stored_is_checked_alone(schema_app: Any) -> None:
    """Pending commands are not part of the check: a patch right after a create of the same
    document is checked against nothing stored yet."""
    client = schema_app.test_client()
    assert client.post("/api/notes", json={"id": "fresh", "title": "t"}).status_code == 202
    problem = assert_problem(client.patch("/api/notes/fresh", json={"n": 1}), 422)
    assert fields(problem) == ["title"]
    assert client.patch("/api/notes/fresh", json={"title": "whole", "n": 1}).status_code == 202


def test_with_schemas_an_unknown_collection_is_404(schema_app: Any, redis_keys: Any) -> None:
    client = schema_app.test_client()
    for method, path in [
        ("POST", "/api/other"),
        ("PUT", "/api/other/a"),
        ("PATCH", "/api/other/a"),
        ("DELETE", "/api/other/a"),
        ("GET", "/api/other/a"),
        ("GET", "/api/other"),
    ]:
        problem = assert_problem(client.open(path, method=method, json={"title": "t"}), 404)
        assert problem["type"] == "/problems/unknown-collection"
    assert redis_keys.all() == set()
    assert client.get("/api/notes").status_code == 200


def test_the_allowlist_alone_closes_the_set(make_app: Any) -> None:
    client = make_app(collections="notes, tasks").test_client()
    assert client.post("/api/tasks", json={"free": "form"}).status_code == 202
    assert client.delete("/api/notes/x").status_code == 202
    assert_problem(client.post("/api/other", json={}), 404)
    assert_problem(client.get("/api/other"), 404)


def test_the_allowlist_and_the_schemas_add_up(make_app: Any, schemas_dir: Path) -> None:
    client = make_app(collections="tasks", schemas_dir=str(schemas_dir)).test_client()
    assert client.post("/api/tasks", json={}).status_code == 202
    assert client.post("/api/notes", json={"title": "t"}).status_code == 202
    assert_problem(client.post("/api/notes", json={}), 422)
    assert_problem(client.post("/api/other", json={}), 404)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"notes.json": b'{"type": "objekt"}'}, "notes.json is not a valid JSON Schema"),
        ({"notes.json": b'{"type": '}, "notes.json is not a valid JSON Schema"),
        ({"Notes.json": b"{}"}, "Notes.json does not name a collection"),
        ({"commands.json": b"{}"}, "commands.json does not name a collection"),
    ],
)
def test_a_bad_schema_stops_the_start(
    make_app: Any, tmp_path: Path, files: dict[str, bytes], message: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        make_app(schemas_dir=str(tmp_path))


def test_a_missing_schemas_dir_or_a_bad_allowlist_stops_the_start(make_app: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SCHEMAS_DIR"):
        make_app(schemas_dir=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="COLLECTIONS"):
        make_app(collections="notes, Bad-Name")


class CheckedStore(SqlStore):
    """An SQL store that refuses a `secret` member and, in patches, a null `title`."""

    name = "checked"

    def validate(self, collection: str, op: Op, document: Document) -> list[dict[str, str]]:
        errors = []
        if "secret" in document:
            errors.append({"field": "secret", "message": f"not a column of {collection} ({op})"})
        if op == "patch" and "title" in document and document["title"] is None:
            errors.append({"field": "title", "message": "NOT NULL"})
        return errors


class UnreachableStore(SqlStore):
    """An SQL store whose database cannot be reached to check or read a document."""

    name = "unreachable"

    def validate(self, collection: str, op: Op, document: Document) -> list[dict[str, str]]:
        raise StoreUnavailable("no route to the database")

    def get(self, collection: str, entity_id: str) -> Document | None:
        raise StoreUnavailable("no route to the database")


@hookimpl
def register_stores(settings: Settings) -> Sequence[SqlStore]:
    """This module is also a plugin (PLUGINS=tests.api.test_schemas): it adds two stores."""
    return [CheckedStore(settings.database_url), UnreachableStore(settings.database_url)]


def test_the_stores_own_errors_are_part_of_the_422(make_app: Any, schemas_dir: Path, redis_keys: Any) -> None:
    app = make_app(plugins=__name__, collection_stores="notes=checked,rows=checked")
    client = app.test_client()
    assert client.post("/api/rows", json={"fine": 1}).status_code == 202
    written = redis_keys.snapshot()
    for method, path, op in [("POST", "/api/rows", "create"), ("PUT", "/api/rows/r", "replace")]:
        problem = assert_problem(client.open(path, method=method, json={"secret": 1}), 422)
        assert problem["errors"] == [{"field": "secret", "message": f"not a column of rows ({op})"}]
    assert fields(assert_problem(client.patch("/api/rows/r", json={"title": None}), 422)) == ["title"]
    assert redis_keys.snapshot() == written

    with_schema = make_app(
        plugins=__name__, collection_stores="notes=checked", schemas_dir=str(schemas_dir)
    ).test_client()
    problem = assert_problem(with_schema.post("/api/notes", json={"secret": 1}), 422)
    assert sorted(fields(problem)) == ["", "secret", "title"]  # schema: extra member, no title


def test_a_store_that_cannot_be_reached_does_not_hold_writes(make_app: Any, schemas_dir: Path) -> None:
    """Writes need only Redis; the store still refuses the document when the command applies."""
    app = make_app(plugins=__name__, collection_stores="notes=unreachable,rows=unreachable")
    client = app.test_client()
    assert client.post("/api/rows", json={"any": 1}).status_code == 202
    assert client.patch("/api/rows/r", json={"any": 2}).status_code == 202

    with_schema = make_app(
        plugins=__name__, collection_stores="notes=unreachable", schemas_dir=str(schemas_dir)
    ).test_client()
    assert with_schema.put("/api/notes/n", json={"title": "t"}).status_code == 202
    # A patch of a collection with a schema is checked against the stored document: it waits.
    response = with_schema.patch("/api/notes/n", json={"n": 1})
    assert_problem(response, 503)
    assert response.get_json()["type"] == "/problems/store-unavailable"


def test_a_database_that_never_answers_holds_no_write_past_the_lookup_wait(make_app: Any) -> None:
    """The SQL store asks the database how a collection is stored; a hung database costs the first
    write of the process LOOKUP_WAIT_SECONDS, not the connect timeout, and later writes nothing."""
    silent = SilentServer()
    try:
        app = make_app(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{silent.port}/test")
        client = app.test_client()
        started = time.monotonic()
        assert client.post("/api/rows", json={"any": 1}).status_code == 202
        assert time.monotonic() - started < LOOKUP_WAIT_SECONDS + 1 < CONNECT_TIMEOUT_SECONDS
        started = time.monotonic()
        for n in range(10):
            assert client.put(f"/api/rows/r{n}", json={"n": n}).status_code == 202
        assert time.monotonic() - started < LOOKUP_WAIT_SECONDS
        assert silent.connections == 1
        gw = app.extensions["gateway"]
        queued = sum(gw.redis.xlen(gw.keys.stream(p)) for p in range(gw.settings.partitions))
        assert queued == 11
    finally:
        silent.close()


def test_a_valid_document_is_checked_by_the_compiled_validator_alone(
    schema_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jsonschema-rs answers for a valid document; `jsonschema` (~5 µs a value) runs only for a
    refused one, whose errors it words, as before."""
    collections = schema_app.extensions["gateway"].collections
    assert set(collections.fast) == {"notes", "todo_items"}
    slow = collections.validators["notes"]
    walked: list[Any] = []

    class Watched:
        def iter_errors(self, document: Any) -> Any:
            walked.append(document)
            return slow.iter_errors(document)

    monkeypatch.setitem(collections.validators, "notes", Watched())
    client = schema_app.test_client()
    assert client.post("/api/notes", json={"title": "t", "tags": ["a"] * 1000}).status_code == 202
    assert walked == []
    problem = assert_problem(client.post("/api/notes", json={"title": "t", "tags": ["a", 2]}), 422)
    assert problem["errors"] == [{"field": "tags.1", "message": "2 is not of type 'string'"}]
    assert len(walked) == 1

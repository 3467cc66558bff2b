"""Reads: straight from the store that holds the collection, no worker involved."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from plugins.store import Command, Document
from tests.support.api import assert_problem, bearer, token

pytestmark = pytest.mark.integration

_seq = itertools.count(1)


def write(app: Any, collection: str, documents: dict[str, Document]) -> None:
    """Put documents in the app's store directly, as a worker would."""
    store = app.extensions["gateway"].stores.for_collection(collection)
    commands = [
        Command(f"0-{n:032x}", next(_seq), "replace", collection, entity_id, document)
        for n, (entity_id, document) in enumerate(documents.items())
    ]
    assert store.apply(commands) == [None] * len(commands)


def test_get_one_returns_the_stored_document_with_its_id(app: Any, client: Any) -> None:
    write(app, "notes", {"n-1": {"title": "hello", "tags": ["a"], "n": 1.5, "ok": True, "none": None}})
    response = client.get("/api/notes/n-1")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "id": "n-1",
        "title": "hello",
        "tags": ["a"],
        "n": 1.5,
        "ok": True,
        "none": None,
    }


def test_get_one_of_an_unusual_id(app: Any, client: Any) -> None:
    entity_id = "é ü:1?x"
    write(app, "notes", {entity_id: {"v": 1}})
    response = client.get("/api/notes/%C3%A9%20%C3%BC:1%3Fx")
    assert response.status_code == 200
    assert response.get_json() == {"id": entity_id, "v": 1}


def test_missing_documents_and_collections_are_404(app: Any, client: Any) -> None:
    write(app, "notes", {"here": {"v": 1}})
    assert client.get("/api/notes/here").status_code == 200
    assert_problem(client.get("/api/notes/absent"), 404)
    assert_problem(client.get("/api/never_written/absent"), 404)
    assert_problem(client.get("/api/Notes/here"), 404)
    assert_problem(client.get("/api/commands_x/here"), 404)


def test_a_deleted_document_is_404(app: Any, client: Any) -> None:
    write(app, "notes", {"d": {"v": 1}})
    store = app.extensions["gateway"].stores.for_collection("notes")
    assert store.apply([Command("0-" + "1" * 32, next(_seq), "delete", "notes", "d", None)]) == [None]
    assert_problem(client.get("/api/notes/d"), 404)


@pytest.mark.parametrize(
    ("path", "status"), [("/api/events/x", 404), ("/api/devices/x", 405), ("/api/devices", 405)]
)
def test_reserved_names_are_not_collections(app: Any, client: Any, path: str, status: int) -> None:
    """Their paths belong to the notification routes alone: a GET there is not a read."""
    assert_problem(client.get(path), status)


def test_invalid_ids_are_refused(client: Any) -> None:
    assert_problem(client.get("/api/notes/" + "x" * 201), 422)
    assert_problem(client.get("/api/notes/a%00b"), 422)


def test_list_walks_every_item_exactly_once(app: Any, client: Any) -> None:
    documents = {f"k{n:02d}": {"n": n} for n in range(11)}
    write(app, "notes", documents)
    write(app, "other", {"k99": {"n": 99}})  # another collection, not listed

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        response = client.get("/api/notes", query_string=query)
        assert response.status_code == 200
        page = response.get_json()
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= 4
        seen += page["items"]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert sorted(item["id"] for item in seen) == sorted(documents)
    assert len(seen) == len(documents)
    assert {item["id"]: {k: v for k, v in item.items() if k != "id"} for item in seen} == documents


def test_list_default_and_largest_limits(app: Any, client: Any) -> None:
    write(app, "notes", {f"k{n:03d}": {"n": n} for n in range(60)})
    page = client.get("/api/notes").get_json()
    assert len(page["items"]) == 50 and page["next"] is not None
    page = client.get("/api/notes?limit=500").get_json()
    assert len(page["items"]) == 60 and page["next"] is None
    page = client.get("/api/notes?limit=60").get_json()
    assert len(page["items"]) == 60 and page["next"] is None
    page = client.get("/api/notes?limit=59").get_json()
    assert len(page["items"]) == 59 and page["next"] is not None


def test_list_of_an_empty_collection(client: Any) -> None:
    response = client.get("/api/never_written")
    assert response.status_code == 200
    assert response.get_json() == {"items": [], "next": None}


@pytest.mark.parametrize(
    "limit", ["0", "501", "-1", "x", "", "1.5", "1e2", "+5", "%205", "%D9%A5", "00000", "5%0A"]
)
def test_bad_limits_are_400(app: Any, client: Any, limit: str) -> None:
    write(app, "notes", {"a": {}})
    assert_problem(client.get(f"/api/notes?limit={limit}"), 400)


@pytest.mark.parametrize("cursor", ["a", "%FF%FE", "_w"])
def test_bad_cursors_are_400(app: Any, client: Any, cursor: str) -> None:
    write(app, "notes", {"a": {}, "b": {}})
    assert_problem(client.get(f"/api/notes?cursor={cursor}"), 400)


def test_reads_need_a_token_and_any_user_may_read_a_shared_collection(make_app: Any) -> None:
    from tests.support.api import SECRET

    app = make_app(jwt_secret=SECRET, collections="notes:shared")
    write(app, "notes", {"shared": {"v": 1}})
    client = app.test_client()
    assert_problem(client.get("/api/notes/shared"), 401)
    assert_problem(client.get("/api/notes"), 401)
    for user in ("alice", "bob"):
        assert client.get("/api/notes/shared", headers=bearer(token(user))).get_json() == {
            "id": "shared",
            "v": 1,
        }
        assert client.get("/api/notes", headers=bearer(token(user))).get_json()["items"] == [
            {"id": "shared", "v": 1}
        ]


@pytest.mark.parametrize("path", ["/api/notes/n1", "/api/notes"])
def test_a_read_from_an_unreachable_store_is_503(make_app: Any, tmp_path: Any, path: str) -> None:
    client = make_app(database_url=f"sqlite:///{tmp_path}/no/such/dir/store.db").test_client()
    response = client.get(path)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "/problems/store-unavailable"
    assert response.headers["Retry-After"]

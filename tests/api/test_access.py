"""Access through HTTP, two users and an operator, on SQLite, PostgreSQL and MongoDB (mongomock):
declared collections, each policy's reads, lists and writes, and a planted table."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.public_errors import message
from settings import load
from tests.support.api import SECRET, assert_problem, bearer, token
from workers import runtime
from workers.drain import drain_partition

pytestmark = pytest.mark.integration

ALICE: dict[str, str] = {}
BOB: dict[str, str] = {}
ROOT: dict[str, str] = {}


@pytest.fixture(autouse=True)
def fresh_tokens() -> None:
    """Tokens made for each test: alice, bob, an operator."""
    ALICE.update(bearer(token("alice")))
    BOB.update(bearer(token("bob")))
    ROOT.update(bearer(token("root", roles=["admin"])))


MONGOMOCK = "tests.plugins.mongomock_store"


@pytest.fixture(params=["sqlite", "postgres", "mongo"])
def backend(request: pytest.FixtureRequest, sqlite_url: str) -> dict[str, str]:
    """The settings of a store backend."""
    if request.param == "sqlite":
        return {"database_url": sqlite_url}
    if request.param == "postgres":
        return {"database_url": request.getfixturevalue("postgres_url")}
    return {"plugins": MONGOMOCK, "default_store": "mongo"}


@pytest.fixture
def gateway_of(
    make_app: Callable[..., Any], settings_env: dict[str, str], backend: dict[str, str]
) -> Iterator[Callable[..., Any]]:
    """An app (with a worker runtime in this process) on `backend`, with settings overrides."""
    runtimes: list[runtime.Runtime] = []

    def make(**overrides: str) -> Any:
        config = {**backend, "jwt_secret": SECRET, **overrides}
        app = make_app(**config)
        instance = runtime.Runtime(load(**{k.lower(): v for k, v in settings_env.items()} | config))
        runtime.install(instance)
        instance.gw.ensure_groups()
        runtimes.append(instance)
        return app.test_client()

    yield make
    runtime.install(None)
    for instance in runtimes:
        instance.close()


@pytest.fixture
def name() -> str:
    """A fresh collection name (the PostgreSQL database is shared by the session's tests)."""
    return "t_" + secrets.token_hex(5)


def write(client: Any, method: str, path: str, headers: dict[str, str], body: Any = None) -> dict[str, Any]:
    """Send a write, apply it in this process, and return its final status."""
    response = client.open(path, method=method, json=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    command_id = response.get_json()["command_id"]
    drain_partition(0)
    return client.get(f"/api/commands/{command_id}", headers=headers).get_json()


def ids(client: Any, collection: str, headers: dict[str, str]) -> list[str]:
    response = client.get(f"/api/{collection}?limit=2", headers=headers)
    found: list[str] = []
    while True:
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        found += [d["id"] for d in page["items"]]
        if page["next"] is None:
            return found
        response = client.get(f"/api/{collection}?limit=2&cursor={page['next']}", headers=headers)


def test_owner_policy_reads_lists_and_writes(gateway_of: Any, name: str) -> None:
    client = gateway_of(collections=name)
    for n in range(3):
        assert write(client, "POST", f"/api/{name}", ALICE, {"id": f"a{n}", "v": n})["status"] == "applied"
    assert write(client, "PUT", f"/api/{name}/b0", BOB, {"v": "bob"})["status"] == "applied"

    assert client.get(f"/api/{name}/a0", headers=ALICE).get_json() == {"id": "a0", "v": 0}
    assert_problem(client.get(f"/api/{name}/a0", headers=BOB), 404)  # as if absent
    assert ids(client, name, ALICE) == ["a0", "a1", "a2"]
    assert ids(client, name, BOB) == ["b0"]
    assert ids(client, name, ROOT) == ["a0", "a1", "a2", "b0"]

    for method, body in (("PATCH", {"v": "x"}), ("PUT", {"v": "x"}), ("DELETE", None)):
        failed = write(client, method, f"/api/{name}/a1", BOB, body)
        assert (failed["status"], failed["error_type"]) == ("failed", "forbidden")
        assert "another user" in failed["error"]
    assert client.get(f"/api/{name}/a1", headers=ALICE).get_json() == {"id": "a1", "v": 1}

    assert write(client, "PATCH", f"/api/{name}/a1", ROOT, {"w": 1})["status"] == "applied"
    assert client.get(f"/api/{name}/a1", headers=ALICE).get_json() == {"id": "a1", "v": 1, "w": 1}
    assert write(client, "DELETE", f"/api/{name}/a1", ALICE)["status"] == "applied"
    assert_problem(client.get(f"/api/{name}/a1", headers=ALICE), 404)


def test_shared_policy_lets_every_user_read_and_write(gateway_of: Any, name: str) -> None:
    client = gateway_of(collections=f"{name}:shared")
    write(client, "POST", f"/api/{name}", ALICE, {"id": "b", "v": 1})
    assert write(client, "PATCH", f"/api/{name}/b", BOB, {"v": 2})["status"] == "applied"
    assert client.get(f"/api/{name}/b", headers=ALICE).get_json() == {"id": "b", "v": 2}
    assert ids(client, name, BOB) == ["b"]
    assert write(client, "DELETE", f"/api/{name}/b", BOB)["status"] == "applied"


def test_read_only_policy_lets_only_operators_write(gateway_of: Any, redis_keys: Any, name: str) -> None:
    client = gateway_of(collections=f"{name}:read_only")
    before = redis_keys.snapshot()
    refused = client.post(f"/api/{name}", json={"id": "c", "v": 1}, headers=ALICE)
    assert assert_problem(refused, 403)["type"] == "/problems/forbidden"
    assert redis_keys.snapshot() == before  # nothing of the command in Redis
    assert write(client, "POST", f"/api/{name}", ROOT, {"id": "c", "v": 1})["status"] == "applied"
    assert client.get(f"/api/{name}/c", headers=ALICE).get_json() == {"id": "c", "v": 1}
    assert ids(client, name, BOB) == ["c"]
    assert_problem(client.delete(f"/api/{name}/c", headers=BOB), 403)


def test_an_undeclared_collection_is_404_and_leaves_nothing(gateway_of: Any, redis_keys: Any) -> None:
    client = gateway_of(collections="notes")
    before = redis_keys.snapshot()
    refused = client.post("/api/users", json={"id": "u1"}, headers=ROOT)
    assert assert_problem(refused, 404)["type"] == "/problems/unknown-collection"
    assert_problem(client.patch("/api/users/u1", json={"a": 1}, headers=ALICE), 404)
    assert redis_keys.snapshot() == before
    assert_problem(client.get("/api/users", headers=ROOT), 404)


@pytest.fixture
def planted(backend: dict[str, str]) -> Iterator[None]:
    """A `users` table of another application in the store's database (SQL backends)."""
    engine = sa.create_engine(backend["database_url"])
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS users"))
        conn.execute(sa.text("CREATE TABLE users (id VARCHAR(50) PRIMARY KEY, password_hash VARCHAR(100))"))
        conn.execute(sa.text("INSERT INTO users VALUES ('u1', 'secret-hash')"))
    yield
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE users"))
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)  # a table: the SQL stores
def test_a_planted_table_is_unreachable_until_declared(gateway_of: Any, planted: None, backend: Any) -> None:
    client = gateway_of(app_env="development")  # nothing declared: any name is a managed collection
    for who in (ALICE, ROOT):
        assert_problem(client.get("/api/users/u1", headers=who), 404)
        assert ids(client, "users", who) == []
    failed = write(client, "PATCH", "/api/users/u1", ALICE, {"password_hash": "mine"})
    assert (failed["status"], failed["error_type"]) == ("failed", "forbidden")
    assert failed["error"] == message("forbidden")  # the public text, not the store's

    declared = gateway_of(collections="users:owner(id)")  # declared, but owned by no one of ours
    assert_problem(declared.get("/api/users/u1", headers=ALICE), 404)
    assert declared.get("/api/users/u1", headers=ROOT).get_json() == {
        "id": "u1",
        "password_hash": "secret-hash",
    }
    engine = sa.create_engine(backend["database_url"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT password_hash FROM users")).scalar() == "secret-hash"
    engine.dispose()


def test_production_refuses_to_start_without_declared_collections() -> None:
    from gateway.schemas import Collections

    with pytest.raises(ValueError, match="COLLECTIONS must declare"):
        Collections.from_settings(load(app_env="production", jwt_secret=SECRET, collections=""))
    declared = Collections.from_settings(load(app_env="production", jwt_secret=SECRET, collections="notes"))
    assert declared.exists("notes") and not declared.exists("users")


def test_the_collections_syntax() -> None:
    from gateway.access import Declaration, parse_declarations

    assert parse_declarations(" notes, board:shared,catalog:read_only , orders:owner(user_id),x:owner") == {
        "notes": Declaration("owner"),
        "board": Declaration("shared"),
        "catalog": Declaration("read_only"),
        "orders": Declaration("owner", "user_id"),
        "x": Declaration("owner"),
    }
    for bad in ("notes:public", "Notes", "notes,notes", "orders:owner(user id)", "events"):
        with pytest.raises(ValueError):
            parse_declarations(bad)


def test_a_schema_declares_its_collection_and_its_policy(tmp_path: Any) -> None:
    from gateway.schemas import Collections

    (tmp_path / "board.json").write_text('{"type": "object", "x-policy": "shared"}')
    (tmp_path / "notes.json").write_text('{"type": "object"}')
    found = Collections.from_settings(
        load(app_env="production", jwt_secret=SECRET, schemas_dir=str(tmp_path))
    )
    assert found.declaration("board").policy == "shared" and found.declaration("notes").policy == "owner"
    assert found.access("notes", "alice", False).owned and not found.access("board", "alice", False).owned


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_managed_table_of_an_earlier_version_gets_its_owner_column(
    request: pytest.FixtureRequest, sqlite_url: str, database: str, name: str
) -> None:
    from plugins.sql_store import SqlStore
    from plugins.store import Access, Command

    url = sqlite_url if database == "sqlite" else request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    old = sa.Table(
        name, sa.MetaData(), sa.Column("id", sa.String(200), primary_key=True), sa.Column("doc", sa.JSON)
    )
    old.create(engine)
    with engine.begin() as conn:
        conn.execute(old.insert(), [{"id": "legacy", "doc": {"v": 1}}])
    store = SqlStore(url)
    alice, admin = Access("alice"), Access("root", operator=True)
    assert store.get(name, "legacy", alice) is None  # no owner: operators only
    assert store.get(name, "legacy", admin) == {"v": 1}
    assert "owner" in {c["name"] for c in sa.inspect(engine).get_columns(name)}
    [outcome] = store.apply([Command("c1", 1, "patch", name, "legacy", {"v": 2}, alice)])
    assert getattr(outcome, "error_type", None) == "forbidden"
    assert store.apply([Command("c2", 2, "create", name, "new", {"v": 3}, alice)]) == [None]
    assert [d["id"] for d in store.list(name, 10, None, alice).items] == ["new"]
    store.close()
    engine.dispose()

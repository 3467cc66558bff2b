"""Two users race on the same documents, through HTTP, with real worker processes: whatever the
order in which their commands apply, no document ends changed by a user who does not own it."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from app import create_app
from tests.support.api import SECRET, bearer, token
from tests.support.services import wait_until

pytestmark = pytest.mark.integration

ALICE: dict[str, str] = {}
BOB: dict[str, str] = {}


@pytest.fixture(autouse=True)
def fresh_tokens() -> None:
    """Tokens made for each test."""
    ALICE.update(bearer(token("alice")))
    BOB.update(bearer(token("bob")))


ENTITIES = 30


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def name() -> str:
    return "race_" + secrets.token_hex(5)


@pytest.fixture
def client(settings_env: dict[str, str], database_url: str, name: str) -> Iterator[Any]:
    config = {k.lower(): v for k, v in settings_env.items()}
    app = create_app(config | {"database_url": database_url, "jwt_secret": SECRET, "collections": name})
    yield app.test_client()
    app.extensions["gateway"].close()


def send_all(
    client: Any, requests: list[tuple[str, str, dict[str, str], Any]]
) -> list[tuple[str, dict[str, str]]]:
    """Send `requests` (method, path, headers, body); the command ids with their sender."""
    sent = []
    for method, path, headers, body in requests:
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 202, response.get_json()
        sent.append((response.get_json()["command_id"], headers))
    return sent


def test_a_create_patch_race_never_leaves_a_document_changed_by_a_non_owner(
    client: Any, start_worker: Callable[..., Any], database_url: str, name: str
) -> None:
    start_worker(DATABASE_URL=database_url, JWT_SECRET=SECRET, COLLECTIONS=name)
    start_worker(DATABASE_URL=database_url, JWT_SECRET=SECRET, COLLECTIONS=name)
    alice: list[tuple[str, str, dict[str, str], Any]]
    alice = [("POST", f"/api/{name}", ALICE, {"id": f"n{i}", "by": "alice"}) for i in range(ENTITIES)]
    alice += [("PATCH", f"/api/{name}/n{i}", ALICE, {"by": "alice", "again": True}) for i in range(ENTITIES)]
    bob = [(m, f"/api/{name}/n{i}", BOB, {"by": "bob"}) for i in range(ENTITIES) for m in ("PATCH", "PUT")]
    sent: list[list[tuple[str, dict[str, str]]]] = [[], []]

    def run(index: int, requests: list[Any]) -> None:
        sent[index] = send_all(client.application.test_client(), requests)

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate((alice, bob))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def finished() -> bool:
        statuses = [client.get(f"/api/commands/{c}", headers=h).get_json() for c, h in sent[0] + sent[1]]
        return all(s["status"] != "pending" for s in statuses)

    wait_until(finished, 60, "every command to finish")
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, doc, owner FROM {name}")).all()
    engine.dispose()
    assert len(rows) == ENTITIES
    for entity_id, doc, owner in rows:
        document = doc if isinstance(doc, dict) else json.loads(doc)
        assert document["by"] == owner, (entity_id, document, owner)  # only its owner changed it
        mine = ALICE if owner == "alice" else BOB
        other = BOB if owner == "alice" else ALICE
        assert client.get(f"/api/{name}/{entity_id}", headers=mine).get_json()["by"] == owner
        assert client.get(f"/api/{name}/{entity_id}", headers=other).status_code == 404

"""Liveness and readiness probes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from plugins.hookspecs import hookimpl
from plugins.store import Command, Document, Outcome, Page, Store, StoreUnavailable
from settings import Settings
from tests.support.api import SECRET, bearer, token

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server takes connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # the kernel completes handshakes; nothing ever reads or replies
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_healthz_answers(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_answers_even_when_redis_is_down(make_app: Any) -> None:
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    assert client.get("/healthz").status_code == 200


def test_readyz_checks_redis_and_the_store(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"] == {"redis": "ok", "store:sql": "ok"}


def test_readyz_is_503_when_redis_is_unreachable(make_app: Any) -> None:
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"] != "ok"
    assert body["checks"]["store:sql"] == "ok"


def test_readyz_is_prompt_when_redis_never_answers(make_app: Any, silent_redis: str) -> None:
    client = make_app(redis_url=silent_redis).test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.get_json()["checks"]["redis"] != "ok"


def test_readyz_is_503_when_the_store_is_unreachable(make_app: Any, tmp_path: Any) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir"
    client = make_app(database_url=f"sqlite:///{missing_dir}/store.db").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["store:sql"] != "ok"


class DownStore(Store):
    """A store whose backend never answers."""

    name = "down"

    def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        raise StoreUnavailable("down")

    def get(self, collection: str, entity_id: str) -> Document | None:
        raise StoreUnavailable("down")

    def list(self, collection: str, limit: int, cursor: str | None) -> Page:
        raise StoreUnavailable("down")

    def ping(self) -> None:
        raise StoreUnavailable("no route to the down store")


@hookimpl
def register_stores(settings: Settings) -> list[Store]:
    """This module is also a plugin (PLUGINS=tests.api.test_health): it adds the `down` store."""
    return [DownStore()]


def test_readyz_checks_every_store_a_collection_is_routed_to(make_app: Any) -> None:
    client = make_app(plugins=__name__, collection_stores="audit=down").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["redis"] == "ok" and checks["store:sql"] == "ok"
    assert "no route to the down store" in checks["store:down"]


def test_readyz_ignores_a_loaded_store_nothing_is_routed_to(make_app: Any) -> None:
    client = make_app(plugins=__name__).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"redis": "ok", "store:sql": "ok"}


def test_readyz_shows_error_texts_to_operators_only(make_app: Any) -> None:
    """An error names hosts, ports and database users: anonymous callers see `down`."""
    client = make_app(jwt_secret=SECRET, plugins=__name__, collection_stores="audit=down").test_client()
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.get_json()["checks"] == {"redis": "ok", "store:sql": "ok", "store:down": "down"}
    for headers in (bearer(token("alice")), bearer("not-a-token"), bearer(token("bob", roles=["editor"]))):
        assert client.get("/readyz", headers=headers).get_json()["checks"]["store:down"] == "down"
    operator = client.get("/readyz", headers=bearer(token("root", roles=["admin"])))
    assert operator.status_code == 503
    assert "no route to the down store" in operator.get_json()["checks"]["store:down"]


def test_readyz_logs_an_outage_once(make_app: Any, caplog: Any) -> None:
    client = make_app(plugins=__name__, collection_stores="audit=down").test_client()
    with caplog.at_level("WARNING", logger="gateway.health"):
        for _ in range(3):
            assert client.get("/readyz").status_code == 503
    assert sum("store:down" in r.getMessage() for r in caplog.records) == 1

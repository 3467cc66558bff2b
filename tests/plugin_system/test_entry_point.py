"""A third-party store found through nothing but its installed package's entry point.

The example plugin (`examples/gateway-lmdb-store`, installed by `make install`) is named in no
setting and no code of the gateway: `PLUGINS` is empty. Installed, it is discovered, listed by
`flask plugins`, and a collection routed to it with `COLLECTION_STORES` is written there by a
real worker process and read back over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from tests.support import ROOT
from tests.support.services import wait_until

pytestmark = pytest.mark.integration

PACKAGE = "gateway-lmdb-store"


def test_the_example_package_declares_its_entry_point() -> None:
    [found] = [ep for ep in entry_points(group="gateway") if ep.name == "lmdb"]
    assert found.value == "gateway_lmdb_store"
    assert found.dist is not None and found.dist.name == PACKAGE, "run `make install`"


def test_flask_plugins_shows_the_example_from_its_package(
    lmdb_env: dict[str, str], settings_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "plugins"],
        cwd=ROOT,
        env={**os.environ, **settings_env, **lmdb_env},
        capture_output=True,
        check=True,
    )
    [listed] = [p for p in orjson.loads(result.stdout) if p["name"] == "lmdb"]
    assert listed == {
        "name": "lmdb",
        "module": "gateway_lmdb_store",
        "package": PACKAGE,
        "version": "0.1.0",
        "hooks": ["register_stores"],
    }


def test_a_collection_routed_to_the_example_store_is_applied_there_by_a_worker(
    lmdb_env: dict[str, str], make_app: Any, start_worker: Any, sqlite_url: str
) -> None:
    client = make_app(collection_stores=lmdb_env["COLLECTION_STORES"]).test_client()
    assert client.application.extensions["gateway"].settings.plugins == ""
    start_worker(**lmdb_env)
    accepted = client.put("/api/kv/k1", json={"text": "in lmdb", "n": [1, 2]})
    assert accepted.status_code == 202, accepted.json
    status_url = accepted.json["status_url"]
    wait_until(lambda: client.get(status_url).json["status"] != "pending", message="the command to finish")
    assert client.get(status_url).json["status"] == "applied"
    assert client.get("/api/kv/k1").json == {"id": "k1", "text": "in lmdb", "n": [1, 2]}
    assert client.get("/api/kv").json == {
        "items": [{"id": "k1", "text": "in lmdb", "n": [1, 2]}],
        "next": None,
    }
    assert (Path(lmdb_env["LMDB_STORE_PATH"]) / "data.mdb").stat().st_size > 0
    engine = sa.create_engine(sqlite_url)
    assert not sa.inspect(engine).has_table("kv")  # not in the default store
    engine.dispose()
    ready = client.get("/readyz").json
    assert ready["checks"]["store:lmdb"] == "ok"

"""A deployment that uses neither MongoDB nor FCM does not import pymongo or firebase-admin
(together about 160 ms of CPU and 17 MB of memory per process); the MongoDB store imports
pymongo when it is first used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from app import create_app
app = create_app({"app_env": "development", "redis_url": "redis://127.0.0.1:1/0", **%r})
gw = app.extensions["gateway"]
stores = gw.stores.by_name  # every built-in plugin module is imported by now
%s
print(" ".join(name for name in ("pymongo", "bson", "firebase_admin") if name in sys.modules))
"""


def loaded(then: str = "", **settings: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (settings, then)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_neither_is_imported_when_unused() -> None:
    assert loaded() == set()


def test_the_mongo_store_imports_pymongo_on_first_use() -> None:
    mongo = "mongodb://127.0.0.1:1/gateway"
    assert loaded(mongo_url=mongo) == set()
    assert loaded('stores["mongo"].client', mongo_url=mongo) == {"pymongo", "bson"}

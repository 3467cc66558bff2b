"""The plugin system: every hook is exercised here (a test named `test_hook_<hook>` each, which
`test_every_hook_has_a_test` demands), discovery and the settings that choose what loads, a
misspelt hook failing the start, routing of collections to stores, and `flask plugins`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import orjson
import pluggy
import pytest

import settings as settings_module
from gateway.stores import StoreRouter
from plugins import hookspecs
from plugins.hookspecs import hookimpl
from plugins.manager import DEFAULT_PLUGINS, PluginError, Plugins, make_manager
from plugins.mongo_store import MongoStore
from plugins.notifier import Notifier, NotifierServices
from plugins.sql_store import SqlStore
from plugins.store import Store
from settings import Settings
from tests.plugins.mongomock_store import shared_client
from workers.plugin_services import RuntimeServices

FAULTY = "tests.plugins.faulty_store"
MONGOMOCK = "tests.plugins.mongomock_store"


def hook_names() -> list[str]:
    """Every hook of the gateway, from the one file that declares them."""
    return sorted(name for name, f in inspect.getmembers(hookspecs) if hasattr(f, "gateway_spec"))


def load(**overrides: Any) -> Settings:
    return settings_module.load(**{"plugins": "", "disabled_plugins": "", **overrides})


def test_every_hook_has_a_test() -> None:
    tests = [name for name in globals() if name.startswith("test_hook_")]
    untested = [hook for hook in hook_names() if not any(t.startswith(f"test_hook_{hook}") for t in tests)]
    assert untested == [], f"hooks without a test_hook_<name> test in {__name__}: {untested}"


# -- the hooks ---------------------------------------------------------------------------------


def test_hook_register_stores(sqlite_url: str) -> None:
    plugins = Plugins(load(database_url=sqlite_url, plugins=FAULTY))
    stores = plugins.stores()
    assert sorted(stores) == ["flaky", "poisonable", "slow", "sql"]
    assert all(isinstance(s, SqlStore) and str(s.engine.url) == sqlite_url for s in stores.values())


def test_hook_register_stores_may_return_none_or_nothing(sqlite_url: str) -> None:
    class Quiet:
        @hookimpl
        def register_stores(self, settings: Settings) -> None:
            return None

    pm = make_manager()
    pm.register(Quiet())
    assert sorted(Plugins(load(database_url=sqlite_url), pm).stores()) == ["sql"]  # mongo: no MONGO_URL


def test_hook_register_stores_names_must_be_unique(sqlite_url: str) -> None:
    class Twin:
        @hookimpl
        def register_stores(self, settings: Settings) -> list[Store]:
            return [SqlStore(settings.database_url)]

    pm = make_manager()
    pm.register(Twin())
    with pytest.raises(PluginError, match="'sql'"):
        Plugins(load(database_url=sqlite_url), pm).stores()


def test_hook_register_stores_gets_the_settings_of_the_process(sqlite_url: str) -> None:
    seen: list[Settings] = []

    class Spy:
        @hookimpl
        def register_stores(self, settings: Settings) -> list[Store]:
            seen.append(settings)
            return []

    pm = make_manager()
    pm.register(Spy())
    config = load(database_url=sqlite_url, mongo_url="mongodb://db.example/app")
    stores = Plugins(config, pm).stores()
    assert seen == [config]
    assert isinstance(stores["mongo"], MongoStore)  # MONGO_URL set: the built-in mongo store


def test_hook_register_notifiers() -> None:
    plugins = Plugins(load(plugins="tests.plugins.recording_notifier"))
    [notifier] = plugins.notifiers(RuntimeServices())  # the built-in FCM notifier is off: no FCM_CREDENTIALS
    assert isinstance(notifier, Notifier) and notifier.name == "recording"
    notifier.close()


def test_hook_register_notifiers_gets_the_services_of_the_process() -> None:
    seen: list[tuple[Settings, NotifierServices]] = []

    class Spy:
        @hookimpl
        def register_notifiers(self, settings: Settings, services: NotifierServices) -> None:
            seen.append((settings, services))

    pm = make_manager()
    pm.register(Spy())
    config = load()
    given = RuntimeServices()
    assert Plugins(config, pm).notifiers(given) == []  # FCM is off: no FCM_CREDENTIALS
    assert seen == [(config, given)]


def test_hook_register_notifiers_names_must_be_unique() -> None:
    twice = Plugins(load(plugins="tests.plugins.recording_notifier,tests.plugins.recording_twin"))
    with pytest.raises(PluginError, match="two plugins provide a notifier named 'recording'"):
        twice.notifiers(RuntimeServices())


# -- discovery and the settings that choose ----------------------------------------------------


def test_built_in_plugins_load_first_in_their_order() -> None:
    names = [name for name, _ in make_manager().list_name_plugin()]
    assert names[: len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)
    assert {"plugins.sql_store", "plugins.mongo_store"} <= set(DEFAULT_PLUGINS)


def test_plugins_setting_adds_modules_after_the_built_in_ones() -> None:
    names = [name for name, _ in make_manager([FAULTY]).list_name_plugin()]
    assert names.index(FAULTY) == len(DEFAULT_PLUGINS)


def test_a_misspelt_hook_fails_the_start(make_app: Callable[..., Any]) -> None:
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'register_store'"):
        make_app(plugins="tests.plugins.misspelt_hook")


def test_a_hook_asking_for_an_unknown_argument_fails_the_start(make_app: Callable[..., Any]) -> None:
    with pytest.raises(pluggy.PluginValidationError, match="app"):
        make_app(plugins="tests.plugins.unknown_argument")


def test_disabled_plugins_are_neither_imported_nor_loaded(sqlite_url: str) -> None:
    broken = "tests.plugins.broken_on_import"
    with pytest.raises(RuntimeError, match="was imported"):
        make_manager([broken])
    config = load(
        database_url=sqlite_url,
        mongo_url="mongodb://db.example/app",
        plugins=f"{broken},{FAULTY}",
        disabled_plugins=f"{broken}, plugins.mongo_store",
    )
    plugins = Plugins(config)
    assert sorted(plugins.stores()) == ["flaky", "poisonable", "slow", "sql"]
    assert broken not in [p["name"] for p in plugins.describe()]


def test_disabled_plugins_setting_takes_entry_point_names() -> None:
    assert make_manager().get_plugin("lmdb") is not None  # the example package's entry point
    pm = make_manager(disabled=["lmdb"])
    assert pm.get_plugin("lmdb") is None and pm.is_blocked("lmdb")


# -- routing -----------------------------------------------------------------------------------


def test_collections_go_to_their_routed_store_and_the_rest_to_the_default(sqlite_url: str) -> None:
    stores = Plugins(load(database_url=sqlite_url, plugins=FAULTY)).stores()
    router = StoreRouter.from_settings(load(default_store="slow", collection_stores="audit=flaky"), stores)
    assert router.for_collection("audit").name == "flaky"
    assert router.for_collection("notes").name == "slow"
    assert sorted(s.name for s in router.used()) == ["flaky", "slow"]


def test_a_route_to_a_store_nobody_provides_fails_the_start(make_app: Callable[..., Any]) -> None:
    with pytest.raises(LookupError, match="no store named 'mongo' is loaded"):
        make_app(collection_stores="audit=mongo")  # no MONGO_URL, so no mongo store


def test_reads_and_readiness_follow_the_routes(make_app: Callable[..., Any]) -> None:
    client = make_app(plugins=MONGOMOCK, collection_stores="audit=mongo").test_client()
    shared_client()["gateway"]["audit"].replace_one(
        {"_id": "e1"}, {"_id": "e1", "_gw": {"seq": 1}, "who": "mongo"}, upsert=True
    )
    assert client.get("/api/audit/e1").json == {"id": "e1", "who": "mongo"}
    assert client.get("/api/notes/e1").status_code == 404  # the default store, sql, has no e1
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"redis": "ok", "store:sql": "ok", "store:mongo": "ok"}


def test_readiness_fails_when_a_routed_store_is_down(make_app: Callable[..., Any]) -> None:
    client = make_app(
        mongo_url="mongodb://127.0.0.1:1/gateway?serverSelectionTimeoutMS=200",
        collection_stores="audit=mongo",
    ).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["store:sql"] == "ok"
    assert ready.json["checks"]["store:mongo"].startswith("error: StoreUnavailable")


# -- flask plugins -----------------------------------------------------------------------------


def test_flask_plugins_lists_each_loaded_plugin_with_its_hooks(make_app: Callable[..., Any]) -> None:
    app = make_app(plugins=FAULTY)
    result = app.test_cli_runner().invoke(args=["plugins"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in orjson.loads(result.output)}
    assert listed["plugins.sql_store"] == {
        "name": "plugins.sql_store",
        "module": "plugins.sql_store",
        "package": None,
        "version": None,
        "hooks": ["register_stores"],
    }
    assert listed[FAULTY]["hooks"] == ["register_stores"]
    assert listed["lmdb"]["module"] == "gateway_lmdb_store"
    assert (listed["lmdb"]["package"], listed["lmdb"]["version"]) == ("gateway-lmdb-store", "0.1.0")
    assert list(listed)[: len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)


ACCESS_RULES = "tests.plugins.access_rules"


def test_hook_register_collections() -> None:
    plugins = Plugins(load(plugins=ACCESS_RULES))
    assert plugins.collections() == {"notes": "owner", "board": "shared", "catalog": "read_only"}


def test_hook_register_collections_declares_what_the_api_serves(make_app: Any) -> None:
    from tests.support.api import SECRET, bearer, token

    app = make_app(plugins=ACCESS_RULES, jwt_secret=SECRET, collections="extra:shared")
    client = app.test_client()
    alice = bearer(token("alice"))
    assert client.post("/api/board", json={"v": 1}, headers=alice).status_code == 202
    assert client.post("/api/extra", json={"v": 1}, headers=alice).status_code == 202
    assert client.post("/api/elsewhere", json={"v": 1}, headers=alice).status_code == 404
    assert client.post("/api/catalog", json={"v": 1}, headers=alice).status_code == 403
    admin = bearer(token("root", roles=["admin"]))
    assert client.post("/api/catalog", json={"v": 1}, headers=admin).status_code == 202


def test_hook_authorize(make_app: Any) -> None:
    from tests.plugins.access_rules import ASKED
    from tests.support.api import SECRET, bearer, token

    app = make_app(plugins=ACCESS_RULES, jwt_secret=SECRET)
    client = app.test_client()
    alice = bearer(token("alice"))
    ASKED.clear()
    assert client.post("/api/board", json={"id": "b1", "v": 1}, headers=alice).status_code == 202
    assert ASKED == [{"user": "alice", "action": "create", "collection": "board", "entity_id": "b1"}]
    refused = client.put("/api/board/b2", json={"locked": True}, headers=alice)
    assert refused.status_code == 403 and refused.get_json()["type"] == "/problems/forbidden"
    assert client.get("/api/board", headers=bearer(token("bob", banned=True))).status_code == 403
    assert client.get("/api/board", headers=alice).status_code == 200


def test_hook_authorize_sees_the_stored_document_of_a_read(make_app: Any) -> None:
    from tests.support.api import SECRET, bearer, token

    app = make_app(plugins=ACCESS_RULES, jwt_secret=SECRET)
    store = app.extensions["gateway"].stores.for_collection("board")
    from plugins.store import Command

    store.apply(
        [
            Command("c1", 1, "create", "board", "s", {"secret": True}),
            Command("c2", 2, "create", "board", "p", {}),
        ]
    )
    client = app.test_client()
    alice = bearer(token("alice"))
    assert client.get("/api/board/s", headers=alice).status_code == 403
    assert client.get("/api/board/p", headers=alice).status_code == 200


def test_hook_authorize_cannot_widen_the_policy(make_app: Any) -> None:
    from tests.support.api import SECRET, bearer, token

    class Yes:
        @hookimpl
        def authorize(self, user: str, action: str) -> bool:
            return True

    app = make_app(plugins=ACCESS_RULES, jwt_secret=SECRET)
    app.extensions["gateway"].plugins.pm.register(Yes())
    app.extensions["gateway"].plugins.__dict__.pop("authorizes", None)
    assert app.test_client().post("/api/catalog", json={}, headers=bearer(token("alice"))).status_code == 403

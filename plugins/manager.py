"""The plugin manager: built-in plugins, installed ones, and typed access to their hooks.

Plugins load in this order: the built-in modules (`DEFAULT_PLUGINS`), the modules named in the
`PLUGINS` setting, then every installed package's entry point in the `gateway` group. A name in
`DISABLED_PLUGINS` (a module's dotted name, or an entry point's name) is not loaded at all.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterable
from typing import Any

import pluggy

from plugins import hookspecs
from plugins.notifier import Notifier, NotifierServices
from plugins.store import Store
from settings import Settings

log = logging.getLogger("gateway.plugins")

DEFAULT_PLUGINS = ("plugins.sql_store", "plugins.mongo_store", "plugins.fcm_notifier")
ENTRY_POINT_GROUP = "gateway"  # third-party packages declare [project.entry-points.gateway]


class PluginError(RuntimeError):
    """The plugins cannot give a working configuration (unknown store, duplicate name)."""


def make_manager(extra: Iterable[str] = (), disabled: Iterable[str] = ()) -> pluggy.PluginManager:
    """A plugin manager with the built-in plugins, the `extra` modules and every installed one,
    less the `disabled` names. A hook of an unknown name, or with an argument its hook does
    not have, raises pluggy's PluginValidationError here, at start."""
    pm = pluggy.PluginManager("gateway")
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)  # blocked names are neither imported nor loaded from entry points
    for name in (*DEFAULT_PLUGINS, *extra):
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(name), name=name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()  # a function marked @hookimpl whose name is no hook fails here
    return pm


class Plugins:
    """The loaded plugins, seen through typed methods so that callers never touch pluggy."""

    def __init__(self, settings: Settings, pm: pluggy.PluginManager | None = None) -> None:
        self.settings = settings
        self.pm = pm or make_manager(settings.plugin_modules, settings.disabled_plugin_names)

    def describe(self) -> list[dict[str, Any]]:
        """Each loaded plugin, in load order: its name, module, package (entry points only)
        and the hooks it implements. What `flask plugins` prints."""
        packages = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        described = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue  # disabled
            dist = packages.get(id(plugin))
            described.append(
                {
                    "name": name,
                    "module": getattr(plugin, "__name__", type(plugin).__qualname__),
                    "package": dist.project_name if dist else None,
                    "version": dist.version if dist else None,
                    "hooks": sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()),
                }
            )
        return described

    def stores(self) -> dict[str, Store]:
        """Every store the plugins provide for these settings, by name."""
        found: dict[str, Store] = {}
        for batch in self.pm.hook.register_stores(settings=self.settings):
            for store in batch or ():
                if store.name in found:
                    raise PluginError(f"two plugins provide a store named {store.name!r}")
                found[store.name] = store
        return found

    def collections(self) -> dict[str, str]:
        """The collections the plugins declare, by name, with their policy text."""
        found: dict[str, str] = {}
        for declared in self.pm.hook.register_collections(settings=self.settings):
            for name, policy in (declared or {}).items():
                found.setdefault(name, policy)
        return found

    @functools.cached_property
    def authorizes(self) -> bool:
        """Whether any plugin implements `authorize` (the web side skips the call otherwise)."""
        return bool(self.pm.hook.authorize.get_hookimpls())

    def authorize(self, **question: Any) -> bool:
        """False when any plugin's `authorize` refuses `question` (see plugins/hookspecs.py)."""
        if not self.authorizes:
            return True
        return all(answer is not False for answer in self.pm.hook.authorize(**question))

    def notifiers(self, services: NotifierServices) -> list[Notifier]:
        """Every notifier the plugins provide for these settings (FCM, webhooks, ...), handed
        `services` (the worker runtime's: only worker processes run notifiers)."""
        found: dict[str, Notifier] = {}
        for batch in self.pm.hook.register_notifiers(settings=self.settings, services=services):
            for notifier in batch or ():
                if notifier.name in found:
                    raise PluginError(f"two plugins provide a notifier named {notifier.name!r}")
                found[notifier.name] = notifier
        return list(found.values())

"""The plugin manager: built-in plugins, installed ones, and typed access to their hooks."""

from __future__ import annotations

import importlib
import logging

import pluggy

from plugins import hookspecs
from plugins.store import Store
from settings import Settings

log = logging.getLogger("gateway.plugins")

DEFAULT_PLUGINS = ("plugins.sql_store",)
ENTRY_POINT_GROUP = "gateway"  # third-party packages declare [project.entry-points.gateway]


class PluginError(RuntimeError):
    """The plugins cannot give a working configuration (unknown store, duplicate name)."""


def make_manager(extra: list[str] | tuple[str, ...] = ()) -> pluggy.PluginManager:
    """A plugin manager with the built-in plugins, the `extra` modules and every installed one."""
    pm = pluggy.PluginManager("gateway")
    pm.add_hookspecs(hookspecs)
    for name in (*DEFAULT_PLUGINS, *extra):
        pm.register(importlib.import_module(name), name=name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()  # a misspelt hook name fails here, at start
    return pm


class Plugins:
    """The loaded plugins, seen through typed methods so that callers never touch pluggy."""

    def __init__(self, settings: Settings, pm: pluggy.PluginManager | None = None) -> None:
        self.settings = settings
        self.pm = pm or make_manager(settings.plugin_modules)

    def stores(self) -> dict[str, Store]:
        """Every store the plugins provide for these settings, by name."""
        found: dict[str, Store] = {}
        for batch in self.pm.hook.register_stores(settings=self.settings):
            for store in batch or ():
                if store.name in found:
                    raise PluginError(f"two plugins provide a store named {store.name!r}")
                found[store.name] = store
        return found

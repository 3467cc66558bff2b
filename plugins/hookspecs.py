"""The hooks a gateway plugin may implement. Every hook is listed here, with what it returns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from plugins.notifier import Notifier, NotifierServices
    from plugins.store import Store
    from settings import Settings

hookspec = HookspecMarker("gateway")
hookimpl = HookimplMarker("gateway")


@hookspec
def register_stores(settings: Settings) -> list[Store] | None:
    """Return the stores this plugin provides, configured from `settings` (none if it lacks
    what it needs). Each store's `name` must be unique among all plugins."""


@hookspec
def register_notifiers(settings: Settings, services: NotifierServices) -> list[Notifier] | None:
    """Return the notifiers this plugin provides, configured from `settings` (none if it lacks
    what it needs, such as credentials). The worker process hands each one every finished
    command's event (`plugins.notifier`); `services` is what it may use of the process (Redis,
    users' devices, background jobs). Each notifier's `name` must be unique among all plugins."""

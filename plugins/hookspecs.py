"""The hooks a gateway plugin may implement. Every hook is listed here, with what it returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from plugins.notifier import Notifier, NotifierServices
    from plugins.store import Document, Store
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


@hookspec
def register_collections(settings: Settings) -> dict[str, str] | None:
    """Return the collections this plugin declares, by name, each with its policy as
    `COLLECTIONS` spells it (`owner`, `owner(<column>)`, `shared`, `read_only`). A collection
    that `COLLECTIONS` or a schema also declares keeps that declaration."""


@hookspec
def authorize(
    user: str,
    claims: dict[str, Any],
    action: str,
    collection: str,
    entity_id: str | None,
    document: Document | None,
) -> bool | None:
    """Return False to refuse `action` (`read`, `list`, `create`, `replace`, `patch`, `delete`)
    on `collection` (and `entity_id`; None for a list) to `user`, whose token's claims are
    `claims`; None or True to leave the decision to the others. Called by the web process
    after the collection's policy allowed the request: for a write at accept with its
    `document` (the body, or the merge patch; None for a delete), for a read with the stored
    document (None for a list). It can only refuse, never allow what the policy refuses.
    `claims` are all the token's (an operator's roles in the JWT_ROLES_CLAIM claim); a rule that
    must run where the write is applied belongs in a store, which gets the claims carried with
    each command (`plugins.store.Access.claims`)."""

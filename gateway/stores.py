"""Routing of collections to stores: a default store plus per-collection overrides."""

from __future__ import annotations

from plugins.store import Store
from settings import Settings


class StoreRouter:
    """Which store holds a collection; checked against the loaded stores at start."""

    def __init__(self, stores: dict[str, Store], default: str, routes: dict[str, str]) -> None:
        for name in {default, *routes.values()}:
            if name not in stores:
                known = ", ".join(sorted(stores)) or "none"
                raise LookupError(f"no store named {name!r} is loaded (loaded: {known})")
        self.by_name = stores
        self.default = stores[default]
        self.routes = {collection: stores[name] for collection, name in routes.items()}

    @classmethod
    def from_settings(cls, settings: Settings, stores: dict[str, Store]) -> StoreRouter:
        return cls(stores, settings.default_store, settings.collection_store_map)

    def for_collection(self, collection: str) -> Store:
        return self.routes.get(collection, self.default)

    def used(self) -> list[Store]:
        """The stores some collection is routed to: the ones readiness checks."""
        return list({id(s): s for s in [self.default, *self.routes.values()]}.values())

    def close(self) -> None:
        for store in self.by_name.values():
            store.close()

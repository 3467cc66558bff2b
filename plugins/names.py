"""The collection-name rule, in one place: the API, its description and every store derive from it.

A collection name is a lowercase letter, then up to 62 lowercase letters, digits or `_`: a safe
table, collection or key name on every backend, which no database truncates (PostgreSQL cuts
identifiers at 63 bytes), and never a name the gateway or a store keeps for itself (those start
with `_`). A store holds any well-formed name; the API also refuses the RESERVED ones, which are
its own routes under `/api`.
"""

from __future__ import annotations

import re

COLLECTION_NAME = r"[a-z][a-z0-9_]{0,62}"  # without anchors: for fullmatch, URL rules, JSON Schema
RESERVED = ("commands", "devices", "events")  # /api/commands/<id>, /api/devices, /api/events
RULE = f"{COLLECTION_NAME}, not {', '.join(RESERVED[:-1])} or {RESERVED[-1]}"  # for error messages

_NAME = re.compile(COLLECTION_NAME)


def is_well_formed(name: str) -> bool:
    """Whether `name` has the shape of a collection name: what a store may hold."""
    return _NAME.fullmatch(name) is not None


def is_collection_name(name: str) -> bool:
    """Whether `name` can name a collection of the API: well-formed and not reserved."""
    return is_well_formed(name) and name not in RESERVED

"""Access to collections: declarations, policies, and the checks the web side makes.

A declaration is `name[:policy]`, comma-separated in `COLLECTIONS`:

- `notes` or `notes:owner`: policy `owner` (the default). A document belongs to the user whose
  command created it; others neither see nor change it.
- `orders:owner(user_id)`: policy `owner` for a team's existing table, whose column `user_id`
  holds the owner (the store fills it with the creator's user id on create).
- `board:shared`: every authenticated user reads and writes every document.
- `catalog:read_only`: every authenticated user reads; only operators write.

Operators (a token whose roles claim holds `ADMIN_ROLE`) may do anything. The web side refuses
only what the token alone decides (an unknown collection: 404; a write of a read-only one: 403;
a plugin's `authorize` refusal: 403); whether a user may change a document is decided by the
store where the write is applied (`plugins.store.Access`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plugins.names import RULE, is_collection_name
from plugins.store import Policy

POLICIES: tuple[Policy, ...] = ("owner", "shared", "read_only")
_OWNER_COLUMN = re.compile(r"owner\(([A-Za-z_][A-Za-z0-9_]{0,62})\)")


@dataclass(frozen=True)
class Declaration:
    """A declared collection's policy, and the owner column of a team's existing table."""

    policy: Policy = "owner"
    owner_field: str | None = None
    declared: bool = True


UNDECLARED = Declaration(declared=False)  # development without declarations: any well-formed name


def parse_policy(name: str, text: str) -> Declaration:
    """The declaration of `name` from its policy text (`owner`, `owner(column)`, `shared`,
    `read_only`); ValueError for anything else."""
    text = text.strip() or "owner"
    column = _OWNER_COLUMN.fullmatch(text)
    if column:
        return Declaration("owner", column.group(1))
    if text not in POLICIES:
        raise ValueError(
            f"collection {name!r}: unknown policy {text!r} (owner, owner(<column>), shared or read_only)"
        )
    return Declaration(text)


def parse_declarations(text: str) -> dict[str, Declaration]:
    """`COLLECTIONS` as declarations by name; ValueError names the first bad entry."""
    found: dict[str, Declaration] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, policy = entry.partition(":")
        name = name.strip()
        if not is_collection_name(name):
            raise ValueError(f"COLLECTIONS: {name!r} is not a collection name ({RULE})")
        if name in found:
            raise ValueError(f"COLLECTIONS: {name!r} is declared twice")
        found[name] = parse_policy(name, policy)
    return found


def may_write_at_once(declaration: Declaration, operator: bool) -> bool:
    """Whether the web side accepts a write (the store still checks ownership)."""
    return declaration.policy != "read_only" or operator

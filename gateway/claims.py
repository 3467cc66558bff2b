"""The token claims that travel with each command: from the web request, in the command's record
(gateway/record.py), to the store plugins (`plugins.store.Access.claims`) and the notifiers
(`plugins.events.Event.claims`), so that an application's rule can decide on them where the
write is applied, not only at accept.

Which claims: those COMMAND_CLAIMS names, and always the roles claim (JWT_ROLES_CLAIM; when it
is a dotted name reaching into nested claims, the top-level claim that holds it), so that a
plugin sees a user's roles as the web side's `authorize` hook does. Whether the user is an
operator travels apart, already decided (`Access.operator`).

Bounded: at most MAX_CLAIMS_BYTES as JSON per command. A token whose carried claims are larger
is refused (431), never cut: a rule may depend on the very part a cut would drop.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import orjson

from settings import Settings

# A few roles and ids. Each pending record and each outbox entry (OUTBOX_LENGTH of them) may
# hold this much, so it stays small whatever the identity provider puts in its tokens.
MAX_CLAIMS_BYTES = 2048


class ClaimsTooLarge(ValueError):
    """The claims to carry exceed MAX_CLAIMS_BYTES as JSON."""


def carried_names(settings: Settings) -> tuple[str, ...]:
    """The top-level claims carried with each command, in the order they are named."""
    return _names(settings.command_claims, settings.jwt_roles_claim)


@functools.cache  # one pair of settings per process: parsed once, not on every write
def _names(command_claims: str, roles: str) -> tuple[str, ...]:
    names = [name.strip() for name in command_claims.split(",") if name.strip()]
    names += [roles, roles.split(".", 1)[0]] if "." in roles else [roles]
    return tuple(dict.fromkeys(names))


def carried(claims: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The claims of `names` that the token has (for a dotted roles claim, whichever of the
    whole name and its top-level claim it has)."""
    return {name: claims[name] for name in names if name in claims}


def encode(kept: Mapping[str, Any]) -> bytes:
    """The carried claims as the record keeps them (b'' for none); ClaimsTooLarge past the bound."""
    if not kept:
        return b""
    raw = orjson.dumps(kept)
    if len(raw) > MAX_CLAIMS_BYTES:
        raise ClaimsTooLarge(
            f"the token's claims carried with each command ({', '.join(kept)}) take {len(raw)} bytes "
            f"as JSON, more than {MAX_CLAIMS_BYTES}"
        )
    return raw

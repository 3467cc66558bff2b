"""Which collections exist, their access policy, and what their documents must look like.

Collections are declared by `COLLECTIONS` (`name[:policy]`, comma-separated; `gateway.access`
has the syntax), by `SCHEMAS_DIR` (a folder of `<collection>.json` JSON Schemas, Draft 2020-12,
each declaring its collection, with policy `owner` unless its `x-policy` keyword says another)
and by plugins (`register_collections`). Once anything is declared, only the declared collections
exist. Without any declaration (development only: production refuses to start) every
well-formed name is a managed collection of policy `owner`, which a store keeps only in a table
or collection of its own making. A collection with a schema takes only documents that the schema
accepts. Declarations and schemas are read, checked and compiled once, when the process starts;
a bad one stops the start.

A document is first checked by jsonschema-rs (compiled Rust, ~0.05 ms for 10,000 values where
`jsonschema` takes 30-70 ms, while every other connection of the gevent process waits); only a
document it refuses is checked again by `jsonschema`, whose messages and paths the API answers
with, as before. A schema jsonschema-rs cannot compile is checked by `jsonschema` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from gateway.access import UNDECLARED, Declaration, parse_declarations, parse_policy
from gateway.validation import field_name
from plugins.names import RULE, is_collection_name
from plugins.store import Access
from settings import Settings

MAX_ERRORS = 50  # a document can break a schema in many places; the first ones are enough to fix
MAX_MESSAGE = 300  # jsonschema quotes the offending value, which may be large


class Collections:
    """The declared collections (None: none declared, any well-formed name) with their policy,
    and a compiled validator per schema."""

    def __init__(
        self,
        names: frozenset[str] | None,
        validators: dict[str, Draft202012Validator],
        declarations: dict[str, Declaration] | None = None,
    ) -> None:
        self.names = names
        self.validators = validators
        self.declarations = declarations or {}
        self.fast = {name: fast for name, v in validators.items() if (fast := _fast(v.schema)) is not None}

    @classmethod
    def from_settings(cls, settings: Settings, plugged: dict[str, str] | None = None) -> Collections:
        """From COLLECTIONS, SCHEMAS_DIR and the plugins' declarations (`plugged`: name -> policy)."""
        declarations = parse_declarations(settings.collections)
        for name, policy in (plugged or {}).items():
            if not is_collection_name(name):
                raise ValueError(f"a plugin declares {name!r}, which is not a collection name ({RULE})")
            declarations.setdefault(name, parse_policy(name, policy))
        validators: dict[str, Draft202012Validator] = {}
        if settings.schemas_dir:
            validators, policies = load_schemas(Path(settings.schemas_dir))
            for name, policy in policies.items():
                declarations.setdefault(name, parse_policy(name, policy))
        if not declarations and settings.app_env == "production":
            raise ValueError(
                "COLLECTIONS must declare the API's collections when APP_ENV=production, e.g. "
                "COLLECTIONS=notes,catalog:read_only,orders:owner(user_id) (or SCHEMAS_DIR, or a "
                "plugin's register_collections): a table that merely exists is never exposed"
            )
        if not declarations:
            return cls(None, {})
        return cls(frozenset(declarations), validators, declarations)

    def exists(self, name: str) -> bool:
        if not is_collection_name(name):
            return False
        return self.names is None or name in self.names

    def declaration(self, name: str) -> Declaration:
        """The collection's declaration; an undeclared one's (policy owner, store-made only)."""
        return self.declarations.get(name, UNDECLARED)

    def access(
        self, collection: str, user: str, operator: bool, claims: Mapping[str, Any] | None = None
    ) -> Access:
        """What a store is told of a read or write of `collection` by `user` (and the claims
        carried with it, gateway/claims.py)."""
        found = self.declarations.get(collection)
        claims = claims if claims is not None else {}
        if found is None:
            return Access(user, operator, "owner", None, declared=False, claims=claims)
        return Access(user, operator, found.policy, found.owner_field, claims=claims)

    def errors(self, collection: str, document: dict[str, Any]) -> list[dict[str, str]]:
        """What the collection's schema finds wrong with `document` (none without a schema)."""
        validator = self.validators.get(collection)
        if validator is None:
            return []
        fast = self.fast.get(collection)
        if fast is not None and fast.is_valid(document):
            return []
        found = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
        return [_error(e) for e in found[:MAX_ERRORS]]


def load_schemas(folder: Path) -> tuple[dict[str, Draft202012Validator], dict[str, str]]:
    """A compiled validator for each `<collection>.json` in `folder`, and each one's policy (its
    `x-policy` keyword, `owner` by default)."""
    if not folder.is_dir():
        raise ValueError(f"SCHEMAS_DIR: {str(folder)!r} is not a folder")
    validators, policies = {}, {}
    for path in sorted(folder.glob("*.json")):
        if not is_collection_name(path.stem):
            raise ValueError(f"SCHEMAS_DIR: {path.name} does not name a collection ({RULE})")
        try:
            schema = orjson.loads(path.read_bytes())
            Draft202012Validator.check_schema(schema)
        except (orjson.JSONDecodeError, SchemaError) as error:
            raise ValueError(f"SCHEMAS_DIR: {path.name} is not a valid JSON Schema: {error}") from error
        validators[path.stem] = Draft202012Validator(schema)
        policy = schema.get("x-policy", "owner") if isinstance(schema, dict) else "owner"
        if not isinstance(policy, str):
            raise ValueError(f'SCHEMAS_DIR: {path.name}: x-policy must be a string such as "shared"')
        policies[path.stem] = policy
    return validators, policies


def _fast(schema: Any) -> jsonschema_rs.Validator | None:
    """The schema compiled by jsonschema-rs, formats as annotations as `jsonschema` takes them;
    None when it cannot compile it."""
    try:
        return jsonschema_rs.Draft202012Validator(schema, validate_formats=False)
    except Exception:  # noqa: BLE001 - any schema it cannot take is left to `jsonschema`
        return None


def _error(error: ValidationError) -> dict[str, str]:
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # Name the missing member itself: a form shows the message beside that field.
        missing = [m for m in error.validator_value if m not in error.instance and repr(m) in error.message]
        if missing:
            path.append(missing[0])
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {"field": field_name(path), "message": message}

"""Which collections exist and what their documents must look like.

By default every well-formed collection name exists and takes any JSON object. `COLLECTIONS`
(a list of names) and `SCHEMAS_DIR` (a folder of `<collection>.json` JSON Schemas, Draft
2020-12) close the set: then only the collections they name exist, and a collection with a
schema takes only documents that the schema accepts. Schemas are read, checked and compiled
once, when the app starts; a bad one stops the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from gateway.validation import field_name
from plugins.names import RULE, is_collection_name
from settings import Settings

MAX_ERRORS = 50  # a document can break a schema in many places; the first ones are enough to fix
MAX_MESSAGE = 300  # jsonschema quotes the offending value, which may be large


class Collections:
    """The known collections (None: any well-formed name) and a compiled validator per schema."""

    def __init__(self, names: frozenset[str] | None, validators: dict[str, Draft202012Validator]) -> None:
        self.names = names
        self.validators = validators

    @classmethod
    def from_settings(cls, settings: Settings) -> Collections:
        allowlist = settings.collection_allowlist
        for name in allowlist:
            if not is_collection_name(name):
                raise ValueError(f"COLLECTIONS: {name!r} is not a collection name ({RULE})")
        validators = load_schemas(Path(settings.schemas_dir)) if settings.schemas_dir else {}
        if not allowlist and not settings.schemas_dir:
            return cls(None, {})
        return cls(frozenset(allowlist) | frozenset(validators), validators)

    def exists(self, name: str) -> bool:
        if not is_collection_name(name):
            return False
        return self.names is None or name in self.names

    def errors(self, collection: str, document: dict[str, Any]) -> list[dict[str, str]]:
        """What the collection's schema finds wrong with `document` (none without a schema)."""
        validator = self.validators.get(collection)
        if validator is None:
            return []
        found = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
        return [_error(e) for e in found[:MAX_ERRORS]]


def load_schemas(folder: Path) -> dict[str, Draft202012Validator]:
    """A compiled validator for each `<collection>.json` in `folder`."""
    if not folder.is_dir():
        raise ValueError(f"SCHEMAS_DIR: {str(folder)!r} is not a folder")
    validators = {}
    for path in sorted(folder.glob("*.json")):
        if not is_collection_name(path.stem):
            raise ValueError(f"SCHEMAS_DIR: {path.name} does not name a collection ({RULE})")
        try:
            schema = orjson.loads(path.read_bytes())
            Draft202012Validator.check_schema(schema)
        except (orjson.JSONDecodeError, SchemaError) as error:
            raise ValueError(f"SCHEMAS_DIR: {path.name} is not a valid JSON Schema: {error}") from error
        validators[path.stem] = Draft202012Validator(schema)
    return validators


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

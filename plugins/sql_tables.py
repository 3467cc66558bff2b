"""A team's existing table as a collection: document fields are its columns.

`MappedTable` reflects a table once and keeps, per column, the JSON shape its values take
(`Field`). With it the SQL store refuses a document at accept time (`validate`: unknown fields,
wrong types, missing required columns) and converts between documents and rows when it writes
and reads:

| column type | JSON value | read back as |
|---|---|---|
| String, Text, Enum | string (no longer than the column; one of an enum's values) | string |
| Integer, SmallInteger, BigInteger | integer within the column's range | integer |
| Float, Numeric, Decimal | number | number (integer when the scale is 0) |
| Boolean, MySQL's TINYINT(1) | true or false | true or false |
| Date, DateTime, Time | ISO 8601 string | ISO 8601 string |
| Uuid | string holding a UUID | string |
| JSON, JSONB, (MariaDB) JSON | any value | the value |
| anything else | any value, passed to the driver as it is | as the driver gives it |

The table's single-column primary key holds the entity id (whatever its name; its name is not a
field). NULL is absence: a column holding NULL is left out of the document, and a merge patch's
`null` sets the column to NULL. A required column (NOT NULL, no default) must be in the document
of a create or a replace; a NOT NULL column with a default that a replace leaves out keeps its
stored value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from plugins.store import Document, Op

Kind = Literal["string", "integer", "number", "boolean", "date", "datetime", "time", "uuid", "json", "other"]
KEY_KINDS = frozenset({"string", "integer", "uuid"})  # what a primary key holding entity ids may be
KEY_PARAM = "_gw_key"  # bind parameter of the key in executemany updates and deletes
TYPE_NAMES: dict[str, str] = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "date": "an ISO 8601 date (YYYY-MM-DD)",
    "datetime": "an ISO 8601 date and time",
    "time": "an ISO 8601 time (HH:MM[:SS])",
    "uuid": "a UUID string",
}
INTEGER_BITS = [  # signed width of each integer type; the first match wins
    (mysql.TINYINT, 8),
    (sa.SmallInteger, 16),
    (mysql.MEDIUMINT, 24),
    (sa.BigInteger, 64),
    (sa.Integer, 32),
]


@dataclass(frozen=True)
class Field:
    """One column, as a document field."""

    name: str
    kind: Kind
    nullable: bool
    has_default: bool
    writable: bool = True
    max_length: int | None = None
    choices: tuple[str, ...] | None = None
    int_range: tuple[int, int] | None = None
    timezone: bool = False
    integral: bool = False  # a Numeric of scale 0: read back as an integer

    @property
    def required(self) -> bool:
        """A create or replace must give it: NOT NULL and nothing else fills it."""
        return self.writable and not self.nullable and not self.has_default

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this column; None when it fits."""
        if not self.writable:
            return "is computed by the database and cannot be written"
        if value is None:
            return None if self.nullable else "must not be null (the column is NOT NULL)"
        if self.kind in ("json", "other"):
            return None
        if not _fits(self.kind, value):
            return f"must be {TYPE_NAMES[self.kind]}"
        if self.choices is not None and value not in self.choices:
            return "must be one of " + ", ".join(map(repr, self.choices))
        if self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters long"
        if self.int_range is not None and not self.int_range[0] <= value <= self.int_range[1]:
            return f"must be from {self.int_range[0]} to {self.int_range[1]}"
        return None

    def to_db(self, value: Any) -> Any:
        """The document's value (already checked) as the driver takes it."""
        if value is None:
            return None
        if self.kind == "date":
            return dt.date.fromisoformat(value)
        if self.kind == "datetime":
            return self._zoned(dt.datetime.fromisoformat(value))
        if self.kind == "time":
            return dt.time.fromisoformat(value).replace(tzinfo=None)
        if self.kind == "uuid":
            return uuid.UUID(value)
        return value

    def from_db(self, value: Any) -> Any:
        """The column's value as a JSON value."""
        if isinstance(value, dt.date | dt.time):  # datetime is a date
            return value.isoformat()
        if isinstance(value, decimal.Decimal | float) and self.kind == "number":
            return int(value) if self.integral else float(value)
        if self.kind == "boolean":
            return bool(value)
        if isinstance(value, uuid.UUID):
            return str(value)
        return value

    def _zoned(self, value: dt.datetime) -> dt.datetime:
        """Aware for a column WITH TIME ZONE (naive input is UTC), naive UTC for the others."""
        if self.timezone:
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if value.tzinfo:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value


def _fits(kind: Kind, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if not isinstance(value, str):
        return False
    parse = {"date": dt.date, "datetime": dt.datetime, "time": dt.time, "uuid": uuid.UUID}[kind]
    try:
        if kind == "uuid":
            uuid.UUID(value)
        else:
            parse.fromisoformat(value)  # type: ignore[attr-defined]
    except ValueError:
        return False
    return kind != "date" or len(value) == 10  # fromisoformat also reads "20240101"


def field_of(column: sa.Column[Any], dialect: str, json_columns: Iterable[str] = ()) -> Field:
    """The document field for a reflected column (and makes its type read plain JSON values)."""
    kind = _kind(column.type, dialect, column.name in json_columns)
    if kind == "json" and not isinstance(column.type, sa.JSON):
        column.type = sa.JSON()  # MariaDB's JSON is LONGTEXT with a JSON_VALID check
    if isinstance(column.type, sa.Numeric | sa.Float):
        column.type.asdecimal = False  # floats; SQLite would warn about Decimals
    computed = column.computed is not None
    return Field(
        name=str(column.name),
        kind=kind,
        nullable=bool(column.nullable),
        has_default=column.server_default is not None
        or column.identity is not None
        or column.autoincrement is True,
        writable=not computed,
        max_length=getattr(column.type, "length", None) if kind == "string" else None,
        choices=tuple(column.type.enums) if isinstance(column.type, sa.Enum) else None,
        int_range=_int_range(column.type, dialect) if kind == "integer" else None,
        timezone=bool(getattr(column.type, "timezone", False)),
        integral=kind == "number" and getattr(column.type, "scale", None) == 0,
    )


def _kind(type_: sa.types.TypeEngine[Any], dialect: str, json_checked: bool) -> Kind:
    if json_checked or isinstance(type_, sa.JSON):
        return "json"
    if isinstance(type_, sa.Boolean) or (
        isinstance(type_, mysql.TINYINT) and getattr(type_, "display_width", None) == 1
    ):
        return "boolean"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Numeric | sa.Float):
        return "number"
    if isinstance(type_, sa.DateTime):
        return "datetime"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.Time):
        return "time"
    if isinstance(type_, sa.Uuid):
        return "uuid"
    if isinstance(type_, sa.String):  # Text, Enum and the MySQL text types are Strings
        return "string"
    return "other"


def _int_range(type_: sa.types.TypeEngine[Any], dialect: str) -> tuple[int, int]:
    bits = 64  # SQLite's integers are all 64-bit
    if dialect != "sqlite":
        bits = next(b for cls, b in INTEGER_BITS if isinstance(type_, cls))
    if getattr(type_, "unsigned", False):
        return (0, 2**bits - 1)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


class MappedTable:
    """A team's table: its primary key holds the entity id, its other columns the fields."""

    def __init__(self, table: sa.Table, dialect: str, json_columns: Iterable[str] = ()) -> None:
        self.table = table
        self.name = table.name
        keys = list(table.primary_key.columns)
        self.unusable: str | None = None
        self.key: sa.Column[Any] | None = keys[0] if len(keys) == 1 else None
        if self.key is None:
            self.unusable = f"table {self.name} has no single-column primary key to hold the entity id"
        json_columns = set(json_columns)
        # Plain strs: reflected names are quoted_name, which orjson refuses as keys.
        fields = {str(c.name): field_of(c, dialect, json_columns) for c in table.columns}
        self.key_field = fields.pop(self.key.name) if self.key is not None else None
        if self.key_field is not None and self.key_field.kind not in KEY_KINDS:
            self.unusable = f"the primary key of table {self.name} is not a string, integer or UUID column"
        self.fields = fields
        self.columns = [c for c in table.columns if c.name in fields]

    # -- checks ------------------------------------------------------------------------------

    def validate(self, op: Op, document: Mapping[str, Any]) -> list[dict[str, str]]:
        """The problems of a create's or a replace's document, or of a patch (`op` "patch")."""
        if op == "delete":
            return []
        if self.unusable:
            return [{"field": "", "message": self.unusable}]
        errors = []
        for name, value in document.items():
            if name == "id" and self.key is not None and self.key.name == "id":
                continue  # the body's id: the entity id, checked by the gateway
            message = self._field_problem(name, value)
            if message:
                errors.append({"field": name, "message": message})
        if op != "patch":
            for name, field in self.fields.items():
                if field.required and name not in document:
                    errors.append({"field": name, "message": "is required (NOT NULL without a default)"})
        return errors

    def _field_problem(self, name: str, value: Any) -> str | None:
        if self.key is not None and name == self.key.name:
            return "is the table's primary key, which holds the entity id: give it as the id"
        field = self.fields.get(name)
        if field is None:
            return f"unknown field: table {self.name} has no column {name!r}"
        return field.problem(value)

    def refuse_document(self, document: Document) -> str | None:
        """Why the store cannot write `document` (a whole document), if it cannot."""
        errors = self.validate("replace", document)
        return "; ".join(f"{e['field']}: {e['message']}" for e in errors) or None

    def refuse_id(self, entity_id: str) -> str | None:
        """Why `entity_id` cannot be a key of this table, if it cannot."""
        if self.unusable:
            return self.unusable
        try:
            self.key_of(entity_id)
        except ValueError as error:
            return f"the id {entity_id!r} does not fit the primary key of table {self.name}: {error}"
        return None

    def key_of(self, entity_id: str) -> Any:
        """The primary key value of an entity id; ValueError when it cannot be one."""
        assert self.key_field is not None
        kind = self.key_field.kind
        if kind == "integer":
            if not entity_id.lstrip("-").isdigit() or str(int(entity_id)) != entity_id:
                raise ValueError("the key is an integer column")
            value: Any = int(entity_id)
        elif kind == "uuid":
            value = uuid.UUID(entity_id)
            if str(value) != entity_id.lower():
                raise ValueError("the key is a UUID column")
        else:
            value = entity_id
        problem = self.key_field.problem(value if kind != "uuid" else entity_id)
        if problem:
            raise ValueError(f"the key {problem}")
        return value

    # -- rows --------------------------------------------------------------------------------

    def document_of(self, row: Mapping[Any, Any]) -> Document:
        return {
            name: field.from_db(row[name]) for name, field in self.fields.items() if row[name] is not None
        }

    def id_of(self, key: Any) -> str:
        return str(key)

    def read_for_update(self, conn: Connection, entity_ids: list[str]) -> dict[str, Document]:
        keys = [self.key_of(i) for i in entity_ids if self.refuse_id(i) is None]
        if not keys:
            return {}
        assert self.key is not None
        query = sa.select(self.key, *self.columns).where(self.key.in_(keys)).with_for_update()
        return {self.id_of(row[0]): self.document_of(row._mapping) for row in conn.execute(query)}

    def write(self, conn: Connection, before: dict[str, Document], after: dict[str, Document | None]) -> None:
        """Insert, update and delete what changed, a statement per shape of row (executemany)."""
        if not after:
            return
        assert self.key is not None
        inserts: dict[frozenset[str], list[dict[str, Any]]] = {}
        updates: dict[frozenset[str], list[dict[str, Any]]] = {}
        deletes: list[dict[str, Any]] = []
        for entity_id, document in after.items():
            key = self.key_of(entity_id)
            if document is None:
                if entity_id in before:
                    deletes.append({KEY_PARAM: key})
                continue
            if entity_id in before:
                row = self._update_row(document)
                row[KEY_PARAM] = key
                updates.setdefault(frozenset(row), []).append(row)
            else:
                row = {name: self.fields[name].to_db(value) for name, value in document.items()}
                row[self.key.name] = key
                inserts.setdefault(frozenset(row), []).append(row)
        by_key = self.key == sa.bindparam(KEY_PARAM)
        for rows in inserts.values():
            conn.execute(self.table.insert(), rows)
        for rows in updates.values():
            conn.execute(self.table.update().where(by_key), rows)
        if deletes:
            conn.execute(self.table.delete().where(by_key), deletes)

    def _update_row(self, document: Document) -> dict[str, Any]:
        """Every writable column: its value, NULL when absent, or (NOT NULL) left as stored."""
        row = {}
        for name, field in self.fields.items():
            if name in document:
                row[name] = field.to_db(document[name])
            elif field.writable and field.nullable:
                row[name] = None
        return row

    def get(self, conn: Connection, entity_id: str) -> Document | None:
        if self.refuse_id(entity_id):
            return None
        assert self.key is not None
        query = sa.select(*self.columns).where(self.key == self.key_of(entity_id))
        row = conn.execute(query).first()
        return None if row is None else self.document_of(row._mapping)

    def page(
        self, conn: Connection, after: str | None, limit: int, owner: tuple[str, str] | None = None
    ) -> list[tuple[str, Document]]:
        """Up to `limit` documents after the id `after`, in key order, each with its id; with
        `owner` (column, user), only the rows whose column holds the user."""
        if self.unusable:
            return []
        assert self.key is not None
        query = sa.select(self.key, *self.columns).order_by(self.key).limit(limit)
        query = query if owner is None else query.where(self.table.c[owner[0]] == owner[1])
        if after is not None:
            try:
                query = query.where(self.key > self.key_of(after))
            except ValueError as error:
                raise ValueError("invalid cursor") from error
        return [(self.id_of(row[0]), self.document_of(row._mapping)) for row in conn.execute(query)]

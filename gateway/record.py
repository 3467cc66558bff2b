"""The command record: the one Redis hash per command that the accept step writes, the drain job
reads and the finish script closes, and what the status route shows of it.

Every field name, status and encoding of the record lives here (the payload as JSON, counts as
integers, times as epoch milliseconds, shown as ISO 8601 by the API). The Lua scripts spell the
same names as literals, as Lua cannot import them: each script's header lists the names it
uses, and `tests/test_record.py` checks them against this module, so a rename here fails there
until the scripts follow.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from gateway.ids import partition_of_command
from plugins.store import Command, Document, Op

if TYPE_CHECKING:
    from gateway.context import Gateway
    from gateway.schemas import Collections

# The record's fields (hash `Keys.command`).
OP = "op"  # create, replace, patch or delete
COLLECTION = "col"
ENTITY_ID = "eid"
USER = "uid"  # the owner: the only user who may see the status and gets the events
OPERATOR = "adm"  # "1" when the user was an operator (may change any document); absent otherwise
STATUS = "st"  # PENDING until the command finishes, then APPLIED or FAILED
ATTEMPTS = "att"  # attempts made so far
ACCEPTED_AT = "acc"  # ms
FINISHED_AT = "fin"  # ms, once finished
# The last attempt's error as users see it ('' or absent: none); a dead letter's: the store's text.
ERROR = "err"
ERROR_TYPE = "ety"  # the error's type (gateway.public_errors), once failed
NEXT_ATTEMPT_AT = "nxt"  # ms: a pending command that failed is not tried again before this
PAYLOAD = "pl"  # the document or merge patch as JSON, until the command finishes
REQUEST_ID = "rid"  # the X-Request-ID of the request that sent it: the worker's lines name it
# The token's claims carried to the store plugins and notifiers (gateway/claims.py), as JSON;
# absent when none are carried.
CLAIMS = "clm"
FIELDS = (
    OP,
    COLLECTION,
    ENTITY_ID,
    USER,
    OPERATOR,
    STATUS,
    ATTEMPTS,
    ACCEPTED_AT,
    FINISHED_AT,
    ERROR,
    ERROR_TYPE,
    NEXT_ATTEMPT_AT,
    PAYLOAD,
    REQUEST_ID,
    CLAIMS,
)

# A partition stream entry's one field, and a dead letter's first: the command id.
COMMAND_ID = "c"
# A dead letter holds COMMAND_ID, the record's OP COLLECTION ENTITY_ID USER PAYLOAD, the store's
# own ERROR text and the ERROR_TYPE, ATTEMPTS ACCEPTED_AT, when it died (ms), and the record's
# REQUEST_ID, CLAIMS and OPERATOR when it has them (a replay is sent as the command was).
DIED_AT = "at"
# A payload larger than MAX_DEAD_LETTER_PAYLOAD_BYTES is not kept: PAYLOAD is '' and these say
# what it was (its length in bytes, its SHA-1 in hex).
PAYLOAD_SIZE = "pls"
PAYLOAD_DIGEST = "pld"
DEAD_LETTER_FIELDS = (
    COMMAND_ID,
    OP,
    COLLECTION,
    ENTITY_ID,
    USER,
    PAYLOAD,
    PAYLOAD_SIZE,
    PAYLOAD_DIGEST,
    ERROR,
    ERROR_TYPE,
    ATTEMPTS,
    ACCEPTED_AT,
    DIED_AT,
    REQUEST_ID,
    CLAIMS,
    OPERATOR,
)

PENDING, APPLIED, FAILED = "pending", "applied", "failed"
STATUSES = (PENDING, APPLIED, FAILED)

# What a drain job reads of each entry's record (HMGET, in this order).
WORK_FIELDS = (
    OP,
    COLLECTION,
    ENTITY_ID,
    USER,
    ATTEMPTS,
    NEXT_ATTEMPT_AT,
    PAYLOAD,
    STATUS,
    OPERATOR,
    REQUEST_ID,
    CLAIMS,
)


def now_ms() -> int:
    """The time as the record keeps it: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def iso(ms: str | int | None) -> str | None:
    """A record time as the API shows it (`2024-05-01T12:00:00.000Z`); None when unset."""
    if not ms:
        return None
    moment = datetime.fromtimestamp(int(ms) / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_payload(payload: Document | None) -> bytes:
    return orjson.dumps(payload)


def decode_payload(raw: str | None) -> Document | None:
    """The payload of a record or dead letter; None when it has none (a delete)."""
    return orjson.loads(raw) if raw else None


def decode_claims(raw: str | None) -> dict[str, Any]:
    """The claims a record or dead letter carries; empty when it carries none."""
    return orjson.loads(raw) if raw else {}


def new(
    op: Op,
    collection: str,
    entity_id: str,
    user: str,
    payload: Document | None,
    now: int,
    operator: bool = False,
    request_id: str = "",
    claims: bytes | str = b"",
) -> list[Any]:
    """A new pending record, as HSET's field/value pairs; `claims` as JSON (gateway/claims.py)."""
    fields: list[Any] = [OP, op, COLLECTION, collection, ENTITY_ID, entity_id, USER, user]
    if operator:
        fields += [OPERATOR, 1]  # only then: two fields less per pending command otherwise
    fields += [STATUS, PENDING, ATTEMPTS, 0, ACCEPTED_AT, now]
    if payload is not None:
        fields += [PAYLOAD, encode_payload(payload)]
    if request_id:
        fields += [REQUEST_ID, request_id]
    if claims:
        fields += [CLAIMS, claims]
    return fields


@dataclass(frozen=True)
class Work:
    """A pending command as a drain job needs it: the command for the store, its owner, the
    attempts made, when it is due (ms), and the request that sent it ('' when unknown)."""

    command: Command
    user: str
    attempts: int
    due_ms: int
    request_id: str = ""


def work(
    command_id: str, seq: int, values: Sequence[str | None], collections: Collections | None = None
) -> Work | None:
    """The pending command in an HMGET reply of WORK_FIELDS, with the access its store is told
    (from `collections`, the declarations); None when the record is gone or the command finished."""
    record = dict(zip(WORK_FIELDS, values, strict=False))
    if record.get(STATUS) != PENDING:
        return None
    command = Command(
        command_id=command_id,
        seq=seq,
        op=record[OP],  # type: ignore[arg-type]
        collection=record[COLLECTION],  # type: ignore[arg-type]
        entity_id=record[ENTITY_ID],  # type: ignore[arg-type]
        payload=decode_payload(record.get(PAYLOAD)),
        access=collections.access(
            record[COLLECTION] or "",
            record[USER] or "",
            record.get(OPERATOR) == "1",
            decode_claims(record.get(CLAIMS)),
        )
        if collections is not None
        else None,
    )
    attempts, due = int(record[ATTEMPTS] or 0), int(record[NEXT_ATTEMPT_AT] or 0)
    user, request_id = record[USER] or "", record.get(REQUEST_ID) or ""
    return Work(command=command, user=user, attempts=attempts, due_ms=due, request_id=request_id)


def status_of(gw: Gateway, user: str, command_id: str) -> dict[str, Any] | None:
    """The command's status as the API shows it; None when unknown or not this user's."""
    partition = partition_of_command(command_id, gw.settings.partitions)
    if partition is None:
        return None
    record = gw.redis.hgetall(gw.keys.command(partition, command_id))
    if not record or record.get(USER) != user:
        return None
    return status(command_id, record)


def status(command_id: str, record: Mapping[str, str]) -> dict[str, Any]:
    """The record as the status route shows it."""
    shown: dict[str, Any] = {
        "command_id": command_id,
        "status": record[STATUS],
        "op": record[OP],
        "collection": record[COLLECTION],
        "entity_id": record[ENTITY_ID],
        "attempts": int(record.get(ATTEMPTS, 0)),
        "accepted_at": iso(record.get(ACCEPTED_AT)),
        "finished_at": iso(record.get(FINISHED_AT)),
        "error": record.get(ERROR) or None,
        "error_type": record.get(ERROR_TYPE) or None,
    }
    if record.get(NEXT_ATTEMPT_AT) and record[STATUS] == PENDING:
        shown["next_attempt_at"] = iso(record[NEXT_ATTEMPT_AT])
    return shown


@dataclass(frozen=True)
class DeadCommand:
    """What a dead letter says of its command: enough to accept it again (as its user, with
    the claims it carried, traced by its first request's id)."""

    user: str
    op: Op
    collection: str
    entity_id: str
    payload: Document | None
    request_id: str = ""
    claims: str = ""  # as JSON, as the record kept them
    operator: bool = False


class PayloadNotKept(ValueError):
    """The dead letter kept only its payload's size and digest: it cannot be accepted again."""


def dead_command(fields: Mapping[str, str]) -> DeadCommand:
    """The command of a dead letter's fields; PayloadNotKept when its payload was too large to keep."""
    if fields.get(PAYLOAD_DIGEST):
        size, digest = fields.get(PAYLOAD_SIZE), fields[PAYLOAD_DIGEST]
        raise PayloadNotKept(f"its payload of {size} bytes was kept only as its SHA-1 {digest}")
    return DeadCommand(
        user=fields[USER],
        op=fields[OP],  # type: ignore[arg-type]
        collection=fields[COLLECTION],
        entity_id=fields[ENTITY_ID],
        payload=decode_payload(fields.get(PAYLOAD)),
        request_id=fields.get(REQUEST_ID) or "",
        claims=fields.get(CLAIMS) or "",
        operator=fields.get(OPERATOR) == "1",
    )

"""Accepting a command (one atomic Redis step) and reading its status record."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from gateway.context import Gateway
from gateway.ids import new_command_id, partition_of, partition_of_command
from gateway.keys import Keys
from plugins.store import Document, Op

# How long the first answer to an Idempotency-Key is kept for replay.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Accepted:
    command_id: str
    entity_id: str
    seq: str | None  # the stream entry id (the command's place in its entity's order); None: a replay


@dataclass(frozen=True)
class Idempotency:
    """A client's Idempotency-Key and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


class IdempotencyConflict(Exception):
    """The user sent this Idempotency-Key before, with a different request."""


def idempotency_record(keys: Keys, user: str, key: str) -> str:
    """String: the first command accepted under the user's key, with its request's fingerprint."""
    digest = hashlib.sha256(orjson.dumps([user, key])).hexdigest()  # any user id, any key
    return f"{keys.prefix}:idem:{digest}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def accept(
    gw: Gateway,
    user: str,
    op: Op,
    collection: str,
    entity_id: str,
    payload: Document | None,
    idempotency: Idempotency | None = None,
) -> Accepted:
    """Record the command and queue it, in one Lua script: both are written or neither is.

    With `idempotency`, a key the user sent before answers the first command again and writes
    nothing; a key sent before with another request raises IdempotencyConflict.
    """
    partition = partition_of(collection, entity_id, gw.settings.partitions)
    command_id = new_command_id(partition)
    fields: list[Any] = ["op", op, "col", collection, "eid", entity_id, "uid", user]
    fields += ["st", "pending", "att", 0, "acc", now_ms()]
    if payload is not None:
        fields += ["pl", orjson.dumps(payload)]
    keys = [gw.keys.command(partition, command_id), gw.keys.stream(partition)]
    args = [command_id, *fields]
    if idempotency is None:
        seq = gw.scripts.accept(keys=keys, args=args)
        return Accepted(command_id=command_id, entity_id=entity_id, seq=seq)
    return _accept_once(gw, user, idempotency, Accepted(command_id, entity_id, None), keys, args)


def _accept_once(
    gw: Gateway, user: str, idempotency: Idempotency, new: Accepted, keys: list[str], args: list[Any]
) -> Accepted:
    """Accept unless the key has an answer already; the record and the command in one MULTI/EXEC.

    WATCH makes the check and the write one step: of two requests racing with one key, the
    second's EXEC fails, and it goes round again to find and replay the first one's answer.
    """
    record_key = idempotency_record(gw.keys, user, idempotency.key)
    record = orjson.dumps({"fp": idempotency.fingerprint, "cid": new.command_id, "eid": new.entity_id})
    with gw.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(record_key)
                first = pipe.get(record_key)
                if first is not None:
                    return _replay(orjson.loads(first), idempotency)
                pipe.multi()
                gw.scripts.accept(keys=keys, args=args, client=pipe)
                pipe.set(record_key, record, ex=IDEMPOTENCY_TTL_SECONDS)
                seq, _ = pipe.execute()
                return Accepted(command_id=new.command_id, entity_id=new.entity_id, seq=seq)
            except redis.WatchError:
                continue


def _replay(first: dict[str, str], idempotency: Idempotency) -> Accepted:
    if first["fp"] != idempotency.fingerprint:
        raise IdempotencyConflict(idempotency.key)
    return Accepted(command_id=first["cid"], entity_id=first["eid"], seq=None)


def _iso(ms: str | None) -> str | None:
    if not ms:
        return None
    return (
        datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def status_of(gw: Gateway, user: str, command_id: str) -> dict[str, Any] | None:
    """The command's status as the API shows it; None when unknown or not this user's."""
    partition = partition_of_command(command_id, gw.settings.partitions)
    if partition is None:
        return None
    record = gw.redis.hgetall(gw.keys.command(partition, command_id))
    if not record or record.get("uid") != user:
        return None
    status: dict[str, Any] = {
        "command_id": command_id,
        "status": record["st"],
        "op": record["op"],
        "collection": record["col"],
        "entity_id": record["eid"],
        "attempts": int(record.get("att", 0)),
        "accepted_at": _iso(record.get("acc")),
        "finished_at": _iso(record.get("fin")),
        "error": record.get("err") or None,
    }
    if record.get("nxt") and record["st"] == "pending":
        status["next_attempt_at"] = _iso(record["nxt"])
    return status

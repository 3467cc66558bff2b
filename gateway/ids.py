"""Identifiers: command ids, entity partitions and the acceptance sequence number."""

from __future__ import annotations

import os
import re
import secrets
import zlib

COMMAND_ID = re.compile(r"^(\d{1,4})-[A-Za-z0-9_-]{16}$")


def partition_of(collection: str, entity_id: str, partitions: int) -> int:
    """Stable entity -> partition map: every command on one entity lands in one stream."""
    return zlib.crc32(f"{collection}/{entity_id}".encode()) % partitions


def new_command_id(partition: int) -> str:
    """A fresh command id that carries its partition, so its status can be found from the id."""
    return f"{partition}-{secrets.token_urlsafe(12)}"  # 96 random bits, 16 characters


def partition_of_command(command_id: str, partitions: int) -> int | None:
    """The partition named in a command id, or None for an id the gateway never made."""
    match = COMMAND_ID.match(command_id)
    if not match or int(match.group(1)) >= partitions:
        return None
    return int(match.group(1))


def new_entity_id() -> str:
    """A random (version 4) UUID in its usual text form: what `str(uuid.uuid4())` gives, in half
    the time (no UUID object on the way)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_entity_in(collection: str, partition: int, partitions: int) -> str:
    """A fresh entity id of `collection` that falls in `partition` (one in `partitions` of them
    does: `partitions` tries on average, each a UUID and a CRC-32)."""
    while True:
        entity_id = new_entity_id()
        if partition_of(collection, entity_id, partitions) == partition:
            return entity_id


def seq_of(stream_id: str) -> int:
    """The acceptance sequence of a stream entry id `ms-n`, as one integer that orders like it.

    Stores keep the last applied sequence per entity, so a re-delivered or stale command is
    recognised and skipped. `ms * 10**6 + n` fits a signed 64-bit column until the year 2262.
    """
    ms, _, n = stream_id.partition("-")
    return int(ms) * 1_000_000 + int(n)

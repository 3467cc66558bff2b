"""The operations on dead letters (commands that failed after their retries, kept with their
payload and error in each partition's `Keys.dead` stream), shared by the `flask dead-letters`
commands and the operators' JSON endpoints (`/admin/api/dead-letters`).

A dead letter is named `<partition>/<entry id>`. It is shown with the API's field names::

    {"dead_letter": "3/1795747626279-0", "command_id": "3-917c...", "op": "create",
     "collection": "notes", "entity_id": "n1", "user": "alice", "payload": {"text": "..."},
     "error": "the document n1 already exists", "error_type": "conflict",   # when recorded
     "attempts": 1, "accepted_at": "2026-...Z", "failed_at": "2026-...Z",
     "request_id": "8f3c...", "claims": {"roles": ["editor"]}}              # when recorded

A replay accepts the command again as a new command of the same user, with the claims, operator
flag and request id it first carried (as the write routes do, without their rate limit and
Idempotency-Key), and removes the dead letter in the same transaction, only if the new command
is accepted: a replay that is refused leaves the letter where it was. A drop forgets it (the
command stays `failed`). Each is atomic: of two operators replaying (or one replaying, one
dropping) the same letter at once, one does it and the other is told the letter is gone, so a
letter is never accepted twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from gateway import record, scripts
from gateway.accept import AcceptCall, BacklogFull, TooManyPending, answer, prepare
from gateway.context import Gateway
from gateway.ids import partition_of
from gateway.pipeline_status import ERROR_TYPE, error_kind

PAGE = 500  # entries read per partition per round trip while listing
DURATION = re.compile(r"^([0-9]+)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A replay whose transaction a change to its partition's dead letters spoiled (a new letter, a
# replay or drop of another one) looks again; it gives up after this many tries in a row.
REPLAY_TRIES = 20


class DeadLetterError(ValueError):
    """A name or filter that names no dead letter, or a malformed one; the message says which."""


class NoSuchDeadLetter(DeadLetterError):
    """The name is well formed, but no such dead letter is kept (now)."""


class NotReplayed(DeadLetterError):
    """The dead letter cannot be accepted again (its payload was not kept), or not now (a quota)."""


@dataclass(frozen=True)
class Filters:
    """Which dead letters an operation takes: all of these that are set must match."""

    collection: str | None = None
    error: str | None = None  # the error type, or a part of the error text (any case)
    since_ms: int | None = None  # failed at or after (epoch ms)

    def matches(self, fields: dict[str, str]) -> bool:
        if self.collection and fields.get(record.COLLECTION) != self.collection:
            return False
        if self.error:
            wanted = self.error.lower()
            text = (fields.get(record.ERROR) or "").lower()
            kind = error_kind(fields).lower()
            if wanted not in text and wanted != kind and wanted != (fields.get(ERROR_TYPE) or "").lower():
                return False
        return True


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    entry_id: str
    fields: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.partition}/{self.entry_id}"

    def shown(self) -> dict[str, Any]:
        """The dead letter with the API's field names and ISO times."""
        f = self.fields
        shown: dict[str, Any] = {
            "dead_letter": self.name,
            "command_id": f.get(record.COMMAND_ID),
            "op": f.get(record.OP),
            "collection": f.get(record.COLLECTION),
            "entity_id": f.get(record.ENTITY_ID),
            "user": f.get(record.USER),
            "payload": _payload(f.get(record.PAYLOAD)),
            "error": f.get(record.ERROR) or None,
            "attempts": int(f.get(record.ATTEMPTS) or 0),
            "accepted_at": record.iso(f.get(record.ACCEPTED_AT)),
            "failed_at": record.iso(f.get(record.DIED_AT) or self.entry_id.partition("-")[0]),
        }
        if f.get(ERROR_TYPE):
            shown["error_type"] = f[ERROR_TYPE]
        if f.get(record.REQUEST_ID):  # the X-Request-ID that sent it: its lines in every log
            shown["request_id"] = f[record.REQUEST_ID]
        if f.get(record.CLAIMS):
            shown["claims"] = _payload(f[record.CLAIMS])
        if f.get(record.PAYLOAD_DIGEST):  # too large to keep: its size and SHA-1 only
            shown["payload_size"] = int(f.get(record.PAYLOAD_SIZE) or 0)
            shown["payload_digest"] = f[record.PAYLOAD_DIGEST]
        return shown


def _payload(raw: str | None) -> Any:
    """The payload as JSON, or as kept when it is not JSON (a digest of one too large to keep)."""
    try:
        return record.decode_payload(raw)
    except ValueError:
        return raw


def parse_since(value: str | None, now_ms: int | None = None) -> int | None:
    """Epoch ms of `--since`: an ISO 8601 time (no zone: UTC) or a duration back from now (`90s`,
    `15m`, `1h`, `2d`)."""
    if not value:
        return None
    now_ms = record.now_ms() if now_ms is None else now_ms
    if match := DURATION.match(value.strip()):
        return now_ms - int(match.group(1)) * UNIT_SECONDS[match.group(2)] * 1000
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DeadLetterError(
            f"{value!r} is neither an ISO time (2026-12-04T17:00:00Z) nor a duration (30m, 1h, 2d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_name(gw: Gateway, name: str) -> tuple[int, str]:
    """The partition and entry id a dead letter's name holds."""
    partition, _, entry_id = name.partition("/")
    if (
        not partition.isdigit()
        or int(partition) >= gw.settings.partitions
        or not re.fullmatch(r"[0-9]+-[0-9]+", entry_id)
    ):
        raise DeadLetterError(f"{name!r} is not a dead letter: <partition>/<entry id>, as listed")
    return int(partition), entry_id


def get(gw: Gateway, name: str) -> DeadLetter:
    """The dead letter of this name; NoSuchDeadLetter when none is kept."""
    partition, entry_id = parse_name(gw, name)
    entries = gw.redis.xrange(gw.keys.dead(partition), min=entry_id, max=entry_id)
    if not entries:
        raise NoSuchDeadLetter(f"no dead letter {name}")
    return DeadLetter(partition, entry_id, entries[0][1])


def matching(gw: Gateway, filters: Filters, limit: int | None = None) -> list[DeadLetter]:
    """The dead letters that match, oldest failure first, at most `limit` (None: all)."""
    found: list[DeadLetter] = []
    for partition in range(gw.settings.partitions):
        for letter in _in_partition(gw, partition, filters):
            found.append(letter)
    found.sort(key=lambda d: _entry_order(d.entry_id))
    return found if limit is None else found[:limit]


def _in_partition(gw: Gateway, partition: int, filters: Filters) -> Iterator[DeadLetter]:
    start = f"{filters.since_ms}-0" if filters.since_ms else "-"
    while True:
        entries = gw.redis.xrange(gw.keys.dead(partition), min=start, max="+", count=PAGE)
        for entry_id, fields in entries:
            if filters.matches(fields):
                yield DeadLetter(partition, entry_id, fields)
        if len(entries) < PAGE:
            return
        start = "(" + entries[-1][0]


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Replayed:
    dead_letter: str
    command_id: str

    def shown(self) -> dict[str, str]:
        return {"dead_letter": self.dead_letter, "command_id": self.command_id}


def replay(gw: Gateway, letter: DeadLetter) -> Replayed:
    """Accept the letter's command again, as a new command of the same user, and forget the
    letter, both in one transaction; NoSuchDeadLetter when it is gone (dropped, or replayed by
    another operator), NotReplayed when it cannot be accepted (now)."""
    try:
        dead = record.dead_command(letter.fields)
    except record.PayloadNotKept as error:
        raise NotReplayed(f"{letter.name} cannot be replayed: {error}") from error
    call = prepare(
        gw,
        dead.user,
        dead.op,
        dead.collection,
        dead.entity_id,
        dead.payload,
        operator=dead.operator,
        request_id=dead.request_id,
        claims=dead.claims,
    )
    partition = partition_of(dead.collection, dead.entity_id, gw.settings.partitions)
    if gw.keys.cluster and partition != letter.partition:  # one transaction reaches one slot
        raise NotReplayed(
            f"{letter.name} cannot be replayed on a Redis Cluster: PARTITIONS changed since it "
            f"failed, and its command now goes to partition {partition}"
        )
    record_key = gw.keys.command(partition, call.command_id)
    try:
        result = answer(call, _accept_and_forget(gw, letter, call, record_key))
    except (TooManyPending, BacklogFull) as error:
        why = "the user is at MAX_PENDING_PER_USER" if isinstance(error, TooManyPending) else "backlog full"
        raise NotReplayed(f"{letter.name} not replayed ({why}); try again later") from error
    return Replayed(letter.name, result.command_id)


def _accept_and_forget(gw: Gateway, letter: DeadLetter, call: AcceptCall, record_key: str) -> list[str]:
    """The accept script's reply to `call`, run while the letter is still kept, with the letter
    removed in the same MULTI if the command was accepted (its record, `record_key`, exists).
    The partition's dead letters are WATCHed from the look that finds the letter to the EXEC: a
    replay or drop of it in between (or any other change to them) voids the transaction, which
    then looks again."""
    dead_key = gw.keys.dead(letter.partition)
    forget = scripts.dead_letter_replayed(
        gw.keys, letter.partition, entry_id=letter.entry_id, command_record=record_key
    )
    for _ in range(REPLAY_TRIES):
        with gw.redis.pipeline(transaction=True) as pipe:
            pipe.watch(dead_key)
            if not pipe.xrange(dead_key, min=letter.entry_id, max=letter.entry_id):
                raise NoSuchDeadLetter(f"no dead letter {letter.name}")
            pipe.multi()
            for each in (call.script, forget):  # EVAL, not EVALSHA: a NOSCRIPT would split them
                # As a command: a cluster's pipeline refuses eval(); its MULTI runs in the one
                # slot every key here is in, the letter's partition's.
                script = gw.scripts.script(each.name).script
                pipe.execute_command("EVAL", script, len(each.keys), *each.keys, *each.args)
            try:
                outcome, _ = pipe.execute()
            except redis.WatchError:
                continue
        return outcome
    raise NotReplayed(f"{letter.name} not replayed: its partition's dead letters kept changing; try again")


def replay_all(gw: Gateway, filters: Filters) -> list[Replayed]:
    """Replay every matching dead letter, oldest first, but those another operator replayed or
    dropped meanwhile. A failure stops there (raised): those replayed before it are accepted and
    gone, the rest are kept."""
    done = []
    for letter in matching(gw, filters):
        try:
            done.append(replay(gw, letter))
        except NoSuchDeadLetter:
            continue
    return done


def drop(gw: Gateway, letter: DeadLetter) -> None:
    """Forget the dead letter; NoSuchDeadLetter when another operator just did (or replayed it)."""
    if not gw.redis.xdel(gw.keys.dead(letter.partition), letter.entry_id):
        raise NoSuchDeadLetter(f"no dead letter {letter.name}")


def drop_all(gw: Gateway, filters: Filters) -> int:
    """Forget every matching dead letter; how many were."""
    by_partition: dict[int, list[str]] = {}
    for letter in matching(gw, filters):
        by_partition.setdefault(letter.partition, []).append(letter.entry_id)
    dropped = 0
    for partition, ids in by_partition.items():
        for start in range(0, len(ids), PAGE):
            dropped += gw.redis.xdel(gw.keys.dead(partition), *ids[start : start + PAGE])
    return dropped


@dataclass(frozen=True)
class Chosen:
    """The dead letters an operator's replay or drop takes: one by its name, or (no name) every
    one matching the filters."""

    name: str | None = None
    filters: Filters = Filters()


def replay_chosen(gw: Gateway, chosen: Chosen) -> list[Replayed]:
    """Replay the chosen dead letters (`replay`, `replay_all`)."""
    if chosen.name is not None:
        return [replay(gw, get(gw, chosen.name))]
    return replay_all(gw, chosen.filters)


def drop_chosen(gw: Gateway, chosen: Chosen) -> int:
    """Drop the chosen dead letters (`drop`, `drop_all`); how many were."""
    if chosen.name is not None:
        drop(gw, get(gw, chosen.name))
        return 1
    return drop_all(gw, chosen.filters)

"""A notification event: what the worker's finish script logs, and what a client receives.

`finish.lua` appends each finished command's event to its owner's log, `Keys.events(user)`, a
stream whose entry id is the event id (monotonic per user), and to the outbox with the owner and
that id. On the wire an event is the contract's JSON object, its id first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
import redis

from gateway.keys import Keys
from gateway.problems import Problem

EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # a Redis stream entry id, `<ms>-<seq>`
MAX_PART = 2**64 - 1  # both parts of a stream id are 64-bit; the greatest id has no successor
NO_EVENT = "0-0"  # lower than any event id: "after NO_EVENT" is the whole log
FIELDS = ("type", "command_id", "op", "collection", "entity_id", "status", "error")


@dataclass(frozen=True)
class Event:
    """One finished command, as its owner is told."""

    id: str  # the entry id in the owner's log: later events have greater ids
    user: str  # the owner; never sent, since only the owner receives the event
    type: str  # command.applied or command.failed
    command_id: str
    op: str
    collection: str
    entity_id: str
    status: str  # applied or failed
    error: str | None

    @classmethod
    def from_log(cls, event_id: str, user: str, body: str) -> Event:
        """The event from its id, its owner and the JSON `finish.lua` wrote (field `e`)."""
        data = orjson.loads(body)
        return cls(event_id, user, *(data.get(name) for name in FIELDS))

    @property
    def order(self) -> tuple[int, int]:
        return id_order(self.id)

    def as_dict(self) -> dict[str, str | None]:
        """The contract's event object: `id`, then the command's outcome."""
        return {"id": self.id, **{name: getattr(self, name) for name in FIELDS}}

    def to_json(self) -> str:
        return orjson.dumps(self.as_dict()).decode()


def id_order(event_id: str) -> tuple[int, int]:
    """An event id as a comparable pair: stream ids do not sort as strings (`9-0` < `10-0`)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def last_event_id(value: str | None) -> str | None:
    """The id a client says it saw last (None: it saw none); a Problem 400 when malformed."""
    if value is None or value == "":
        return None
    if not EVENT_ID.fullmatch(value) or max(id_order(value)) >= MAX_PART:
        raise Problem(
            400,
            "Bad Request",
            "last_event_id (or Last-Event-ID) must be an event id as received, like 1700000000000-0.",
            slug="invalid-parameter",
        )
    return value


def read_log(client: redis.Redis, keys: Keys, user: str, after: str, page: int = 500) -> list[Event]:
    """Every event of the user's log after the id `after`, oldest first."""
    events: list[Event] = []
    start = f"({after}"
    while True:
        entries = client.xrange(keys.events(user), min=start, count=page)
        events += [Event.from_log(entry_id, user, fields["e"]) for entry_id, fields in entries]
        if len(entries) < page:
            return events
        start = f"({entries[-1][0]}"


def newest_id(client: redis.Redis, keys: Keys, user: str) -> str:
    """The id of the user's latest event, or NO_EVENT."""
    entries = client.xrevrange(keys.events(user), count=1)
    return entries[0][0] if entries else NO_EVENT

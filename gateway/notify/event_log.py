"""A user's event log as the web side reads it: replaying it, and the ids clients send back.

`finish.lua` appends each finished command's event to its owner's log, `Keys.events(user)`, a
stream whose entry id is the event id (monotonic per user), and to the outbox with the owner and
that id. The event type itself is the plugin contract's, `plugins.events.Event`.
"""

from __future__ import annotations

import re

import redis

from gateway.keys import Keys
from gateway.problems import Problem
from plugins.events import Event, id_order

EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # a Redis stream entry id, `<ms>-<seq>`
MAX_PART = 2**64 - 1  # both parts of a stream id are 64-bit; the greatest id has no successor
NO_EVENT = "0-0"  # lower than any event id: "after NO_EVENT" is the whole log


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

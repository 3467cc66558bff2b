"""The event type of the plugin contract: one finished command, as its owner is told.

The worker's finish script logs each finished command's event as JSON (field `e` of the owner's
event stream and of the outbox); notifier plugins receive it as an `Event`, and the web process
serves it to WebSocket and SSE clients. On the wire an event is the contract's JSON object, its
id first. Only the contract's own types and orjson here: a plugin that imports it gets neither
Flask nor the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

FIELDS = ("type", "command_id", "op", "collection", "entity_id", "status", "error", "error_type")


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
    error: str | None  # a public message, never a store's own text
    error_type: str | None = None  # forbidden, conflict, not_found, invalid, store_error, ...
    # The context of the command, for a notifier's own rules and logs; never sent to the user.
    # `claims`: the claims of the owner's token carried with the command (`COMMAND_CLAIMS`, the
    # roles claim; empty when none are); `request_id`: the X-Request-ID that sent it, or None.
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    request_id: str | None = field(default=None, compare=False)

    @classmethod
    def from_log(
        cls, event_id: str, user: str, body: str, *, claims: str | None = None, request_id: str | None = None
    ) -> Event:
        """The event from its id, its owner and the JSON `finish.lua` wrote (field `e`), with
        its context as the outbox entry holds it (`clm`: the claims as JSON, `rid`)."""
        data = orjson.loads(body)
        context: dict[str, Any] = {"claims": orjson.loads(claims) if claims else {}, "request_id": request_id}
        return cls(event_id, user, *(data.get(name) for name in FIELDS), **context)

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

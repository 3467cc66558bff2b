"""Opening a WebSocket or SSE stream: the checks both make before they subscribe."""

from __future__ import annotations

from flask import current_app

from gateway.notify.hub import Hub, Subscription, TooManyStreams
from gateway.problems import Problem


def open_stream(hub: Hub, user: str, last_event_id: str | None, channel: str) -> Subscription:
    """Subscribe for a WebSocket or SSE client (`channel`): counted as a read against the user's
    rate limit, refused (429) past STREAMS_PER_USER open streams on this process, and counted
    in the process's report of its open streams."""
    current_app.extensions["rate_limits"].check(user, "GET")
    hub.gw.process_report.start()
    try:
        return hub.subscribe(user, last_event_id, channel)
    except TooManyStreams as error:
        limit = hub.gw.settings.streams_per_user
        raise Problem(
            429,
            "Too Many Requests",
            f"At most {limit} notification streams per user on one server; close one first.",
            slug="too-many-streams",
            headers={"Retry-After": "5"},
        ) from error

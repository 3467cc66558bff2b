"""`GET /api/events`: the user's notification events as Server-Sent Events.

Each event is sent with its `id:`, so a browser's EventSource sends it back as `Last-Event-ID`
when it reconnects, and gets, in order, every later event still in the user's log. A client
that cannot set the header passes `?last_event_id=`; the header wins when both are present,
since an EventSource reconnects to its first URL. The token may come as `?token=` for the same
reason. A comment line every NOTIFY_KEEPALIVE_SECONDS keeps proxies from cutting an idle stream.
The stream ends when the caller's token expires (after a `: token expired` comment): the client
reconnects with a fresh token and its last event id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, request

from gateway.auth import identity_of
from gateway.notify.event_log import last_event_id
from gateway.notify.hub import Hub, Subscription
from gateway.notify.streams import open_stream
from gateway.problems import Problem

log = logging.getLogger("gateway.notify")

bp = Blueprint("sse", __name__, url_prefix="/api")

RETRY_MS = 2000  # how soon an EventSource reconnects after the stream ends
HEADERS = {
    "Cache-Control": "no-cache, no-transform",  # no cached or recompressed copy of a live stream
    "X-Accel-Buffering": "no",  # nginx (and routers that honour it) pass each event on at once
}


@bp.get("/events")
def events() -> Response:
    settings = current_app.extensions["gateway"].settings
    identity = identity_of(request, allow_query=True)
    if "limit" in request.args or "cursor" in request.args:
        # /api/events is the event stream, not a collection to page through: say so rather than
        # answer a list request with a stream.
        detail = "/api/events is the event stream; it takes no limit or cursor."
        raise Problem(400, "Bad Request", detail, slug="not-a-list")
    after = last_event_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
    hub: Hub = current_app.extensions["notify"]
    # Before the answer: nothing committed after it is missed.
    subscription = open_stream(hub, identity.user, after, "sse")
    response = Response(
        _stream(subscription, settings.notify_keepalive_seconds, identity.expires),
        mimetype="text/event-stream",
        headers=HEADERS,
    )
    response.call_on_close(lambda: hub.unsubscribe(subscription))
    return response


def _stream(subscription: Subscription, keepalive: float, expires: float | None) -> Iterator[str]:
    yield f"retry: {RETRY_MS}\n: connected\n\n"
    next_beat = time.monotonic() + keepalive
    while not subscription.closing:
        wait = max(0.0, next_beat - time.monotonic())
        if expires is not None:
            left = expires - time.time()
            if left <= 0:
                yield ": token expired\n\n"
                return
            wait = min(wait, left)
        try:
            events = subscription.take(wait)
        except redis.RedisError as error:
            log.warning("event stream: the event log cannot be read: %s", error)
            return  # the client reconnects with its Last-Event-ID
        if events:
            yield "".join(f"id: {e.id}\ndata: {e.to_json()}\n\n" for e in events)
        elif time.monotonic() >= next_beat:
            yield ": keepalive\n\n"
        else:
            continue
        next_beat = time.monotonic() + keepalive

"""`GET /ws`: the user's notification events over a WebSocket (flask-sock), one JSON text frame each.

The caller is authenticated, and subscribed, before the upgrade: a missing or bad token is an
HTTP 401, and events committed once the upgrade is answered are never missed. `?last_event_id=`
replays, in order, every later event still in the user's log. The server pings every
NOTIFY_KEEPALIVE_SECONDS (below the 55 s idle cut of Heroku's router), and closes with 1001
(going away) when the process shuts down, so clients reconnect elsewhere with their last id,
and with 4401 when the caller's token expires, so they reconnect with a fresh one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Blueprint, current_app, g, request
from flask_sock import Sock

from gateway.auth import identity_of
from gateway.notify.event_log import last_event_id
from gateway.notify.hub import Hub, Subscription
from gateway.notify.streams import open_stream

log = logging.getLogger("gateway.notify")

bp = Blueprint("ws", __name__)
sock = Sock()

GOING_AWAY = 1001  # RFC 6455 7.4.1: the server is going down
INTERNAL_ERROR = 1011  # the event log could not be read; the client reconnects with its last id
TOKEN_EXPIRED = 4401  # an application code (RFC 6455 7.4.2): reconnect with a fresh token
MAX_CLIENT_MESSAGE = 4096  # clients have nothing to say here; larger frames close the socket


def hub() -> Hub:
    return current_app.extensions["notify"]


@bp.before_request
def _subscribe() -> None:
    """Authenticate and subscribe while the answer can still be an HTTP error (401, 400, 503)."""
    # No permessage-deflate: an event is a few hundred bytes, and a compressor and decompressor
    # for each socket would cost about 100 kB of memory each (measured: 1,000 sockets, +100 MiB).
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    identity = identity_of(request, allow_query=True)
    g.expires = identity.expires
    g.subscription = open_stream(
        hub(), identity.user, last_event_id(request.args.get("last_event_id")), "websocket"
    )


@bp.teardown_request
def _unsubscribe(_: BaseException | None) -> None:
    subscription = g.pop("subscription", None)
    if subscription is not None:
        hub().unsubscribe(subscription)


@sock.route("/ws", bp=bp)
def events(ws: Any) -> None:
    subscription: Subscription = g.subscription
    ws.event = subscription.wake  # one event wakes the loop for a notification or for the socket
    keepalive = current_app.extensions["gateway"].settings.notify_keepalive_seconds
    try:
        closing = _send_events(ws, subscription, keepalive, g.expires)
    except redis.RedisError as error:
        log.warning("websocket: the event log cannot be read: %s", error)
        closing = (INTERNAL_ERROR, "notifications unavailable, reconnect with your last id")
    if closing and ws.connected:
        ws.close(*closing)


def _send_events(
    ws: Any, subscription: Subscription, keepalive: float, expires: float | None
) -> tuple[int, str] | None:
    """Send events until the client leaves (None), or the server shuts down or the token expires
    (a close code)."""
    while ws.connected:
        if expires is not None and time.time() >= expires:
            return (TOKEN_EXPIRED, "token expired")
        wait = keepalive if expires is None else min(keepalive, max(0.0, expires - time.time()))
        events = subscription.take(wait)
        try:
            for event in events:
                ws.send(event.to_json())
        except OSError:
            return None  # the client went away mid-send
        if subscription.closing:
            return (GOING_AWAY, "server shutting down")
        while ws.connected and ws.receive(timeout=0) is not None:
            pass  # nothing a client sends here means anything
    return None


def init_app(app: Any) -> None:
    keepalive = app.extensions["gateway"].settings.notify_keepalive_seconds
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": keepalive, "max_message_size": MAX_CLIENT_MESSAGE}
    app.register_blueprint(bp)

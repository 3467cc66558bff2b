"""Live delivery of notification events to the open WebSocket and SSE connections of a process.

One listener thread per web process follows the outbox (XREAD BLOCK) and hands each event to
the subscriptions of its owner, kept here in memory. A subscription first reads its owner's log
after the id the client gave, then takes live events; it passes on only ids greater than the
last it passed on, so where the log and the live feed overlap nothing is repeated, and nothing
falls between them. Where the live feed may have a hole (a slow client's buffer overflowed, the
listener lost Redis), the subscription reads the log again from its last id: the log, not the
feed, is the truth.

Under gunicorn's gevent worker the threads and events here are greenlets (monkey-patched).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.notify.event_log import newest_id, read_log
from gateway.redis_client import Outage, connect, disconnect, is_cluster
from plugins.events import Event, id_order

if TYPE_CHECKING:
    from gateway.context import Gateway

log = logging.getLogger("gateway.notify")

MAX_BUFFERED = 256  # live events held for one slow connection before it goes back to the log
LISTEN_BLOCK_MS = 1000  # the listener's XREAD wait: also how soon it notices a shutdown
LISTEN_BATCH = 1000  # outbox entries read per call
RECONNECT_SECONDS = 1.0


class Subscription:
    """The events due to one open connection of one user, in order, each once."""

    def __init__(self, hub: Hub, user: str, after: str, channel: str) -> None:
        self.hub = hub
        self.user = user
        self.channel = channel  # "websocket" or "sse": what /metrics counts it under
        self.last = id_order(after)  # the last event passed on (or the client's last id)
        self.wake = threading.Event()  # set on a live event, on shutdown; a socket may share it
        self.closing = False  # the process is shutting down: the connection should end
        self._lock = threading.Lock()
        self._live: deque[Event] = deque()
        self._reread = True  # the first take reads the log after the client's last id

    def push(self, event: Event) -> None:
        """A live event for this user (listener thread)."""
        with self._lock:
            if len(self._live) < MAX_BUFFERED:
                self._live.append(event)
            else:
                self._live.clear()
                self._reread = True
        self.wake.set()

    def reread(self) -> None:
        """The live feed may have missed events: read the log again on the next take."""
        with self._lock:
            self._reread = True
        self.wake.set()

    def close(self) -> None:
        self.closing = True
        self.wake.set()

    def take(self, timeout: float | None) -> list[Event]:
        """The events to send next, oldest first; none after `timeout` seconds without any, or
        when something else woke the connection (its socket, a shutdown: see `closing`).
        Raises redis.RedisError when the log cannot be read."""
        self.wake.clear()
        events = self._due()
        if events or self.closing:
            return events
        self.wake.wait(timeout)
        self.wake.clear()
        return self._due()

    def _due(self) -> list[Event]:
        with self._lock:
            reread, self._reread = self._reread, False
            live = list(self._live)
            self._live.clear()
        if reread:
            # Every live event taken above was logged before this read, so it is in it too.
            last_id = "{}-{}".format(*self.last)
            try:
                live = read_log(self.hub.gw.redis, self.hub.gw.keys, self.user, last_id) + live
            except redis.RedisError:
                with self._lock:
                    self._reread = True
                raise
        due = []
        for event in live:
            if event.order > self.last:
                due.append(event)
                self.last = event.order
        return due


class TooManyStreams(Exception):
    """The user already holds STREAMS_PER_USER streams on this process."""


class Hub:
    """The subscriptions of one process and the listener that feeds them."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.closing = False
        self._lock = threading.Lock()
        self._by_user: dict[str, set[Subscription]] = {}
        self._listener: threading.Thread | None = None
        self._stopped = threading.Event()
        # The listener's own connection: its blocking reads would hold up any other caller. It
        # does not retry inside redis-py: after an error it reads again from where it was, and
        # has the connections read their logs, which a retried command would not do.
        self._listen_client = connect(gw.settings)
        if not is_cluster(self._listen_client):  # the cluster client follows the outbox's master itself
            # Set before its first connection (set_retry itself fails on a BlockingConnectionPool).
            # The name tells the connection apart in CLIENT LIST.
            self._listen_client.get_connection_kwargs().update(
                retry=Retry(NoBackoff(), 0), client_name=f"{gw.keys.prefix}:notify-listener"
            )

    def subscribe(self, user: str, last_event_id: str | None, channel: str) -> Subscription:
        """A subscription to the user's events after `last_event_id` (None: after the newest),
        for a stream of `channel`."""
        self._start()
        subscription = Subscription(self, user, last_event_id or "0-0", channel)
        with self._lock:
            mine = self._by_user.get(user, set())
            if len(mine) >= self.gw.settings.streams_per_user:
                raise TooManyStreams(user)
            mine.add(subscription)
            self._by_user[user] = mine
        if self.closing:
            subscription.close()
        if last_event_id is None:
            # Taken after registering: an event logged since is either newer than this (and
            # passed on) or was already logged when the client connected.
            subscription.last = id_order(newest_id(self.gw.redis, self.gw.keys, user))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            mine = self._by_user.get(subscription.user)
            if mine is not None:
                mine.discard(subscription)
                if not mine:
                    del self._by_user[subscription.user]

    def connections(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._by_user.values())

    def open_streams(self) -> Counter[str]:
        """The open streams, by channel (what this process reports for /metrics)."""
        return Counter(subscription.channel for subscription in self._all())

    def shutdown(self) -> None:
        """Stop the listener and ask every open connection to end (WebSockets close with 1001)."""
        self.closing = True
        self._stopped.set()
        for subscription in self._all():
            subscription.close()

    def close(self) -> None:
        """`shutdown`, then end the listener's blocking read and wait for it to end."""
        self.shutdown()
        disconnect(self._listen_client)
        if self._listener is not None:
            self._listener.join(LISTEN_BLOCK_MS / 1000 + 5)
        self._listen_client.close()

    # -- the listener ------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the listener on the first subscription, from the outbox's current end."""
        if self._listener is not None or self.closing:
            return
        # Asked before taking the lock: a slow Redis must not hold up every other subscriber.
        newest = self.gw.redis.xrevrange(self.gw.keys.outbox(), count=1)
        position = newest[0][0] if newest else "0-0"
        with self._lock:
            if self._listener is not None or self.closing:
                return
            self._listener = threading.Thread(
                target=self._listen, args=(position,), name="notify-listener", daemon=True
            )
            self._listener.start()

    def _listen(self, position: str) -> None:
        outbox = self.gw.keys.outbox()
        outage = Outage(log, "notification listener: Redis")
        while not self._stopped.is_set():
            try:
                reply = self._listen_client.xread(
                    {outbox: position}, count=LISTEN_BATCH, block=LISTEN_BLOCK_MS
                )
                outage.up()
                for _, entries in reply or ():
                    for entry_id, fields in entries:
                        position = entry_id
                        self._deliver(fields)
            except Exception as error:  # noqa: BLE001 - the listener must outlive any one failure
                if self._stopped.is_set():
                    return  # close() cut the connection under the read
                if isinstance(error, redis.RedisError):
                    outage.down(error)  # logged once per outage
                else:
                    log.exception("notification listener: unexpected error, going on")
                self._stopped.wait(RECONNECT_SECONDS)
                for subscription in self._all():
                    subscription.reread()  # whatever the live feed missed is in the logs

    def _deliver(self, fields: dict[str, str]) -> None:
        with self._lock:
            subscriptions = tuple(self._by_user.get(fields["u"], ()))
        if not subscriptions:
            return
        event = Event.from_log(fields["i"], fields["u"], fields["e"])
        for subscription in subscriptions:
            subscription.push(event)

    def _all(self) -> list[Subscription]:
        with self._lock:
            return [s for mine in self._by_user.values() for s in mine]

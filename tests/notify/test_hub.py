"""The hub's subscriptions against the real Redis, without a server: replay, live feed, overflow."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.notify.event_log import read_log
from gateway.notify.hub import MAX_BUFFERED
from plugins.events import Event
from tests.support.notify import log_event
from tests.support.services import wait_until

pytestmark = pytest.mark.integration


def test_a_client_too_slow_for_the_live_feed_gets_every_event_from_the_log(live_app: Any) -> None:
    hub = live_app.extensions["notify"]
    gw = live_app.extensions["gateway"]
    subscription = hub.subscribe("alice", "0-0", "sse")
    assert subscription.take(0) == []
    ids = [log_event(live_app, "alice", f"c{i}") for i in range(MAX_BUFFERED + 44)]
    # What the listener does, all before the client takes anything: the buffer overflows.
    for event in read_log(gw.redis, gw.keys, "alice", "0-0"):
        subscription.push(event)

    taken: list[Event] = []
    while batch := subscription.take(0):
        taken += batch
    assert [e.id for e in taken] == ids
    hub.unsubscribe(subscription)


def test_live_events_are_passed_on_once_in_order(live_app: Any) -> None:
    hub = live_app.extensions["notify"]
    subscription = hub.subscribe("bob", None, "sse")  # from now on
    log_event(live_app, "carol", "not-bob")
    ids = [log_event(live_app, "bob", f"b{i}") for i in range(5)]
    taken: list[Event] = []
    wait_until(lambda: (taken.extend(subscription.take(0.1)) or len(taken) >= 5), 5, "bob's events")
    assert [e.id for e in taken] == ids
    assert {e.user for e in taken} == {"bob"}
    assert subscription.take(0.2) == []
    hub.unsubscribe(subscription)
    assert hub.connections() == 0


def test_a_shutdown_wakes_every_subscription(live_app: Any) -> None:
    hub = live_app.extensions["notify"]
    subscription = hub.subscribe("dora", None, "sse")
    hub.shutdown()
    assert subscription.take(30) == [] and subscription.closing
    assert hub.subscribe("erin", None, "sse").closing  # a latecomer is told at once

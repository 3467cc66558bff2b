"""Test plugin: a notifier that records every event it is handed in a Redis list.

`RECORDING_FAIL_FIRST=1` makes its first batch fail, to show the batch is handed on again.
The list is `<KEY_PREFIX>:recorded`, one JSON object per event: the owner and the event.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import orjson

from gateway.redis_client import connect
from plugins.hookspecs import hookimpl
from plugins.notifier import Event, Notifier
from settings import Settings


class RecordingNotifier(Notifier):
    name = "recording"

    def __init__(self, settings: Settings) -> None:
        self.redis = connect(settings)
        self.key = f"{settings.key_prefix}:recorded"
        self.fail_next = os.environ.get("RECORDING_FAIL_FIRST") == "1"

    def notify(self, events: Sequence[Event]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("recording notifier: injected failure")
        self.redis.rpush(self.key, *(orjson.dumps({"user": e.user, **e.as_dict()}) for e in events))

    def close(self) -> None:
        self.redis.close()


@hookimpl
def register_notifiers(settings: Settings) -> list[Notifier]:
    return [RecordingNotifier(settings)]

"""Lookups a request makes of a store, bounded in time: a write never waits on a database that
does not answer.

A store's `validate` runs on every write and may need to ask the database something once per
process (how a collection's table is laid out). Asked inline, a database that is down would
hold every write for its connect timeout. Here the question runs beside the request: the request
waits for it at most `wait` seconds while the database answers, and not at all once it has failed
to, until a lookup succeeds again. Meanwhile writes go on unchecked; the store still checks each
document when it applies the command.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Generic, TypeVar

from plugins.store import StoreUnavailable

Value = TypeVar("Value")


class BoundedLookups(Generic[Value]):
    """`get(key)`: `look_up(key)`, run in a daemon thread (a greenlet under gevent), or
    StoreUnavailable when its answer does not come in time.

    - While the database answers, a caller waits up to `wait` seconds; callers asking for the same
      key meanwhile share one lookup.
    - Once a lookup failed with StoreUnavailable or ran past a caller's wait, callers no longer wait:
      they get StoreUnavailable at once, and a new lookup starts at most every `retry` seconds,
      in the background, until one succeeds.
    - Any other error of `look_up` reaches the caller that waited for it, as it is.
    """

    def __init__(self, look_up: Callable[[str], Value], *, wait: float, retry: float) -> None:
        self._look_up = look_up
        self.wait = wait
        self.retry = retry
        self._running: dict[str, Future[Value]] = {}
        self._answering = True
        self._failed_at = 0.0
        self._lock = threading.Lock()

    @property
    def answering(self) -> bool:
        """False from a lookup that failed or ran late until one succeeds."""
        return self._answering

    def get(self, key: str) -> Value:
        with self._lock:
            future = self._running.get(key)
            if future is None:
                if not self._answering and time.monotonic() - self._failed_at < self.retry:
                    raise StoreUnavailable("the database did not answer a moment ago")
                future = self._start(key)
            wait = self.wait if self._answering else 0.0
        try:
            return future.result(timeout=wait)
        except FutureTimeout:
            self._failed(time.monotonic())
            raise StoreUnavailable(f"the database did not answer within {wait:g} s") from None

    def _start(self, key: str) -> Future[Value]:
        future: Future[Value] = Future()
        self._running[key] = future
        threading.Thread(target=self._run, args=(key, future), name=f"lookup {key}", daemon=True).start()
        return future

    def _run(self, key: str, future: Future[Value]) -> None:
        try:
            value = self._look_up(key)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
            if isinstance(error, StoreUnavailable):
                self._failed(time.monotonic())
            with self._lock:
                del self._running[key]
            future.set_exception(error)
            return
        with self._lock:
            del self._running[key]
            self._answering = True
        future.set_result(value)

    def _failed(self, at: float) -> None:
        with self._lock:
            self._answering = False
            self._failed_at = at


Key = TypeVar("Key")


class BoundedDict(OrderedDict[Key, Value]):
    """A dict of at most `size` entries: adding one more forgets the least recently added or
    read one. For a process's caches keyed by names that callers choose (collections)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: Key, value: Value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)

    def get(self, key: Key, default: Any = None) -> Any:
        try:  # one step each, so that another thread's eviction meanwhile reads as absent
            self.move_to_end(key)
            return self[key]
        except KeyError:
            return default

"""Auto-pipelining: concurrent calls of one Lua script from a process share round trips to Redis.

A web process serves many requests at once (greenlets under gunicorn's gevent worker, threads
elsewhere), and each accepted write is one call of the accept script. Sent one by one, every
call pays a round trip: two packets through the network stack, a wake-up of Redis and of the
caller. On a busy process most of that is overhead, so calls are batched the way a database
batches commits (group commit): the first caller to find no batch in flight sends every call
queued so far as one pipeline; callers arriving while it waits for the replies queue theirs for
the next batch. Under no load a batch is the one call, sent at once, so nothing waits to fill a
batch; under load the batch grows with the load.

A call's outcome is its own: a script error fails only its call; a lost connection fails every
call of the batch it was in (each caller answers 503, as with a single call). Replies are
matched to calls by position, which Redis guarantees on one connection.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import Any

import redis
from redis.commands.core import Script

from gateway.redis_client import ReplicaWait, RoundTrip, is_cluster

# Enough to fill a few TCP segments; a larger backlog goes out as several batches in a row.
MAX_BATCH = 256
# A waiting caller looks at the line again after this long even if nobody woke it: the caller
# a sender hands the line to may have gone (its greenlet killed), and the rest must not wait on it.
RECHECK_SECONDS = 0.05


class _Call:
    __slots__ = ("keys", "args", "outcome", "error", "done", "ready")

    def __init__(self, keys: list[str], args: list[Any]) -> None:
        self.keys = keys
        self.args = args
        self.outcome: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.ready = threading.Event()  # gevent's Event in a monkey-patched process

    def finish(self, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.outcome = outcome
        self.done = True
        self.ready.set()


class ScriptBatcher:
    """Calls of `script` on `client`, sent in batches by whichever caller finds the line free."""

    def __init__(
        self, client: redis.Redis, script: Script, max_batch: int = MAX_BATCH, wait: ReplicaWait | None = None
    ) -> None:
        self._client = client
        self._wait = wait  # REDIS_WAIT_REPLICAS: one WAIT per batch, after its calls
        self._script = script
        self._max_batch = max_batch
        self._queue: deque[_Call] = deque()
        self._sending = threading.Lock()
        # Batches go out one at a time (under `_sending`), so the batcher keeps one connection
        # of the pool for them instead of taking one and giving it back for every batch (on one
        # Redis; a cluster's batch goes to each master on the cluster client's own connections).
        self._connection: Any = None
        self.batches = 0  # batches sent, and the calls in them: the mean batch size, for benchmarks
        self.calls = 0

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """The script's reply to this call (its exception, raised, if the call failed)."""
        call = _Call(keys, args)
        self._queue.append(call)
        while not call.done:
            call.ready.clear()  # before trying the lock: a wake-up from a sender that releases it next counts
            if call.done:  # finished by a sender just before the clear
                break
            if self._sending.acquire(blocking=False):
                try:
                    while not call.done:
                        batch = self._take()
                        if not batch:  # never: a call not done is queued while nobody sends
                            call.finish(redis.ConnectionError("the call was lost before it was sent"))
                            break
                        self._send(batch)
                finally:
                    self._sending.release()
                    self._wake_next()
                break
            call.ready.wait(RECHECK_SECONDS)
        if call.error is not None:
            raise call.error
        return call.outcome

    def _take(self) -> list[_Call]:
        batch: list[_Call] = []
        while self._queue and len(batch) < self._max_batch:
            batch.append(self._queue.popleft())
        return batch

    def _wake_next(self) -> None:
        """Hand the line to the oldest waiting caller: it sends the next batch."""
        with contextlib.suppress(IndexError):  # nobody waiting
            self._queue[0].ready.set()

    def _send(self, batch: list[_Call]) -> None:
        try:
            if self._connection is None and not is_cluster(self._client):
                self._connection = self._client.connection_pool.get_connection()
            trip = RoundTrip(self._client, self._wait, self._connection)
            for call in batch:
                trip.script(self._script, call.keys, call.args)
            replies = trip.send()  # a script Redis lost (restart, flush) is loaded and resent
        except BaseException as error:  # noqa: BLE001 - handed to every caller of the batch
            if isinstance(error, Exception):
                for call in batch:
                    call.finish(error)
                return
            # The sender itself was interrupted (its greenlet killed, the process exiting): the
            # others must not raise that in their own threads; to them the batch is lost.
            lost = redis.ConnectionError(f"the batch was interrupted ({type(error).__name__})")
            for call in batch:
                call.finish(lost)
            raise
        self.batches += 1
        self.calls += len(batch)
        for call, reply in zip(batch, replies, strict=True):
            call.finish(reply)

"""The worker's scheduler against the real Redis: every command added to a stream leads to a
kick of its partition, and a burst of commands to a few wake-ups, not one per command."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from settings import load
from tests.support.services import wait_until
from workers.runtime import Runtime
from workers.scheduler import Scheduler

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(redis_url: str, prefix: str, sqlite_url: str) -> Iterator[Runtime]:
    # No scan within the test: every kick seen comes from a wake-up.
    settings = load(
        redis_url=redis_url, key_prefix=prefix, database_url=sqlite_url, scan_interval_seconds=600
    )
    rt = Runtime(settings)
    yield rt
    rt.close()


class Kicks:
    """Records the scheduler's kicks (partition, time) instead of queueing drain jobs."""

    def __init__(self, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[int, float]] = []
        self.lock = threading.Lock()
        monkeypatch.setattr(rt, "kick_all", lambda: 0)
        monkeypatch.setattr(rt, "kick_many", self.record)

    def record(self, partitions: Any) -> int:
        with self.lock:
            now = time.monotonic()
            self.seen.extend((p, now) for p in partitions)
        return 0

    def after(self, partition: int, moment: float) -> bool:
        with self.lock:
            return any(p == partition and at >= moment for p, at in self.seen)


@pytest.fixture
def scheduler(runtime: Runtime) -> Iterator[Scheduler]:
    thread = Scheduler(runtime)
    yield thread
    thread.stop()
    if thread.is_alive():
        add(runtime, 0)  # ends its blocking read
        thread.join(5)
    assert not thread.is_alive()


def add(rt: Runtime, partition: int) -> float:
    """An entry on the partition's stream; the moment just before it was added."""
    moment = time.monotonic()
    rt.gw.redis.xadd(rt.gw.keys.stream(partition), {"c": "x"})
    return moment


def test_every_entry_is_followed_by_a_kick_of_its_partition(
    runtime: Runtime, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    kicks = Kicks(runtime, monkeypatch)
    add(runtime, 3)  # an entry from before the scheduler started is the scan's, not a wake-up's
    scheduler.start()
    time.sleep(0.2)
    assert not kicks.seen
    added = []
    for i in range(200):  # spread over ~0.3 s, so that entries land during the gather waits too
        added.append((i % 7, add(runtime, i % 7)))
        time.sleep(0.001)
    for partition, moment in added:
        wait_until(lambda p=partition, m=moment: kicks.after(p, m), timeout=2)
    assert scheduler.wake_ups < 0.8 * len(added)  # entries arriving together share a wake-up


def test_a_burst_wakes_the_scheduler_a_few_times(
    runtime: Runtime, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    kicks = Kicks(runtime, monkeypatch)
    scheduler.start()
    time.sleep(0.2)
    pipe = runtime.gw.redis.pipeline(transaction=False)
    for i in range(2000):
        pipe.xadd(runtime.gw.keys.stream(i % runtime.gw.settings.partitions), {"c": "x"})
    pipe.execute()
    wait_until(lambda: {p for p, _ in kicks.seen} == set(range(runtime.gw.settings.partitions)), timeout=2)
    assert scheduler.wake_ups <= 5  # 2,000 entries on 16 streams, not 2,000 wake-ups

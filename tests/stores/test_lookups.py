"""Bounded lookups: a request waits for a store's answer only while the store answers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from plugins.lookups import BoundedLookups
from plugins.store import StoreUnavailable
from tests.support.services import wait_until


class Database:
    """A look_up whose answers a test releases, failing with `error` when it is set; counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()
        self.error: BaseException | None = None

    def look_up(self, key: str) -> str:
        self.calls.append(key)
        self.release.wait(10)
        if self.error is not None:
            raise self.error
        return f"layout of {key}"


def test_callers_of_one_key_share_one_lookup_and_its_answer() -> None:
    db = Database()
    lookups = BoundedLookups(db.look_up, wait=5, retry=60)
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(lookups.get, "notes") for _ in range(8)]
        time.sleep(0.1)
        db.release.set()
        assert [a.result() for a in answers] == ["layout of notes"] * 8
    assert db.calls == ["notes"]
    assert lookups.get("rows") == "layout of rows"  # a finished lookup is not kept: the store caches
    assert db.calls == ["notes", "rows"]


def test_a_lookup_past_the_wait_stops_callers_from_waiting_until_one_succeeds() -> None:
    db = Database()
    lookups = BoundedLookups(db.look_up, wait=0.2, retry=60)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="within 0.2 s"):
        lookups.get("notes")
    assert time.monotonic() - started >= 0.2
    assert not lookups.answering

    started = time.monotonic()
    for key in ["notes", "rows"] * 10:  # the slow lookup is still running: nobody waits for it
        with pytest.raises(StoreUnavailable):
            lookups.get(key)
    assert time.monotonic() - started < 0.2
    assert db.calls == ["notes"]  # and no other starts before `retry`

    db.release.set()
    # The late answer shows the database is back: callers wait again.
    wait_until(lambda: lookups.answering, timeout=5, message="the late answer was not taken")
    assert lookups.get("rows") == "layout of rows"


def test_after_a_failure_lookups_are_retried_in_the_background() -> None:
    db = Database()
    db.error = StoreUnavailable("connection refused")
    db.release.set()
    lookups = BoundedLookups(db.look_up, wait=5, retry=0.3)
    with pytest.raises(StoreUnavailable, match="connection refused"):
        lookups.get("notes")
    with pytest.raises(StoreUnavailable, match="did not answer a moment ago"):
        lookups.get("notes")
    assert db.calls == ["notes"]

    time.sleep(0.3)
    db.error = None
    db.release.clear()  # the database is back, but slow to answer this one
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        lookups.get("notes")  # starts the retry and does not wait for it
    assert time.monotonic() - started < 0.2
    assert db.calls == ["notes", "notes"]
    db.release.set()
    wait_until(lambda: lookups.answering, timeout=5, message="the retry's answer was not taken")
    assert lookups.get("notes") == "layout of notes"


def test_any_other_error_reaches_the_caller_as_it_is() -> None:
    db = Database()
    db.error = KeyError("a bug")
    db.release.set()
    lookups = BoundedLookups(db.look_up, wait=5, retry=60)
    with pytest.raises(KeyError, match="a bug"):
        lookups.get("notes")
    assert lookups.answering  # not a sign the database is down: the next caller asks again
    db.error = None
    assert lookups.get("notes") == "layout of notes"

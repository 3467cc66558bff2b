"""gateway.redis_client.Outage: one log line when a dependency goes down, one when it is back,
none per retry; the wait before each try doubles up to a ceiling."""

from __future__ import annotations

import logging

import pytest

from gateway.redis_client import OUTAGE_FIRST_WAIT_SECONDS, OUTAGE_MAX_WAIT_SECONDS, Outage


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage(logging.getLogger("test.outage"), "Redis")
    with caplog.at_level(logging.WARNING, "test.outage"):
        outage.up()  # nothing was down: nothing to say
        for _ in range(20):
            outage.down(ConnectionError("refused"))
        assert outage.is_down
        outage.up()
        outage.up()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0] == "Redis unavailable (ConnectionError: refused); waiting for it"
    assert lines[1].startswith("Redis back after ")
    assert not outage.is_down


def test_the_wait_doubles_up_to_its_ceiling_and_starts_over_after_an_outage() -> None:
    outage = Outage(logging.getLogger("test.outage"), "store sql")
    waits = [outage.down("StoreUnavailable: gone") for _ in range(8)]
    first = OUTAGE_FIRST_WAIT_SECONDS
    assert waits[:3] == [first, first * 2, first * 4]
    assert max(waits) == waits[-1] == OUTAGE_MAX_WAIT_SECONDS
    outage.up()
    assert outage.down("StoreUnavailable: gone again") == OUTAGE_FIRST_WAIT_SECONDS

"""Two operators acting on the same dead letter at once (gateway/dead_letters.py): a replay and
its dead letter's removal are one transaction, so the letter is accepted again exactly once.

The race is made, not hoped for: the second operator's whole action runs at the moment the
first one sends its accept to Redis, after the first has found the letter still kept. Before
replay and removal were one transaction, each of these tests failed: both replays accepted
the command, and a replay went on with a letter dropped under it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from gateway import dead_letters
from gateway.context import Gateway
from tests.support.operations import DeadLetterMaker

pytestmark = pytest.mark.integration


class CutIn:
    """Runs `other` (another operator's action) in a thread of its own just before the first
    script call is sent, and lets that send go on once `other` is done (or, should `other` be
    stuck behind the very send it cut in on, after WAIT_SECONDS). `outcome()`: what it returned
    (or raised)."""

    WAIT_SECONDS = 10

    def __init__(self, monkeypatch: pytest.MonkeyPatch, other: Callable[[], Any]) -> None:
        self.other = other
        self.thread: threading.Thread | None = None
        self.result: Any = None
        real = redis.connection.AbstractConnection.send_packed_command

        def send(connection: Any, command: Any, check_health: bool = True) -> None:
            packed = b"".join(command) if isinstance(command, list) else command
            if self.thread is None and b"EVAL" in packed:
                self.thread = threading.Thread(target=self._run)
                self.thread.start()
                self.thread.join(self.WAIT_SECONDS)
            real(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send)

    def _run(self) -> None:
        try:
            self.result = self.other()
        except Exception as error:  # noqa: BLE001 - kept for the test to look at
            self.result = error

    def outcome(self) -> Any:
        assert self.thread is not None, "the other action never ran"
        self.thread.join()
        return self.result


def queued(gw: Gateway) -> list[str]:
    """The command ids of every partition's stream."""
    return [
        fields["c"] for p in range(gw.settings.partitions) for _, fields in gw.redis.xrange(gw.keys.stream(p))
    ]


def test_two_replays_of_one_dead_letter_accept_it_once(
    app: Any, make_dead_letter: DeadLetterMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = app.extensions["gateway"]
    name = make_dead_letter(1)
    letter = dead_letters.get(gw, name)
    other = CutIn(monkeypatch, lambda: dead_letters.replay(gw, dead_letters.get(gw, name)))
    with pytest.raises(dead_letters.NoSuchDeadLetter):
        dead_letters.replay(gw, letter)
    winner = other.outcome()
    assert isinstance(winner, dead_letters.Replayed)
    assert queued(gw) == [winner.command_id]
    with pytest.raises(dead_letters.NoSuchDeadLetter):
        dead_letters.get(gw, name)


def test_a_drop_during_a_replay_wins_and_nothing_is_accepted(
    app: Any, make_dead_letter: DeadLetterMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = app.extensions["gateway"]
    name = make_dead_letter(1)
    letter = dead_letters.get(gw, name)
    other = CutIn(monkeypatch, lambda: dead_letters.drop(gw, dead_letters.get(gw, name)))
    with pytest.raises(dead_letters.NoSuchDeadLetter):
        dead_letters.replay(gw, letter)
    assert other.outcome() is None and queued(gw) == []


def test_replay_all_skips_a_letter_another_operator_replayed_meanwhile(
    app: Any, make_dead_letter: DeadLetterMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = app.extensions["gateway"]
    first, second = make_dead_letter(0), make_dead_letter(2)
    other = CutIn(monkeypatch, lambda: dead_letters.replay(gw, dead_letters.get(gw, first)))
    done = dead_letters.replay_all(gw, dead_letters.Filters())
    by_other = other.outcome()
    assert [d.dead_letter for d in done] == [second]
    assert sorted(queued(gw)) == sorted([by_other.command_id, done[0].command_id])
    assert dead_letters.matching(gw, dead_letters.Filters()) == []

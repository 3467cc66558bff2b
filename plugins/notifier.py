"""The notifier contract: what a notification channel implements to tell users a command finished.

The worker process hands every finished command's event to every notifier, oldest first, in
batches. A notifier's promise:

- `notify` returns quickly. It runs on a thread of its own in the worker process, one per
  notifier, so a slow notifier delays only itself; still, slow work (an HTTP call per event)
  belongs in a background `Job`, as the built-in FCM notifier queues its sends.
- Delivery is at least once. A batch whose `notify` raises is handed on again after a backoff,
  up to five times in all, then logged and dropped; a worker that dies mid-batch leaves it to
  another worker. Make handing an event on twice harmless (each event has a unique `id` per
  user), or at least rare.
- An event goes to its owner only: `Event.user` names them; `Event.as_dict()` is what they may
  be shown (the contract's event object).

What a notifier needs from the gateway, it gets from `NotifierServices`: the worker process
hands them to the `register_notifiers` hook and, as first argument, to each job a notifier
queued. `plugins.fcm_notifier` is the built-in example.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from plugins.events import Event

if TYPE_CHECKING:
    from redis import Redis

    from settings import Settings

__all__ = ["Devices", "Event", "Job", "Notifier", "NotifierServices"]


class Notifier(abc.ABC):
    """Base class of every notification channel. Instances are registered by a plugin hook."""

    #: Unique among the loaded notifiers; it also names the notifier's consumer group.
    name: ClassVar[str]

    @abc.abstractmethod
    def notify(self, events: Sequence[Event]) -> None:
        """Hand on `events` (of any users, oldest first); raise to have the batch come again."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the notifier opened itself (not its services: they are the process's)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


@dataclass(frozen=True)
class Job:
    """A background job: the worker processes' RQ workers call `function(services, *args)`."""

    function: str  # a module-level function's dotted path (`my_package.jobs.post_event`)
    args: tuple[Any, ...]  # plain values: RQ pickles them into Redis
    description: str = ""  # shown in RQ's registries
    timeout_seconds: int = 180  # a run past it is stopped and counts as failed
    keep_failed_seconds: int = 24 * 3600  # how long a failed run stays in RQ's failed registry


class Devices(Protocol):
    """The devices users registered for push notifications (`POST /api/devices`): FCM
    registration tokens, each registered to one user at a time."""

    def has_devices(self, users: Sequence[str]) -> list[bool]:
        """For each user, whether any device is registered (one round trip)."""
        ...

    def tokens(self, user: str) -> list[str]:
        """The user's live registration tokens, newest first."""
        ...

    def drop(self, user: str, token: str) -> bool:
        """Forget a token of the user (one the push service calls dead); True when the user had it."""
        ...


class NotifierServices(Protocol):
    """What the worker process hands notifiers and their jobs. It belongs to the process: use
    it from any thread, never close it."""

    @property
    def settings(self) -> Settings:
        """The process's settings, as the hooks get them (a job reads its configuration here)."""
        ...

    @property
    def redis(self) -> Redis:
        """A client of the gateway's Redis (replies decoded to str), for a notifier's own keys."""
        ...

    @property
    def devices(self) -> Devices:
        """The devices users registered, to push to."""
        ...

    def enqueue(self, jobs: Sequence[Job]) -> None:
        """Queue `jobs` in one round trip; the worker processes run them after the drain jobs."""
        ...

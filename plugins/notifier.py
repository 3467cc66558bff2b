"""The notifier contract: what a notification channel implements to tell users a command finished.

The worker process hands every finished command's event to every notifier, oldest first, in
batches. A notifier's promise:

- `notify` returns quickly. It runs on a thread of its own in the worker process, one per
  notifier, so a slow notifier delays only itself; still, slow work (an HTTP call per event)
  belongs in an RQ job, as the built-in FCM notifier queues its sends.
- Delivery is at least once. A batch whose `notify` raises is handed on again after a backoff,
  up to `workers.notifier.ATTEMPTS` times in all, then logged and dropped; a worker that dies
  mid-batch leaves it to another worker. Make handing an event on twice harmless (each event
  has a unique `id` per user), or at least rare.
- An event goes to its owner only: `Event.user` names them; `Event.as_dict()` is what they may
  be shown (the contract's event object).

`plugins.fcm_notifier` is the built-in example.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from plugins.events import Event

__all__ = ["Event", "Notifier"]


class Notifier(abc.ABC):
    """Base class of every notification channel. Instances are registered by a plugin hook."""

    #: Unique among the loaded notifiers; it also names the notifier's consumer group.
    name: ClassVar[str]

    @abc.abstractmethod
    def notify(self, events: Sequence[Event]) -> None:
        """Hand on `events` (of any users, oldest first); raise to have the batch come again."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

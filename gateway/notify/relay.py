"""On a Redis Cluster: a partition's finished events, moved to their owners' logs and the outbox.

finish.lua writes everything of a finished command in its partition's slot, the event included:
on one Redis it also appends the event to its owner's log and to the deployment's outbox, but
on a cluster those are in other slots, so it appends the event to the partition's own outbox
instead (`Keys.partition_outbox`). The drain job holding the partition's lease then relays
each event, oldest first: to its owner's log (which gives it its id) and, with that id and the
request id and claims finish.lua put beside it, to the deployment's outbox, which the web
processes' listeners and the notifiers follow as on one Redis; only then is it deleted from the
partition's outbox. A worker that dies between the two leaves the event for the next holder of
the lease, which relays it again: an event may so reach its owner twice (the same command id),
never not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.context import Gateway

RELAY_BATCH = 500  # events moved per round trip


def relay(gw: Gateway, partition: int) -> int:
    """Move the partition's waiting events to their owners' logs and the outbox; how many.
    Called under the partition's lease, so one relay at a time keeps each partition's order."""
    source = gw.keys.partition_outbox(partition)
    settings = gw.settings
    moved = 0
    while entries := gw.redis.xrange(source, count=RELAY_BATCH):
        logs = gw.redis.pipeline(transaction=False)
        for _, fields in entries:
            log_key = gw.keys.events(fields["u"])
            logs.xadd(log_key, {"e": fields["e"]}, maxlen=settings.events_per_user, approximate=True)
            logs.expire(log_key, settings.status_ttl_seconds)  # a user gone quiet leaves no stream behind
        event_ids = logs.execute()[::2]
        feed = gw.redis.pipeline(transaction=False)
        for (_, fields), event_id in zip(entries, event_ids, strict=True):
            event = {**fields, "i": event_id}  # with the request id and claims finish.lua added
            feed.xadd(gw.keys.outbox(), event, maxlen=settings.outbox_length, approximate=True)
        feed.xdel(source, *[entry_id for entry_id, _ in entries])
        feed.execute()
        moved += len(entries)
    return moved

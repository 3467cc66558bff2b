"""The devices each user registered for push notifications: FCM registration tokens, in Redis.

A token belongs to one user at a time: registered by another user (a shared device, a new
login), it leaves its former owner, so that one user's events never reach another's device. A
user keeps at most MAX_DEVICES_PER_USER tokens (the oldest go first), and a token not registered
again within TOKEN_MAX_AGE_MS is forgotten, as FCM forgets it.

No Flask here: the web process registers and drops tokens (`gateway.notify.devices`), the worker
hands the read side to notifier plugins (`plugins.notifier.Devices`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from gateway.keys import Keys

MAX_DEVICES_PER_USER = 20
# FCM expires the token of a device inactive for 270 days; apps re-register theirs on start.
TOKEN_MAX_AGE_MS = 270 * 24 * 3600 * 1000


class DeviceRegistry:
    """Each user's registration tokens in Redis: `Keys.devices(user)`, `Keys.device_owner(token)`."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def register(self, user: str, token: str) -> bool:
        """Register (or refresh) the token for the user; True when it was not the user's yet."""
        owner_key, devices = self.keys.device_owner(token), self.keys.devices(user)

        zadd_at = [0]  # where ZADD's reply (1: a new member) is among the transaction's replies

        def change(pipe: redis.client.Pipeline) -> None:
            previous: str | None = pipe.get(owner_key)
            # The oldest tokens the new one pushes out; their owner keys go with them (watched:
            # a token taken over meanwhile by another user keeps its new owner's key).
            held: list[str] = pipe.zrevrange(devices, 0, -1)
            trimmed = [t for t in held if t != token][MAX_DEVICES_PER_USER - 1 :]
            owners = [self.keys.device_owner(t) for t in trimmed]
            if owners:
                pipe.watch(*owners)
            theirs = [key for key in owners if pipe.get(key) == user]
            pipe.multi()
            zadd_at[0] = 0
            if previous is not None and previous != user:
                pipe.zrem(self.keys.devices(previous), token)
                zadd_at[0] = 1
            pipe.zadd(devices, {token: _now_ms()})
            pipe.zremrangebyrank(devices, 0, -MAX_DEVICES_PER_USER - 1)  # keep the newest ones
            pipe.pexpire(devices, TOKEN_MAX_AGE_MS)
            pipe.set(owner_key, user, px=TOKEN_MAX_AGE_MS)
            if theirs:
                pipe.delete(*theirs)

        replies: list[int] = self.redis.transaction(change, owner_key, devices)
        return bool(replies[zadd_at[0]])

    def drop(self, user: str, token: str) -> bool:
        """Forget the token if the user is its current owner; True when it was. Another user's
        token (one the device moved to since) is left alone."""
        owner_key = self.keys.device_owner(token)

        def change(pipe: redis.client.Pipeline) -> None:
            owner = pipe.get(owner_key)
            pipe.multi()
            pipe.zrem(self.keys.devices(user), token)
            if owner == user:
                pipe.delete(owner_key)

        replies: list[int] = self.redis.transaction(change, owner_key)
        return len(replies) == 2 and bool(replies[1])

    def tokens(self, user: str) -> list[str]:
        """The user's live tokens, newest first; those FCM has forgotten by now are dropped."""
        devices = self.keys.devices(user)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(devices, "-inf", f"({_now_ms() - TOKEN_MAX_AGE_MS}")
        pipe.zrevrange(devices, 0, -1)
        return pipe.execute()[1]

    def has_devices(self, users: Sequence[str]) -> list[bool]:
        """For each user, whether any token is registered (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            pipe.exists(self.keys.devices(user))
        return [bool(n) for n in pipe.execute()]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000

"""The devices a user registered for push notifications (FCM registration tokens), and their routes.

`POST /api/devices {"token"}` registers a device of the caller, `DELETE /api/devices/<token>`
drops it. A token belongs to one user at a time: registered by another user (a shared device,
a new login), it leaves its former owner, so that one user's events never reach another's
device. A user keeps at most MAX_DEVICES_PER_USER tokens (the oldest go first), and a token not
registered again within TOKEN_MAX_AGE_MS is forgotten, as FCM forgets it.
"""

from __future__ import annotations

import re
import time

import orjson
import redis
from flask import Blueprint, Response, current_app, request, url_for

from gateway.auth import identity_of
from gateway.keys import Keys
from gateway.problems import Problem
from gateway.validation import JSON_TYPES, BodyLimits, invalid, json_object

bp = Blueprint("devices", __name__, url_prefix="/api/devices")

MAX_DEVICES_PER_USER = 20
# FCM expires the token of a device inactive for 270 days; apps re-register theirs on start.
TOKEN_MAX_AGE_MS = 270 * 24 * 3600 * 1000
TOKEN = re.compile(r"[\x21-\x2e\x30-\x7e]{1,4096}")  # printable ASCII without space or '/'
BODY_LIMITS = BodyLimits(max_depth=2, max_members=16)  # {"token": "..."} and room for a little more


class DeviceRegistry:
    """Each user's registration tokens in Redis: `Keys.devices(user)`, `Keys.device_owner(token)`."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def register(self, user: str, token: str) -> bool:
        """Register (or refresh) the token for the user; True when it was not the user's yet."""
        owner_key, devices = self.keys.device_owner(token), self.keys.devices(user)

        def change(pipe: redis.client.Pipeline) -> None:
            previous = pipe.get(owner_key)
            pipe.multi()
            if previous is not None and previous != user:
                pipe.zrem(self.keys.devices(previous), token)
            pipe.zadd(devices, {token: _now_ms()})
            pipe.zremrangebyrank(devices, 0, -MAX_DEVICES_PER_USER - 1)  # keep the newest ones
            pipe.pexpire(devices, TOKEN_MAX_AGE_MS)
            pipe.set(owner_key, user, px=TOKEN_MAX_AGE_MS)

        added = self.redis.transaction(change, owner_key)[-4]
        return bool(added)

    def drop(self, user: str, token: str) -> bool:
        """Forget the user's token; True when the user had it."""
        owner_key = self.keys.device_owner(token)

        def change(pipe: redis.client.Pipeline) -> None:
            owner = pipe.get(owner_key)
            pipe.multi()
            pipe.zrem(self.keys.devices(user), token)
            if owner == user:
                pipe.delete(owner_key)

        return bool(self.redis.transaction(change, owner_key)[0])

    def tokens(self, user: str) -> list[str]:
        """The user's live tokens, newest first; those FCM has forgotten by now are dropped."""
        devices = self.keys.devices(user)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(devices, "-inf", f"({_now_ms() - TOKEN_MAX_AGE_MS}")
        pipe.zrevrange(devices, 0, -1)
        return pipe.execute()[1]

    def has_devices(self, users: list[str]) -> list[bool]:
        """For each user, whether any token is registered (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            pipe.exists(self.keys.devices(user))
        return [bool(n) for n in pipe.execute()]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _registry() -> DeviceRegistry:
    gw = current_app.extensions["gateway"]
    return DeviceRegistry(gw.redis, gw.keys)


def _user() -> str:
    return identity_of(request).user


def _check_token(token: object) -> str:
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise invalid("token", "a registration token is 1 to 4096 printable ASCII characters, without '/'")
    return token


@bp.post("")
def register() -> Response:
    user = _user()
    token = _check_token(json_object(request, JSON_TYPES, BODY_LIMITS).get("token"))
    added = _registry().register(user, token)
    location = url_for("devices.drop", token=token)
    body = orjson.dumps({"token": token})
    return Response(body, 201 if added else 200, {"Location": location}, mimetype="application/json")


@bp.delete("/<token>")
def drop(token: str) -> Response:
    user = _user()
    if not TOKEN.fullmatch(token) or not _registry().drop(user, token):
        raise Problem(404, "Not Found", "This device is not registered.", slug="unknown-device")
    return Response(status=204)

"""The routes of the devices a user registers for push notifications (FCM registration tokens).

`POST /api/devices {"token"}` registers a device of the caller, `DELETE /api/devices/<token>`
drops it (only its current owner may). Both are rate-limited per user
(`gateway.api.rate_limits.DEVICE_CALLS`). How tokens are kept (one owner per token, the newest
few per user, forgotten after FCM's 270 days) is `gateway.device_registry`'s, which the push
notifier reads too.
"""

from __future__ import annotations

import re

import orjson
from flask import Blueprint, Response, current_app, request, url_for

from gateway.api import authenticate, current_user
from gateway.api.rate_limits import check_devices
from gateway.device_registry import DeviceRegistry
from gateway.problems import Problem
from gateway.validation import JSON_TYPES, BodyLimits, invalid, json_object

bp = Blueprint("devices", __name__, url_prefix="/api/devices")
bp.before_request(authenticate)
bp.before_request(check_devices)  # after authentication: DEVICE_CALLS per user

TOKEN = re.compile(r"[\x21-\x2e\x30-\x7e]{1,4096}")  # printable ASCII without space or '/'
BODY_LIMITS = BodyLimits(max_depth=2, max_members=16)  # {"token": "..."} and room for a little more


def _registry() -> DeviceRegistry:
    gw = current_app.extensions["gateway"]
    if gw.keys.cluster:  # a token's owner and the user's set change in one transaction: one slot
        raise Problem(
            501,
            "Not Implemented",
            "Push notification devices are not kept on a Redis Cluster yet (docs/scaling.md).",
            slug="devices-not-on-cluster",
        )
    return DeviceRegistry(gw.redis, gw.keys)


def _user() -> str:
    return current_user()


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

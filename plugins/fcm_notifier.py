"""Built-in notifier: Firebase Cloud Messaging pushes to the devices each user registered.

On when FCM_CREDENTIALS holds a service-account key (a JSON file's path, or the JSON itself);
off otherwise, said once in the worker's log. The notifier only queues a background job per
event whose owner has a device (`NotifierServices.enqueue`); a worker process runs `send_push`,
which sends the event as a data message to each of the owner's devices through firebase-admin
(never from a web request, never on the apply path), and drops the tokens FCM calls dead. It
uses only the plugin contract and the services the worker hands it.

firebase-admin is imported only when FCM is on (about 120 ms and 12 MB a process otherwise).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.hookspecs import hookimpl
from plugins.notifier import Event, Job, Notifier, NotifierServices
from settings import Settings

if TYPE_CHECKING:
    import firebase_admin

log = logging.getLogger("gateway.fcm")

SEND_JOB = "plugins.fcm_notifier.send_push"
HTTP_TIMEOUT_SECONDS = 10  # per FCM call; firebase-admin retries 500 and 503 itself, with backoff
JOB_TIMEOUT_SECONDS = 120
ERROR_BYTES = 1024  # of the event's error text in a push; ids and names take at most ~1.3 KB more
FAILED_JOB_TTL_SECONDS = 24 * 3600  # failed sends stay visible in RQ's failed registry a day


def dead_token_errors() -> tuple[type[Exception], ...]:
    """FCM's answers meaning the token will never work again. INVALID_ARGUMENT also covers a bad
    message, but the messages sent here are fixed and valid, so it can only be the token."""
    from firebase_admin import exceptions, messaging

    return (messaging.UnregisteredError, messaging.SenderIdMismatchError, exceptions.InvalidArgumentError)


class PushFailed(RuntimeError):
    """No device of the user could be reached; RQ keeps the job in its failed registry."""


@hookimpl
def register_notifiers(settings: Settings, services: NotifierServices) -> list[Notifier] | None:
    if not settings.fcm_credentials:
        log.info("FCM push notifications are off: FCM_CREDENTIALS is not set")
        return None
    firebase_app(settings.fcm_credentials)  # a bad key stops the worker at start, not at a send
    return [FcmNotifier(services)]


class FcmNotifier(Notifier):
    """Queues a push job per event whose owner registered a device."""

    name = "fcm"

    def __init__(self, services: NotifierServices) -> None:
        self.services = services

    def notify(self, events: Sequence[Event]) -> None:
        with_devices = self.services.devices.has_devices([e.user for e in events])
        wanted = [event for event, has in zip(events, with_devices, strict=True) if has]
        if wanted:
            self.services.enqueue([push_job(event) for event in wanted])


def push_job(event: Event) -> Job:
    return Job(
        SEND_JOB,
        (event.user, event.as_dict()),
        description=f"push {event.type} {event.command_id}",
        timeout_seconds=JOB_TIMEOUT_SECONDS,
        keep_failed_seconds=FAILED_JOB_TTL_SECONDS,
    )


def send_push(services: NotifierServices, user: str, event: dict[str, str | None]) -> str:
    """Background job: send `event` to each of the user's devices; drop the tokens FCM calls dead."""
    registry = services.devices
    tokens = registry.tokens(user)
    if not tokens:
        return "no devices"
    credentials_value = services.settings.fcm_credentials
    if not credentials_value:
        raise PushFailed("FCM_CREDENTIALS is not set in the process that runs the push jobs")
    data = {name: "" if value is None else str(value) for name, value in event.items()}
    # FCM refuses a data payload over 4 KB as INVALID_ARGUMENT, which reads as a dead token:
    # keep the one free-form field, the error, well inside it (the app can fetch the status).
    data["error"] = data.get("error", "").encode()[:ERROR_BYTES].decode(errors="ignore")
    from firebase_admin import messaging

    with warnings.catch_warnings():
        # The contract registers FCM registration tokens, which the FCM v1 API still takes;
        # firebase-admin 7.7 deprecates them in favour of installation IDs (`fids`).
        warnings.simplefilter("ignore", DeprecationWarning)
        message = messaging.MulticastMessage(tokens=tokens, data=data)
    batch = messaging.send_each_for_multicast(message, app=firebase_app(credentials_value))
    dead, failed = [], []
    for token, response in zip(tokens, batch.responses, strict=True):
        if response.success:
            continue
        if isinstance(response.exception, dead_token_errors()):
            registry.drop(user, token)
            dead.append(token)
        else:
            failed.append(response.exception)
    if failed and not batch.success_count:
        raise PushFailed(f"no device of {user!r} could be reached: {failed[0]}")
    for error in failed:
        log.warning("push to a device of %r failed: %s", user, error)
    return f"sent {batch.success_count}, dropped {len(dead)} dead tokens, {len(failed)} failed"


def service_account(value: str) -> dict[str, Any]:
    """The service-account key FCM_CREDENTIALS holds (JSON) or names (a file); ValueError if bad."""
    text = value.strip()
    try:
        info = json.loads(text if text.startswith("{") else Path(text).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"FCM_CREDENTIALS: not a service-account JSON nor a readable file: {error}"
        ) from None
    if not isinstance(info, dict) or info.get("type") != "service_account" or not info.get("project_id"):
        raise ValueError("FCM_CREDENTIALS must hold a service-account key (type service_account, project_id)")
    return info


_apps: dict[str, firebase_admin.App] = {}
_apps_lock = threading.Lock()


def firebase_app(value: str) -> firebase_admin.App:
    """The firebase-admin app of these credentials, made once per process (it caches its token)."""
    import firebase_admin
    from firebase_admin import credentials

    with _apps_lock:
        app = _apps.get(value)
        if app is None:
            name = "gateway-" + hashlib.sha256(value.encode()).hexdigest()[:16]
            certificate = credentials.Certificate(service_account(value))
            app = firebase_admin.initialize_app(certificate, {"httpTimeout": HTTP_TIMEOUT_SECONDS}, name=name)
            _apps[value] = app
        return app

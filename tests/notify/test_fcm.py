"""Firebase Cloud Messaging, offline: the real firebase-admin SDK, with its HTTP calls (the OAuth
token exchange and the FCM sends) answered by a fake Google inside `requests`' transport."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rq import SimpleWorker
from rq.registry import FailedJobRegistry

from gateway.device_registry import DeviceRegistry
from plugins import fcm_notifier
from settings import Settings, load
from tests.support.api import bearer, token
from tests.support.notify import log_event
from tests.support.services import wait_until
from workers import runtime
from workers.delivery import NotifierThread
from workers.plugin_services import RuntimeServices

pytestmark = pytest.mark.integration

PROJECT = "gateway-test"
TOKEN_URI = "https://oauth2.googleapis.com/token"
SEND_URL = f"https://fcm.googleapis.com/v1/projects/{PROJECT}/messages:send"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def service_account(private_key: rsa.RSAPrivateKey) -> str:
    """A service-account key as FCM_CREDENTIALS holds it; a fresh client email per test, so
    that each test's firebase-admin app (cached per key) exchanges its own token."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "key-1",
            "private_key": pem.decode(),
            "client_email": f"push-{id(pem)}@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": TOKEN_URI,
        }
    )


@dataclass
class FakeGoogle:
    """Google's OAuth token endpoint and the FCM v1 send endpoint, as firebase-admin sees them."""

    public_key: Any
    answers: dict[str, str] = field(default_factory=dict)  # device token -> dead, invalid or down
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    sends: list[dict[str, Any]] = field(default_factory=list)
    access_token: str = "ya29.fake-access-token"

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        if request.url == TOKEN_URI:
            form = urllib.parse.parse_qs(
                request.body if isinstance(request.body, str) else request.body.decode()
            )
            claims = jwt.decode(
                form["assertion"][0], self.public_key, algorithms=["RS256"], audience=TOKEN_URI
            )
            self.exchanges.append(claims)
            return self.answer(request, 200, {"access_token": self.access_token, "expires_in": 3600})
        if request.url == SEND_URL:
            message = json.loads(request.body)["message"]
            self.sends.append({**message, "authorization": request.headers["Authorization"]})
            return self.fcm_answer(request, self.answers.get(message["token"], "ok"))
        raise AssertionError(f"unexpected call: {request.method} {request.url}")

    def fcm_answer(self, request: requests.PreparedRequest, outcome: str) -> requests.Response:
        if outcome == "ok":
            return self.answer(request, 200, {"name": f"projects/{PROJECT}/messages/{len(self.sends)}"})
        status, code, reason, message = {
            "dead": (404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
            "invalid": (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not valid."),
            "down": (500, "INTERNAL", "INTERNAL", "Internal error encountered."),
        }[outcome]
        detail = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": reason}
        body = {"error": {"code": status, "message": message, "status": code, "details": [detail]}}
        return self.answer(request, status, body)

    @staticmethod
    def answer(request: requests.PreparedRequest, status: int, body: dict[str, Any]) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json; charset=UTF-8"
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch, private_key: rsa.RSAPrivateKey) -> FakeGoogle:
    """Every HTTP call made through `requests` (firebase-admin's and google-auth's) is answered
    by the fake; nothing leaves the process."""
    fake = FakeGoogle(private_key.public_key())
    monkeypatch.setattr(
        requests.adapters.HTTPAdapter, "send", lambda adapter, request, **kw: fake.send(request)
    )
    return fake


@pytest.fixture
def settings(settings_env: dict[str, str], service_account: str) -> Settings:
    return load(**{k.lower(): v for k, v in settings_env.items()}, fcm_credentials=service_account)


@pytest.fixture
def rt(settings: Settings, push_queue_cleanup: None) -> Iterator[runtime.Runtime]:
    """A worker process's runtime with FCM on, installed for the jobs run here."""
    rt = runtime.Runtime(settings)
    runtime.install(rt)
    yield rt
    runtime.install(None)
    rt.close()


@pytest.fixture
def devices(rt: runtime.Runtime) -> DeviceRegistry:
    return DeviceRegistry(rt.gw.redis, rt.gw.keys)


@pytest.fixture
def fcm_thread(rt: runtime.Runtime) -> Iterator[NotifierThread]:
    """The worker's thread for the FCM notifier, its consumer group made before any event."""
    [notifier] = rt.gw.plugins.notifiers(RuntimeServices(rt))
    assert isinstance(notifier, fcm_notifier.FcmNotifier)
    thread = NotifierThread(rt, notifier)
    thread.ensure_group()
    yield thread
    thread.redis.close()
    notifier.close()


def apply_commands(rt: runtime.Runtime) -> None:
    """The worker's apply path, in this process: drain jobs queued and run until none is left."""
    rt.gw.ensure_groups()
    rt.kick_all()
    SimpleWorker([rt.queue], connection=rt.rq_redis).work(burst=True, logging_level="WARNING")


def run_push_jobs(rt: runtime.Runtime) -> None:
    """What the worker's RQ worker does with the push queue, until it is empty."""
    SimpleWorker([rt.push_queue], connection=rt.rq_redis).work(burst=True, logging_level="WARNING")


def test_a_finished_command_is_pushed_to_its_owners_devices_and_dead_tokens_are_dropped(
    rt: runtime.Runtime,
    devices: DeviceRegistry,
    fcm_thread: NotifierThread,
    google: FakeGoogle,
    live_app: Any,
) -> None:
    google.answers.update({"alice-old-phone": "dead", "alice-garbled": "invalid"})
    for device in ("alice-phone", "alice-old-phone", "alice-garbled"):
        devices.register("alice", device)
    devices.register("bob", "bob-phone")
    client = live_app.test_client()
    accepted = client.put("/api/notes/p1", json={"text": "hi"}, headers=bearer(token("alice")))
    command_id = accepted.json["command_id"]
    apply_commands(rt)

    wait_until(lambda: fcm_thread.step() == 1, 20, "the event to reach the FCM notifier")
    assert rt.push_queue.count == 1  # a job, not a send: the notifier thread never calls FCM
    run_push_jobs(rt)

    [event_id] = [i for i, _ in rt.gw.redis.xrange(rt.gw.keys.events("alice"))]
    expected = {
        "id": event_id,
        "type": "command.applied",
        "command_id": command_id,
        "op": "replace",
        "collection": "notes",
        "entity_id": "p1",
        "status": "applied",
        "error": "",
        "error_type": "",
    }
    assert sorted(s["token"] for s in google.sends) == ["alice-garbled", "alice-old-phone", "alice-phone"]
    assert all(s["data"] == expected for s in google.sends)
    assert all(s["authorization"] == f"Bearer {google.access_token}" for s in google.sends)
    # The SDK signed its own token request with the key (parallel sends may each exchange one).
    assert google.exchanges and all(c["iss"].startswith("push-") for c in google.exchanges)
    assert devices.tokens("alice") == ["alice-phone"]  # FCM called the other two dead
    assert devices.tokens("bob") == ["bob-phone"]


def test_a_user_without_devices_costs_no_job(
    rt: runtime.Runtime, devices: DeviceRegistry, fcm_thread: NotifierThread, live_app: Any
) -> None:
    devices.register("bob", "bob-phone")
    log_event(live_app, "carol", "c1")
    log_event(live_app, "bob", "b1")
    assert fcm_thread.step() == 2
    assert [job.args[0] for job in rt.push_queue.jobs] == ["bob"]


def test_a_long_error_is_cut_to_fit_fcm_data_limit(
    rt: runtime.Runtime,
    devices: DeviceRegistry,
    fcm_thread: NotifierThread,
    google: FakeGoogle,
    live_app: Any,
) -> None:
    devices.register("erin", "erin-phone")
    log_event(live_app, "erin", "e1", status="failed", error="é" * 1000)  # 2,000 bytes of UTF-8
    fcm_thread.step()
    run_push_jobs(rt)
    [sent] = google.sends
    assert 0 < len(sent["data"]["error"].encode()) <= 1024
    assert set(sent["data"]["error"]) == {"é"}  # cut between characters, not inside one
    assert devices.tokens("erin") == ["erin-phone"]


def test_a_send_that_reaches_no_device_fails_its_job_and_keeps_the_tokens(
    rt: runtime.Runtime,
    devices: DeviceRegistry,
    fcm_thread: NotifierThread,
    google: FakeGoogle,
    live_app: Any,
) -> None:
    google.answers["dave-phone"] = "down"
    devices.register("dave", "dave-phone")
    log_event(live_app, "dave", "d1")
    fcm_thread.step()
    run_push_jobs(rt)

    failed = FailedJobRegistry(queue=rt.push_queue)
    [job_id] = failed.get_job_ids()
    assert "PushFailed" in rt.push_queue.fetch_job(job_id).latest_result().exc_string
    assert devices.tokens("dave") == ["dave-phone"]  # a server error says nothing of the token


def test_fcm_is_off_with_one_log_line_without_credentials(
    settings_env: dict[str, str], start_worker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    without = load(**{k.lower(): v for k, v in settings_env.items()})
    with caplog.at_level("INFO", logger="gateway.fcm"):
        assert fcm_notifier.register_notifiers(without, RuntimeServices()) is None
    assert [r.getMessage() for r in caplog.records] == [
        "FCM push notifications are off: FCM_CREDENTIALS is not set"
    ]
    start_worker()
    log_path = tmp_path / "worker-0.log"
    wait_until(lambda: "gateway.worker" in log_path.read_text(), 20, "the worker to start")
    assert log_path.read_text().count("FCM push notifications are off") == 1


def test_credentials_may_be_a_file_and_bad_ones_stop_the_start(
    settings_env: dict[str, str], service_account: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "service-account.json"
    key_file.write_text(service_account)
    base = {k.lower(): v for k, v in settings_env.items()}
    [notifier] = fcm_notifier.register_notifiers(
        load(**base, fcm_credentials=str(key_file)), RuntimeServices()
    )
    assert notifier.name == "fcm"
    notifier.close()
    for bad in (str(tmp_path / "missing.json"), '{"type": "authorized_user"}', "{not json"):
        with pytest.raises(ValueError, match="FCM_CREDENTIALS"):
            fcm_notifier.register_notifiers(load(**base, fcm_credentials=bad), RuntimeServices())

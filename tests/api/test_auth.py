"""Who is calling: HS256 bearer tokens when JWT_SECRET is set, the one dev user otherwise."""

from __future__ import annotations

import base64
import time
import warnings
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app import create_app
from settings import DEV_USER
from tests.support.api import SECRET, assert_problem, bearer, token

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    """A token with `alg: none` and no signature."""
    header = b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    return f"{header}.{b64(orjson.dumps(claims))}."


def owner(app: Any, command_id: str) -> str:
    """The user id the command record carries."""
    gw = app.extensions["gateway"]
    partition = int(command_id.split("-", 1)[0])
    return gw.redis.hget(gw.keys.command(partition, command_id), "uid")


def assert_unauthorized(response: Any) -> dict[str, Any]:
    problem = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return problem


# -- with JWT_SECRET ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/notes"),
        ("PUT", "/api/notes/a"),
        ("PATCH", "/api/notes/a"),
        ("DELETE", "/api/notes/a"),
        ("GET", "/api/notes/a"),
        ("GET", "/api/notes"),
        ("GET", "/api/commands/0-" + "0" * 32),
    ],
)
def test_every_api_call_needs_a_token(jwt_client: Any, method: str, path: str) -> None:
    assert_unauthorized(jwt_client.open(path, method=method, json={}))


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Token abc", "bearer not.a.jwt", "Bearer a.b.c"],
)
def test_missing_or_malformed_authorization_is_401(jwt_client: Any, header: str) -> None:
    assert_unauthorized(jwt_client.post("/api/notes", json={}, headers={"Authorization": header}))


def test_a_token_in_the_query_string_does_not_count_for_writes(jwt_client: Any) -> None:
    assert_unauthorized(jwt_client.post(f"/api/notes?token={token()}", json={}))


def test_a_valid_token_is_accepted_and_its_sub_owns_the_command(jwt_client: Any) -> None:
    response = jwt_client.post("/api/notes", json={"x": 1}, headers=bearer(token("alice")))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert owner(jwt_client.application, response.get_json()["command_id"]) == "alice"

    response = jwt_client.put("/api/notes/b", json={}, headers=bearer(token("bob")))
    assert response.status_code == 202
    assert owner(jwt_client.application, response.get_json()["command_id"]) == "bob"


def test_the_scheme_name_is_case_insensitive(jwt_client: Any) -> None:
    response = jwt_client.post("/api/notes", json={}, headers={"Authorization": f"bearer {token('carol')}"})
    assert response.status_code == 202
    assert owner(jwt_client.application, response.get_json()["command_id"]) == "carol"


def test_a_token_signed_with_another_secret_is_401(jwt_client: Any) -> None:
    forged = token("alice", secret="another-secret-of-at-least-32-bytes!")
    assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(forged)))


def test_a_tampered_payload_is_401(jwt_client: Any) -> None:
    header, _, signature = token("alice").split(".")
    payload = b64(orjson.dumps({"sub": "admin", "exp": int(time.time()) + 60}))
    assert_unauthorized(
        jwt_client.post("/api/notes", json={}, headers=bearer(f"{header}.{payload}.{signature}"))
    )


def test_an_unsigned_alg_none_token_is_401(jwt_client: Any) -> None:
    forged = unsigned({"sub": "alice", "exp": int(time.time()) + 60})
    assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(forged)))


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused_even_with_the_right_secret(
    jwt_client: Any, algorithm: str
) -> None:
    with warnings.catch_warnings():  # the secret is short for these algorithms; no matter here
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        forged = token("alice", secret=SECRET, algorithm=algorithm)
        assert jwt.decode(forged, SECRET, algorithms=[algorithm])["sub"] == "alice"  # genuinely signed
    assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(forged)))


def test_rs256_tokens_are_refused(jwt_client: Any) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forged = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, pem, algorithm="RS256")
    assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(forged)))


def test_an_hs256_token_with_an_rs256_header_is_refused(jwt_client: Any) -> None:
    """Algorithm confusion: the header claims RS256 while the signature is HMAC with the secret."""
    real = token("alice")
    _, payload, signature = real.split(".")
    header = b64(orjson.dumps({"alg": "RS256", "typ": "JWT"}))
    assert_unauthorized(
        jwt_client.post("/api/notes", json={}, headers=bearer(f"{header}.{payload}.{signature}"))
    )


def test_an_expired_token_is_401(jwt_client: Any) -> None:
    expired = token("alice", exp=int(time.time()) - 5)
    problem = assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(expired)))
    assert "expired" in problem["detail"].lower()


def test_a_token_not_yet_valid_is_401(jwt_client: Any) -> None:
    early = token("alice", nbf=int(time.time()) + 300)
    assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(early)))


def test_a_verified_token_is_checked_once_and_its_expiry_every_time(
    jwt_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature of a token seen before is not checked again; its expiry is, on each call."""
    decoded: list[str] = []
    real = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda t, *a, **k: decoded.append(t) or real(t, *a, **k))
    soon = token("alice", exp=int(time.time()) + 2)
    for _ in range(3):
        assert jwt_client.post("/api/notes", json={}, headers=bearer(soon)).status_code == 202
    assert decoded == [soon]
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3)  # past its exp
    problem = assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(soon)))
    assert "expired" in problem["detail"].lower()


def test_a_token_verified_before_does_not_vouch_for_a_tampered_copy(jwt_client: Any) -> None:
    real = token("alice")
    assert jwt_client.post("/api/notes", json={}, headers=bearer(real)).status_code == 202
    header, _, signature = real.split(".")
    payload = b64(orjson.dumps({"sub": "admin", "exp": int(time.time()) + 60}))
    assert_unauthorized(
        jwt_client.post("/api/notes", json={}, headers=bearer(f"{header}.{payload}.{signature}"))
    )


def test_a_token_verified_under_one_secret_is_refused_under_another(make_app: Any) -> None:
    signed = token("alice")
    assert (
        make_app(jwt_secret=SECRET)
        .test_client()
        .post("/api/notes", json={}, headers=bearer(signed))
        .status_code
        == 202
    )
    other = make_app(jwt_secret="another-secret-of-at-least-32-bytes!").test_client()
    assert_unauthorized(other.post("/api/notes", json={}, headers=bearer(signed)))


@pytest.mark.parametrize("sub", [None, "", 42, ["alice"]])
def test_a_token_without_a_string_sub_is_401(jwt_client: Any, sub: Any) -> None:
    payload: dict[str, Any] = {"exp": int(time.time()) + 60}
    if sub is not None:
        payload["sub"] = sub
    bad = jwt.encode(payload, SECRET, algorithm="HS256")
    assert_unauthorized(jwt_client.post("/api/notes", json={}, headers=bearer(bad)))


def test_a_refused_token_leaves_nothing_in_redis(jwt_client: Any, redis_keys: Any) -> None:
    for bad in [unsigned({"sub": "alice"}), token("alice", exp=int(time.time()) - 5), token(None)]:
        assert_unauthorized(jwt_client.post("/api/notes", json={"x": 1}, headers=bearer(bad)))
    assert redis_keys.all() == set()


def test_probes_need_no_token(jwt_client: Any) -> None:
    assert jwt_client.get("/healthz").status_code == 200
    assert jwt_client.get("/readyz").status_code == 200


# -- without JWT_SECRET ------------------------------------------------------------------------


def test_open_dev_mode_makes_every_caller_the_dev_user(app: Any, client: Any) -> None:
    anonymous = client.post("/api/notes", json={})
    assert anonymous.status_code == 202
    with_token = client.post("/api/notes", json={}, headers=bearer(token("alice")))
    assert with_token.status_code == 202
    garbage = client.post("/api/notes", json={}, headers={"Authorization": "Bearer garbage"})
    assert garbage.status_code == 202
    for response in (anonymous, with_token, garbage):
        assert owner(app, response.get_json()["command_id"]) == DEV_USER == "dev"
    # One user: each sees the others' commands.
    status = client.get(anonymous.get_json()["status_url"], headers=bearer(token("bob")))
    assert status.status_code == 200


def test_open_dev_mode_is_logged_loudly(settings_env: dict[str, str], caplog: Any) -> None:
    with caplog.at_level("WARNING", logger="gateway"):
        application = create_app({k.lower(): v for k, v in settings_env.items()})
    application.extensions["gateway"].close()
    assert any(r.levelname == "WARNING" and "JWT_SECRET" in r.getMessage() for r in caplog.records)


def test_a_secret_turns_dev_mode_off(make_app: Any, caplog: Any) -> None:
    with caplog.at_level("WARNING", logger="gateway"):
        application = make_app(jwt_secret=SECRET)
    assert not any("open dev mode" in r.getMessage() for r in caplog.records)
    assert_unauthorized(application.test_client().post("/api/notes", json={}))


def test_a_short_secret_is_logged_at_start(make_app: Any, caplog: Any) -> None:
    with caplog.at_level("WARNING", logger="gateway"):
        make_app(jwt_secret="s3cret")
    assert any("shorter than 32 bytes" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="gateway"):
        make_app(jwt_secret=SECRET)
    assert not any("JWT_SECRET" in r.getMessage() for r in caplog.records)


def test_production_refuses_to_start_without_a_secret(settings_env: dict[str, str]) -> None:
    config = {k.lower(): v for k, v in settings_env.items()} | {"app_env": "production"}
    with pytest.raises(ValueError, match="JWT_SECRET"):
        create_app(config)
    with pytest.raises(ValueError, match="JWT_SECRET"):
        create_app(config | {"jwt_secret": ""})


def test_production_starts_with_a_secret(make_app: Any) -> None:
    client = make_app(app_env="production", jwt_secret=SECRET, collections="notes").test_client()
    assert_unauthorized(client.post("/api/notes", json={}))
    assert client.post("/api/notes", json={}, headers=bearer(token("alice"))).status_code == 202

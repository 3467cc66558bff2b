"""Tokens of an identity provider: RS256/ES256 verified with the keys a JWKS endpoint serves,
`iss` and `aud` checks, `exp` required in production, roles, and streams closed at expiry.

The identity provider is played by a local HTTP server serving a JWKS of keys made here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import simple_websocket
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.tokens import roles_in
from tests.support.api import SECRET, assert_problem, bearer, token
from tests.support.notify import LiveServer, SseClient

pytestmark = pytest.mark.integration

ISSUER = "https://securetoken.google.com/demo-project"
AUDIENCE = "demo-project"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """A private key of the identity provider, with the `kid` its JWKS names it by."""

    def __init__(self, algorithm: str = "RS256") -> None:
        self.algorithm = algorithm
        self.kid = secrets.token_hex(4)
        if algorithm == "RS256":
            self.key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwk |= {"kid": self.kid, "use": "sig", "alg": algorithm}

    def token(self, sub: Any = "alice", **claims: Any) -> str:
        payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60} | claims
        return jwt.encode(
            {k: v for k, v in payload.items() if v is not None},
            self.key,
            algorithm=self.algorithm,
            headers={"kid": self.kid},
        )

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Jwks:
    """A JWKS endpoint on loopback whose keys can be changed, and which can be made to fail."""

    def __init__(self, *signers: Signer) -> None:
        self.signers = list(signers)
        self.down = False
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                owner.fetches += 1
                if owner.down:
                    self.send_error(503)
                    return
                body = json.dumps({"keys": [s.jwk for s in owner.signers]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def signer() -> Signer:
    return Signer("RS256")


@pytest.fixture
def jwks(signer: Signer) -> Iterator[Jwks]:
    endpoint = Jwks(signer)
    yield endpoint
    endpoint.close()


@pytest.fixture
def idp_app(make_app: Any, jwks: Jwks) -> Any:
    """An app that takes the identity provider's tokens, as a Firebase Auth deployment would."""
    return make_app(jwt_jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


def write(app: Any, bearer_token: str) -> Any:
    return app.test_client().put("/api/notes/n1", json={"x": 1}, headers=bearer(bearer_token))


def owner(app: Any, command_id: str) -> str:
    gw = app.extensions["gateway"]
    return gw.redis.hget(gw.keys.command(int(command_id.split("-", 1)[0]), command_id), "uid")


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_token_signed_by_a_key_of_the_jwks_is_accepted(make_app: Any, algorithm: str) -> None:
    key = Signer(algorithm)
    endpoint = Jwks(key)
    try:
        app = make_app(jwt_jwks_url=endpoint.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
        response = write(app, key.token("alice"))
        assert response.status_code == 202, response.get_data(as_text=True)
        assert owner(app, response.get_json()["command_id"]) == "alice"
    finally:
        endpoint.close()


def test_keys_are_fetched_once_not_per_request(idp_app: Any, signer: Signer, jwks: Jwks) -> None:
    for user in ("alice", "bob", "carol"):
        assert write(idp_app, signer.token(user)).status_code == 202
    assert jwks.fetches == 1


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://securetoken.google.com/other-project"}, "issuer"),
        ({"iss": None}, "iss"),
        ({"aud": "other-project"}, "audience"),
        ({"aud": None}, "aud"),
        ({"exp": int(time.time()) - 5}, "expired"),
    ],
)
def test_a_token_for_another_issuer_or_audience_is_refused(
    idp_app: Any, signer: Signer, claims: dict[str, Any], reason: str
) -> None:
    problem = assert_problem(write(idp_app, signer.token("alice", **claims)), 401)
    assert reason in problem["detail"].lower()


def test_a_key_that_is_not_in_the_jwks_is_refused(idp_app: Any, signer: Signer) -> None:
    stranger = Signer("RS256")
    stranger.kid = signer.kid  # claims the provider's key id, signed with another key
    assert_problem(write(idp_app, stranger.token("alice")), 401)
    unknown = Signer("RS256")
    problem = assert_problem(write(idp_app, unknown.token("alice")), 401)
    assert unknown.kid in problem["detail"]


def test_a_token_without_a_kid_is_refused(idp_app: Any, signer: Signer) -> None:
    bare = jwt.encode(
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
        signer.key,
        algorithm="RS256",
    )
    assert "kid" in assert_problem(write(idp_app, bare), 401)["detail"]


def test_the_public_key_used_as_an_hmac_secret_is_refused(idp_app: Any, signer: Signer) -> None:
    """Algorithm confusion: HS256 'signed' with the public key, which anyone can fetch."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    claims = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    signed = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(signer.public_pem(), signed.encode(), hashlib.sha256).digest()
    assert_problem(write(idp_app, f"{signed}.{b64(signature)}"), 401)


def test_hs256_tokens_are_refused_without_a_secret(idp_app: Any) -> None:
    assert_problem(write(idp_app, token("alice", iss=ISSUER, aud=AUDIENCE)), 401)


def test_both_verifiers_can_be_on_together(make_app: Any, jwks: Jwks, signer: Signer) -> None:
    app = make_app(jwt_jwks_url=jwks.url, jwt_secret=SECRET)
    assert write(app, signer.token("alice", iss=None, aud=None)).status_code == 202
    assert write(app, token("bob")).status_code == 202


def test_a_rotated_key_is_picked_up(idp_app: Any, signer: Signer, jwks: Jwks) -> None:
    assert write(idp_app, signer.token("alice")).status_code == 202
    successor = Signer("RS256")
    jwks.signers = [successor]  # the provider rotates: the old key is gone, a new one signs
    keys = idp_app.extensions["auth"].jwks
    keys.min_refresh_seconds = 0  # no need to wait out the refetch interval in a test
    response = write(idp_app, successor.token("alice"))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert jwks.fetches == 2
    assert_problem(write(idp_app, signer.token("bob")), 401)  # a token the old key signs, unseen


def test_made_up_key_ids_do_not_make_a_fetch_each(idp_app: Any, signer: Signer, jwks: Jwks) -> None:
    assert write(idp_app, signer.token("alice")).status_code == 202
    for _ in range(5):
        assert_problem(write(idp_app, Signer("RS256").token("mallory")), 401)
    assert jwks.fetches == 1  # the next refetch waits JWKS_MIN_REFRESH_SECONDS


def test_a_jwks_outage_does_not_refuse_tokens_of_known_keys(
    idp_app: Any, signer: Signer, jwks: Jwks, caplog: Any
) -> None:
    assert write(idp_app, signer.token("alice")).status_code == 202
    keys = idp_app.extensions["auth"].jwks
    keys.refresh_seconds = keys.min_refresh_seconds = 0  # every request now tries a refetch
    jwks.down = True
    with caplog.at_level("WARNING", logger="gateway.auth"):
        for user in ("bob", "carol", "dave"):  # new tokens, signed by the key known before
            response = write(idp_app, signer.token(user))
            assert response.status_code == 202, response.get_data(as_text=True)
    assert jwks.fetches == 4
    assert sum("cannot be fetched" in r.getMessage() for r in caplog.records) == 1  # once per outage


def test_production_requires_exp(make_app: Any, jwks: Jwks, signer: Signer) -> None:
    forever = signer.token("alice", exp=None)
    development = make_app(jwt_jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    assert write(development, forever).status_code == 202
    production = make_app(
        app_env="production",
        collections="notes",
        jwt_jwks_url=jwks.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    assert "exp" in assert_problem(write(production, forever), 401)["detail"]
    assert write(production, signer.token("alice")).status_code == 202


def test_production_starts_with_a_jwks_alone(make_app: Any, jwks: Jwks) -> None:
    assert (
        make_app(app_env="production", jwt_jwks_url=jwks.url, collections="notes").extensions["auth"]
        is not None
    )


def test_roles_make_an_operator(idp_app: Any, signer: Signer) -> None:
    verifier = idp_app.extensions["auth"]
    assert verifier.identify(signer.token("root", roles=["admin", "x"])).operator is True
    assert verifier.identify(signer.token("alice", roles=["editor"])).operator is False
    assert verifier.identify(signer.token("bob", roles="admin")).operator is True  # a scope string
    assert verifier.identify(signer.token("eve", admin=True)).operator is False


def test_the_roles_claim_and_admin_role_are_settings(make_app: Any, jwks: Jwks, signer: Signer) -> None:
    app = make_app(jwt_jwks_url=jwks.url, jwt_roles_claim="realm_access.roles", admin_role="ops")
    verifier = app.extensions["auth"]
    keycloak = signer.token("root", iss=None, aud=None, realm_access={"roles": ["ops"]})
    assert verifier.identify(keycloak).operator is True
    assert verifier.identify(signer.token("alice", iss=None, aud=None, roles=["admin"])).operator is False


@pytest.mark.parametrize(
    ("claims", "claim", "roles"),
    [
        ({"roles": ["a", "b", 3]}, "roles", ["a", "b"]),
        ({"scope": "read write"}, "scope", ["read", "write"]),
        ({"realm_access": {"roles": ["x"]}}, "realm_access.roles", ["x"]),
        ({"https://example.com/roles": ["y"]}, "https://example.com/roles", ["y"]),
        ({"roles": {"admin": True}}, "roles", []),
        ({}, "roles", []),
    ],
)
def test_roles_in(claims: dict[str, Any], claim: str, roles: list[str]) -> None:
    assert roles_in(claims, claim) == roles


def test_plain_http_jwks_urls_are_refused_off_loopback(make_app: Any) -> None:
    with pytest.raises(ValueError, match="https"):
        make_app(jwt_jwks_url="http://idp.example/jwks.json")


# -- streams end with their token ----------------------------------------------------------------


def test_a_websocket_is_closed_when_its_token_expires(live: LiveServer) -> None:
    expires = time.time() + 1.5
    short = token("alice", exp=int(expires) + 1)
    ws = simple_websocket.Client.connect(f"ws://{live.host}:{live.port}/ws?token={short}")
    with pytest.raises(simple_websocket.ConnectionClosed) as closed:
        while True:
            ws.receive(timeout=5)
    assert closed.value.reason == 4401
    assert time.time() >= int(expires) + 1 - 0.05  # not before its exp
    assert time.time() < int(expires) + 1 + 2


def test_an_event_stream_ends_when_its_token_expires(live: LiveServer) -> None:
    exp = int(time.time() + 1.5) + 1
    short = SseClient(live.host, live.port, token("alice", exp=exp))
    assert short.status == 200
    assert short.events.get(timeout=5) is None  # the stream ended
    assert time.time() >= exp - 0.05
    assert "token expired" in short.comments

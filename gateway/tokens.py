"""Verifying bearer tokens: HS256 with JWT_SECRET, RS256/ES256 with the keys of JWT_JWKS_URL.

A token's header says which verifier applies, but never widens what it accepts: HMAC tokens
are checked only against the secret with HS256, and public-key tokens only against a key of the
JWKS with RS256 or ES256 (no "none", no RS/HS confusion). `sub` names the user; `iss` and `aud`
must match JWT_ISSUER and JWT_AUDIENCE when those are set; `exp` is required in production.

No Flask here: the web side (gateway/auth.py) turns a refusal into a 401.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from settings import Settings

log = logging.getLogger("gateway.auth")

VERIFIED_TOKENS = 4096  # distinct tokens remembered per process (LRU), about 1 MB at most
HMAC_ALGORITHMS = ["HS256"]
KEY_ALGORITHMS = ["RS256", "ES256"]
JWKS_TIMEOUT_SECONDS = 5.0  # a JWKS fetch holds the request that needed it at most this long
JWKS_REFRESH_SECONDS = 300.0  # known keys are fetched again this often (rotation, revocation)
JWKS_MIN_REFRESH_SECONDS = 30.0  # an unknown `kid` fetches the JWKS again at most this often


class InvalidToken(Exception):
    """The token does not prove who is calling; the message says why (shown to the caller)."""


@dataclass(frozen=True)
class Identity:
    """Who is calling: the user id, the verified claims, and whether the user is an operator."""

    user: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    roles: frozenset[str] = frozenset()
    expires: float | None = None  # epoch seconds of the token's `exp`; None: it never expires
    operator: bool = False

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and self.expires <= (time.time() if now is None else now)


class JwksKeys:
    """The signing keys of a JWKS endpoint, by `kid`, kept between fetches.

    Keys are fetched again every JWKS_REFRESH_SECONDS, and sooner (at most every
    JWKS_MIN_REFRESH_SECONDS, so made-up `kid`s cannot turn each request into a fetch) when a
    token names a key not seen yet: an identity provider's rotation is picked up. A failed fetch
    keeps the keys known so far, so an outage of the provider does not refuse tokens signed with
    them; it is logged once per outage.
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_seconds: float = JWKS_REFRESH_SECONDS,
        min_refresh_seconds: float = JWKS_MIN_REFRESH_SECONDS,
        timeout: float = JWKS_TIMEOUT_SECONDS,
    ) -> None:
        self.client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout)
        self.refresh_seconds = refresh_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = float("-inf")  # monotonic time of the last fetch that worked
        self.tried_at = float("-inf")  # ... and of the last attempt
        self.failing = False
        self.lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK:
        """The key named `kid`; InvalidToken when the JWKS has none of that name."""
        now = time.monotonic()
        stale = now - self.fetched_at >= self.refresh_seconds
        if (stale or kid not in self.keys) and now - self.tried_at >= self.min_refresh_seconds:
            self.refresh()
        try:
            return self.keys[kid]
        except KeyError:
            raise InvalidToken(f"no signing key {kid!r} is known") from None

    def refresh(self) -> None:
        """Fetch the keys again, unless another caller just did (it is waited for)."""
        with self.lock:
            if time.monotonic() - self.tried_at < self.min_refresh_seconds:
                return
            self.tried_at = time.monotonic()
            try:
                keys = self.client.get_signing_keys(refresh=True)
            except jwt.PyJWTError as error:  # unreachable, not JSON, or no usable key
                if not self.failing:
                    log.warning(
                        "JWKS %s cannot be fetched (%s); keeping the %d keys known",
                        self.client.uri,
                        error,
                        len(self.keys),
                    )
                self.failing = True
                return
            if self.failing:
                log.warning("JWKS %s can be fetched again", self.client.uri)
            self.failing = False
            self.keys = {key.key_id: key for key in keys if key.key_id}
            self.fetched_at = time.monotonic()


class TokenVerifier:
    """One per web process: the settings' verifiers, and the tokens that verified (by their
    exact bytes), so a client sending the same token with every call pays for its signature
    once. Expiry is checked again on every use."""

    def __init__(self, settings: Settings, jwks: JwksKeys | None = None) -> None:
        self.secret = settings.jwt_secret or None
        self.jwks = jwks or (JwksKeys(settings.jwt_jwks_url) if settings.jwt_jwks_url else None)
        self.issuer = settings.jwt_issuer or None
        self.audience = settings.jwt_audience or None
        self.roles_claim = settings.jwt_roles_claim
        self.admin_role = settings.admin_role
        self.required = ["sub", "exp"] if settings.app_env == "production" else ["sub"]
        if self.issuer:
            self.required.append("iss")
        if self.audience:
            self.required.append("aud")
        self._cached = functools.lru_cache(maxsize=VERIFIED_TOKENS)(self._verify)

    def identify(self, token: str) -> Identity:
        """The identity a token proves; InvalidToken when it proves none (or no longer)."""
        identity = self._cached(token)
        if identity.expired():
            raise InvalidToken("Signature has expired")
        return identity

    def _verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            key, algorithms = self._key_for(header)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self.issuer,
                audience=self.audience,
                options={"require": self.required, "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token's subject must be a non-empty string")
        roles = frozenset(roles_in(claims, self.roles_claim))
        expires = claims.get("exp")
        return Identity(
            user=subject,
            claims=claims,
            roles=roles,
            expires=None if expires is None else float(expires),
            operator=self.admin_role in roles,
        )

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        """The key and the algorithms a token with this header is checked with."""
        algorithm = header.get("alg")
        if algorithm in HMAC_ALGORITHMS and self.secret:
            return self.secret, HMAC_ALGORITHMS
        if algorithm in KEY_ALGORITHMS and self.jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidToken("the token's header names no key (kid)")
            key = self.jwks.key(kid)
            if key.algorithm_name != algorithm:
                raise InvalidToken(f"key {kid!r} is not an {algorithm} key")
            return key.key, [algorithm]
        raise InvalidToken(f"tokens signed with {algorithm!r} are not accepted")


def roles_in(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The roles the claim holds: a list of strings, or a space-separated string (OAuth scopes).
    A dotted name reaches into nested claims (Keycloak's `realm_access.roles`) when no claim
    has the whole name (Auth0's namespaced `https://example.com/roles`)."""
    value: Any = claims.get(claim)
    if value is None and "." in claim:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [role for role in value if isinstance(role, str)]
    return []

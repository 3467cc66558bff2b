"""Who is calling: a user id from an HS256 JWT's `sub`, or the one dev user in open dev mode."""

from __future__ import annotations

import functools
import time

import jwt
from flask import Request

from gateway.problems import Problem
from settings import DEV_USER, Settings

VERIFIED_TOKENS = 4096  # distinct tokens remembered per process (LRU), about 1 MB at most
ALGORITHMS = ["HS256"]  # fixed: a token cannot choose its own algorithm ("none", RS/HS confusion)


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'}
    )


def bearer_token(request: Request, *, allow_query: bool = False) -> str | None:
    """The token from `Authorization: Bearer`, or from `?token=` where headers cannot be set."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if allow_query:
        return request.args.get("token") or None
    return None


def user_of(token: str | None, settings: Settings) -> str:
    """The user id the token names; Problem 401 when it is missing or does not verify."""
    if settings.open_dev_mode:
        return DEV_USER
    if not token:
        raise _unauthorized("A bearer token is required.")
    subject, expires = _verified(token, settings.jwt_secret)
    if expires is not None and expires <= time.time():
        raise _unauthorized("The bearer token is not valid: Signature has expired.")
    return subject


@functools.lru_cache(maxsize=VERIFIED_TOKENS)
def _verified(token: str, secret: str) -> tuple[str, float | None]:
    """The subject and expiry of a token whose signature and claims check out.

    A client sends the same token with every call until it expires, and checking its HMAC costs
    more than the rest of a write's work in Python (~30-60 us). Tokens that verified are kept,
    keyed by the whole token (signature included) and the secret, so only the very same bytes
    signed with the same key are served from here; the expiry is checked again on every use
    (`nbf` and `iat` only matter before a token first verifies). Refused tokens are not kept.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS, options={"require": ["sub"]})
    except jwt.PyJWTError as error:
        raise _unauthorized(f"The bearer token is not valid: {error}.") from error
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise _unauthorized("The token's subject must be a non-empty string.")
    expires = claims.get("exp")
    return subject, None if expires is None else float(expires)

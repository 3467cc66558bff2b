"""Who is calling: the identity a bearer token proves (gateway/tokens.py), or the one dev user
in open dev mode. A missing or refused token is a 401 problem."""

from __future__ import annotations

from flask import Flask, Request, current_app

from gateway.problems import Problem
from gateway.tokens import Identity, InvalidToken, TokenVerifier
from settings import DEV_USER, Settings

# Open dev mode has one user, who may do anything (the operator's pages and details included).
DEV_IDENTITY = Identity(user=DEV_USER, operator=True)


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'}
    )


def bearer_token(request: Request, *, allow_query: bool = False) -> str | None:
    """The token from `Authorization: Bearer`, or from `?token=` where headers cannot be set."""
    header = request.environ.get("HTTP_AUTHORIZATION", "")  # as request.headers has it, without its lookup
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if allow_query:
        return request.args.get("token") or None
    return None


def identify(token: str | None, settings: Settings, verifier: TokenVerifier | None) -> Identity:
    """The identity the token proves; Problem 401 when it is missing or proves none."""
    if settings.open_dev_mode or verifier is None:
        return DEV_IDENTITY
    if not token:
        raise _unauthorized("A bearer token is required.")
    try:
        return verifier.identify(token)
    except InvalidToken as error:
        raise _unauthorized(f"The bearer token is not valid: {error}.") from error


def identity_of(request: Request, *, allow_query: bool = False) -> Identity:
    """The caller of `request` in the current app."""
    extensions = current_app.extensions
    token = bearer_token(request, allow_query=allow_query)
    return identify(token, extensions["gateway"].settings, extensions["auth"])


def init_app(app: Flask) -> None:
    settings = app.extensions["gateway"].settings
    app.extensions["auth"] = None if settings.open_dev_mode else TokenVerifier(settings)

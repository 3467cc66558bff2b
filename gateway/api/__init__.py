"""The HTTP API: write commands, command status, reads, health, and its own description."""

from __future__ import annotations

import functools
import logging
from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request
from werkzeug.routing import BaseConverter
from werkzeug.urls import iri_to_uri

from gateway import claims
from gateway.auth import identity_of
from gateway.context import Gateway
from gateway.problems import Problem
from gateway.schemas import Collections
from gateway.tokens import Identity
from gateway.validation import BodyLimits, check_entity_id, unknown_collection
from plugins.names import COLLECTION_NAME, RESERVED
from plugins.store import Access, Document

log = logging.getLogger("gateway.api")


class CollectionConverter(BaseConverter):
    """`<collection:name>`: a URL segment that can name a collection. Reserved names do not
    match, so `/api/commands/<id>`, `/api/devices/<token>` and `/api/events` are only their own
    routes, and a request there with another method is 405 with their own `Allow`."""

    regex = rf"(?!(?:{'|'.join(RESERVED)})(?![a-z0-9_])){COLLECTION_NAME}"


def gateway() -> Gateway:
    return current_app.extensions["gateway"]


def collections() -> Collections:
    return current_app.extensions["collections"]


def body_limits() -> BodyLimits:
    return current_app.extensions["body_limits"]


def current_identity() -> Identity:
    """The authenticated caller of this request (401 otherwise), checked once per request."""
    identity = g.get("identity")
    if identity is None:
        identity = g.identity = identity_of(request)
    return identity


def current_user() -> str:
    """The user id of this request's caller."""
    return current_identity().user


def authenticate() -> None:
    """A blueprint's before_request: every call needs a user, except CORS preflights, which
    browsers send without credentials (their answer carries no data)."""
    if request.method != "OPTIONS":
        current_user()


def check_collection_exists(name: str) -> str:
    """The collection, if it exists (404 otherwise): a well-formed, unreserved name, and a
    declared one when anything is declared (COLLECTIONS, SCHEMAS_DIR, plugins)."""
    if not collections().exists(name):
        raise unknown_collection(name)
    return name


def carried_claims() -> dict[str, Any]:
    """The caller's claims that travel with a command or read to the store (gateway/claims.py),
    picked once per request; 431 when they are too large to carry."""
    kept = g.get("carried_claims")
    if kept is None:
        kept = claims.carried(current_identity().claims, claims.carried_names(gateway().settings))
        try:
            g.carried_claims_json = claims.encode(kept)
        except claims.ClaimsTooLarge as error:
            log.warning("write refused: %s", error)
            raise Problem(
                431,
                "Request Header Fields Too Large",
                f"The bearer token's claims carried with each command take more than "
                f"{claims.MAX_CLAIMS_BYTES} bytes (COMMAND_CLAIMS, the roles claim).",
                slug="claims-too-large",
            ) from error
        g.carried_claims = kept
    return kept


def carried_claims_json() -> bytes:
    """`carried_claims()` as the command's record keeps them (b'' for none)."""
    carried_claims()
    return g.carried_claims_json


def access_of(collection: str) -> Access:
    """What the collection's store is told of this request's caller."""
    identity = current_identity()
    return collections().access(collection, identity.user, identity.operator, carried_claims())


def check_authorized(action: str, collection: str, entity_id: str | None, document: Document | None) -> None:
    """403 when a plugin's `authorize` hook refuses the request."""
    plugins = gateway().plugins
    if not plugins.authorizes:
        return
    identity = current_identity()
    question = {"action": action, "collection": collection, "entity_id": entity_id, "document": document}
    if not plugins.authorize(user=identity.user, claims=identity.claims, **question):
        raise forbidden(f"You may not {action} in {collection}.")


def forbidden(detail: str) -> Problem:
    return Problem(403, "Forbidden", detail, slug="forbidden")


def check_target(collection: str, entity_id: str) -> None:
    check_collection_exists(collection)
    check_entity_id(entity_id)


class JsonAnswer(Response):
    """An answer whose headers are final as built: Content-Length comes from the body's bytes and
    a Location is already a URI, so werkzeug's copy and rewrite of them for each answer (a third
    of the cost of building one) is skipped. Not for 1xx, 204 or 304 answers, which must not
    carry a Content-Length."""

    def get_wsgi_headers(self, environ: Any) -> Any:
        return self.headers


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # The Content-Type given as a header: werkzeug then neither works it out from a mimetype
    # nor sets it again (half the cost of building the answer).
    pairs = [JSON_CONTENT_TYPE, *headers.items()] if headers else [JSON_CONTENT_TYPE]
    return JsonAnswer(orjson.dumps(body), status=status, headers=pairs)


JSON_CONTENT_TYPE = ("Content-Type", "application/json")


@functools.lru_cache(maxsize=64)
def uri_path(path: str) -> str:
    """A request path (decoded, as werkzeug gives it) as it may appear in a Location header."""
    return iri_to_uri(path)


def init_app(app: Flask) -> None:
    from gateway.api import commands, cors, health, openapi, rate_limits, reads, security

    settings = app.extensions["gateway"].settings
    app.extensions["collections"] = app.extensions["gateway"].collections
    app.extensions["body_limits"] = BodyLimits(settings.max_json_depth, settings.max_json_members)
    security.init_app(app)
    app.url_map.converters["collection"] = CollectionConverter
    cors.init_app(app)
    rate_limits.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(commands.bp)
    app.register_blueprint(reads.bp)
    app.register_blueprint(openapi.bp)

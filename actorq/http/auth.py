"""Bearer tokens for the HTTP API: `[[http.tokens]]` entries hold each token's SHA-256
digest and a role; "read" may use GET routes, "admin" every route.

With no tokens configured the API is open, which the config allows only on a
loopback address unless `allow_anonymous = true` says otherwise (node/config.py).
`/health` and `/metrics` stay open: probes and Prometheus scrape them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from actorq.node.config import TokenConfig

OPEN_PATHS = ("/health", "/metrics", "/api/openapi.json")
OPEN_PREFIXES = ("/static/",)  # the dashboard's files: no data in them
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EVENTS_PATH = "/api/events"
TOKEN_BYTES = 32  # of randomness in a new token


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "aq_" + secrets.token_urlsafe(TOKEN_BYTES)


class Tokens:
    def __init__(self, tokens: list[TokenConfig]) -> None:
        self.roles = {t.sha256: t.role for t in tokens}

    def role_of(self, request: web.Request) -> str:
        """"open" without tokens configured, else the presented token's role (check()
        has let the request through)."""
        if not self.roles:
            return "open"
        presented = digest(_presented(request))
        return next((r for d, r in self.roles.items() if hmac.compare_digest(d, presented)),
                    "none")

    def check(self, request: web.Request) -> tuple[int, str, str, str] | None:
        """None when the request may go on; else (status, code, message, field)."""
        if (not self.roles or request.path in OPEN_PATHS or request.path == "/"
                or request.path.startswith(OPEN_PREFIXES)):
            return None
        token = _presented(request)
        if not token:
            return (401, "unauthorized", "this API needs an `Authorization: Bearer TOKEN` "
                    "header", "Authorization")
        presented = digest(token)
        role = next((r for d, r in self.roles.items() if hmac.compare_digest(d, presented)),
                    None)
        if role is None:
            return 401, "unauthorized", "the token is not one this gateway knows", "Authorization"
        if role != "admin" and request.method not in READ_METHODS:
            return (403, "forbidden", "a read token may only read; this needs an admin token",
                    "Authorization")
        return None


def _presented(request: web.Request) -> str:
    """The bearer token a request carries ("" when none)."""
    header = request.headers.get("Authorization", "")
    if not header and request.path == EVENTS_PATH and "access_token" in request.query:
        header = f"Bearer {request.query['access_token']}"  # EventSource sends no headers
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


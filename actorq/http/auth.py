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
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_BYTES = 32  # of randomness in a new token


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "aq_" + secrets.token_urlsafe(TOKEN_BYTES)


class Tokens:
    def __init__(self, tokens: list[TokenConfig]) -> None:
        self.roles = {t.sha256: t.role for t in tokens}

    def check(self, request: web.Request) -> tuple[int, str, str, str] | None:
        """None when the request may go on; else (status, code, message, field)."""
        if not self.roles or request.path in OPEN_PATHS:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return (401, "unauthorized", "this API needs an `Authorization: Bearer TOKEN` "
                    "header", "Authorization")
        presented = digest(token.strip())
        role = next((r for d, r in self.roles.items() if hmac.compare_digest(d, presented)),
                    None)
        if role is None:
            return 401, "unauthorized", "the token is not one this gateway knows", "Authorization"
        if role != "admin" and request.method not in READ_METHODS:
            return (403, "forbidden", "a read token may only read; this needs an admin token",
                    "Authorization")
        return None

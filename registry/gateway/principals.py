"""Bearer-token verification for the gateway, cached so steady-state calls skip the JWT check.

A verified token is remembered by the SHA-256 of its text until its ``exp`` (bounded LRU), so a
client sending the same token on every call pays one signature check. A token that failed is
not cached: its error is recomputed, which keeps a flood of bad tokens as expensive for the
client as for us, but never lets one through. A token that names scopes must name
``use:gateway`` (``acl.authorize_scope``; docs/credentials.md, "Scopes").
"""

from __future__ import annotations

import hashlib
import time

from cachetools import LRUCache

from registry.auth import TokenVerifier, UserContext, authorize_scope
from registry.auth.acl import USE_GATEWAY
from registry.errors import AuthenticationError

MAX_CACHED_TOKENS = 10_000


class PrincipalCache:
    def __init__(self, verifier: TokenVerifier, *, maxsize: int = MAX_CACHED_TOKENS) -> None:
        self._verifier = verifier
        self._cache: LRUCache[bytes, tuple[UserContext, float]] = LRUCache(maxsize=maxsize)

    def authenticate(self, authorization: bytes | None) -> UserContext:
        """The caller named by an ``Authorization: Bearer`` header value, if its token may use
        the gateway: AuthenticationError, or PermissionDeniedError for a token whose scopes
        leave out ``use:gateway``."""
        if not authorization:
            raise AuthenticationError("Missing bearer token")
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise AuthenticationError("Authorization header must be 'Bearer <token>'")
        key = hashlib.sha256(token).digest()
        cached = self._cache.get(key)
        now = time.time()
        if cached is not None:
            user, expires_at = cached
            if now < expires_at:
                authorize_scope(user, USE_GATEWAY)
                return user
            del self._cache[key]
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationError("Malformed token") from exc
        claims = self._verifier.decode(text)
        user = UserContext.from_claims(claims)
        self._cache[key] = (user, float(claims["exp"]))
        authorize_scope(user, USE_GATEWAY)
        return user

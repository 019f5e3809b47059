"""Which upstream credential a gateway call carries, and where it comes from.

Resolution order (docs/gateway.md, "Credentials"):

1. ``credential_mode == "app"`` (an admin-sourced API key): the server's key, decrypted once per
   configuration version (``lookup.build_server``) and shared by every caller.
2. ``credential_mode == "user"`` (OAuth servers, ``apiKey.source: user``, ``shared_user``
   servers without a key of their own): the calling user's own record in ``tokens`` (an
   unexpired OAuth access token, else an API key), cached per (user, server) for
   ``USER_CREDENTIAL_TTL_SECONDS`` and never past the record's ``expiresAt``.
3. ``none``: only the server's static headers.

When the user has no usable record the call fails with CREDENTIAL_REQUIRED and a message that
says exactly what to store; the upstream is not contacted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from bson import ObjectId
from cachetools import TTLCache

from registry.auth import UserContext
from registry.errors import InvalidRequestError
from registry.gateway.jsonrpc import CREDENTIAL_REQUIRED, RpcError
from registry.gateway.lookup import ResolvedServer
from registry.gateway.upstream import build_auth_headers

USER_CREDENTIAL_TTL_SECONDS = 30.0
MAX_CACHED_CREDENTIALS = 10_000


class UserCredentialLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def expires_at(self) -> datetime: ...


CredentialFinder = Callable[..., Awaitable[UserCredentialLike | None]]


def missing_credential_message(server: ResolvedServer) -> str:
    if server.uses_oauth:
        return (
            f"No OAuth access token stored for server '{server.name}' (or it expired): sign in "
            f"to '{server.name}' again, or store the access token with POST /api/v1/tokens "
            f'{{"type": "oauth_access", "identifier": "{server.name}", "token": "<access token>", '
            '"expires_at": "<ISO time>"}'
        )
    return (
        f"No credential stored for server '{server.name}': store your API key with "
        f'POST /api/v1/tokens {{"type": "api_key", "identifier": "{server.name}", '
        '"token": "<your API key>"}'
    )


class CredentialResolver:
    """Upstream headers per call; the only per-user cache of decrypted credentials."""

    def __init__(
        self,
        finder: CredentialFinder,
        *,
        ttl_seconds: float = USER_CREDENTIAL_TTL_SECONDS,
    ) -> None:
        self._finder = finder
        self._cache: TTLCache[tuple[str, str, str], tuple[dict[str, str], float]] = TTLCache(
            maxsize=MAX_CACHED_CREDENTIALS, ttl=ttl_seconds
        )

    async def headers_for(self, server: ResolvedServer, user: UserContext) -> dict[str, str]:
        """The headers to send upstream for ``user``'s call; RpcError when none are usable."""
        if server.credential_mode != "user":
            if server.credential_problem is not None:
                raise RpcError(
                    CREDENTIAL_REQUIRED, server.credential_problem, outcome="credential_required"
                )
            return server.base_headers
        key = (user.user_id, server.id, server.config_version)
        cached = self._cache.get(key)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        headers, expires_at = await self._load(server, user)
        self._cache[key] = (headers, expires_at)
        return headers

    def forget_user(self, user_id: str, server_id: str) -> None:
        """Drop a cached credential (the upstream rejected it, or the user replaced it)."""
        for key in [key for key in self._cache if key[0] == user_id and key[1] == server_id]:
            self._cache.pop(key, None)

    async def _load(
        self, server: ResolvedServer, user: UserContext
    ) -> tuple[dict[str, str], float]:
        owner = user.object_id
        if owner is None:
            raise RpcError(
                CREDENTIAL_REQUIRED,
                f"Server '{server.name}' needs your own credential, but your user id is not a "
                "MongoDB ObjectId, so no credential can be stored for it",
                outcome="credential_required",
            )
        credential = await self._finder(
            user_id=ObjectId(owner), server_name=server.name, now=datetime.now(UTC)
        )
        if credential is None:
            raise RpcError(
                CREDENTIAL_REQUIRED,
                missing_credential_message(server),
                outcome="credential_required",
            )
        headers = dict(server.base_headers)
        try:
            if credential.kind == "oauth_access":
                headers.update(
                    build_auth_headers(
                        authorization_type="bearer", key=credential.value, custom_header=None
                    )
                )
            else:
                headers.update(
                    build_auth_headers(
                        authorization_type=server.authorization_type,
                        key=credential.value,
                        custom_header=server.custom_header,
                    )
                )
        except InvalidRequestError as exc:
            raise RpcError(
                CREDENTIAL_REQUIRED,
                f"Your stored credential for server '{server.name}' cannot be sent: {exc.message}",
                outcome="credential_required",
            ) from exc
        return headers, credential.expires_at.timestamp()

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

import asyncio
import functools
import time
import weakref
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
    """Upstream headers per call; the only per-user cache of decrypted credentials.

    Entries are keyed by (user id, server id, server name, configuration version). A stored
    credential that changes (``forget_user_credentials``) or that the upstream rejects
    (``forget_user``) is dropped at once; a lookup that was in flight meanwhile is not cached.
    """

    def __init__(
        self,
        finder: CredentialFinder,
        *,
        ttl_seconds: float = USER_CREDENTIAL_TTL_SECONDS,
    ) -> None:
        self._finder = finder
        self._cache: TTLCache[tuple[str, str, str, str], tuple[dict[str, str], float]] = TTLCache(
            maxsize=MAX_CACHED_CREDENTIALS, ttl=ttl_seconds
        )
        self._generation = 0
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        _resolvers.add(self)

    async def headers_for(self, server: ResolvedServer, user: UserContext) -> dict[str, str]:
        """The headers to send upstream for ``user``'s call; RpcError when none are usable."""
        if server.credential_mode != "user":
            if server.credential_problem is not None:
                raise RpcError(
                    CREDENTIAL_REQUIRED, server.credential_problem, outcome="credential_required"
                )
            return server.base_headers
        key = (user.user_id, server.id, server.name, server.config_version)
        cached = self._cache.get(key)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        generation = self._generation
        headers, expires_at = await self._load(server, user)
        if generation == self._generation:
            self._cache[key] = (headers, expires_at)
        return headers

    def forget_user(
        self, user_id: str, server_id: str | None = None, *, server_name: str | None = None
    ) -> None:
        """Drop ``user_id``'s cached credential for one server (by id or by name)."""
        self._generation += 1
        wanted = user_id.lower()
        for key in [
            key
            for key in self._cache
            if key[0].lower() == wanted
            and (server_id is None or key[1] == server_id)
            and (server_name is None or key[2] == server_name)
        ]:
            self._cache.pop(key, None)

    def _forget_soon(self, user_id: str, server_name: str) -> None:
        """``forget_user`` by name, run on this resolver's own event loop."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop is running or loop.is_closed():
            self.forget_user(user_id, server_name=server_name)
        else:
            # Another app's loop in this process (tests run several): its cache is its own.
            loop.call_soon_threadsafe(
                functools.partial(self.forget_user, user_id, server_name=server_name)
            )

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


_resolvers: weakref.WeakSet[CredentialResolver] = weakref.WeakSet()


def forget_user_credentials(*, user_id: str, server_name: str) -> None:
    """A user's stored credential for ``server_name`` changed (stored, replaced, refreshed or
    deleted): every live resolver of this process drops what it cached for it.

    Called by the tokens services after each change, so the next gateway call reads the
    record again instead of using the old value for up to ``USER_CREDENTIAL_TTL_SECONDS``.
    Other processes (replicas) are not told: their cache entries expire within that TTL.
    """
    for resolver in list(_resolvers):
        resolver._forget_soon(user_id, server_name)

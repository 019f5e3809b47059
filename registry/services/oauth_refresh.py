"""Renewing a user's expired OAuth access token with their stored refresh token.

When a user's ``mcp_oauth`` record for a server is missing or expired but an unexpired
``mcp_oauth_refresh`` record exists, ``credential_with_refresh`` redeems it at the server's
token endpoint (RFC 6749 section 6) and stores the new access token (and the rotated refresh
token, if the provider issued one) in one transaction, in the records' LibreChat layout, so
the external app sees the renewed tokens too.

- Token endpoint: ``config.oauth.token_url``, else the discovered ``oauthMetadata.token_endpoint``.
- Client: the user's ``mcp_oauth_client`` record (the JSON LibreChat stores after dynamic
  client registration), else ``config.oauth.client_id`` / ``client_secret`` of the server.
- One refresh per (user, server) at a time in this process; a caller that waited for it reads
  the fresh token instead of redeeming the (possibly rotated) refresh token again.
- Nothing secret is logged: provider answers are logged by HTTP status and OAuth ``error``
  code only. A failed refresh returns None and the gateway asks the user to sign in again.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

from packages.database.encryption import DecryptionError, decrypt_value
from packages.models import MCPServer
from registry.auth import UserContext
from registry.gateway.credentials import forget_user_credentials
from registry.services.audit import record_audit
from registry.services.keyed_locks import KeyedLocks
from registry.services.token_refresh import REFRESH_RECORD_LIFETIME
from registry.services.token_types import ACCESS, CLIENT, REFRESH, StoredKind
from registry.services.tokens import (
    ENTITY,
    UndecryptableTokenError,
    UserCredential,
    decrypted_value,
    find_user_credential,
    record_upsert,
    tokens_collection,
    utcnow,
)

log = structlog.get_logger("registry.oauth_refresh")

TOKEN_ENDPOINT_TIMEOUT_SECONDS = 10.0
# A provider that does not say how long the new access token lives: assume it is short.
ASSUMED_ACCESS_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class _Client:
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    use_basic_auth: bool = False


@dataclass(frozen=True)
class _TokenResponse:
    access_token: str = field(repr=False)
    expires_in: float | None
    refresh_token: str | None = field(default=None, repr=False)


class _RefreshError(Exception):
    """The refresh cannot be done; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_refresh_locks = KeyedLocks()


async def credential_with_refresh(
    *,
    user_id: ObjectId,
    server_name: str,
    now: datetime,
    kinds: Collection[str] | None = None,
) -> UserCredential | None:
    """``find_user_credential``, renewing an expired OAuth access token when possible.

    Same arguments and result; a stored, unexpired OAuth access token is returned as is.
    """
    credential = await find_user_credential(
        user_id=user_id, server_name=server_name, now=now, kinds=kinds
    )
    wants_oauth = kinds is None or ACCESS.api_type in kinds
    if not wants_oauth or (credential is not None and credential.kind == ACCESS.api_type):
        return credential
    renewed = await refresh_access_token(user_id=user_id, server_name=server_name)
    return renewed or credential


async def refresh_access_token(*, user_id: ObjectId, server_name: str) -> UserCredential | None:
    """Redeem the user's refresh token for ``server_name``; the new access credential or None."""
    async with _refresh_locks.lock((user_id, server_name)):
        now = utcnow()
        # Another call may have renewed it while this one waited for the lock.
        current = await find_user_credential(
            user_id=user_id, server_name=server_name, now=now, kinds={ACCESS.api_type}
        )
        if current is not None:
            return current
        refresh_token = await _stored_value(user_id, REFRESH, server_name, now)
        if refresh_token is None:
            return None
        try:
            endpoint, client = await _endpoint_and_client(user_id, server_name, now)
            answer = await _redeem(endpoint, client, refresh_token)
        except _RefreshError as failure:
            log.warning(
                "oauth_refresh_failed",
                user_id=str(user_id),
                server=server_name,
                reason=failure.reason,
            )
            return None
        return await _store(user_id, server_name, answer)


async def _stored_value(
    user_id: ObjectId, kind: StoredKind, server_name: str, now: datetime
) -> str | None:
    doc = await tokens_collection().find_one(
        {
            "userId": user_id,
            "type": kind.stored_type,
            "identifier": kind.stored_identifier(server_name),
            "expiresAt": {"$gt": now},
        },
        sort=[("createdAt", -1), ("_id", -1)],
    )
    if doc is None:
        return None
    try:
        return decrypted_value(doc)
    except UndecryptableTokenError:
        return None


async def _endpoint_and_client(
    user_id: ObjectId, server_name: str, now: datetime
) -> tuple[str, _Client]:
    server = await MCPServer.get_pymongo_collection().find_one(
        {"serverName": server_name}, projection={"config.oauth": 1, "oauthMetadata": 1}
    )
    if server is None:
        raise _RefreshError("server_not_found")
    oauth: dict[str, Any] = (server.get("config") or {}).get("oauth") or {}
    metadata: dict[str, Any] = server.get("oauthMetadata") or {}
    endpoint = oauth.get("token_url") or metadata.get("token_endpoint")
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
        raise _RefreshError("no_token_endpoint")
    client = await _user_client(user_id, server_name, now) or _server_client(oauth)
    if client is None:
        raise _RefreshError("no_client_id")
    return endpoint, client


async def _user_client(user_id: ObjectId, server_name: str, now: datetime) -> _Client | None:
    raw = await _stored_value(user_id, CLIENT, server_name, now)
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("client_id"), str):
        return None
    secret = info.get("client_secret")
    return _Client(
        client_id=info["client_id"],
        client_secret=secret if isinstance(secret, str) else None,
        use_basic_auth=info.get("token_endpoint_auth_method") == "client_secret_basic",
    )


def _server_client(oauth: dict[str, Any]) -> _Client | None:
    client_id = oauth.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        return None
    secret: str | None = None
    stored = oauth.get("client_secret")
    if isinstance(stored, str) and stored:
        try:
            secret = decrypt_value(stored)
        except DecryptionError as exc:
            raise _RefreshError("client_secret_undecryptable") from exc
    methods = oauth.get("token_endpoint_auth_methods_supported") or []
    basic_only = "client_secret_basic" in methods and "client_secret_post" not in methods
    return _Client(client_id=client_id, client_secret=secret, use_basic_auth=basic_only)


async def _redeem(endpoint: str, client: _Client, refresh_token: str) -> _TokenResponse:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    auth: httpx.BasicAuth | None = None
    if client.use_basic_auth and client.client_secret is not None:
        auth = httpx.BasicAuth(client.client_id, client.client_secret)
    else:
        form["client_id"] = client.client_id
        if client.client_secret is not None:
            form["client_secret"] = client.client_secret
    try:
        async with httpx.AsyncClient(timeout=TOKEN_ENDPOINT_TIMEOUT_SECONDS, auth=auth) as http:
            response = await http.post(endpoint, data=form, headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        raise _RefreshError(f"token_endpoint_unreachable:{type(exc).__name__}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        code = body.get("error") if isinstance(body, dict) else None
        raise _RefreshError(f"token_endpoint_status_{response.status_code}:{code or '-'}")
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise _RefreshError("no_access_token_in_response")
    expires_in = body.get("expires_in")
    rotated = body.get("refresh_token")
    return _TokenResponse(
        access_token=access,
        expires_in=float(expires_in) if isinstance(expires_in, int | float) else None,
        refresh_token=rotated if isinstance(rotated, str) and rotated else None,
    )


async def _store(user_id: ObjectId, server_name: str, answer: _TokenResponse) -> UserCredential:
    """Write the new access token (and rotated refresh token) in one transaction."""
    now = utcnow()
    lifetime = (
        timedelta(seconds=answer.expires_in) if answer.expires_in else ASSUMED_ACCESS_LIFETIME
    )
    expires_at = now + lifetime
    collection = tokens_collection()

    async def upsert(
        session: AsyncClientSession, stored_type: str, identifier: str, value: str, until: datetime
    ) -> ObjectId:
        doc = await collection.find_one_and_update(
            {"userId": user_id, "type": stored_type, "identifier": identifier},
            record_upsert(value, until, now),
            upsert=True,
            projection={"_id": True},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert doc is not None  # upsert=True always returns the document
        oid: ObjectId = doc["_id"]
        return oid

    async def write(session: AsyncClientSession) -> ObjectId:
        access_id = await upsert(
            session,
            ACCESS.stored_type,
            ACCESS.stored_identifier(server_name),
            answer.access_token,
            expires_at,
        )
        if answer.refresh_token is not None:
            await upsert(
                session,
                REFRESH.stored_type,
                REFRESH.stored_identifier(server_name),
                answer.refresh_token,
                now + REFRESH_RECORD_LIFETIME,
            )
        return access_id

    async with collection.database.client.start_session() as session:
        access_id = await session.with_transaction(write)
    forget_user_credentials(user_id=str(user_id), server_name=server_name)
    await record_audit(
        action="refresh",
        entity_type=ENTITY,
        entity_id=str(access_id),
        actor=UserContext(user_id=str(user_id), username="gateway-oauth-refresh"),
        after={
            "type": ACCESS.api_type,
            "identifier": server_name,
            "expires_at": expires_at.isoformat(),
            "refresh_token_rotated": answer.refresh_token is not None,
        },
    )
    log.info(
        "oauth_token_refreshed",
        user_id=str(user_id),
        server=server_name,
        token_id=str(access_id),
        rotated=answer.refresh_token is not None,
    )
    return UserCredential(
        kind=ACCESS.api_type,
        value=answer.access_token,
        token_id=str(access_id),
        expires_at=expires_at,
    )

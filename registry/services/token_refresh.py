"""Refreshing an OAuth access record and its refresh record together (one transaction).

Why a transaction: the access and refresh values of one server come from the same token
response of the identity provider; a reader (the gateway, the external app) must never see a
new access token beside a refresh token that was already redeemed, or the reverse. Both
documents are written in one MongoDB transaction (the registry requires a replica set, and
the embedded SecantusDB is one). Without ``new_refresh_token`` a single conditional update
is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from packages.database.encryption import encrypt_value
from registry.auth import UserContext, authorize_token_read_value
from registry.errors import ConflictError, InvalidRequestError, NotFoundError
from registry.services.audit import record_audit
from registry.services.token_types import ACCESS, REFRESH, api_identifier
from registry.services.tokens import (
    DEFAULT_LIFETIME,
    ENTITY,
    TOKEN_NOT_FOUND,
    StoredToken,
    as_stored,
    audit_view,
    credential_changed,
    live_filter,
    record_upsert,
    tokens_collection,
    utcnow,
)

log = structlog.get_logger("registry.tokens")

REFRESH_RECORD_LIFETIME = DEFAULT_LIFETIME["oauth_refresh"]


@dataclass(frozen=True)
class RefreshedToken:
    token: StoredToken
    updated_at: datetime
    refresh_token_id: str | None


async def refresh_token(
    *,
    user: UserContext,
    token_id: str,
    new_access_token: str,
    new_expires_at: datetime,
    new_refresh_token: str | None,
) -> RefreshedToken:
    """Replace the value and expiry of the caller's OAuth access record (and its refresh record).

    With ``new_refresh_token``, the server's refresh record (``mcp:{server}:refresh`` of the
    same user, created when missing) gets the new value in the same transaction, so the pair
    never disagrees. The old values are overwritten in place and kept nowhere (not in the
    audit trail). Raises NotFoundError as ``get_token_value`` does, and InvalidRequestError
    for a record that is not an OAuth access token.
    """
    now = utcnow()
    collection = tokens_collection()
    doc = await collection.find_one(live_filter(token_id, now))
    if doc is None:
        raise NotFoundError(TOKEN_NOT_FOUND, resource=ENTITY, resource_id=token_id)
    authorize_token_read_value(user, doc["userId"])
    if doc.get("type") != ACCESS.stored_type:
        raise InvalidRequestError(
            "Only oauth_access tokens can be refreshed", resource=ENTITY, resource_id=token_id
        )
    # The precondition (same owner, still an unexpired access record) is in the filter.
    access_filter = {
        **live_filter(token_id, now),
        "userId": doc["userId"],
        "type": ACCESS.stored_type,
    }
    access_update = {
        "$set": {"token": encrypt_value(new_access_token), "expiresAt": new_expires_at}
    }
    refresh_id: str | None = None
    if new_refresh_token is None:
        updated = await collection.find_one_and_update(
            access_filter, access_update, return_document=ReturnDocument.AFTER
        )
    else:
        updated, refresh_id = await _refresh_pair(
            collection,
            access_filter=access_filter,
            access_update=access_update,
            owner=doc["userId"],
            refresh_identifier=_refresh_identifier(doc),
            refresh_value=new_refresh_token,
            now=now,
        )
    if updated is None:
        raise NotFoundError(TOKEN_NOT_FOUND, resource=ENTITY, resource_id=token_id)
    credential_changed(updated)  # at once after the write, whatever follows
    stored = as_stored(updated)
    await record_audit(
        action="refresh",
        entity_type=ENTITY,
        entity_id=stored.id,
        actor=user,
        after={**audit_view(stored), "refresh_token_id": refresh_id},
    )
    log.info("token_refreshed", token_id=stored.id, refresh_token_id=refresh_id)
    return RefreshedToken(token=stored, updated_at=now, refresh_token_id=refresh_id)


def _refresh_identifier(access_doc: dict[str, Any]) -> str:
    identifier = api_identifier(access_doc.get("identifier"), ACCESS)
    if identifier is None or identifier == access_doc.get("identifier"):
        raise ConflictError(
            "The access token's identifier is not 'mcp:{serverName}', so its refresh token "
            "cannot be located",
            resource=ENTITY,
            resource_id=str(access_doc["_id"]),
        )
    return REFRESH.stored_identifier(identifier)


async def _refresh_pair(
    collection: AsyncCollection[dict[str, Any]],
    *,
    access_filter: dict[str, Any],
    access_update: dict[str, Any],
    owner: ObjectId,
    refresh_identifier: str,
    refresh_value: str,
    now: datetime,
) -> tuple[dict[str, Any] | None, str | None]:
    """Update the access record and upsert its refresh record in one transaction."""
    refresh_filter = {
        "userId": owner,
        "type": REFRESH.stored_type,
        "identifier": refresh_identifier,
    }
    refresh_update = record_upsert(refresh_value, now + REFRESH_RECORD_LIFETIME, now)

    async def write_both(
        session: AsyncClientSession,
    ) -> tuple[dict[str, Any] | None, str | None]:
        updated = await collection.find_one_and_update(
            access_filter, access_update, return_document=ReturnDocument.AFTER, session=session
        )
        if updated is None:
            return None, None
        refresh = await collection.find_one_and_update(
            refresh_filter,
            refresh_update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
            projection={"_id": True},
            session=session,
        )
        assert refresh is not None  # upsert=True always returns the document
        return updated, str(refresh["_id"])

    # Both transactions of two concurrent refreshes write the access record first, so the
    # second one hits a write conflict there, before it could upsert a duplicate refresh
    # record; with_transaction retries the whole callback on that transient error.
    async with collection.database.client.start_session() as session:
        return await session.with_transaction(write_both)
